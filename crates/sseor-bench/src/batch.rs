//! `batch` (sseor only): the same events published as one `POST /api/v1/publish/batch`
//! and as single `POST /api/v1/publish` requests, one at a time and many in flight, each
//! event to a user of its own: events per second of each way, best of a few rounds.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::publish::Publisher;
use crate::server::{Channel, PublishApi, Server, ServerOptions, Target};
use crate::stats::round;

/// What `batch` is given.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct BatchArgs {
    /// The server: `sseor` (embedded broker) or `sseor-redis` (two instances on a fresh
    /// Redis, publishes to the first).
    #[arg(long, value_enum, default_value_t = Target::SseorRedis)]
    pub(crate) target: Target,
    /// Events per round, all in one batch (at most the server's 1,000 per batch).
    #[arg(long, default_value_t = 1000)]
    pub(crate) events: u64,
    /// Single publish requests in flight at once, for the concurrent way.
    #[arg(long, default_value_t = 64)]
    pub(crate) in_flight: usize,
    /// Rounds of each way; the best is reported.
    #[arg(long, default_value_t = 5)]
    pub(crate) rounds: usize,
}

/// Runs the scenario and prints its JSON line.
pub(crate) async fn batch(args: &BatchArgs, options: &ServerOptions) -> Result<(), String> {
    if !matches!(args.target, Target::Sseor | Target::SseorRedis) {
        return Err("batch measures sseor only: --target sseor or sseor-redis".into());
    }
    let server = Server::start(args.target, options).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let api = server.publish_api();
    let users = args.events as usize;
    let channel = |n: u64| Channel::Own(n as usize % users);
    let (mut batched, mut sequential, mut concurrent) = (0.0f64, 0.0f64, 0.0f64);
    let one_at_a_time = Publisher::new(1)?;
    let many = Publisher::new(args.in_flight)?;
    let http = reqwest::Client::new();
    for round in 0..args.rounds as u64 {
        let first = round * args.events;
        batched = batched.max(publish_batch(&http, api, first, args.events, channel).await?);
        let single = one_at_a_time
            .paced(api, first, args.events, f64::INFINITY, channel)
            .await;
        sequential = sequential.max(checked_rate(&single)?);
        let single = many
            .paced(api, first, args.events, f64::INFINITY, channel)
            .await;
        concurrent = concurrent.max(checked_rate(&single)?);
    }
    println!(
        "{}",
        json!({
            "scenario": "batch",
            "server": args.target.name(),
            "events": args.events,
            "rounds": args.rounds,
            "batch_events_per_second": round(batched),
            "single_sequential_events_per_second": round(sequential),
            "single_in_flight": args.in_flight,
            "single_concurrent_events_per_second": round(concurrent),
        })
    );
    Ok(())
}

/// The rate of a run of single publishes, or its first error when one failed.
fn checked_rate(published: &crate::publish::Published) -> Result<f64, String> {
    match &published.first_error {
        Some(error) => Err(format!("a single publish failed: {error}")),
        None => Ok(published.rate()),
    }
}

/// Publishes events `first..first + count` as one batch request; events per second, from
/// sending the request to its answer.
async fn publish_batch(
    http: &reqwest::Client,
    api: &PublishApi,
    first: u64,
    count: u64,
    channel: impl Fn(u64) -> Channel,
) -> Result<f64, String> {
    if !matches!(api, PublishApi::Sseor(_)) {
        return Err("batch measures sseor only".into());
    }
    let events = (first..first + count).map(|n| (channel(n), n));
    let request = api.request_many(events, crate::stats::unix_nanos(), true);
    let started = Instant::now();
    let response = http
        .post(request.url)
        .header("content-type", "application/json")
        .body(request.body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let answer: Value = response.json().await.map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    let results = answer["results"].as_array().map_or(0, Vec::len);
    let failed = answer["results"].as_array().map_or(0, |results| {
        results.iter().filter(|r| r.get("error").is_some()).count()
    });
    if status != 202 || results as u64 != count || failed > 0 {
        return Err(format!("the batch was answered {status}: {answer}"));
    }
    Ok(count as f64 / seconds.max(1e-9))
}
