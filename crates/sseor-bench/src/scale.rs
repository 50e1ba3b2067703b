//! `client`: only opens streams and reports what they receive, so that several processes can
//! hold more sockets than one may; `scale`: Redis, several sseor instances and several
//! `client` processes, with broadcasts published on one instance.
//!
//! The protocol between `scale` and its `client` processes, one JSON object a line: the
//! client prints `{"opened", ...}` once its streams are open; `scale` writes `finish` to its
//! standard input once it has published; the client then waits for its deliveries and
//! prints the final counts and its latency histogram. A closed standard input ends it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

use crate::client::{OpenOptions, Readers, open_all};
use crate::process::Process;
use crate::publish::Publisher;
use crate::scenario::Waits;
use crate::server::{Channel, PublishApi, ServerOptions, start_redis, start_sseor};
use crate::stats::{Histogram, round, unix_nanos};

/// The streams a `client` process opens.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct ClientArgs {
    /// Ports of the servers, comma-separated: stream `i` goes to port `i mod count`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) ports: Vec<u16>,
    /// Path of stream `i`, `{i}` replaced by its number.
    #[arg(long, default_value = "/api/v1/sse?user_id=u{i}")]
    pub(crate) path: String,
    /// Number of the first stream.
    #[arg(long, default_value_t = 0)]
    pub(crate) first: usize,
    /// Streams to open.
    #[arg(long, default_value_t = 1000)]
    pub(crate) connections: usize,
    /// `bench` events every stream should receive.
    #[arg(long, default_value_t = 0)]
    pub(crate) events: u64,
    /// Seconds without any delivery after which what has not arrived counts as lost.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) quiet: f64,
    #[command(flatten)]
    pub(crate) open: OpenOptions,
}

/// Opens the streams, reports, and after `finish` on standard input waits for the events.
pub(crate) async fn client(args: &ClientArgs) -> Result<(), String> {
    let streams = (args.first..args.first + args.connections)
        .map(|i| {
            let port = args.ports[i % args.ports.len()];
            (i, port, args.path.replace("{i}", &i.to_string()))
        })
        .collect();
    let opened = open_all(streams, &args.open).await;
    let count = opened.streams.len() as u64;
    println!(
        "{}",
        json!({
            "opened": count,
            "not_opened": opened.not_opened,
            "failed_attempts": opened.failed_attempts,
            "open_error": opened.first_error,
            "open_seconds": round(opened.seconds),
        })
    );
    let readers = Readers::start(opened.streams);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        match stdin.next_line().await {
            Ok(Some(line)) if line.trim() == "finish" => break,
            Ok(Some(_)) => {}
            _ => return Ok(()),
        }
    }
    let expected = count * args.events;
    let tally = readers.tally.clone();
    tally
        .wait_for(expected, Duration::from_secs_f64(args.quiet))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received = readers.stop_and_count().await;
    println!(
        "{}",
        json!({
            "expected": expected,
            "received": received.unique,
            "duplicated": received.duplicated,
            "ended": tally.ended.load(Ordering::Relaxed),
            "last_receipt_ns": tally.last_receipt.load(Ordering::Relaxed),
            "latency": tally.latency.to_json(),
        })
    );
    Ok(())
}

/// The shape of a `scale` run.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct ScaleArgs {
    /// sseor instances on one Redis.
    #[arg(long, default_value_t = 3)]
    pub(crate) instances: usize,
    /// Streams in all, spread evenly over the instances.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) connections: usize,
    /// `client` processes holding them (each may hold about 19,000 here).
    #[arg(long, default_value_t = 3)]
    pub(crate) clients: usize,
    /// Broadcast events, published on the first instance.
    #[arg(long, default_value_t = 20)]
    pub(crate) events: u64,
    /// Events per second.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) rate: f64,
    #[command(flatten)]
    pub(crate) wait: Waits,
    #[command(flatten)]
    pub(crate) open: OpenOptions,
}

/// A `client` process and its report lines.
struct ClientProcess {
    process: Process,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ClientProcess {
    async fn next(&mut self, within: Duration) -> Result<Value, String> {
        let line = tokio::time::timeout(within, self.lines.next_line())
            .await
            .map_err(|_| "a client process did not report in time".to_owned())?
            .map_err(|e| e.to_string())?
            .ok_or("a client process ended without reporting")?;
        serde_json::from_str(&line).map_err(|e| format!("client said {line:?}: {e}"))
    }
}

/// 50,000 streams over three sseor instances on one Redis, held by several processes.
pub(crate) async fn scale(args: &ScaleArgs, options: &ServerOptions) -> Result<(), String> {
    let (_redis, redis_url) = start_redis().await?;
    let mut instances = Vec::new();
    for _ in 0..args.instances.max(1) {
        instances.push(start_sseor(&options.server, &[("REDIS_URL", &redis_url)]).await?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = |instances: &[(Process, u16)]| -> Vec<u64> {
        instances.iter().map(|(p, _)| p.rss_kib()).collect()
    };
    let rss_before = rss(&instances);
    let ports: Vec<String> = instances.iter().map(|(_, port)| port.to_string()).collect();
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let clients = args.clients.max(1);
    let mut children = Vec::new();
    for c in 0..clients {
        let first = args.connections * c / clients;
        let count = args.connections * (c + 1) / clients - first;
        let mut command = Command::new(&me);
        command
            .arg("client")
            .arg(format!("--ports={}", ports.join(",")))
            .args(["--first", &first.to_string()])
            .args(["--connections", &count.to_string()])
            .args(["--events", &args.events.to_string()])
            .args(["--quiet", &args.wait.quiet.to_string()])
            .args(["--concurrency", &args.open.concurrency.to_string()])
            .args(["--open-timeout", &args.open.open_timeout.to_string()])
            .args(["--attempts", &args.open.attempts.to_string()])
            .args(["--sources", &args.open.sources.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut process = Process::spawn(&mut command, "sseor-bench client")?;
        let stdout = process.child().stdout.take().ok_or("no stdout")?;
        children.push(ClientProcess {
            process,
            lines: BufReader::new(stdout).lines(),
        });
    }
    let mut opened = Vec::new();
    for child in &mut children {
        opened.push(child.next(Duration::from_secs(600)).await?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss(&instances);
    tokio::time::sleep(args.wait.settle()).await;

    let publisher = Publisher::new(16)?;
    let started = unix_nanos();
    let published = publisher
        .paced(
            &PublishApi::sseor(instances[0].1),
            0,
            args.events,
            args.rate,
            |_| Channel::Broadcast,
        )
        .await;
    for child in &mut children {
        let stdin = child.process.child().stdin.as_mut().ok_or("no stdin")?;
        stdin
            .write_all(b"finish\n")
            .await
            .map_err(|e| e.to_string())?;
    }
    let latency = Histogram::default();
    let (mut expected, mut received, mut duplicated, mut ended, mut last) = (0, 0, 0, 0, 0);
    for child in &mut children {
        let done = child.next(Duration::from_secs(600)).await?;
        let number = |key: &str| done[key].as_u64().unwrap_or(0);
        expected += number("expected");
        received += number("received");
        duplicated += number("duplicated");
        ended += number("ended");
        last = last.max(number("last_receipt_ns"));
        latency.add_json(&done["latency"]);
    }
    let rss_end = rss(&instances);
    let sum = |key: &str| -> u64 { opened.iter().map(|o| o[key].as_u64().unwrap_or(0)).sum() };
    let connections_opened = sum("opened");
    let per_instance: Vec<Value> = (0..instances.len())
        .map(|k| {
            let held = (0..args.connections)
                .filter(|i| i % instances.len() == k)
                .count();
            json!({
                "port": instances[k].1,
                "connections": held,
                "rss_kib": {"before": rss_before[k], "idle": rss_idle[k], "end": rss_end[k]},
                "kib_per_connection": round(
                    (rss_idle[k] as f64 - rss_before[k] as f64) / held.max(1) as f64
                ),
            })
        })
        .collect();
    let open_seconds = opened
        .iter()
        .filter_map(|o| o["open_seconds"].as_f64())
        .fold(0.0, f64::max);
    println!(
        "{}",
        json!({
            "server": "sseor-redis",
            "scenario": "scale",
            "parameters": {
                "instances": instances.len(), "clients": clients,
                "events": args.events, "rate": args.rate,
            },
            "connections": args.connections,
            "connections_opened": connections_opened,
            "not_opened": sum("not_opened"),
            "failed_attempts": sum("failed_attempts"),
            "open_error": opened.iter().find_map(|o| o["open_error"].as_str()),
            "open_seconds": open_seconds,
            "events_published": published.ok,
            "publish_failures": published.failed,
            "publish_rate_achieved": round(published.rate()),
            "deliveries_expected": expected,
            "deliveries_received": received,
            "lost": expected.saturating_sub(received),
            "duplicated": duplicated,
            "streams_ended_by_server": ended,
            "deliveries_per_second":
                round(received as f64 / (last.saturating_sub(started) as f64 / 1e9).max(1e-9)),
            "latency_ms": latency.percentiles_ms(),
            "rss_kib": {
                "before": rss_before.iter().sum::<u64>(),
                "idle": rss_idle.iter().sum::<u64>(),
                "end": rss_end.iter().sum::<u64>(),
            },
            "kib_per_connection": round(
                (rss_idle.iter().sum::<u64>() as f64 - rss_before.iter().sum::<u64>() as f64)
                    / connections_opened.max(1) as f64
            ),
            "instances": per_instance,
        })
    );
    Ok(())
}
