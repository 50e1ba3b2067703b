//! Heartbeats, cleanup, slow consumers and shutdown, on real sockets.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use sseor::{Event, Manager};
use sseor_testkit::library::Server;
use sseor_testkit::sse::Client;
use sseor_testkit::{guard, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn streams_open_with_retry_and_carry_heartbeats() {
    let server = Server::with(Manager::builder().heartbeat(Duration::from_millis(50))).await;
    let response = http()
        .get(server.url("/api/v1/sse?user_id=u"))
        .send()
        .await
        .unwrap();
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-cache")
    );
    assert_eq!(headers["x-accel-buffering"], "no");

    let mut body = response.bytes_stream();
    let mut seen = Vec::new();
    guard(async {
        while seen.windows(3).filter(|w| w == b":\n\n").count() < 3 {
            seen.extend_from_slice(&body.next().await.unwrap().unwrap());
        }
    })
    .await;
    // `retry:` is spread around 3 s (default jitter 0.5) so that clients do not return together.
    let retry: u64 = std::str::from_utf8(&seen)
        .unwrap()
        .strip_prefix("retry: ")
        .and_then(|rest| rest.split_once("\n\n"))
        .and_then(|(value, _)| value.parse().ok())
        .unwrap_or_else(|| panic!("the stream opens with `retry:`: {seen:?}"));
    assert!((1500..=4500).contains(&retry), "{retry}");
}

#[tokio::test]
async fn a_client_that_leaves_is_forgotten_within_a_heartbeat() {
    let heartbeat = Duration::from_secs(1);
    let server = Server::with(Manager::builder().heartbeat(heartbeat)).await;
    let clients = futures_util::future::join_all((0..20).map(|i| {
        let server = &server;
        async move { server.subscribe(&format!("user{}", i % 4), &["t"]).await }
    }))
    .await;
    server.wait_for_total(20).await;
    assert_eq!(server.manager.connection_count("user0"), 5);
    let left = Instant::now();
    drop(clients);
    server.wait_for_total(0).await;
    let took = left.elapsed();
    eprintln!("20 departed clients forgotten after {took:?} (heartbeat {heartbeat:?})");
    // The margin covers a busy machine, not a second heartbeat.
    assert!(
        took <= heartbeat + Duration::from_millis(500),
        "20 departed clients forgotten only after {took:?} (heartbeat {heartbeat:?})"
    );
    // Forgotten because they left, and for no other reason.
    let metrics = server.manager.render_metrics();
    let closes: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("sseor_connections_closed_total{"))
        .collect();
    assert_eq!(
        closes,
        ["sseor_connections_closed_total{reason=\"client_left\"} 20"],
        "{metrics}"
    );
    assert_eq!(server.manager.connection_count("user0"), 0);
    assert_eq!(server.manager.topic_connection_count("t"), 0);
}

/// A raw HTTP/1.1 request for a stream, from a client that reads nothing.
async fn open_without_reading(server: &Server, user_id: &str) -> TcpStream {
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /api/v1/sse?user_id={user_id} HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    socket
}

/// Reads whatever the server had buffered until it closes the connection.
async fn read_until_closed(socket: &mut TcpStream) {
    let mut sink = vec![0u8; 1 << 20];
    guard(async { while let Ok(1..) = socket.read(&mut sink).await {} }).await;
}

#[tokio::test]
async fn ten_thousand_connect_disconnect_cycles_leave_nothing_behind() {
    let server = Server::with(Manager::builder().heartbeat(Duration::from_millis(200))).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();

    let started = Instant::now();
    for round in 0..100 {
        let batch = (0..100).map(|i| {
            let server = &server;
            async move {
                let mut socket =
                    open_without_reading(server, &format!("u{}", (round + i) % 37)).await;
                let mut head = [0u8; 64];
                let read = socket.read(&mut head).await.unwrap();
                assert!(head[..read].starts_with(b"HTTP/1.1 200"));
            }
        });
        futures_util::future::join_all(batch).await;
    }
    server.wait_for_total(0).await;
    eprintln!("10,000 cycles in {:?}", started.elapsed());

    // Every connection task ends once its client has gone.
    guard(async {
        while metrics.num_alive_tasks() > tasks_before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(server.manager.connection_count("u1"), 0);
    // And the server still serves.
    let mut client = server.subscribe("u1", &[]).await;
    server
        .manager
        .publish("u1", Event::new("after"))
        .await
        .unwrap();
    assert_eq!(client.next_event().await.event, "after");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_others_get_everything() {
    // The reader may lag 64 events of 16 KiB: bound the queues by events, not bytes.
    let server = Server::with(
        Manager::builder()
            .queue_capacity(64)
            .queue_bytes(4 * 1024 * 1024),
    )
    .await;
    let mut stalled = open_without_reading(&server, "stalled").await;
    let mut reader = server.subscribe("reader", &[]).await;
    server.wait_for_total(2).await;

    // Each event is 16 KiB, so the stalled client's socket buffers fill after a few
    // hundred; the reader keeps up, paced by what it has received.
    let padding = "x".repeat(16 * 1024);
    let total = 3000;
    let (received_tx, mut received_rx) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        for expected in 1..=total {
            let event = reader.next_event().await;
            let n: usize = serde_json::from_str::<serde_json::Value>(&event.data).unwrap()["n"]
                .as_u64()
                .unwrap() as usize;
            assert_eq!(n, expected, "the reader must see every event in order");
            received_tx.send_replace(n);
        }
    });
    for n in 1..=total {
        let event = Event::new("bulk").with_data(json!({"n": n, "padding": padding}));
        server.manager.publish_to_all(event).await.unwrap();
        if n % 32 == 0 {
            guard(received_rx.wait_for(|&got| got + 32 >= n))
                .await
                .unwrap();
        }
    }
    guard(reading).await.unwrap();
    assert_eq!(server.manager.connection_count("stalled"), 0);
    assert_eq!(server.manager.total_connections(), 1);

    // The server closed the stalled connection: reading it drains what was buffered,
    // then ends.
    read_until_closed(&mut stalled).await;
}

#[tokio::test]
async fn shutdown_ends_thousands_of_streams() {
    let server = Server::with(Manager::builder().shutdown_timeout(Duration::from_secs(10))).await;
    let streams = 2000;
    let mut clients = Vec::with_capacity(streams);
    for chunk in 0..streams / 200 {
        let batch = (0..200).map(|i| {
            let server = &server;
            async move {
                server
                    .subscribe(&format!("u{}", chunk * 200 + i), &[])
                    .await
            }
        });
        clients.extend(futures_util::future::join_all(batch).await);
    }
    server.wait_for_total(streams).await;

    let started = Instant::now();
    guard(server.manager.close()).await;
    eprintln!(
        "closed with {streams} streams open in {:?}",
        started.elapsed()
    );
    guard(server.serving).await.unwrap().unwrap();
    let ended = futures_util::future::join_all(clients.iter_mut().map(Client::wait_for_end));
    guard(ended).await;
    assert_eq!(server.manager.total_connections(), 0);
}

#[tokio::test]
async fn shutdown_does_not_wait_forever_for_a_client_that_reads_nothing() {
    let timeout = Duration::from_secs(1);
    // Queues that take all 48 MiB: the client is not cut off as a slow consumer, so only
    // the shutdown deadline can end its connection.
    let server = Server::with(
        Manager::builder()
            .queue_capacity(1024)
            .queue_bytes(100 << 20)
            .shutdown_timeout(timeout),
    )
    .await;
    let mut stalled = open_without_reading(&server, "stalled").await;
    server.wait_for_total(1).await;
    // More than the kernel's largest socket buffers can absorb, whatever they are tuned to.
    let padding = "x".repeat(1 << 20);
    for _ in 0..48 {
        let event = Event::new("bulk").with_data(json!({ "padding": padding }));
        let published = server.manager.publish("stalled", event).await.unwrap();
        assert_eq!(published.delivered_locally, Some(1));
    }
    assert_eq!(server.manager.connection_count("stalled"), 1, "not cut off");

    let started = Instant::now();
    guard(server.manager.close()).await;
    let took = started.elapsed();
    // The server loop has ended too: it closed the stalled connection at the deadline.
    tokio::time::timeout(Duration::from_millis(200), server.serving)
        .await
        .expect("the server loop should end with close()")
        .unwrap()
        .unwrap();
    // The stalled stream holds shutdown up to the deadline, not beyond (margin for a
    // loaded machine, below the extra second `close` would wait for a stuck server).
    assert!(
        (timeout - Duration::from_millis(100)..timeout + Duration::from_millis(700))
            .contains(&took),
        "close() took {took:?} with a {timeout:?} shutdown timeout"
    );
    read_until_closed(&mut stalled).await;
}

#[tokio::test]
async fn request_heads_up_to_8_kib_are_served_and_larger_ones_refused() {
    let server = Server::start().await;
    let url = server.url("/api/v1/sse?user_id=u");
    let big_cookie = format!("session={}", "c".repeat(6 * 1024));
    let response = http()
        .get(&url)
        .header("cookie", &big_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);

    // A raw socket, so that the answer itself is checked: a client library may report
    // only the connection's close.
    for cookie_bytes in [9 * 1024, 20 * 1024] {
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "GET /api/v1/sse?user_id=u HTTP/1.1\r\nHost: localhost\r\nCookie: session={}\r\n\r\n",
            "c".repeat(cookie_bytes)
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut status_line = [0; 12];
        guard(socket.read_exact(&mut status_line)).await.unwrap();
        assert_eq!(
            &status_line, b"HTTP/1.1 431",
            "a head with {cookie_bytes} bytes of cookie"
        );
    }
    // The server is unharmed.
    let mut client = server.subscribe("after", &[]).await;
    server.wait_for_total(1).await;
    server
        .manager
        .publish("after", Event::new("fine"))
        .await
        .unwrap();
    assert_eq!(client.next_event().await.event, "fine");
}
