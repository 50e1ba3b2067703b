//! Flow control of the `sseor` binary: clients that never read, limits on open streams,
//! the paced drain at shutdown, retry jitter, per-stream logs and their settings. A real
//! process, real sockets.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sseor::{Cursor, Position, Target};
use sseor_testkit::raw::{Ending, Options, RawStream, Refusal};
use sseor_testkit::server::{Server, command, run_to_exit};
use sseor_testkit::{guard, http};

/// The `sseor` binary that cargo built for these tests.
const SSEOR: &str = env!("CARGO_BIN_EXE_sseor");

/// How long the runs with a client that never reads may take before they count as hung
/// (debug builds on two shared cores): a guard, not a measure.
const LONG_GUARD: Duration = Duration::from_secs(600);

/// How many events a client refuses in the runs below.
const REFUSED_EVENTS: u64 = 50_000;

/// The padding of each of these events: 50,000 of them are about 200 MiB, so that a queue
/// that kept them all would grow the server far past [`RSS_GROWTH_BOUND_KIB`].
const EVENT_PADDING: usize = 4096;

/// The most the server's resident memory may grow while a client refuses
/// [`REFUSED_EVENTS`] events: generous for the allocator's own slack and the buffers of
/// the connections, and still a sixth of what keeping the refused events would take.
const RSS_GROWTH_BOUND_KIB: u64 = 32 * 1024;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

async fn open(server: &Server, path: &str, options: Options) -> Result<RawStream, Refusal> {
    guard(RawStream::open(server.addr, path, &[], options)).await
}

async fn open_ok(server: &Server, path: &str) -> RawStream {
    open(server, path, Options::default())
        .await
        .unwrap_or_else(|refusal| panic!("{path} refused: {refusal:?}"))
}

/// The JSON log lines the server printed so far.
fn logs(server: &Server) -> Vec<Value> {
    server
        .output()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn logged(server: &Server, message: &str) -> Vec<Value> {
    logs(server)
        .into_iter()
        .filter(|log| log["fields"]["message"].as_str() == Some(message))
        .collect()
}

/// What a run with a client that never reads leaves to check.
struct Run {
    server: Server,
    stalled: RawStream,
    rss_before_kib: u64,
    rss_peak_kib: u64,
}

/// The number of the last broadcast a stream passed, as the cursor `id` of its `id:` holds
/// it.
fn broadcast_seq(id: &str) -> u64 {
    let placed = Cursor::parse(id, &[Target::All]).unwrap_or_else(|e| panic!("{id:?}: {e}"));
    placed[0]
        .1
        .unwrap_or_else(|| panic!("{id:?} holds no position of the broadcasts"))
        .seq()
}

/// Starts `sseor` with `args`, opens a client that never reads and three that do, and
/// publishes [`REFUSED_EVENTS`] events to everyone through the HTTP API, 16 requests in
/// flight. Each reader must receive all of them in the broker's order, none missing:
/// broadcast positions one after the other, every event once.
/// The publishers never run more than 128 events ahead of the slowest reader, so that only
/// the stalled client can fall behind.
async fn many_events_past_a_client_that_never_reads(args: &[&str]) -> Run {
    const TOTAL: u64 = REFUSED_EVENTS;
    const READERS: usize = 3;
    const WINDOW: u64 = 128;
    const IN_FLIGHT: usize = 16;
    let server = Server::start(SSEOR, args).await;
    let stalled = open(
        &server,
        "/api/v1/sse?user_id=stalled",
        Options {
            recv_buffer: Some(4096),
            from: None,
        },
    )
    .await
    .unwrap();
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..READERS).map(|_| AtomicU64::new(0)).collect());
    let mut readers = Vec::new();
    for reader in 0..READERS {
        let mut stream = open_ok(&server, &format!("/api/v1/sse?user_id=reader{reader}")).await;
        let progress = progress.clone();
        readers.push(tokio::spawn(async move {
            let mut seen = vec![false; TOTAL as usize];
            let mut last_seq = None;
            let mut received = 0;
            while received < TOTAL {
                let frame = stream.next_frame().await.expect("a reader's stream ended");
                let Some(n) = frame.n() else { continue };
                let seq = broadcast_seq(&frame.id);
                if let Some(last) = last_seq {
                    assert_eq!(seq, last + 1, "reader {reader}: a position is missing");
                }
                last_seq = Some(seq);
                assert!(!std::mem::replace(&mut seen[n as usize], true), "{n} twice");
                received += 1;
                progress[reader].store(received, Ordering::Relaxed);
            }
            stream
        }));
    }
    server
        .wait_for_connections("stalled", (1, 1 + READERS as u64))
        .await;
    let rss_before_kib = rss_kib(server.pid());

    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (sampling, pid) = (sampling.clone(), server.pid());
        async move {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak.max(rss_kib(pid))
        }
    });

    // Keep-alive connections, one per request in flight.
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/publish");
    let next = Arc::new(AtomicU64::new(0));
    let publishers = (0..IN_FLIGHT).map(|_| {
        let (client, url, next, progress) =
            (client.clone(), url.clone(), next.clone(), progress.clone());
        async move {
            let pad = "x".repeat(EVENT_PADDING);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= TOTAL {
                    return;
                }
                while progress
                    .iter()
                    .any(|p| p.load(Ordering::Relaxed) + WINDOW < n)
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let body = json!({"event": {"type": "tick", "data": {"n": n, "pad": pad}}});
                let response = client.post(&url).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 202, "publish {n}");
            }
        }
    });
    tokio::time::timeout(LONG_GUARD, futures_util::future::join_all(publishers))
        .await
        .expect("publishing hung");
    let mut open_readers = Vec::new();
    for reader in readers {
        open_readers.push(
            tokio::time::timeout(LONG_GUARD, reader)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    sampling.store(false, Ordering::Relaxed);
    let rss_peak_kib = sampler.await.unwrap();
    eprintln!(
        "sseor {args:?}: VmRSS {rss_before_kib} KiB before, at most {rss_peak_kib} KiB while \
         a client refused {TOTAL} events"
    );
    // Every reader is still connected.
    for reader in 0..READERS {
        assert_eq!(server.connections(&format!("reader{reader}")).await.0, 1);
    }
    Run {
        server,
        stalled,
        rss_before_kib,
        rss_peak_kib,
    }
}

impl Run {
    fn assert_memory_bounded(&self) {
        let growth = self.rss_peak_kib.saturating_sub(self.rss_before_kib);
        assert!(
            growth < RSS_GROWTH_BOUND_KIB,
            "the server grew by {growth} KiB while a client refused to read"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_by_default_and_the_others_get_everything() {
    let mut run = many_events_past_a_client_that_never_reads(&[]).await;
    run.assert_memory_bounded();
    assert_eq!(run.server.connections("stalled").await.0, 0);
    // Its connection was cut: what it had buffered, then the end, without the terminator.
    tokio::time::timeout(LONG_GUARD, run.stalled.read_to_end())
        .await
        .unwrap();
    assert_eq!(run.stalled.ending(), Some(Ending::Cut));
    let closed = logged(
        &run.server,
        "stream closed: the client stopped reading (queue full)",
    );
    assert_eq!(closed.len(), 1, "{}", run.server.output());
    assert_eq!(closed[0]["fields"]["reason"], "slow_consumer");
    assert_eq!(closed[0]["fields"]["user"], "stalled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_drop_oldest_a_client_that_never_reads_stays_and_the_others_get_everything() {
    let mut run =
        many_events_past_a_client_that_never_reads(&["--slow-consumer", "drop-oldest"]).await;
    run.assert_memory_bounded();
    assert_eq!(run.server.connections("stalled").await.0, 1);
    // When it reads at last, it gets the newest event.
    let (_, newest) = run
        .server
        .publish(&json!({"event": {"type": "last"}}))
        .await;
    let last_seq = newest["id"]
        .as_str()
        .unwrap()
        .parse::<Position>()
        .unwrap()
        .seq();
    let last = tokio::time::timeout(LONG_GUARD, async {
        loop {
            let frame = run.stalled.next_frame().await.expect("the stream ended");
            if !frame.id.is_empty() && broadcast_seq(&frame.id) == last_seq {
                return frame;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(last.event, "last");
}

/// Opens a stream for `screen` that never reads on `server`, publishes `rounds` rounds of
/// one event of each of `types` to it (numbered from 0 in publishing order, 4 KiB each:
/// far more than the socket buffers hold), then an `end` event; reads everything up to
/// `end` and returns the numbers of the events with data, in the order received.
async fn stall_then_read(server: &Server, types: &[&str], rounds: u64) -> Vec<(String, u64)> {
    let mut stalled = open(
        server,
        "/api/v1/sse?user_id=screen",
        Options {
            recv_buffer: Some(4096),
            from: None,
        },
    )
    .await
    .unwrap();
    server.wait_for_connections("screen", (1, 1)).await;
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/publish");
    let pad = "x".repeat(EVENT_PADDING);
    let publish = |kind: &str, n: u64| {
        let body =
            json!({"user_id": "screen", "event": {"type": kind, "data": {"n": n, "pad": pad}}});
        let request = client.post(&url).json(&body).send();
        async move {
            let response = request.await.unwrap();
            assert_eq!(response.status(), 202);
        }
    };
    let total = rounds * types.len() as u64;
    tokio::time::timeout(LONG_GUARD, async {
        for n in 0..total {
            publish(types[(n % types.len() as u64) as usize], n).await;
        }
        publish("end", total).await;
    })
    .await
    .expect("publishing hung");
    assert_eq!(
        server.connections("screen").await.0,
        1,
        "the stream was cut"
    );

    let mut received = Vec::new();
    guard(async {
        loop {
            let frame = stalled.next_frame().await.expect("the stream ended");
            if frame.event == "end" {
                return;
            }
            if let Some(n) = frame.n() {
                received.push((frame.event, n));
            }
        }
    })
    .await;
    // Still open and live.
    publish("after", total + 1).await;
    let after = guard(stalled.next_frame()).await.expect("the stream ended");
    assert_eq!(
        (after.event.as_str(), after.n()),
        ("after", Some(total + 1))
    );
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_latest_per_type_a_stalled_client_gets_the_newest_of_each_type_and_stays() {
    const TYPES: [&str; 3] = ["price", "volume", "status"];
    const ROUNDS: u64 = 2000;
    let total = ROUNDS * TYPES.len() as u64;
    let mut command = command(SSEOR);
    command
        .args(["--port", "0", "--log-format", "json"])
        .env("SSEOR_SLOW_CONSUMER", "latest-per-type");
    let server = Server::spawn(command).await;
    let received = stall_then_read(&server, &TYPES, ROUNDS).await;
    eprintln!(
        "the stalled client received {} of {total} events",
        received.len()
    );

    // In publishing order, each at most once. Before the stall, an event may still be
    // replaced by a newer one of its type while the writer catches up.
    for pair in received.windows(2) {
        assert!(pair[0].1 < pair[1].1, "{pair:?} out of order: {received:?}");
    }
    assert!(
        (received.len() as u64) < total / 2,
        "{} of {total} events: the queue kept far more than the newest of each type",
        received.len()
    );
    // The stall is the widest gap; past it, only the newest of each type.
    let stalled_after = received
        .windows(2)
        .enumerate()
        .max_by_key(|(_, pair)| pair[1].1 - pair[0].1)
        .map(|(at, _)| at)
        .expect("more than one event was received");
    let newest: Vec<(String, u64)> = (total - 3..total)
        .map(|n| (TYPES[(n % 3) as usize].to_owned(), n))
        .collect();
    assert_eq!(
        received[stalled_after + 1..],
        newest,
        "past the stall after {:?}: {received:?}",
        received[stalled_after]
    );
}

// ---------------------------------------------------------------------------------------
// Limits on open streams
// ---------------------------------------------------------------------------------------

fn assert_refused(refusal: Result<RawStream, Refusal>, status: u16, limit: &str) {
    let refusal = match refusal {
        Ok(_) => panic!("a stream over `{limit}` was opened"),
        Err(refusal) => refusal,
    };
    assert_eq!(refusal.status, status, "{refusal:?}");
    assert!(refusal.retry_after.is_some_and(|s| s >= 1), "{refusal:?}");
    let body: Value = serde_json::from_str(&refusal.body).unwrap();
    let message = body["error"].as_str().expect("a JSON error");
    assert!(message.contains(limit), "{message}");
}

/// Publishes one event to everyone and checks that each of `streams` receives it.
async fn everyone_receives(server: &Server, streams: &mut [RawStream], n: u64) {
    let (status, _) = server
        .publish(&json!({"event": {"type": "check", "data": {"n": n}}}))
        .await;
    assert_eq!(status, 202);
    for stream in streams {
        guard(async { while stream.next_frame().await.expect("ended").n() != Some(n) {} }).await;
    }
}

#[tokio::test]
async fn the_instance_limit_answers_503_with_retry_after_and_frees_up_when_one_leaves() {
    let server = Server::start(SSEOR, &["--max-connections", "3"]).await;
    let mut streams = Vec::new();
    for user in ["a", "b", "c"] {
        streams.push(open_ok(&server, &format!("/api/v1/sse?user_id={user}")).await);
    }
    let over = open(&server, "/api/v1/sse?user_id=d", Options::default()).await;
    assert_refused(over, 503, "max_connections");
    everyone_receives(&server, &mut streams, 1).await;

    drop(streams.pop());
    server.wait_for_connections("c", (0, 2)).await;
    streams.push(open_ok(&server, "/api/v1/sse?user_id=d").await);
    everyone_receives(&server, &mut streams, 2).await;
    let refused = logged(&server, "stream refused: limit reached");
    assert_eq!(refused.len(), 1, "{}", server.output());
    assert_eq!(refused[0]["fields"]["limit"], "max_connections");
}

#[tokio::test]
async fn the_per_user_limit_answers_429_and_leaves_other_users_alone() {
    let server = Server::start(SSEOR, &["--max-connections-per-user", "2"]).await;
    let mut streams = vec![
        open_ok(&server, "/api/v1/sse?user_id=alice").await,
        open_ok(&server, "/api/v1/sse?user_id=alice&topic=t").await,
    ];
    let over = open(&server, "/api/v1/sse?user_id=alice", Options::default()).await;
    assert_refused(over, 429, "max_connections_per_user");
    streams.push(open_ok(&server, "/api/v1/sse?user_id=bob").await);
    everyone_receives(&server, &mut streams, 1).await;

    drop(streams.remove(0));
    server.wait_for_connections("alice", (1, 2)).await;
    streams.push(open_ok(&server, "/api/v1/sse?user_id=alice").await);
    everyone_receives(&server, &mut streams, 2).await;
}

#[tokio::test]
async fn the_per_address_limit_answers_429_and_leaves_other_addresses_alone() {
    let server = Server::start(SSEOR, &["--max-connections-per-ip", "2"]).await;
    let from = |last: u8| Options {
        recv_buffer: None,
        from: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))),
    };
    let path = "/api/v1/sse?user_id=u";
    let mut streams = vec![
        open(&server, path, from(1)).await.unwrap(),
        open(&server, path, from(1)).await.unwrap(),
    ];
    assert_refused(
        open(&server, path, from(1)).await,
        429,
        "max_connections_per_ip",
    );
    streams.push(open(&server, path, from(2)).await.unwrap());
    everyone_receives(&server, &mut streams, 1).await;

    drop(streams.remove(0));
    server.wait_for_connections("u", (2, 2)).await;
    streams.push(open(&server, path, from(1)).await.unwrap());
    everyone_receives(&server, &mut streams, 2).await;
    // The opening line names the client's address; the refusal line too.
    let opened = logged(&server, "stream opened");
    assert!(
        opened
            .iter()
            .any(|log| log["fields"]["client_ip"] == "127.0.0.2"),
        "{}",
        server.output()
    );
}

#[tokio::test]
async fn behind_a_proxy_the_right_most_forwarded_address_counts() {
    let server = Server::start(
        SSEOR,
        &[
            "--max-connections-per-ip",
            "1",
            "--client-ip-header",
            "X-Forwarded-For",
        ],
    )
    .await;
    let path = "/api/v1/sse?user_id=u";
    let addr = server.addr;
    let with = |forwarded: &'static str| async move {
        let headers = [("X-Forwarded-For", forwarded)];
        RawStream::open(addr, path, &headers, Options::default()).await
    };
    let _first = guard(with("10.9.9.9, 203.0.113.5")).await.unwrap();
    // What the client put left of the proxy's entry does not make it someone else.
    let spoofed = guard(with("10.1.1.1, 203.0.113.5")).await;
    assert_refused(spoofed, 429, "max_connections_per_ip");
    // Another client behind the same proxy (all from 127.0.0.1) is counted apart.
    let _second = guard(with("10.9.9.9, 203.0.113.6")).await.unwrap();
    server.wait_for_connections("u", (2, 2)).await;
}

#[tokio::test]
async fn concurrent_opens_never_exceed_the_limits() {
    let server = Server::start(
        SSEOR,
        &["--max-connections", "10", "--max-connections-per-user", "4"],
    )
    .await;
    let attempts = |user: fn(usize) -> String| {
        futures_util::future::join_all((0..100).map(|i| {
            let path = format!("/api/v1/sse?user_id={}", user(i));
            let addr = server.addr;
            async move { guard(RawStream::open(addr, &path, &[], Options::default())).await }
        }))
    };
    let same_user = attempts(|_| "same".to_owned()).await;
    let opened = same_user.iter().filter(|r| r.is_ok()).count();
    assert_eq!(opened, 4, "per user");
    assert!(
        same_user
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|refusal| refusal.status == 429)
    );
    let distinct = attempts(|i| format!("user{i}")).await;
    let opened = distinct.iter().filter(|r| r.is_ok()).count();
    assert_eq!(opened, 6, "in all");
    assert_eq!(server.connections("same").await, (4, 10));
    assert!(
        distinct
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|refusal| refusal.status == 503)
    );
}

// ---------------------------------------------------------------------------------------
// Shutdown, retry jitter, logs
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_two_hundred_streams_in_paced_batches_over_the_drain_period() {
    const STREAMS: usize = 200;
    const DRAIN: Duration = Duration::from_secs(4);
    let mut server = Server::start(
        SSEOR,
        &["--drain-period", "4s", "--shutdown-timeout", "10s"],
    )
    .await;
    let streams = futures_util::future::join_all((0..STREAMS).map(|i| {
        let server = &server;
        async move { open_ok(server, &format!("/api/v1/sse?user_id=u{i}")).await }
    }))
    .await;
    server.wait_for_connections("u0", (1, STREAMS as u64)).await;
    let endings = streams.into_iter().map(|mut stream| {
        tokio::spawn(async move {
            stream.read_to_end().await;
            (Instant::now(), stream.ending())
        })
    });
    let endings: Vec<_> = endings.collect();

    let signalled = Instant::now();
    server.signal("TERM");
    // During the drain: not healthy, not ready, no new streams.
    guard(async {
        while server.get_json("/healthz").await.0 != 503 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(server.get_json("/readyz").await.0, 503);
    let late = open(&server, "/api/v1/sse?user_id=late", Options::default()).await;
    assert_eq!(late.err().map(|refusal| refusal.status), Some(503));

    let mut ended = Vec::new();
    for ending in endings {
        let (at, how) = guard(ending).await.unwrap();
        assert_eq!(
            how,
            Some(Ending::Clean),
            "each stream ends with the terminator"
        );
        ended.push(at);
    }
    let status = server.wait_exit().await;
    assert!(status.success(), "{status:?}\n{}", server.output());

    let first = *ended.iter().min().unwrap();
    let last = *ended.iter().max().unwrap();
    eprintln!(
        "streams ended from {:?} to {:?} after SIGTERM (drain period {DRAIN:?})",
        first - signalled,
        last - signalled
    );
    assert!(
        last - first > DRAIN / 2,
        "the streams ended within {:?}: not spread over the drain period",
        last - first
    );
    let drained = logs(&server)
        .into_iter()
        .filter(|log| log["fields"]["reason"] == "drained")
        .count();
    assert_eq!(drained, STREAMS, "one `drained` line per stream");
}

#[tokio::test]
async fn retry_values_are_spread_within_half_to_one_and_a_half_times_the_setting() {
    let server = Server::start(SSEOR, &["--retry", "2s"]).await;
    let mut retries = Vec::new();
    for i in 0..40 {
        let mut stream = open_ok(&server, &format!("/api/v1/sse?user_id=u{i}")).await;
        let opening = guard(stream.next_frame()).await.unwrap();
        retries.push(opening.retry.expect("the stream opens with retry:"));
    }
    assert!(
        retries.iter().all(|r| (1000..=3000).contains(r)),
        "{retries:?}"
    );
    assert!(retries.iter().any(|r| *r != retries[0]), "{retries:?}");
}

#[tokio::test]
async fn each_stream_logs_one_line_when_it_opens_and_one_when_it_closes_without_secrets() {
    let mut server = Server::start(SSEOR, &[]).await;
    let client = http();
    let response = guard(
        client
            .get(server.url("/api/v1/sse?user_id=alice&topic=news&token=s3cret-token"))
            .header("authorization", "Bearer s3cret-header")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    server.wait_for_connections("alice", (1, 1)).await;
    drop(response);
    server.wait_for_connections("alice", (0, 0)).await;
    server.signal("TERM");
    assert!(server.wait_exit().await.success());

    let opened = logged(&server, "stream opened");
    let closed = logged(&server, "stream closed");
    assert_eq!((opened.len(), closed.len()), (1, 1), "{}", server.output());
    let (opened, closed) = (&opened[0]["fields"], &closed[0]["fields"]);
    assert_eq!(opened["user"], "alice");
    assert_eq!(opened["client_ip"], "127.0.0.1");
    assert_eq!(opened["topics"], 1);
    assert_eq!(closed["connection"], opened["connection"]);
    assert_eq!(closed["reason"], "client_left");
    assert!(closed["duration_ms"].is_u64(), "{closed}");
    assert!(
        !server.output().contains("s3cret"),
        "a secret reached the logs:\n{}",
        server.output()
    );
}

#[tokio::test]
async fn every_flow_setting_refuses_an_invalid_value_with_one_line_and_exit_code_2() {
    let cases = [
        ("SSEOR_QUEUE_BYTES", "0"),
        ("SSEOR_QUEUE_BYTES", "1MB"),
        ("SSEOR_SLOW_CONSUMER", "sometimes"),
        ("SSEOR_MAX_CONNECTIONS", "-1"),
        ("SSEOR_MAX_CONNECTIONS_PER_USER", "many"),
        ("SSEOR_MAX_CONNECTIONS_PER_IP", "1.5"),
        ("SSEOR_CLIENT_IP_HEADER", "X Forwarded For"),
        ("SSEOR_DRAIN_PERIOD", "soon"),
        // Longer than the shutdown timeout (10 s by default).
        ("SSEOR_DRAIN_PERIOD", "20s"),
        ("SSEOR_RETRY_JITTER", "2"),
        ("SSEOR_RETRY_JITTER", "-0.1"),
    ];
    for (name, value) in cases {
        let run = run_to_exit(SSEOR, &["--port", "0"], &[(name, value)]).await;
        assert_eq!(
            run.status.code(),
            Some(2),
            "{name}={value}: {}",
            run.all_output()
        );
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "{name}={value}: {}", run.all_output());
        assert!(lines[0].contains(name), "{name}={value}: {}", lines[0]);
        assert!(!run.stdout.contains("listening"), "{}", run.all_output());
    }
    let run = run_to_exit(
        SSEOR,
        &[
            "--port",
            "0",
            "--drain-period",
            "3s",
            "--shutdown-timeout",
            "2s",
        ],
        &[],
    )
    .await;
    assert_eq!(run.status.code(), Some(2), "{}", run.all_output());
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.all_output());
}
