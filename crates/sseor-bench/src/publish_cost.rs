//! `publish-cost`: what one publish costs Redis. Two instances on a fresh Redis
//! (`sseor-redis` or `nchan-redis`), a stream per user on the second; events published
//! through the first's HTTP API, each to one of the users. Redis's own statistics (`INFO
//! commandstats`, `INFO cpu`) over the publishes give its time per publish, and the same
//! measure of bare `PUBLISH`es on another fresh Redis gives the floor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::client::{OpenOptions, Readers, open_all};
use crate::monitor::{Caller, Callers, Monitor};
use crate::publish::{Published, Publisher};
use crate::random;
use crate::redis_info::{CommandStat, RedisNode};
use crate::server::{Channel, PublishApi, Server, ServerOptions, Target, start_redis};
use crate::stats::{round, unix_nanos};

/// Commands listed in the JSON line, the costliest first.
const TOP_COMMANDS: usize = 10;

/// What `publish-cost` is given.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct PublishCostArgs {
    /// The server under test: `sseor-redis` or `nchan-redis`.
    #[arg(long, value_enum, default_value = "sseor-redis")]
    pub(crate) target: Target,
    /// Users, each with one stream on the receiving instance.
    #[arg(long, default_value_t = 40)]
    pub(crate) users: usize,
    /// Events measured, each to one of the users.
    #[arg(long, default_value_t = 8000)]
    pub(crate) events: u64,
    /// Events published before, while `MONITOR` tells which commands scripts run; not
    /// measured.
    #[arg(long, default_value_t = 80)]
    pub(crate) warmup: u64,
    /// Publish requests (or bare `PUBLISH`es) in flight at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) in_flight: usize,
    /// Publishes per second; 0: as fast as `--in-flight` allows. At full speed the two
    /// servers, the load generator and Redis contend for the cores, and a command Redis
    /// is preempted in counts the time it waited.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate: f64,
    /// Seconds between the last stream opened and the first publish (subscriptions reach
    /// Redis asynchronously).
    #[arg(long, default_value_t = 2.0)]
    pub(crate) settle: f64,
    /// Seconds without a delivery after which what has not arrived counts as lost.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) quiet: f64,
    #[command(flatten)]
    pub(crate) open: OpenOptions,
}

impl PublishCostArgs {
    /// Publishes per second: unbounded for 0.
    fn pace(&self) -> f64 {
        if self.rate > 0.0 {
            self.rate
        } else {
            f64::INFINITY
        }
    }

    /// The user event `n` goes to.
    fn channel(&self, n: u64) -> Channel {
        Channel::Own(random::pick(n, self.users))
    }
}

/// Runs the scenario and prints its JSON line.
pub(crate) async fn publish_cost(
    args: &PublishCostArgs,
    options: &ServerOptions,
) -> Result<(), String> {
    if !matches!(args.target, Target::SseorRedis | Target::NchanRedis) {
        return Err("publish-cost measures a Redis variant: sseor-redis or nchan-redis".into());
    }
    let events = args.events.max(1);
    let server = Server::start(args.target, options).await?;
    let mut redis = RedisNode::connect(server.redis_url().ok_or("no Redis")?).await?;
    let readers = open_streams(&server, args).await?;
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;

    let publisher = Publisher::new(args.in_flight)?;
    let api = server.publish_api();
    let (warmup, callers) = warm_up(&redis, &publisher, api, args).await?;

    redis.reset_stats().await?;
    let cpu_before = redis.cpu_seconds().await?;
    let published = publisher
        .paced(api, args.warmup, events, args.pace(), |n| args.channel(n))
        .await;
    let expected = warmup.ok + published.ok;
    let quiet = Duration::from_secs_f64(args.quiet);
    readers.tally.wait_for(expected, quiet).await;
    let cpu_seconds = redis.cpu_seconds().await? - cpu_before;
    let stats = redis.command_stats().await?;
    let latency = readers.tally.latency.percentiles_ms();
    let received = readers.stop_and_count().await;
    drop(server);

    let bare = bare_publish(args).await?;
    let cost = Cost::of(&stats, &callers, published.ok.max(1), cpu_seconds);
    let mut line = json!({
        "server": args.target.name(),
        "scenario": "publish-cost",
        "parameters": {"users": args.users, "events": events, "warmup": args.warmup,
                       "in_flight": args.in_flight, "rate": args.rate},
        "events_published": published.ok,
        "publish_failures": published.failed + warmup.failed,
        "publish_error": published.first_error.clone().or(warmup.first_error),
        "publish_rate_achieved": round(published.rate()),
        "deliveries_expected": expected,
        "deliveries_received": received.unique,
        "lost": expected.saturating_sub(received.unique),
        "duplicated": received.duplicated,
        "latency_ms": latency,
        "bare_publish": bare,
        "vs_bare_publish": round(cost.usec_per_publish() / bare["usec_per_publish"].as_f64().unwrap_or(f64::NAN)),
    });
    merge(&mut line, cost.json());
    println!("{line}");
    Ok(())
}

/// Publishes the warm-up events while `MONITOR` watches `redis`: what they did, and who
/// called each command.
async fn warm_up(
    redis: &RedisNode,
    publisher: &Publisher,
    api: &PublishApi,
    args: &PublishCostArgs,
) -> Result<(Published, Callers), String> {
    let monitor = Monitor::start(&redis.address).await?;
    let warmup = publisher
        .paced(api, 0, args.warmup, f64::INFINITY, |n| args.channel(n))
        .await;
    // The subscribers' work on the last deliveries shows in the sample too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok((warmup, monitor.stop().await))
}

/// Opens a stream per user on the receiving instance and starts reading them.
async fn open_streams(server: &Server, args: &PublishCostArgs) -> Result<Readers, String> {
    let port = server.stream_port();
    let streams = (0..args.users)
        .map(|i| (i, port, server.stream_path(Channel::Own(i), i)))
        .collect();
    Ok(Readers::start(open_all(streams, &args.open).await.all()?))
}

/// Adds the fields of `more` to `line`.
fn merge(line: &mut Value, more: Value) {
    if let (Some(line), Value::Object(more)) = (line.as_object_mut(), more) {
        line.extend(more);
    }
}

/// What Redis spent on `publishes` publishes.
struct Cost {
    publishes: u64,
    /// Commands clients sent: a script's or function's time includes what it ran.
    top_level_usec: u64,
    /// Every line of `INFO commandstats`: what scripts ran counts twice.
    all_usec: u64,
    cpu_seconds: f64,
    /// The costliest commands, and who called them.
    top: Vec<(CommandStat, Caller)>,
}

impl Cost {
    /// The cost in `stats` (and `cpu_seconds` of Redis's CPU) of `publishes` publishes,
    /// the commands only scripts were seen calling counted inside the scripts alone.
    fn of(stats: &[CommandStat], callers: &Callers, publishes: u64, cpu_seconds: f64) -> Self {
        let with_caller: Vec<(CommandStat, Caller)> = stats
            .iter()
            .map(|stat| (stat.clone(), callers.caller(stat.command())))
            .collect();
        let top_level_usec = with_caller
            .iter()
            .filter(|(_, caller)| *caller != Caller::Script)
            .map(|(stat, _)| stat.usec)
            .sum();
        let mut top = with_caller;
        top.sort_by_key(|(stat, _)| std::cmp::Reverse(stat.usec));
        top.truncate(TOP_COMMANDS);
        Self {
            publishes: publishes.max(1),
            top_level_usec,
            all_usec: stats.iter().map(|stat| stat.usec).sum(),
            cpu_seconds,
            top,
        }
    }

    fn usec_per_publish(&self) -> f64 {
        self.top_level_usec as f64 / self.publishes as f64
    }

    fn json(&self) -> Value {
        let per_publish = |value: f64| round(value / self.publishes as f64);
        let commands: Vec<Value> = self
            .top
            .iter()
            .map(|(stat, caller)| {
                json!({
                    "command": stat.name,
                    "calls": stat.calls,
                    "usec": stat.usec,
                    "usec_per_call": round(stat.usec as f64 / stat.calls.max(1) as f64),
                    "calls_per_publish": per_publish(stat.calls as f64),
                    "called_by": caller.name(),
                })
            })
            .collect();
        json!({
            "usec_per_publish": round(self.usec_per_publish()),
            "all_commands_usec_per_publish": per_publish(self.all_usec as f64),
            "redis_cpu_usec_per_publish": per_publish(self.cpu_seconds * 1e6),
            "commands": commands,
        })
    }
}

/// Bare `PUBLISH`es measured the same way: `args.events` messages the size of an sseor
/// event, each to one of `args.users` channels that one connection subscribes to, on a
/// fresh Redis.
async fn bare_publish(args: &PublishCostArgs) -> Result<Value, String> {
    let (_redis, url) = start_redis().await?;
    let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
    let received = subscribe_and_count(&client, args.users).await?;
    let mut node = RedisNode::connect(&url).await?;
    let connection = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("Redis: {e}"))?;
    node.reset_stats().await?;
    let cpu_before = node.cpu_seconds().await?;
    let events = args.events.max(1);
    let started = Instant::now();
    let failed = futures_util::stream::iter(0..events)
        .map(|n| {
            let mut connection = connection.clone();
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(bare_channel(random::pick(n, args.users)));
            publish.arg(bare_message(n));
            let due = started + Duration::from_secs_f64(n as f64 / args.pace());
            async move {
                tokio::time::sleep_until(due.into()).await;
                publish.query_async::<i64>(&mut connection).await.is_err()
            }
        })
        .buffer_unordered(args.in_flight.max(1))
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await as u64;
    let seconds = started.elapsed().as_secs_f64();
    wait_for_count(
        &received,
        events - failed,
        Duration::from_secs_f64(args.quiet),
    )
    .await;
    let cpu_seconds = node.cpu_seconds().await? - cpu_before;
    let stats = node.command_stats().await?;
    let delivered = received.load(Ordering::Relaxed);
    let cost = Cost::of(&stats, &Callers::default(), events - failed, cpu_seconds);
    let mut line = json!({
        "published": events - failed,
        "failed": failed,
        "publishes_per_second": round((events - failed) as f64 / seconds.max(1e-9)),
        "delivered": delivered,
        "lost": (events - failed).saturating_sub(delivered),
    });
    merge(&mut line, cost.json());
    Ok(line)
}

/// Subscribes one connection to the channels of `users` users; the messages it receives,
/// counted as they arrive.
async fn subscribe_and_count(
    client: &redis::Client,
    users: usize,
) -> Result<Arc<AtomicU64>, String> {
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .map_err(|e| format!("Redis: {e}"))?;
    for user in 0..users {
        pubsub
            .subscribe(bare_channel(user))
            .await
            .map_err(|e| format!("SUBSCRIBE: {e}"))?;
    }
    let received = Arc::new(AtomicU64::new(0));
    let counted = received.clone();
    tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        while messages.next().await.is_some() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(received)
}

/// Waits until `count` reaches `expected`, or until it did not grow for `quiet`.
async fn wait_for_count(count: &AtomicU64, expected: u64, quiet: Duration) {
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let now = count.load(Ordering::Relaxed);
        if now >= expected {
            return;
        }
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The channel of user `user`, named as sseor names it.
fn bare_channel(user: usize) -> String {
    format!("sseor:{{user:c{user}}}")
}

/// A message as large as the one sseor publishes for event `n`.
fn bare_message(n: u64) -> String {
    let t = unix_nanos();
    format!(
        r#"{{"p":[1796035318,{n},{}],"type":"bench","data":{{"n":{n},"t":{t}}}}}"#,
        t / 1_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_count_once() {
        let stats = crate::redis_info::parse_command_stats(
            "cmdstat_fcall:calls=100,usec=1000,usec_per_call=10.00\r\n\
             cmdstat_xadd:calls=100,usec=300,usec_per_call=3.00\r\n\
             cmdstat_ping:calls=2,usec=2,usec_per_call=1.00\r\n",
        );
        let callers = Callers::from_lines(&[
            r#"+1.0 [0 127.0.0.1:5555] "FCALL" "sseor_publish""#,
            r#"+1.0 [0 lua] "XADD" "h""#,
        ]);
        let cost = Cost::of(&stats, &callers, 100, 0.002);
        let json = cost.json();
        assert_eq!(json["usec_per_publish"], json!(10.02));
        assert_eq!(json["all_commands_usec_per_publish"], json!(13.02));
        assert_eq!(json["redis_cpu_usec_per_publish"], json!(20.0));
        assert_eq!(json["commands"][0]["command"], "fcall");
        assert_eq!(json["commands"][1]["called_by"], "script");
        assert_eq!(json["commands"][2]["called_by"], "unseen");
    }

    #[test]
    fn bare_messages_look_like_events() {
        let message = bare_message(7);
        let parsed: Value = serde_json::from_str(&message).expect("JSON");
        assert_eq!(parsed["data"]["n"], 7);
        assert_eq!(bare_channel(3), "sseor:{user:c3}");
    }
}
