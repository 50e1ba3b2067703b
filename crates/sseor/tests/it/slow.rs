//! Slow consumers, per route: clients that stop reading while events keep coming, on real
//! sockets, over HTTP/1.1 and HTTP/2. Multi-threaded, so that the server writes to the
//! sockets while the test publishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Request;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::json;
use sseor::{Event, Manager, SlowConsumer, Subscription, TlsConfig};
use sseor_testkit::certs::CertFiles;
use sseor_testkit::guard;
use sseor_testkit::library::Server;
use sseor_testkit::raw::{Options, RawStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A client whose socket buffers fill after a few kilobytes, so that it stalls quickly.
const STALLED: Options = Options {
    recv_buffer: Some(4096),
    from: None,
};

/// 4 KiB of padding per event: a stalled client's socket buffers (a few MiB at most)
/// hold a small part of what is published.
fn padding() -> String {
    "x".repeat(4096)
}

async fn stalled_stream(server: &Server, path: &str) -> RawStream {
    guard(RawStream::open(server.addr, path, &[], STALLED))
        .await
        .unwrap_or_else(|refusal| panic!("{path} refused: {refusal:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_per_type_keeps_the_newest_value_of_each_type_while_the_default_route_cuts_off() {
    const EACH: u64 = 10_000;
    let manager = Manager::builder()
        .handle_signals(false)
        .build()
        .await
        .unwrap();
    // The dashboard route chooses latest-per-type; the API's route keeps the default.
    manager
        .route(
            "/dashboard",
            |request: Request, manager: Manager| async move {
                let subscription = Subscription::user("screen")?
                    .topic("market")?
                    .slow_consumer(SlowConsumer::LatestPerType);
                manager.handle_sse_with(&request, subscription)
            },
        )
        .unwrap();
    let server = Server::with_manager(manager).await;
    let mut dashboard = stalled_stream(&server, "/dashboard").await;
    let mut plain = stalled_stream(&server, "/api/v1/sse?user_id=plain&topic=market").await;
    server.wait_for_total(2).await;

    let padding = padding();
    for n in 0..EACH {
        for kind in ["price", "volume"] {
            let event = Event::new(kind).with_data(json!({"n": n, "pad": padding}));
            server
                .manager
                .publish_to_topic("market", event)
                .await
                .unwrap();
        }
    }
    assert_eq!(
        server.manager.connection_count("plain"),
        0,
        "the default route disconnects a client that stopped reading"
    );
    assert_eq!(
        server.manager.connection_count("screen"),
        1,
        "the latest-per-type route keeps it"
    );

    // Now the dashboard reads: what its socket buffered, then the newest of each type.
    let mut received = 0;
    let mut last = std::collections::HashMap::new();
    guard(async {
        while last.get("price") != Some(&(EACH - 1)) || last.get("volume") != Some(&(EACH - 1)) {
            let frame = dashboard.next_frame().await.expect("the stream ended");
            let Some(n) = frame.n() else { continue };
            received += 1;
            if let Some(&before) = last.get(frame.event.as_str()) {
                assert!(n > before, "{} went back from {before} to {n}", frame.event);
            }
            last.insert(frame.event.clone(), n);
        }
    })
    .await;
    eprintln!(
        "the stalled dashboard received {received} of {} events",
        2 * EACH
    );
    assert!(
        received < 2 * EACH / 4,
        "{received} events of {}: the queue kept far more than the newest of each type",
        2 * EACH
    );
    // The dashboard's stream goes on: a new event reaches it.
    let after = Event::new("after").with_data(json!({"n": EACH}));
    server
        .manager
        .publish_to_topic("market", after)
        .await
        .unwrap();
    let frame = guard(dashboard.next_frame())
        .await
        .expect("the dashboard's stream ended");
    assert_eq!((frame.event.as_str(), frame.n()), ("after", Some(EACH)));
    assert_eq!(server.manager.connection_count("screen"), 1);
    // The default route's client was cut off: its stream ends without the terminator.
    guard(plain.read_to_end()).await;
    assert_eq!(plain.ending(), Some(sseor_testkit::raw::Ending::Cut));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_not_ended_cleanly() {
    let server = Server::start().await;
    // An ordinary HTTP client that stops polling its stream: nothing more is read.
    let mut client = server.subscribe("idle", &[]).await;
    server.wait_for_total(1).await;
    let padding = padding();
    guard(async {
        let mut n = 0;
        while server.manager.connection_count("idle") == 1 {
            let event = Event::new("tick").with_data(json!({"n": n, "pad": padding}));
            server.manager.publish("idle", event).await.unwrap();
            n += 1;
        }
    })
    .await;
    // What it had buffered, then an error: a client can tell it was cut off.
    let error = client.wait_for_cut_off().await;
    eprintln!("the idle client's stream failed with: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_keeps_a_stalled_reader_connected_and_it_gets_the_newest_events() {
    const TOTAL: u64 = 20_000;
    let server = Server::with(Manager::builder().slow_consumer(SlowConsumer::DropOldest)).await;
    let mut stalled = stalled_stream(&server, "/api/v1/sse?user_id=stalled").await;
    server.wait_for_total(1).await;

    let padding = padding();
    for n in 0..TOTAL {
        let event = Event::new("tick").with_data(json!({"n": n, "pad": padding}));
        let published = server.manager.publish("stalled", event).await.unwrap();
        assert_eq!(published.delivered_locally, Some(1), "event {n}");
    }
    assert_eq!(server.manager.connection_count("stalled"), 1);

    let mut received = 0;
    let mut last = None;
    guard(async {
        while last != Some(TOTAL - 1) {
            let frame = stalled.next_frame().await.expect("the stream ended");
            let Some(n) = frame.n() else { continue };
            assert!(last < Some(n), "{n} after {last:?}");
            received += 1;
            last = Some(n);
        }
    })
    .await;
    eprintln!("the stalled client received {received} of {TOTAL} events");
    assert!(received < TOTAL / 4, "{received} of {TOTAL}");

    // Still connected and live.
    let event = Event::new("after").with_data(json!({"n": TOTAL}));
    server.manager.publish("stalled", event).await.unwrap();
    let frame = guard(stalled.next_frame()).await.unwrap();
    assert_eq!((frame.event.as_str(), frame.n()), ("after", Some(TOTAL)));
}

/// A client's connection, plain or TLS.
trait Wire: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Wire for T {}

/// A server that speaks HTTPS with a new self-signed certificate, and its certificate.
async fn tls_server(builder: sseor::Builder) -> (Server, CertFiles) {
    let pki = CertFiles::self_signed();
    let tls = TlsConfig::from_pem_files(&pki.cert, &pki.key).unwrap();
    (Server::with(builder.tls(tls)).await, pki)
}

/// A TLS connection to `server` offering `alpn`, from a socket with `options`.
async fn tls_connect(
    server: &Server,
    pki: &CertFiles,
    alpn: &[u8],
    options: Options,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = options.recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let tcp = guard(socket.connect(server.addr)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    guard(pki.tls_client(&[alpn]).connect(name, tcp))
        .await
        .unwrap()
}

/// An HTTP/2 client on one connection (TLS when `pki` is given), with a small window per
/// stream so that a stream it does not read stalls after 64 KiB.
async fn h2_connection(
    server: &Server,
    pki: Option<&CertFiles>,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>> {
    let io: Box<dyn Wire> = match pki {
        None => Box::new(tokio::net::TcpStream::connect(server.addr).await.unwrap()),
        Some(pki) => Box::new(tls_connect(server, pki, b"h2", Options::default()).await),
    };
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(64 * 1024)
            .initial_connection_window_size(16 * 1024 * 1024)
            .handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

fn get(server: &Server, path: &str) -> http::Request<http_body_util::Empty<Bytes>> {
    http::Request::get(server.url(path))
        .body(http_body_util::Empty::new())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_http2_stream_is_reset_alone_and_its_connection_goes_on() {
    let server = Server::start().await;
    stalled_http2_stream(&server, None).await;
    let (server, pki) = tls_server(Manager::builder()).await;
    stalled_http2_stream(&server, Some(&pki)).await;
}

async fn stalled_http2_stream(server: &Server, pki: Option<&CertFiles>) {
    const TOTAL: u64 = 1500;
    const READERS: usize = 3;
    let mut h2 = h2_connection(server, pki).await;

    let stalled = guard(h2.send_request(get(server, "/api/v1/sse?user_id=stalled")))
        .await
        .unwrap();
    assert_eq!(stalled.status(), 200);
    assert_eq!(stalled.version(), http::Version::HTTP_2);
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..READERS).map(|_| AtomicU64::new(0)).collect());
    let mut readers = Vec::new();
    for reader in 0..READERS {
        let response =
            guard(h2.send_request(get(server, &format!("/api/v1/sse?user_id=r{reader}"))))
                .await
                .unwrap();
        assert_eq!(response.status(), 200);
        let progress = progress.clone();
        readers.push(tokio::spawn(async move {
            let mut body = response.into_body();
            let mut parser = sseor_testkit::raw::Parser::default();
            let mut frames = Vec::new();
            let mut next = 0;
            while next < TOTAL {
                let frame = body.frame().await.expect("the stream ended").unwrap();
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                parser.push(&data, &mut frames);
                for frame in frames.drain(..) {
                    let Some(n) = frame.n() else { continue };
                    assert_eq!(n, next, "reader {reader} must get every event in order");
                    next += 1;
                }
                progress[reader].store(next, Ordering::Relaxed);
            }
            body
        }));
    }
    server.wait_for_total(READERS + 1).await;

    // Published as fast as the readers read (never more than 64 events ahead of them):
    // the stalled stream's queue overflows, the readers' never do.
    let padding = padding();
    for n in 0..TOTAL {
        guard(async {
            while progress.iter().any(|p| p.load(Ordering::Relaxed) + 64 < n) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        let event = Event::new("tick").with_data(json!({"n": n, "pad": padding}));
        server.manager.publish_to_all(event).await.unwrap();
    }
    // The readers' streams stay open (held here) while the stalled one is gone.
    let mut open = Vec::new();
    for reader in readers {
        open.push(guard(reader).await.unwrap());
    }
    server.wait_for_total(READERS).await;
    assert_eq!(server.manager.connection_count("stalled"), 0);

    // The stalled stream was reset: reading it gives what it had buffered, then an error.
    let mut body = stalled.into_body();
    let ended = guard(async {
        loop {
            match body.frame().await {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            }
        }
    })
    .await;
    let error = ended.expect_err("the stalled stream must be reset, not ended cleanly");
    let reason = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<h2::Error>())
        .and_then(h2::Error::reason);
    assert_eq!(reason, Some(h2::Reason::CANCEL), "{error:?}");

    // The connection itself goes on.
    let health = guard(h2.send_request(get(server, "/healthz")))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(server.manager.total_connections(), READERS);
    drop(open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_stream_is_cut_off_alone_while_the_others_go_on() {
    let (server, pki) = tls_server(Manager::builder()).await;
    let mut stalled = tls_connect(&server, &pki, b"http/1.1", STALLED).await;
    let request = "GET /api/v1/sse?user_id=stalled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    stalled.write_all(request.as_bytes()).await.unwrap();
    let mut reader = tls_connect(&server, &pki, b"http/1.1", Options::default()).await;
    let request = "GET /api/v1/sse?user_id=reader HTTP/1.1\r\nHost: localhost\r\n\r\n";
    reader.write_all(request.as_bytes()).await.unwrap();
    server.wait_for_total(2).await;
    let progress = Arc::new(AtomicU64::new(0));
    let reading = tokio::spawn({
        let progress = progress.clone();
        async move {
            let mut parser = sseor_testkit::raw::Parser::default();
            let mut frames = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = reader
                    .read(&mut buf)
                    .await
                    .expect("the reader's stream broke");
                assert!(n > 0, "the reader's stream ended");
                parser.push(&buf[..n], &mut frames);
                for frame in frames.drain(..) {
                    if let Some(n) = frame.n() {
                        assert_eq!(n, progress.load(Ordering::Relaxed), "in order, none lost");
                        progress.store(n + 1, Ordering::Relaxed);
                    }
                }
            }
        }
    });

    // Published as fast as the reader reads, until the stalled stream is cut off.
    let padding = padding();
    let mut n = 0;
    guard(async {
        while server.manager.connection_count("stalled") == 1 {
            while progress.load(Ordering::Relaxed) + 64 < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let event = Event::new("tick").with_data(json!({"n": n, "pad": padding}));
            server.manager.publish_to_all(event).await.unwrap();
            n += 1;
        }
    })
    .await;
    // The reader goes on and gets every event.
    guard(async {
        while progress.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(server.manager.connection_count("reader"), 1);
    assert!(!reading.is_finished(), "the reader's stream must go on");

    // The stalled stream: what it had buffered, then the connection broken off without
    // `close_notify` (a clean TLS end would read as a finished stream).
    let ended = guard(async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
    })
    .await;
    assert!(
        ended.is_err(),
        "the stalled stream must be cut off, not ended cleanly"
    );
    reading.abort();
}
