//! The sseor-specific scenarios: `redis` (publishes through one instance, streams on
//! another) and `herd` (an instance dies and its clients resume at once on another).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::server::{start_redis, start_sseor};
use crate::stats::round;

pub(crate) async fn through_redis(
    server: &Path,
    connections: usize,
    events: usize,
    publishers: usize,
) -> Result<(), String> {
    let (redis, redis_url) = start_redis().await?;
    let (_publishing, publish_port) = start_sseor(server, &[("REDIS_URL", &redis_url)]).await?;
    let (_receiving, receive_port) = start_sseor(server, &[("REDIS_URL", &redis_url)]).await?;
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
    drop(redis);
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

/// The thundering herd: `clients` streams on one instance, which dies (SIGKILL) while
/// `missed` events per client are published; every client reconnects at once to the other
/// instance with its `Last-Event-ID`. Measures the time until all have caught up, and the
/// CPU Redis used meanwhile.
pub(crate) async fn herd(server: &Path, clients: usize, missed: usize) -> Result<(), String> {
    let (redis, redis_url) = start_redis().await?;
    let redis_pid = redis.pid();
    let (mut dying, dying_port) = start_sseor(server, &[("REDIS_URL", &redis_url)]).await?;
    let (_surviving, surviving_port) = start_sseor(server, &[("REDIS_URL", &redis_url)]).await?;
    let publisher = sseor::Publisher::new(&redis_url)
        .await
        .map_err(|e| e.to_string())?;

    let streams = open_streams(dying_port, clients, 200).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish_to_each(&publisher, clients, 1).await?;
    let last_ids = futures_join(streams.into_iter().map(first_id)).await;
    let last_ids: Vec<String> = last_ids.into_iter().collect::<Result<_, _>>()?;

    let _ = dying.child().start_kill();
    let _ = dying.child().wait().await;
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
/// the body bytes read with the response head.
async fn open_stream_with(
    port: u16,
    n: usize,
    last_event_id: Option<&str>,
) -> Result<(TcpStream, Vec<u8>), String> {
    let resume = last_event_id.map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
    let path = format!("/api/v1/sse?user_id=user{n}");
    crate::client::open(port, &path, 1, &resume)
        .await
        .map(crate::client::Stream::into_parts)
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
