//! `herd` (sseor only): the thundering herd. Clients hold streams on one instance, which
//! dies (SIGKILL); events they miss meanwhile are published; every client then resumes at
//! once on another instance of the same Redis with its `Last-Event-ID`. Measures the time
//! until all have caught up, and the CPU Redis used meanwhile.

use std::path::Path;
use std::time::Instant;

use serde_json::json;

use crate::client::{OpenOptions, Stream, open, open_all};
use crate::process::cpu_seconds;
use crate::server::{start_redis, start_sseor};
use crate::stats::round;

/// What `herd` is given.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct HerdArgs {
    /// Clients of the instance that dies, one stream each.
    #[arg(long, default_value_t = 5000)]
    pub(crate) clients: usize,
    /// Events each client misses while it is away.
    #[arg(long, default_value_t = 100)]
    pub(crate) missed: usize,
    /// How the streams are first opened (the resumption opens them all at once).
    #[command(flatten)]
    pub(crate) open: OpenOptions,
}

/// Runs the scenario with the sseor binary `server` and prints its JSON line.
pub(crate) async fn herd(server: &Path, args: &HerdArgs) -> Result<(), String> {
    let (clients, missed) = (args.clients, args.missed.max(1));
    let (redis, redis_url) = start_redis().await?;
    let env = [("REDIS_URL", redis_url.as_str())];
    let (mut dying, dying_port) = start_sseor(server, &env).await?;
    let (_surviving, surviving_port) = start_sseor(server, &env).await?;
    let publisher = sseor::Publisher::new(&redis_url)
        .await
        .map_err(|e| e.to_string())?;

    let streams = (0..clients)
        .map(|n| (n, dying_port, user_path(n)))
        .collect();
    let streams = open_all(streams, &args.open).await.all()?;
    // Let the dying instance's subscriptions reach Redis.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    publish_to_each(&publisher, clients, 1).await?;
    let (held, last_ids) = first_ids(streams).await?;

    let _ = dying.child().start_kill();
    let _ = dying.child().wait().await;
    drop(held);
    publish_to_each(&publisher, clients, missed).await?;

    let cpu_before = cpu_seconds(redis.pid())?;
    let started = Instant::now();
    let not_caught_up = resume_all(surviving_port, last_ids, missed, args.open.sources).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds(redis.pid())? - cpu_before;
    println!(
        "{}",
        json!({
            "scenario": "herd",
            "clients": clients,
            "missed_per_client": missed,
            "clients_not_caught_up": not_caught_up,
            "all_caught_up_seconds": round(seconds),
            "redis_cpu_seconds": round(cpu_seconds),
            "redis_cpu_percent": round(100.0 * cpu_seconds / seconds),
        })
    );
    Ok(())
}

/// The stream path of client `n`, user `user{n}`.
fn user_path(n: usize) -> String {
    format!("/api/v1/sse?user_id=user{n}")
}

/// Publishes `count` events `bench` to each of `users` users through Redis, 256 at a time.
async fn publish_to_each(
    publisher: &sseor::Publisher,
    users: usize,
    count: usize,
) -> Result<(), String> {
    let jobs: Vec<(usize, usize)> = (0..count)
        .flat_map(|k| (0..users).map(move |u| (u, k)))
        .collect();
    for chunk in jobs.chunks(256) {
        let sent = futures_util::future::join_all(chunk.iter().map(|&(user, k)| {
            let event = sseor::Event::new("bench").with_data(json!({ "k": k }));
            publisher.publish_to(
                sseor::Target::user(&format!("user{user}")).expect("valid"),
                event,
            )
        }))
        .await;
        if let Some(Err(e)) = sent.into_iter().find(Result::is_err) {
            return Err(format!("publish failed: {e}"));
        }
    }
    Ok(())
}

/// Reads every stream until its first event: the streams, still open, and the event's id
/// of each, by client.
async fn first_ids(streams: Vec<(usize, Stream)>) -> Result<(Vec<Stream>, Vec<String>), String> {
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|(_, mut stream)| {
            tokio::spawn(async move {
                let mut id = String::new();
                stream
                    .read_until(|event| {
                        id = String::from_utf8_lossy(event.id).into_owned();
                        true
                    })
                    .await
                    .map_err(|e| format!("before its first event, {e}"))?;
                Ok::<_, String>((stream, id))
            })
        })
        .collect();
    let (mut held, mut ids) = (Vec::new(), Vec::new());
    for task in tasks {
        let (stream, id) = task.await.map_err(|e| e.to_string())??;
        held.push(stream);
        ids.push(id);
    }
    Ok((held, ids))
}

/// Every client at once opens its stream again on `port`, after its last event id, and
/// reads until `missed` events arrived; how many did not get there.
async fn resume_all(port: u16, last_ids: Vec<String>, missed: usize, sources: u8) -> usize {
    let tasks: Vec<_> = last_ids
        .into_iter()
        .enumerate()
        .map(|(n, last)| {
            let source = (n % usize::from(sources.max(1))) as u8 + 1;
            tokio::spawn(async move {
                let resume = format!("Last-Event-ID: {last}\r\n");
                let mut stream = open(port, &user_path(n), source, &resume).await?;
                let mut received = 0;
                stream
                    .read_until(|event| {
                        received += usize::from(event.kind == b"bench");
                        received >= missed
                    })
                    .await
            })
        })
        .collect();
    let mut not_caught_up = 0;
    for task in tasks {
        if !matches!(task.await, Ok(Ok(()))) {
            not_caught_up += 1;
        }
    }
    not_caught_up
}
