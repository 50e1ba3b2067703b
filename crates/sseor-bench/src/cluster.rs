//! `cluster` (sseor only): publishes spread over the masters of a Redis Cluster. A cluster
//! of its own (masters, no replicas), one sseor instance on it (`REDIS_URL=
//! redis+cluster://...`) with a stream per user, and events published from this process
//! through the library's `sseor::Publisher`, many in flight, each to a random user. Every
//! delivery is counted; each master's share of the publishes (`fcall` in `INFO
//! commandstats`) and of the CPU (`INFO cpu`) shows whether the load spreads evenly. Then
//! the same on a single Redis: publishes per second into one master against several.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::client::{OpenOptions, Readers, open_all};
use crate::process::{Process, cpu_seconds};
use crate::publish::Published;
use crate::random;
use crate::redis_info::RedisNode;
use crate::server::{RedisCluster, start_redis, start_sseor};
use crate::stats::{Received, round, unix_nanos};

/// How far from an even share a master's may be, relative to the even share.
const EVEN_TOLERANCE: f64 = 0.10;
/// Lost events named in the JSON line, at most.
const LOST_SHOWN: usize = 10;
/// How long the instance's subscriptions may take to reach Redis.
const SUBSCRIBING: Duration = Duration::from_secs(60);

/// What `cluster` is given.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct ClusterArgs {
    /// Users with a stream each on the receiving instance (2,000 where memory is tight).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) users: usize,
    /// Events to publish, each to a random user.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) events: u64,
    /// Masters of the cluster (at least 3).
    #[arg(long, default_value_t = 3)]
    pub(crate) masters: usize,
    /// Publishes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub(crate) in_flight: usize,
    /// Seconds without a delivery after which what has not arrived counts as lost.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) quiet: f64,
    /// Only the cluster: leave out the run on a single Redis.
    #[arg(long)]
    pub(crate) no_single: bool,
    #[command(flatten)]
    pub(crate) open: OpenOptions,
}

/// Runs the scenario with the sseor binary `server` and prints its JSON line.
pub(crate) async fn cluster(args: &ClusterArgs, server: &Path) -> Result<(), String> {
    if args.masters < 3 {
        return Err("a Redis Cluster needs at least 3 masters (--masters)".into());
    }
    let on_cluster = run_on(Layout::Cluster(args.masters), args, server).await?;
    let single = if args.no_single {
        Value::Null
    } else {
        run_on(Layout::Single, args, server).await?
    };
    let rate = |run: &Value| run["publishes_per_second"].as_f64();
    let ratio = match (rate(&on_cluster), rate(&single)) {
        (Some(cluster), Some(single)) if single > 0.0 => json!(round(cluster / single)),
        _ => Value::Null,
    };
    println!(
        "{}",
        json!({
            "scenario": "cluster",
            "parameters": {"users": args.users, "events": args.events,
                           "masters": args.masters, "in_flight": args.in_flight},
            "cluster": on_cluster,
            "single": single,
            "cluster_vs_single": ratio,
        })
    );
    Ok(())
}

/// How Redis is laid out for a run.
#[derive(Clone, Copy)]
enum Layout {
    /// A cluster of this many masters.
    Cluster(usize),
    /// One `redis-server`, not a cluster.
    Single,
}

/// The Redis of a run, stopped when dropped.
struct Redis {
    /// The URL sseor takes.
    url: String,
    /// `redis://HOST:PORT` of each master.
    node_urls: Vec<String>,
    /// Whether sseor subscribes with `SSUBSCRIBE` (a cluster) or `SUBSCRIBE`.
    sharded: bool,
    _cluster: Option<RedisCluster>,
    _single: Option<Process>,
}

impl Redis {
    async fn start(layout: Layout) -> Result<Self, String> {
        match layout {
            Layout::Cluster(masters) => {
                let cluster = RedisCluster::start(masters).await?;
                Ok(Self {
                    url: cluster.url(),
                    node_urls: cluster.node_urls(),
                    sharded: true,
                    _cluster: Some(cluster),
                    _single: None,
                })
            }
            Layout::Single => {
                let (process, url) = start_redis().await?;
                Ok(Self {
                    node_urls: vec![url.clone()],
                    url,
                    sharded: false,
                    _cluster: None,
                    _single: Some(process),
                })
            }
        }
    }
}

/// One run on `layout`: its figures, as JSON.
async fn run_on(layout: Layout, args: &ClusterArgs, server: &Path) -> Result<Value, String> {
    let redis = Redis::start(layout).await?;
    let (instance, port) = start_sseor(server, &[("REDIS_URL", redis.url.as_str())]).await?;
    let mut nodes = Vec::with_capacity(redis.node_urls.len());
    for url in &redis.node_urls {
        nodes.push(RedisNode::connect(url).await?);
    }
    let streams = (0..args.users)
        .map(|i| (i, port, format!("/api/v1/sse?user_id={}", user(i))))
        .collect();
    let readers = Readers::start(open_all(streams, &args.open).await.all()?);
    wait_for_subscriptions(&mut nodes, args.users, redis.sharded).await?;
    let publisher = sseor::Publisher::new(&redis.url)
        .await
        .map_err(|e| format!("sseor::Publisher::new({}): {e}", redis.url))?;
    let measured = measure(&mut nodes, instance.pid(), &publisher, readers, args).await?;
    Ok(measured.json(layout, args))
}

/// What one layout's publishes did.
struct Measured {
    published: Published,
    loads: Vec<MasterLoad>,
    /// CPU seconds of the sseor instance and of this process meanwhile.
    instance_cpu: f64,
    bench_cpu: f64,
    /// From the first publish to the last delivery (or to the last answer, if later).
    seconds: f64,
    latency: Value,
    streams_ended: usize,
    /// The sequence numbers each user's stream received.
    seen: Vec<(usize, Vec<u32>)>,
}

/// Publishes the events, waits for their deliveries, and reads what the masters, the
/// instance (process `instance`) and this process spent on them.
async fn measure(
    nodes: &mut [RedisNode],
    instance: u32,
    publisher: &sseor::Publisher,
    readers: Readers,
    args: &ClusterArgs,
) -> Result<Measured, String> {
    let mut cpu_before = Vec::with_capacity(nodes.len());
    for node in nodes.iter_mut() {
        node.reset_stats().await?;
        cpu_before.push(node.cpu_seconds().await?);
    }
    let processes = [instance, std::process::id()];
    let processes_before = processes.map(|pid| cpu_seconds(pid).unwrap_or(0.0));
    let started = unix_nanos();
    let published = publish_all(publisher, args).await;
    readers
        .tally
        .wait_for(published.ok, Duration::from_secs_f64(args.quiet))
        .await;
    let loads = master_loads(nodes, &cpu_before).await?;
    let [instance_cpu, bench_cpu] =
        [0, 1].map(|i| cpu_seconds(processes[i]).unwrap_or(0.0) - processes_before[i]);
    // Until the last delivery: a wait for events that never come would dilute the rates.
    let last_receipt = readers.tally.last_receipt.load(Ordering::Relaxed);
    let seconds = (last_receipt.saturating_sub(started) as f64 / 1e9).max(published.seconds);
    let latency = readers.tally.latency.percentiles_ms();
    let streams_ended = readers.tally.ended.load(Ordering::Relaxed);
    Ok(Measured {
        published,
        loads,
        instance_cpu,
        bench_cpu,
        seconds: seconds.max(1e-9),
        latency,
        streams_ended,
        seen: readers.stop().await,
    })
}

impl Measured {
    /// The figures of the run on `layout`.
    fn json(self, layout: Layout, args: &ClusterArgs) -> Value {
        let received = self
            .seen
            .iter()
            .map(|(_, numbers)| Received::of(&mut numbers.clone()))
            .fold(Received::default(), Received::add);
        let ok = self.published.ok;
        let redis_cpu: f64 = self.loads.iter().map(|load| load.cpu_seconds).sum();
        let percent = |cpu: f64| round(100.0 * cpu / self.seconds);
        let mut run = json!({
            "redis": match layout {
                Layout::Cluster(masters) => format!("cluster of {masters} masters"),
                Layout::Single => "single".into(),
            },
            "publishes_per_second": round(self.published.rate()),
            "publish_seconds": round(self.published.seconds),
            "events_published": ok,
            "publish_failures": self.published.failed,
            "publish_error": self.published.first_error,
            "deliveries_expected": ok,
            "deliveries_received": received.unique,
            "lost": ok.saturating_sub(received.unique),
            "duplicated": received.duplicated,
            "streams_ended_by_server": self.streams_ended,
            "latency_ms": self.latency,
            "redis_cpu_usec_per_publish": round(redis_cpu * 1e6 / ok.max(1) as f64),
            "cpu_percent": {
                "redis": percent(redis_cpu),
                "instance": percent(self.instance_cpu),
                "bench": percent(self.bench_cpu),
            },
        });
        if let (Some(run), Value::Object(spread)) = (run.as_object_mut(), spread(&self.loads)) {
            run.extend(spread);
        }
        run["lost_sample"] = json!(lost_sample(self.seen, args));
        run
    }
}

/// Up to [`LOST_SHOWN`] events that did not arrive, as `{"n", "user"}`, given the
/// sequence numbers each user's stream received: where to look in the instance's log.
fn lost_sample(mut seen: Vec<(usize, Vec<u32>)>, args: &ClusterArgs) -> Vec<Value> {
    seen.sort_unstable_by_key(|(user, _)| *user);
    for (_, numbers) in &mut seen {
        numbers.sort_unstable();
    }
    (0..args.events)
        .filter(|&n| {
            let user = random::pick(n, args.users);
            seen.get(user)
                .is_none_or(|(_, numbers)| numbers.binary_search(&(n as u32)).is_err())
        })
        .take(LOST_SHOWN)
        .map(|n| json!({"n": n, "user": user(random::pick(n, args.users))}))
        .collect()
}

/// The id of user `i`.
fn user(i: usize) -> String {
    format!("u{i}")
}

/// Waits until Redis holds a subscription to every user's channel: `PUBSUB SHARDCHANNELS`
/// on each master of a cluster, `PUBSUB CHANNELS` on a single Redis.
async fn wait_for_subscriptions(
    nodes: &mut [RedisNode],
    users: usize,
    sharded: bool,
) -> Result<(), String> {
    let mut list = redis::cmd("PUBSUB");
    list.arg(if sharded { "SHARDCHANNELS" } else { "CHANNELS" })
        .arg("sseor:{user:*");
    let deadline = Instant::now() + SUBSCRIBING;
    loop {
        let mut subscribed = 0;
        for node in nodes.iter_mut() {
            subscribed += node.query::<Vec<String>>(&list).await?.len();
        }
        if subscribed >= users {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "only {subscribed} of {users} users' channels subscribed in Redis after {SUBSCRIBING:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Publishes `args.events` events, each to a random user, `args.in_flight` at a time.
async fn publish_all(publisher: &sseor::Publisher, args: &ClusterArgs) -> Published {
    let started = Instant::now();
    let (ok, failed, first_error) = futures_util::stream::iter(0..args.events)
        .map(|n| async move {
            let event = sseor::Event::new("bench").with_data(json!({"n": n, "t": unix_nanos()}));
            publisher
                .publish(&user(random::pick(n, args.users)), event)
                .await
        })
        .buffer_unordered(args.in_flight.max(1))
        .fold((0, 0, None), |(ok, failed, first_error), outcome| {
            std::future::ready(match outcome {
                Ok(_) => (ok + 1, failed, first_error),
                Err(e) => (ok, failed + 1, first_error.or(Some(e.to_string()))),
            })
        })
        .await;
    Published {
        ok,
        failed,
        seconds: started.elapsed().as_secs_f64(),
        first_error,
    }
}

/// What one master did while the events were published.
struct MasterLoad {
    address: String,
    fcalls: u64,
    fcall_usec: u64,
    cpu_seconds: f64,
}

/// Each master's publishes (`fcall` calls) and CPU time since `cpu_before`.
async fn master_loads(
    nodes: &mut [RedisNode],
    cpu_before: &[f64],
) -> Result<Vec<MasterLoad>, String> {
    let mut loads = Vec::with_capacity(nodes.len());
    for (node, before) in nodes.iter_mut().zip(cpu_before) {
        let cpu_seconds = node.cpu_seconds().await? - before;
        let fcall = node
            .command_stats()
            .await?
            .into_iter()
            .find(|stat| stat.name == "fcall");
        loads.push(MasterLoad {
            address: node.address.clone(),
            fcalls: fcall.as_ref().map_or(0, |stat| stat.calls),
            fcall_usec: fcall.as_ref().map_or(0, |stat| stat.usec),
            cpu_seconds,
        });
    }
    Ok(loads)
}

/// Each master's share of the publishes and of the CPU, and whether every share is within
/// [`EVEN_TOLERANCE`] of an even one.
fn spread(loads: &[MasterLoad]) -> Value {
    let even = 1.0 / loads.len().max(1) as f64;
    let fcalls: u64 = loads.iter().map(|load| load.fcalls).sum();
    let cpu: f64 = loads.iter().map(|load| load.cpu_seconds).sum();
    let share = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { 0.0 };
    let deviation = |share: f64| (share / even - 1.0).abs();
    let (mut fcall_deviation, mut cpu_deviation) = (0.0f64, 0.0f64);
    let masters: Vec<Value> = loads
        .iter()
        .map(|load| {
            let fcall_share = share(load.fcalls as f64, fcalls as f64);
            let cpu_share = share(load.cpu_seconds, cpu);
            fcall_deviation = fcall_deviation.max(deviation(fcall_share));
            cpu_deviation = cpu_deviation.max(deviation(cpu_share));
            json!({
                "address": load.address,
                "fcall_calls": load.fcalls,
                "fcall_share": round(fcall_share),
                "usec_per_fcall": round(share(load.fcall_usec as f64, load.fcalls as f64)),
                "cpu_seconds": round(load.cpu_seconds),
                "cpu_share": round(cpu_share),
            })
        })
        .collect();
    json!({
        "masters": masters,
        "fcall_share_max_deviation": round(fcall_deviation),
        "cpu_share_max_deviation": round(cpu_deviation),
        "even_within_10_percent": fcall_deviation <= EVEN_TOLERANCE && cpu_deviation <= EVEN_TOLERANCE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(fcalls: u64, cpu_seconds: f64) -> MasterLoad {
        MasterLoad {
            address: "127.0.0.1:1".into(),
            fcalls,
            fcall_usec: fcalls * 10,
            cpu_seconds,
        }
    }

    #[test]
    fn even_spread() {
        let spread = spread(&[load(340, 1.0), load(330, 1.05), load(330, 0.95)]);
        assert_eq!(spread["masters"][0]["fcall_share"], json!(0.34));
        assert_eq!(spread["masters"][1]["usec_per_fcall"], json!(10.0));
        assert_eq!(spread["fcall_share_max_deviation"], json!(0.02));
        assert_eq!(spread["even_within_10_percent"], json!(true));
    }

    #[test]
    fn uneven_spread() {
        let spread = spread(&[load(500, 1.0), load(250, 1.0), load(250, 1.0)]);
        assert_eq!(spread["fcall_share_max_deviation"], json!(0.5));
        assert_eq!(spread["even_within_10_percent"], json!(false));
    }
}
