//! `sseor-bench`: starts an `sseor` server process, loads it, and prints one JSON line of
//! figures.
//!
//! ```text
//! cargo build --release -p sseor-server -p sseor-bench
//! target/release/sseor-bench idle --connections 5000
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

#[derive(Parser)]
#[command(name = "sseor-bench", version, about)]
struct Cli {
    /// The server binary to measure.
    #[arg(long, default_value = "target/release/sseor")]
    server: PathBuf,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Two servers on one Redis: streams on the second, one user each; publishes to random
    /// users through the first's HTTP API; measures publishes and deliveries per second.
    Redis {
        /// Streams to open on the receiving server.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Events to publish.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Publish requests in flight at once.
        #[arg(long, default_value_t = 64)]
        publishers: usize,
    },
    /// Streams on one channel (broadcast): events published at a fixed rate through the
    /// HTTP API; measures deliveries per second and publish-to-receipt latency.
    Broadcast {
        /// Streams to open.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Events to publish.
        #[arg(long, default_value_t = 250)]
        events: usize,
        /// Events per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
    },
    /// The thundering herd: one instance dies; its clients all resume at once on another.
    Herd {
        /// Clients of the instance that dies.
        #[arg(long, default_value_t = 5000)]
        clients: usize,
        /// Events each client misses while it is away.
        #[arg(long, default_value_t = 100)]
        missed: usize,
    },
    /// Opens idle streams, measures the server's memory per connection, then stops the
    /// server with SIGTERM and measures how long it takes to end every stream and exit.
    Idle {
        /// Streams to open.
        #[arg(long, default_value_t = 5000)]
        connections: usize,
        /// Streams opened at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
    },
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Idle {
            connections,
            concurrency,
        } => idle(&cli.server, connections, concurrency.max(1)).await,
        Scenario::Redis {
            connections,
            events,
            publishers,
        } => through_redis(&cli.server, connections, events, publishers.max(1)).await,
        Scenario::Herd { clients, missed } => herd(&cli.server, clients, missed.max(1)).await,
        Scenario::Broadcast {
            connections,
            events,
            rate,
        } => broadcast(&cli.server, connections, events, rate).await,
    }
}

async fn idle(server: &PathBuf, connections: usize, concurrency: usize) -> Result<(), String> {
    let (mut child, port) = start_server(server).await?;
    let pid = child.id().ok_or("the server exited at once")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = rss_kib(pid)?;

    let opening = Instant::now();
    let streams = open_streams(port, connections, concurrency).await?;
    let open_seconds = opening.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_kib(pid)?;

    let stopping = Instant::now();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .map_err(|e| format!("cannot signal the server: {e}"))?;
    let ended = futures_join(streams.into_iter().map(wait_for_end)).await;
    let streams_ended_seconds = stopping.elapsed().as_secs_f64();
    let status = child.wait().await.map_err(|e| e.to_string())?;
    let exit_seconds = stopping.elapsed().as_secs_f64();

    println!(
        "{}",
        json!({
            "scenario": "idle",
            "connections": connections,
            "open_seconds": round(open_seconds),
            "rss_before_kib": rss_before,
            "rss_idle_kib": rss_idle,
            "kib_per_connection": round((rss_idle - rss_before) as f64 / connections as f64),
            "streams_ended_cleanly": ended.iter().filter(|&&clean| clean).count(),
            "shutdown_streams_ended_seconds": round(streams_ended_seconds),
            "shutdown_exit_seconds": round(exit_seconds),
            "exit_status": status.code(),
        })
    );
    Ok(())
}

async fn through_redis(
    server: &PathBuf,
    connections: usize,
    events: usize,
    publishers: usize,
) -> Result<(), String> {
    let (mut redis, redis_url) = start_redis().await?;
    let (_publishing, publish_port) =
        start_server_with(server, &[("REDIS_URL", &redis_url)]).await?;
    let (_receiving, receive_port) =
        start_server_with(server, &[("REDIS_URL", &redis_url)]).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let received = Arc::new(AtomicUsize::new(0));
    let streams = open_streams(receive_port, connections, 200).await?;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|socket| tokio::spawn(count_events(socket, received.clone())))
        .collect();
    // Let the receiving instance's subscriptions reach Redis.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{publish_port}/api/v1/publish");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..publishers)
        .map(|_| {
            let (http, url, next) = (http.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                let mut failed = 0usize;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= events {
                        return failed;
                    }
                    let user = (n * 7919) % connections;
                    let body = json!({"user_id": format!("user{user}"), "event": {"type": "bench", "data": {"n": n}}});
                    match http.post(&url).json(&body).send().await {
                        Ok(response) if response.status() == 202 => {}
                        _ => failed += 1,
                    }
                }
            })
        })
        .collect();
    let mut failed = 0;
    for worker in workers {
        failed += worker.await.map_err(|e| e.to_string())?;
    }
    let publish_seconds = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(Ordering::Relaxed) < events - failed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delivered_seconds = started.elapsed().as_secs_f64();
    let delivered = received.load(Ordering::Relaxed);
    for reader in readers {
        reader.abort();
    }
    let _ = redis.kill().await;
    println!(
        "{}",
        json!({
            "scenario": "redis",
            "connections": connections,
            "events": events,
            "failed_publishes": failed,
            "delivered": delivered,
            "lost": (events - failed).saturating_sub(delivered),
            "publish_seconds": round(publish_seconds),
            "publishes_per_second": round((events - failed) as f64 / publish_seconds),
            "all_delivered_seconds": round(delivered_seconds),
            "deliveries_per_second": round(delivered as f64 / delivered_seconds),
        })
    );
    Ok(())
}

async fn broadcast(
    server: &PathBuf,
    connections: usize,
    events: usize,
    rate: f64,
) -> Result<(), String> {
    let (_server, port) = start_server(server).await?;
    let streams = open_streams(port, connections, 200).await?;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|socket| tokio::spawn(latencies(socket, events)))
        .collect();

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/publish");
    let every = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let started = Instant::now();
    let mut ticks = tokio::time::interval(every);
    for n in 0..events {
        ticks.tick().await;
        let body = json!({"event": {"type": "bench", "data": {"n": n, "t": unix_nanos()}}});
        let sent = http.post(&url).json(&body).send().await;
        if !matches!(&sent, Ok(response) if response.status() == 202) {
            return Err(format!("publish {n} failed"));
        }
    }
    let mut all = Vec::with_capacity(connections * events);
    for reader in readers {
        match tokio::time::timeout(Duration::from_secs(60), reader).await {
            Ok(Ok(latencies)) => all.extend(latencies),
            _ => return Err("a reader did not finish".into()),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let percentile = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |ns| *ns as f64 / 1e6)
    };
    println!(
        "{}",
        json!({
            "scenario": "broadcast",
            "connections": connections,
            "events": events,
            "rate_per_second": rate,
            "deliveries": all.len(),
            "lost": (connections * events).saturating_sub(all.len()),
            "deliveries_per_second": round(all.len() as f64 / seconds),
            "latency_ms": {
                "p50": round(percentile(0.50)),
                "p90": round(percentile(0.90)),
                "p99": round(percentile(0.99)),
                "p999": round(percentile(0.999)),
                "max": round(all.last().map_or(0.0, |ns| *ns as f64 / 1e6)),
            },
        })
    );
    Ok(())
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Reads `expected` bench events and returns each one's publish-to-receipt latency (ns),
/// from the publish time it carries in `"t"`.
async fn latencies(mut socket: TcpStream, expected: usize) -> Vec<u64> {
    const MARK: &[u8] = b"\"t\":";
    let mut found = Vec::with_capacity(expected);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while found.len() < expected {
        let n = match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = unix_nanos();
        pending.extend_from_slice(&buf[..n]);
        // Whole lines only; a partial one waits for the next read.
        let Some(end) = pending.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        for line in pending[..end].split(|&b| b == b'\n') {
            let Some(at) = line.windows(MARK.len()).position(|w| w == MARK) else {
                continue;
            };
            let digits: Vec<u8> = line[at + MARK.len()..]
                .iter()
                .copied()
                .take_while(u8::is_ascii_digit)
                .collect();
            if let Some(sent) = std::str::from_utf8(&digits)
                .ok()
                .and_then(|d| d.parse::<u64>().ok())
            {
                found.push(now.saturating_sub(sent));
            }
        }
        pending.drain(..=end);
    }
    found
}

/// Starts a `redis-server` without persistence on a free port.
async fn start_redis() -> Result<(Child, String), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start redis-server (apt-get install redis-server): {e}"))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok((redis, format!("redis://127.0.0.1:{port}/0")))
}

/// The thundering herd: `clients` streams on one instance, which dies (SIGKILL) while
/// `missed` events per client are published; every client reconnects at once to the other
/// instance with its `Last-Event-ID`. Measures the time until all have caught up, and the
/// CPU Redis used meanwhile.
async fn herd(server: &PathBuf, clients: usize, missed: usize) -> Result<(), String> {
    let (redis, redis_url) = start_redis().await?;
    let redis_pid = redis.id().ok_or("redis-server exited")?;
    let (mut dying, dying_port) = start_server_with(server, &[("REDIS_URL", &redis_url)]).await?;
    let (_surviving, surviving_port) =
        start_server_with(server, &[("REDIS_URL", &redis_url)]).await?;
    let publisher = sseor::Publisher::new(&redis_url)
        .await
        .map_err(|e| e.to_string())?;

    let streams = open_streams(dying_port, clients, 200).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish_to_each(&publisher, clients, 1).await?;
    let last_ids = futures_join(streams.into_iter().map(first_id)).await;
    let last_ids: Vec<String> = last_ids.into_iter().collect::<Result<_, _>>()?;

    let _ = dying.start_kill();
    let _ = dying.wait().await;
    publish_to_each(&publisher, clients, missed).await?;

    let cpu_before = cpu_ticks(redis_pid)?;
    let started = Instant::now();
    let caught_up = futures_join(last_ids.into_iter().enumerate().map(
        move |(n, last)| async move {
            let (socket, head) = open_stream_with(surviving_port, n, Some(&last)).await?;
            count_until(socket, head, missed).await;
            Ok::<(), String>(())
        },
    ))
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = (cpu_ticks(redis_pid)? - cpu_before) as f64 / 100.0;
    let failed = caught_up.iter().filter(|r| r.is_err()).count();
    println!(
        "{}",
        json!({
            "scenario": "herd",
            "clients": clients,
            "missed_per_client": missed,
            "clients_not_caught_up": failed,
            "all_caught_up_seconds": round(seconds),
            "redis_cpu_seconds": round(cpu_seconds),
            "redis_cpu_percent": round(100.0 * cpu_seconds / seconds),
        })
    );
    Ok(())
}

/// Publishes `count` events to each of `users` users through Redis, 256 at a time.
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

/// Reads a stream until its first event, and returns that event's id.
async fn first_id(mut socket: TcpStream) -> Result<String, String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the stream ended before its first event".into());
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(start) = text.find("\nid: ")
            && let Some(end) = text[start + 5..].find('\n')
        {
            return Ok(text[start + 5..start + 5 + end].to_owned());
        }
    }
}

/// Reads until `expected` events have arrived, counting those in `head` too; false when
/// the stream ends first.
async fn count_until(mut socket: TcpStream, head: Vec<u8>, expected: usize) -> bool {
    const MARK: &[u8] = b"event: bench\n";
    let mut seen = head;
    let mut buf = [0u8; 16 * 1024];
    while seen.windows(MARK.len()).filter(|w| *w == MARK).count() < expected {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// User and system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the command name: state is field 0; utime and stime are fields 11 and 12.
    Ok(field(11) + field(12))
}

/// Counts the events a stream receives, by their `event:` lines.
async fn count_events(mut socket: TcpStream, received: Arc<AtomicUsize>) {
    const MARK: &[u8] = b"event: bench\n";
    let mut buf = vec![0u8; 16 * 1024];
    let mut carry = 0;
    loop {
        match socket.read(&mut buf[carry..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let filled = carry + n;
                let found = buf[..filled]
                    .windows(MARK.len())
                    .filter(|w| *w == MARK)
                    .count();
                received.fetch_add(found, Ordering::Relaxed);
                // Keep a partial mark that may finish in the next read.
                carry = (MARK.len() - 1).min(filled);
                buf.copy_within(filled - carry..filled, 0);
            }
        }
    }
}

/// Starts the server on an ephemeral port and reads the port from its log.
async fn start_server(binary: &PathBuf) -> Result<(Child, u16), String> {
    start_server_with(binary, &[]).await
}

async fn start_server_with(binary: &PathBuf, env: &[(&str, &str)]) -> Result<(Child, u16), String> {
    let mut child = Command::new(binary)
        .args(["--port", "0", "--log-format", "json"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(address) = log["fields"]["address"].as_str() {
            let port = address
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse().ok())
                .ok_or_else(|| format!("unexpected address {address}"))?;
            // Keep draining the log so the server never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((child, port));
        }
    }
    Err("the server exited before it listened".into())
}

/// Opens `count` streams (users `user0`, `user1`, ...), `concurrency` at a time.
async fn open_streams(
    port: u16,
    count: usize,
    concurrency: usize,
) -> Result<Vec<TcpStream>, String> {
    let mut streams = Vec::with_capacity(count);
    while streams.len() < count {
        let first = streams.len();
        let batch = concurrency.min(count - first);
        for stream in futures_join((0..batch).map(|i| open_stream(port, first + i))).await {
            streams.push(stream?);
        }
    }
    Ok(streams)
}

/// Opens one stream and reads its response head.
async fn open_stream(port: u16, n: usize) -> Result<TcpStream, String> {
    open_stream_with(port, n, None)
        .await
        .map(|(socket, _)| socket)
}

/// Opens the stream of `user{n}`, resuming after `last_event_id`; returns the socket and
/// what was read with the response head.
async fn open_stream_with(
    port: u16,
    n: usize,
    last_event_id: Option<&str>,
) -> Result<(TcpStream, Vec<u8>), String> {
    let mut socket = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let resume = last_event_id.map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
    let request = format!(
        "GET /api/v1/sse?user_id=user{n} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{resume}\r\n"
    );
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("request: {e}"))?;
    let mut head = vec![0u8; 4096];
    let read = socket
        .read(&mut head)
        .await
        .map_err(|e| format!("response: {e}"))?;
    head.truncate(read);
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "unexpected response: {}",
            String::from_utf8_lossy(&head)
        ));
    }
    Ok((socket, head))
}

/// Reads until the server ends the response; true when it ended with the chunked
/// terminator rather than a reset.
async fn wait_for_end(mut socket: TcpStream) -> bool {
    let mut tail = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) => return tail.ends_with(b"0\r\n\r\n"),
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.ends_with(b"0\r\n\r\n") {
                    return true;
                }
                let keep = tail.len().saturating_sub(8);
                tail.drain(..keep);
            }
            Err(_) => return false,
        }
    }
}

fn rss_kib(pid: u32) -> Result<i64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read the server's memory: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/PID/status".into())
}

async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.expect("a bench task panicked"));
    }
    outputs
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
