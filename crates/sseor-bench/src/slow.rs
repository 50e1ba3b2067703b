//! `slow` (sseor only): one client that never reads while events are broadcast, and
//! readers that do. Reports the server's resident memory before and at its peak, whether
//! the stalled client is still connected at the end (it is not under the default policy);
//! each reader must receive every event once, or the run fails.
//!
//! ```text
//! cargo build --release -p sseor-server -p sseor-bench
//! target/release/sseor-bench slow --policy disconnect
//! target/release/sseor-bench slow --policy drop-oldest
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::client;
use crate::process::rss_kib;
use crate::server::start_sseor;
use crate::sse::{Decoder, json_number};
use crate::stats::round;

/// What the `slow` scenario is given.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct SlowArgs {
    /// The slow-consumer policy of the server (`SSEOR_SLOW_CONSUMER`): `disconnect` or
    /// `drop-oldest`.
    #[arg(long, default_value = "disconnect")]
    policy: String,
    /// Events to broadcast.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Clients that read.
    #[arg(long, default_value_t = 3)]
    readers: usize,
    /// Bytes of padding in each event's data.
    #[arg(long, default_value_t = 400)]
    pad: usize,
    /// Publish requests in flight at once.
    #[arg(long, default_value_t = 16)]
    publishers: usize,
}

/// Publishers never run more than this many events ahead of the slowest reader, so that
/// only the stalled client falls behind.
const WINDOW: u64 = 128;

pub(crate) async fn slow(server: &Path, args: &SlowArgs) -> Result<(), String> {
    if args.policy == "latest-per-type" {
        // Every event has the same type: the readers' queues would coalesce them too.
        return Err(
            "latest-per-type keeps only the newest event of each type for every \
                    client: the readers cannot receive every event; use disconnect or \
                    drop-oldest"
                .into(),
        );
    }
    let (process, port) = start_sseor(server, &[("SSEOR_SLOW_CONSUMER", &args.policy)]).await?;
    let pid = process.pid();
    let _stalled = open_stalled(port).await?;
    let progress: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.readers).map(|_| AtomicU64::new(0)).collect());
    let mut readers = Vec::new();
    for reader in 0..args.readers {
        let stream =
            client::open(port, &format!("/api/v1/sse?user_id=reader{reader}"), 1, "").await?;
        let (socket, early) = stream.into_parts()?;
        readers.push(tokio::spawn(read_all(
            socket,
            early,
            args.events,
            progress.clone(),
            reader,
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(pid);

    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let sampling = sampling.clone();
        async move {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        }
    });
    let started = Instant::now();
    publish_all(port, args, &progress).await?;
    for reader in readers {
        reader.await.map_err(|e| e.to_string())??;
    }
    let seconds = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let rss_peak = sampler.await.map_err(|e| e.to_string())?.max(rss_kib(pid));
    let counts: serde_json::Value = reqwest::get(format!(
        "http://127.0.0.1:{port}/api/v1/connections?user_id=stalled"
    ))
    .await
    .map_err(|e| e.to_string())?
    .json()
    .await
    .map_err(|e| e.to_string())?;
    println!(
        "{}",
        json!({
            "scenario": "slow",
            "policy": args.policy,
            "events": args.events,
            "readers": args.readers,
            "every_reader_received_all_once": true,
            "stalled_still_connected": counts["user"] == 1,
            "rss_before_kib": rss_before,
            "rss_peak_kib": rss_peak,
            "rss_growth_kib": rss_peak.saturating_sub(rss_before),
            "seconds": round(seconds),
        })
    );
    Ok(())
}

/// A stream whose client reads its response head and nothing more, with a small receive
/// buffer so that it stalls after a few kilobytes.
async fn open_stalled(port: u16) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .set_recv_buffer_size(4096)
        .map_err(|e| e.to_string())?;
    let mut socket = socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request =
        format!("GET /api/v1/sse?user_id=stalled HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 512];
    let read = socket.read(&mut head).await.map_err(|e| e.to_string())?;
    if !head[..read].starts_with(b"HTTP/1.1 200") {
        return Err("the stalled stream was not opened".into());
    }
    Ok(socket)
}

/// The events `tick` one reader received, each `n` once.
struct Tally {
    seen: Vec<bool>,
    received: u64,
    /// An `n` received twice, out of range or missing.
    wrong: Option<Option<u64>>,
}

impl Tally {
    fn on_event(&mut self, kind: &[u8], data: &[u8]) {
        if kind != b"tick" {
            return;
        }
        match json_number(data, b"n") {
            Some(n) if (n as usize) < self.seen.len() && !self.seen[n as usize] => {
                self.seen[n as usize] = true;
                self.received += 1;
            }
            other => self.wrong = self.wrong.or(Some(other)),
        }
    }
}

/// Reads one stream until `events` events `tick` arrived, each `n` once.
async fn read_all(
    mut socket: TcpStream,
    early: Vec<u8>,
    events: u64,
    progress: Arc<Vec<AtomicU64>>,
    reader: usize,
) -> Result<(), String> {
    let mut decoder = Decoder::new(true);
    let mut tally = Tally {
        seen: vec![false; events as usize],
        received: 0,
        wrong: None,
    };
    decoder.feed(&early, &mut |event| tally.on_event(event.kind, event.data));
    let mut buf = vec![0u8; 64 * 1024];
    while tally.received < events {
        let read = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
        if read == 0 {
            return Err(format!(
                "reader {reader}'s stream ended after {} events",
                tally.received
            ));
        }
        decoder.feed(&buf[..read], &mut |event| {
            tally.on_event(event.kind, event.data);
        });
        if let Some(n) = tally.wrong {
            return Err(format!(
                "reader {reader} received {n:?} twice or out of range"
            ));
        }
        progress[reader].store(tally.received, Ordering::Relaxed);
    }
    Ok(())
}

/// Broadcasts `args.events` events `tick` `{"n", "pad"}` through the HTTP API.
async fn publish_all(
    port: u16,
    args: &SlowArgs,
    progress: &Arc<Vec<AtomicU64>>,
) -> Result<(), String> {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/publish");
    let next = Arc::new(AtomicU64::new(0));
    let pad = "x".repeat(args.pad);
    let workers: Vec<_> = (0..args.publishers.max(1))
        .map(|_| {
            let (http, url, next, progress, pad) = (
                http.clone(),
                url.clone(),
                next.clone(),
                progress.clone(),
                pad.clone(),
            );
            let events = args.events;
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= events {
                        return Ok(());
                    }
                    while progress
                        .iter()
                        .any(|p| p.load(Ordering::Relaxed) + WINDOW < n)
                    {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let body = json!({"event": {"type": "tick", "data": {"n": n, "pad": pad}}});
                    let response = http.post(&url).json(&body).send().await;
                    match response {
                        Ok(response) if response.status() == 202 => {}
                        Ok(response) => {
                            return Err(format!("publish answered {}", response.status()));
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}
