//! `redis` (sseor only): two instances on one Redis, a stream per user on the second;
//! events published through the first's HTTP API, each to a random user, as fast as the
//! publish requests in flight allow. Measures the publish rate through Redis and the time
//! until every event reached its stream.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{OpenOptions, Readers, open_all};
use crate::publish::Publisher;
use crate::random;
use crate::server::{Channel, Server, ServerOptions, Target};
use crate::stats::round;

/// How long deliveries may take after the last publish before the rest count as lost.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

/// What `redis` is given.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct RedisArgs {
    /// Streams to open on the receiving server, one user each.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) connections: usize,
    /// Events to publish.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) events: u64,
    /// Publish requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) publishers: usize,
    #[command(flatten)]
    pub(crate) open: OpenOptions,
}

/// Runs the scenario and prints its JSON line.
pub(crate) async fn redis(args: &RedisArgs, options: &ServerOptions) -> Result<(), String> {
    let users = args.connections;
    let server = Server::start(Target::SseorRedis, options).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let port = server.stream_port();
    let streams = (0..users)
        .map(|i| (i, port, server.stream_path(Channel::Own(i), i)))
        .collect();
    let readers = Readers::start(open_all(streams, &args.open).await.all()?);
    // Let the receiving instance's subscriptions reach Redis.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let publisher = Publisher::new(args.publishers.max(1))?;
    let started = Instant::now();
    let published = publisher
        .paced(server.publish_api(), 0, args.events, f64::INFINITY, |n| {
            Channel::Own(random::pick(n, users))
        })
        .await;
    let tally = readers.tally.clone();
    let _ = tokio::time::timeout(DELIVERY_WAIT, tally.wait_for(published.ok, DELIVERY_WAIT)).await;
    let delivered_seconds = started.elapsed().as_secs_f64();
    let delivered = tally.received.load(Ordering::Relaxed);
    readers.stop().await;
    println!(
        "{}",
        json!({
            "scenario": "redis",
            "connections": users,
            "events": args.events,
            "failed_publishes": published.failed,
            "delivered": delivered,
            "lost": published.ok.saturating_sub(delivered),
            "publish_seconds": round(published.seconds),
            "publishes_per_second": round(published.rate()),
            "all_delivered_seconds": round(delivered_seconds),
            "deliveries_per_second": round(delivered as f64 / delivered_seconds),
        })
    );
    Ok(())
}
