//! What one TCP connection carries, plain or in TLS (HTTP/1.1 by ALPN; TLS 1.3, whose
//! streams' records the server seals itself, and TLS 1.2, which rustls keeps): event
//! streams written straight to the connection, and every other request (before or after,
//! pipelined or split in pieces) served in order.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use sseor::{Builder, Event, Manager, TlsConfig};
use sseor_testkit::certs::CertFiles;
use sseor_testkit::guard;
use sseor_testkit::library::Server;
use sseor_testkit::raw::{read_to_end, read_until};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A client's connection, plain or TLS.
trait Wire: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Wire for T {}
type Socket = Box<dyn Wire>;

/// How a test reaches its server.
#[derive(Clone, Copy, Debug)]
enum Transport {
    Plain,
    /// TLS 1.3 or 1.2, the client offering only `http/1.1` by ALPN.
    Tls,
    Tls12,
}

/// Every test of HTTP/1.x connections runs over each.
const TRANSPORTS: [Transport; 3] = [Transport::Plain, Transport::Tls, Transport::Tls12];

/// A server reached over one transport.
struct Served {
    server: Server,
    /// The client side of TLS, and the certificate the server was given.
    tls: Option<(TlsConnector, CertFiles)>,
}

impl Deref for Served {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

impl Served {
    async fn start(transport: Transport) -> Self {
        Self::with(transport, Manager::builder(), |_| {}).await
    }

    /// A server built from `builder`, its manager given to `setup` before it serves.
    async fn with(transport: Transport, builder: Builder, setup: impl FnOnce(&Manager)) -> Self {
        let (builder, tls) = match transport {
            Transport::Plain => (builder, None),
            Transport::Tls | Transport::Tls12 => {
                let pki = CertFiles::self_signed();
                let config = TlsConfig::from_pem_files(&pki.cert, &pki.key).unwrap();
                let client = match transport {
                    Transport::Tls12 => pki.tls12_client(&[b"http/1.1"]),
                    _ => pki.tls_client(&[b"http/1.1"]),
                };
                (builder.tls(config), Some((client, pki)))
            }
        };
        let manager = builder.handle_signals(false).build().await.unwrap();
        setup(&manager);
        let server = Server::with_manager(manager).await;
        Self { server, tls }
    }

    /// A new connection to the server, its TLS handshake done.
    async fn connect(&self) -> Socket {
        match &self.tls {
            None => Box::new(TcpStream::connect(self.addr).await.unwrap()),
            Some(_) => Box::new(self.connect_tls().await),
        }
    }

    /// A new TLS connection to a server started over TLS.
    async fn connect_tls(&self) -> TlsStream<TcpStream> {
        let (tls, _) = self.tls.as_ref().expect("a server started over TLS");
        let socket = TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        guard(tls.connect(name, socket)).await.unwrap()
    }
}

/// One HTTP/1.1 response read off a raw socket.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response with a `content-length` body, leaving what follows in `pending`.
async fn read_response(socket: &mut Socket, pending: &mut Vec<u8>) -> Response {
    guard(async {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut head = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = head.parse(pending).unwrap() {
                let headers: Vec<(String, String)> = head
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let status = head.code.unwrap();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                if pending.len() >= len + length {
                    let body = pending[len..len + length].to_vec();
                    pending.drain(..len + length);
                    return Response {
                        status,
                        headers,
                        body,
                    };
                }
            }
            let mut buf = [0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole response arrived");
            pending.extend_from_slice(&buf[..n]);
        }
    })
    .await
}

/// A new connection to `server` on which `request` (raw bytes) has been sent.
async fn send(server: &Served, request: &[u8]) -> Socket {
    let mut socket = server.connect().await;
    socket.write_all(request).await.unwrap();
    socket
}

/// Opens the stream of user `u` on `socket`: sends its `GET`, reads the head and the first
/// chunk (the `retry:`), and waits until the server counts the stream.
async fn open_stream<S: AsyncRead + AsyncWrite + Unpin>(server: &Served, socket: &mut S) {
    socket
        .write_all(b"GET /api/v1/sse?user_id=u HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    read_until(socket, b"\n\n\r\n").await;
    server.wait_for_total(1).await;
}

#[tokio::test]
async fn one_connection_serves_many_requests_in_order_and_runs_each_handler_once() {
    for transport in TRANSPORTS {
        many_requests_in_order(transport).await;
    }
}

async fn many_requests_in_order(transport: Transport) {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = Served::with(transport, Manager::builder(), |manager| {
        let calls = calls.clone();
        manager
            .route("/count", move |_request, _manager| {
                let calls = calls.clone();
                async move { calls.fetch_add(1, Ordering::SeqCst).to_string() }
            })
            .unwrap();
    })
    .await;
    let mut socket = server.connect().await;
    let mut pending = Vec::new();

    for expected in 0..3 {
        socket
            .write_all(b"GET /count HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let response = read_response(&mut socket, &mut pending).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, expected.to_string().as_bytes());
    }
    let publish = br#"{"event":{"type":"t"}}"#;
    let post = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        publish.len()
    );
    socket.write_all(post.as_bytes()).await.unwrap();
    socket.write_all(publish).await.unwrap();
    assert_eq!(read_response(&mut socket, &mut pending).await.status, 202);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn pipelined_and_split_requests_are_all_answered() {
    for transport in TRANSPORTS {
        pipelined_and_split(transport).await;
    }
}

async fn pipelined_and_split(transport: Transport) {
    let server = Served::start(transport).await;
    let mut socket = send(&server, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nGET /api/v1/connections HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let mut pending = Vec::new();
    let first = read_response(&mut socket, &mut pending).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert!(String::from_utf8_lossy(&first.body).contains("ok"));
    let second = read_response(&mut socket, &mut pending).await;
    assert_eq!(second.status, 200);
    assert!(String::from_utf8_lossy(&second.body).contains("total"));

    // A stream request arriving a few bytes at a time.
    let mut socket = server.connect().await;
    for piece in [
        &b"GET /api/v1/sse?us"[..],
        b"er_id=slow HTTP/1.1\r\nHo",
        b"st: localhost\r\n",
        b"\r\n",
    ] {
        socket.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    read_until(&mut socket, b"retry: ").await;
    server.wait_for_total(1).await;
    assert_eq!(server.manager.connection_count("slow"), 1);
}

#[tokio::test]
async fn a_stream_is_chunked_for_http_1_1_and_ends_with_the_terminator() {
    for transport in TRANSPORTS {
        chunked_stream(transport).await;
    }
}

async fn chunked_stream(transport: Transport) {
    let server = Served::start(transport).await;
    let mut socket = send(
        &server,
        b"GET /api/v1/sse?user_id=u HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    // The first chunk is the `retry:` (its value spread around 3 s).
    let head = read_until(&mut socket, b"\n\n\r\n").await;
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(
        head.contains("content-type: text/event-stream\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\ndate: "), "{head}");
    server.wait_for_total(1).await;
    server
        .manager
        .publish("u", Event::new("hello").with_data(serde_json::json!("x")))
        .await
        .unwrap();
    read_until(
        &mut socket,
        b"event: hello\ndata: {\"value\":\"x\"}\n\n\r\n",
    )
    .await;
    server.manager.close().await;
    let rest = read_to_end(&mut socket).await;
    assert!(rest.ends_with(b"0\r\n\r\n"), "{rest:?}");
}

#[tokio::test]
async fn an_http_1_0_client_gets_the_stream_unframed_until_the_connection_closes() {
    for transport in TRANSPORTS {
        http_1_0_stream(transport).await;
    }
}

async fn http_1_0_stream(transport: Transport) {
    let server = Served::start(transport).await;
    let mut socket = send(&server, b"GET /api/v1/sse?user_id=old HTTP/1.0\r\n\r\n").await;
    let head = read_until(&mut socket, b"\r\n\r\nretry: ").await;
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");
    server.wait_for_total(1).await;
    server
        .manager
        .publish(
            "old",
            Event::new("hello").with_data(serde_json::json!({"a": 1})),
        )
        .await
        .unwrap();
    read_until(&mut socket, b"event: hello\ndata: {\"a\":1}\n\n").await;
    server.manager.close().await;
    assert_eq!(read_to_end(&mut socket).await, b"");
}

#[tokio::test]
async fn events_larger_than_a_tls_record_arrive_whole_and_in_order() {
    for transport in TRANSPORTS {
        large_events(transport).await;
    }
}

async fn large_events(transport: Transport) {
    let server = Served::start(transport).await;
    let mut socket = server.connect().await;
    open_stream(&server, &mut socket).await;
    // A TLS record carries at most 16 KiB: these take one, several, and exactly one.
    let sizes = [40_000, 3, 16_384, 100_000, 16_360];
    for (n, size) in sizes.into_iter().enumerate() {
        let data = n.to_string().repeat(size);
        let event = Event::new("big").with_data(serde_json::json!(data));
        server.manager.publish("u", event).await.unwrap();
    }
    let tail = |n: usize| {
        let data = n.to_string().repeat(sizes[n]);
        format!("event: big\ndata: {{\"value\":\"{data}\"}}\n\n")
    };
    let last = format!("{}\r\n", tail(sizes.len() - 1));
    let received = read_until(&mut socket, last.as_bytes()).await;
    // Whole chunks, and in them every event whole and in order, each with its id.
    let mut rest = &received[..];
    let mut stream = Vec::new();
    while !rest.is_empty() {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = std::str::from_utf8(&rest[..line_end]).unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        stream.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
        rest = rest[line_end + 2 + size..].strip_prefix(b"\r\n").unwrap();
    }
    let stream = String::from_utf8(stream).unwrap();
    let events: Vec<&str> = stream.split_inclusive("\n\n").collect();
    assert_eq!(events.len(), sizes.len());
    for (n, event) in events.into_iter().enumerate() {
        let (id, rest) = event.split_once('\n').unwrap();
        assert!(id.starts_with("id: "), "event {n}: {id}");
        assert_eq!(rest, tail(n), "event {n}");
    }
}

#[tokio::test]
async fn a_tls_client_that_sends_close_notify_leaves_the_counts() {
    for transport in [Transport::Tls, Transport::Tls12] {
        let server = Served::start(transport).await;
        let mut socket = server.connect_tls().await;
        open_stream(&server, &mut socket).await;
        // The alert alone: the TCP connection stays open from the client's side.
        socket.get_mut().1.send_close_notify();
        socket.flush().await.unwrap();
        server.wait_for_total(0).await;
    }
}

#[tokio::test]
async fn a_key_update_from_a_tls_1_3_client_ends_its_stream() {
    let server = Served::start(Transport::Tls).await;
    let mut socket = server.connect_tls().await;
    open_stream(&server, &mut socket).await;
    // The stream's keys are the server's own after the handshake: it ends the stream
    // rather than go on with keys it cannot derive, and the client reconnects.
    socket.get_mut().1.refresh_traffic_keys().unwrap();
    socket.flush().await.unwrap();
    server.wait_for_total(0).await;
    let mut rest = Vec::new();
    let end = guard(socket.read_to_end(&mut rest)).await;
    assert!(
        end.is_err(),
        "the stream is cut, not ended cleanly: {end:?}"
    );
    // A new connection streams again.
    open_stream(&server, &mut server.connect().await).await;
}

#[tokio::test]
async fn garbage_gets_a_400_and_an_idle_connection_closes_on_shutdown() {
    for transport in TRANSPORTS {
        garbage_and_idle(transport).await;
    }
}

async fn garbage_and_idle(transport: Transport) {
    let server = Served::start(transport).await;
    let mut socket = send(&server, b"HELLO THERE\r\n\r\n").await;
    let answer = read_until_closed(&mut socket).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{transport:?}: {answer:?}"
    );

    let mut idle = server.connect().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.manager.close().await;
    assert_eq!(read_until_closed(&mut idle).await, b"", "{transport:?}");
    guard(server.server.serving).await.unwrap().unwrap();
}

/// Reads until the connection closes, cleanly or not (a TLS connection closed without
/// `close_notify`, as a connection that broke off a request is).
async fn read_until_closed(socket: &mut Socket) -> Vec<u8> {
    let mut seen = Vec::new();
    guard(async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = socket.read(&mut buf).await {
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    seen
}

#[tokio::test]
async fn an_oversized_head_gets_431() {
    for transport in TRANSPORTS {
        let server = Served::start(transport).await;
        let request = format!(
            "GET /api/v1/sse?user_id=u HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
            "a".repeat(9000)
        );
        let mut socket = send(&server, request.as_bytes()).await;
        let answer = read_until_closed(&mut socket).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 431"),
            "{transport:?}: {answer:?}"
        );
        assert_eq!(server.manager.connection_count("u"), 0);
    }
}

#[tokio::test]
async fn http_2_without_tls_carries_streams_and_requests_on_one_connection() {
    use futures_util::StreamExt;

    let server = Server::start().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let health = h2.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    assert_eq!(health.status(), 200);

    let streams = futures_util::future::join_all(["a", "b"].map(|user| {
        h2.get(server.url(&format!("/api/v1/sse?user_id={user}")))
            .send()
    }))
    .await;
    server.wait_for_total(2).await;
    let published = h2
        .post(server.url("/api/v1/publish"))
        .json(&serde_json::json!({"event": {"type": "to-all"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 202);
    for stream in streams {
        let stream = stream.unwrap();
        assert_eq!(stream.version(), reqwest::Version::HTTP_2);
        let mut body = stream.bytes_stream();
        let mut seen = Vec::new();
        guard(async {
            let needle = b"event: to-all\n";
            while !seen.windows(needle.len()).any(|w| w == needle) {
                seen.extend_from_slice(&body.next().await.unwrap().unwrap());
            }
        })
        .await;
    }
}

#[tokio::test]
async fn on_loopback_without_an_authorizer_serve_answers_only_loopback_host_names() {
    let request = |host: &str| format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let checked = Served::start(Transport::Plain).await;
    for (host, status) in [("localhost:1", 200), ("rebound.example", 403)] {
        let mut socket = send(&checked, request(host).as_bytes()).await;
        let response = read_response(&mut socket, &mut Vec::new()).await;
        assert_eq!(response.status, status, "{host}");
    }
    let builder = Manager::builder().loopback_hosts_only(false);
    let unchecked = Served::with(Transport::Plain, builder, |_| {}).await;
    let mut socket = send(&unchecked, request("rebound.example").as_bytes()).await;
    assert_eq!(
        read_response(&mut socket, &mut Vec::new()).await.status,
        200
    );
}

/// With many streams, each slice of them gets its heartbeats in bursts spread over the
/// slice's step; all of them still get one every interval, none skipped, none doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_carrying_events_get_no_heartbeat_until_they_fall_silent_for_an_interval() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    // Enough streams that some are visited by the heartbeat pass at every point of the
    // interval (16 slices of it).
    const STREAMS: usize = 32;
    let every = Duration::from_millis(800);
    let server = Server::with(Manager::builder().heartbeat(every)).await;
    let mut readers = Vec::new();
    for user in 0..STREAMS {
        let mut socket = guard(TcpStream::connect(server.addr)).await.unwrap();
        let request =
            format!("GET /api/v1/sse?user_id=u{user} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        guard(socket.write_all(request.as_bytes())).await.unwrap();
        // What arrives, and when: events every 150 ms for 3 s, then silence for 2 intervals.
        let until = Instant::now() + Duration::from_millis(3_500) + every * 2;
        readers.push(tokio::spawn(async move {
            let mut arrivals = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(Ok(n)) = tokio::time::timeout_at(until, socket.read(&mut buf)).await {
                assert!(n > 0, "the stream ended");
                arrivals.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
            arrivals
        }));
    }
    server.wait_for_total(STREAMS).await;
    for n in 0..20 {
        let event = Event::new("tick").with_data(serde_json::json!(n));
        server.manager.publish_to_all(event).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let is_heartbeat = |text: &str| text.contains("\n:\n\n");
    for (stream, reader) in readers.into_iter().enumerate() {
        let arrivals = reader.await.unwrap();
        let last_event = arrivals
            .iter()
            .filter(|(_, text)| text.contains("event: tick"))
            .map(|(at, _)| *at)
            .next_back()
            .expect("events arrived");
        let first_event = arrivals
            .iter()
            .find(|(_, text)| text.contains("event: tick"))
            .map(|(at, _)| *at)
            .unwrap();
        let during: Vec<_> = arrivals
            .iter()
            .filter(|(at, text)| *at > first_event && *at <= last_event && is_heartbeat(text))
            .collect();
        assert!(
            during.is_empty(),
            "stream {stream}: heartbeats between events: {during:?}"
        );
        let first_after = arrivals
            .iter()
            .find(|(at, text)| *at > last_event && is_heartbeat(text))
            .map(|(at, _)| *at - last_event)
            .expect("a heartbeat once the events stopped");
        // Not before the stream was silent for most of an interval, and not later than
        // one interval (with room for a busy machine's timers).
        assert!(
            first_after >= every / 2 && first_after <= every + Duration::from_millis(200),
            "stream {stream}: the first heartbeat came {first_after:?} after the last event, every {every:?}"
        );
    }
}

#[tokio::test]
async fn each_of_hundreds_of_streams_gets_a_heartbeat_every_interval() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const STREAMS: usize = 300;
    const INTERVALS: u32 = 5;
    let every = Duration::from_millis(400);
    let server = Server::with(Manager::builder().heartbeat(every)).await;
    let mut sockets = Vec::with_capacity(STREAMS);
    for user in 0..STREAMS {
        let mut socket = guard(tokio::net::TcpStream::connect(server.addr))
            .await
            .unwrap();
        let request =
            format!("GET /api/v1/sse?user_id=u{user} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        guard(socket.write_all(request.as_bytes())).await.unwrap();
        sockets.push(socket);
    }
    server.wait_for_total(STREAMS).await;
    // Each socket read for the same window, counting the heartbeat comments.
    let window = every * INTERVALS;
    let counts = futures_util::future::join_all(sockets.into_iter().map(|mut socket| async move {
        let mut received = Vec::new();
        let _ = tokio::time::timeout(window, async {
            let mut buf = [0u8; 4096];
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        received.windows(4).filter(|w| w == b"\n:\n\n").count()
    }))
    .await;
    // The window holds INTERVALS heartbeats of each stream, give or take the one at
    // either edge.
    let expected = INTERVALS as usize;
    for (stream, count) in counts.iter().enumerate() {
        assert!(
            (expected - 1..=expected + 1).contains(count),
            "stream {stream} got {count} heartbeats in {window:?}, one every {every:?} expected"
        );
    }
}
