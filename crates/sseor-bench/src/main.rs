//! `sseor-bench`: starts an `sseor` server process, loads it, and prints one JSON line of
//! figures.
//!
//! ```text
//! cargo build --release -p sseor-server -p sseor-bench
//! target/release/sseor-bench idle --connections 5000
//! ```

use std::path::PathBuf;
use std::process::Stdio;
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
    }
}

async fn idle(server: &PathBuf, connections: usize, concurrency: usize) -> Result<(), String> {
    let (mut child, port) = start_server(server).await?;
    let pid = child.id().ok_or("the server exited at once")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = rss_kib(pid)?;

    let opening = Instant::now();
    let mut streams = Vec::with_capacity(connections);
    while streams.len() < connections {
        let batch = concurrency.min(connections - streams.len());
        let first = streams.len();
        let opened = futures_join((0..batch).map(|i| open_stream(port, first + i))).await;
        for stream in opened {
            streams.push(stream?);
        }
    }
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

/// Starts the server on an ephemeral port and reads the port from its log.
async fn start_server(binary: &PathBuf) -> Result<(Child, u16), String> {
    let mut child = Command::new(binary)
        .args(["--port", "0", "--log-format", "json"])
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

/// Opens one stream and reads its response head.
async fn open_stream(port: u16, n: usize) -> Result<TcpStream, String> {
    let mut socket = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET /api/v1/sse?user_id=user{n} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    );
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("request: {e}"))?;
    let mut head = [0u8; 512];
    let read = socket
        .read(&mut head)
        .await
        .map_err(|e| format!("response: {e}"))?;
    if !head[..read].starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "unexpected response: {}",
            String::from_utf8_lossy(&head[..read])
        ));
    }
    Ok(socket)
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
