//! What the `sseor` binary does with connections before and between requests: idle and
//! incomplete connections are closed within the header timeout whatever their protocol
//! (HTTP/1.1, HTTP/2, over TLS or not), request heads are checked alike by both ways of
//! reading them (`Host`, `Content-Length`, the 8 KiB limit), and running out of file
//! descriptors is logged once per interval. A real process, real sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sseor_testkit::certs::CertFiles;
use sseor_testkit::guard;
use sseor_testkit::server::{Server, clean_env, listening_command, run_to_exit};
use sseor_testkit::sse::Client;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::SSEOR;

/// The header timeout the servers of these tests use.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// When a connection idle for [`HEADER_TIMEOUT`] may be closed at the earliest (timers
/// fire late, never early; a little slack for clock granularity) ...
const CLOSED_NOT_BEFORE: Duration = Duration::from_millis(900);

/// ... and at the latest: the timeout, then a second of grace for a client that ignores
/// an HTTP/2 `GOAWAY`, and room for a busy machine.
const CLOSED_NOT_AFTER: Duration = Duration::from_secs(5);

/// The HTTP/2 connection preface and an empty SETTINGS frame: what a client sends first.
const H2_PREFACE_AND_SETTINGS: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// `sseor` with a 1 s header timeout, plus `args`.
async fn start(args: &[&str]) -> Server {
    let mut all = vec!["--header-timeout", "1s"];
    all.extend_from_slice(args);
    Server::start(SSEOR, &all).await
}

/// Reads (and discards) whatever `io` sends until the server closes it; how long that
/// took from `since`. Panics if it stays open past the hang guard.
async fn time_to_close(mut io: impl AsyncRead + Unpin, since: Instant) -> Duration {
    let mut buffer = vec![0; 16 * 1024];
    guard(async {
        loop {
            match io.read(&mut buffer).await {
                Ok(0) => break,
                Ok(_) => {}
                // A close with unread data or a TLS close without `close_notify` is a close.
                Err(error) => {
                    assert!(
                        matches!(
                            error.kind(),
                            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                        ),
                        "reading failed otherwise than by a close: {error}"
                    );
                    break;
                }
            }
        }
    })
    .await;
    since.elapsed()
}

fn assert_closed_within_the_header_timeout(elapsed: Duration, what: &str) {
    assert!(
        (CLOSED_NOT_BEFORE..=CLOSED_NOT_AFTER).contains(&elapsed),
        "{what}: closed after {elapsed:?}, expected between {CLOSED_NOT_BEFORE:?} and \
         {CLOSED_NOT_AFTER:?} (header timeout {HEADER_TIMEOUT:?})"
    );
}

/// Sends `request` and reads one response: its status, its headers (lowercase names) and
/// its body (by `Content-Length`; to the end of the connection without one; for a chunked
/// event stream, what came with the head).
async fn exchange(
    io: &mut (impl AsyncRead + AsyncWrite + Unpin),
    request: &[u8],
) -> (u16, String, Vec<u8>) {
    guard(async {
        io.write_all(request).await.unwrap();
        let mut received = Vec::new();
        let head_end = loop {
            if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0; 4096];
            let read = io.read(&mut chunk).await.expect("reading the response");
            assert_ne!(read, 0, "closed before a response head: {received:?}");
            received.extend_from_slice(&chunk[..read]);
        };
        let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {head:?}"));
        let length = head.lines().find_map(|line| {
            line.strip_prefix("content-length:")
                .map(|n| n.trim().parse::<usize>().unwrap())
        });
        let mut body = received[head_end..].to_vec();
        // An event stream (chunked) never ends: its first bytes are enough.
        if head.contains("transfer-encoding: chunked") {
            return (status, head, body);
        }
        while length.is_none_or(|length| body.len() < length) {
            let mut chunk = [0; 4096];
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) if length.is_none() => break,
                Ok(read) if read > 0 => body.extend_from_slice(&chunk[..read]),
                other => panic!("the body ended early ({other:?}): {body:?}"),
            }
        }
        (status, head, body)
    })
    .await
}

/// One request on a new plain connection; the status and body.
async fn plain_exchange(addr: SocketAddr, request: &str) -> (u16, Vec<u8>) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let (status, _, body) = exchange(&mut socket, request.as_bytes()).await;
    (status, body)
}

/// The `error` of a JSON error body.
fn error_of(body: &[u8]) -> String {
    let json: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no `error`: {json}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// TLS: a certificate made for the test, and a client that trusts it
// ---------------------------------------------------------------------------------------

/// A self-signed certificate for `localhost` (see [`CertFiles`]), and a TLS client
/// configuration that trusts it.
struct Pki {
    files: CertFiles,
    client: Arc<rustls::ClientConfig>,
}

impl Pki {
    fn new() -> Self {
        let files = CertFiles::self_signed();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                files.cert_der.clone(),
            ))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            files,
            client: Arc::new(client),
        }
    }

    /// A `reqwest` client that trusts this certificate and finds `localhost` at `addr`.
    fn https_client(&self, addr: SocketAddr) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.files.cert_pem.as_bytes()).unwrap(),
            )
            .resolve("localhost", addr)
    }

    async fn start(&self, args: &[&str]) -> Server {
        let mut command = listening_command(SSEOR);
        command
            .args(["--header-timeout", "1s"])
            .args(args)
            .env("SSEOR_TLS_CERT", &self.files.cert)
            .env("SSEOR_TLS_KEY", &self.files.key);
        Server::spawn(command).await
    }

    /// A TLS connection to `addr` offering only `alpn`, handshaken.
    async fn connect(
        &self,
        addr: SocketAddr,
        alpn: &[u8],
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut config = (*self.client).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let socket = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = guard(connector.connect(name, socket)).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        tls
    }
}

// ---------------------------------------------------------------------------------------
// Connections without a request are closed within the header timeout
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn cleartext_http2_connections_that_open_no_stream_are_closed_within_the_header_timeout() {
    let server = start(&[]).await;
    let started = Instant::now();
    let mut closes = Vec::new();
    for _ in 0..20 {
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        socket.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();
        closes.push(tokio::spawn(time_to_close(socket, started)));
    }
    for close in closes {
        let elapsed = close.await.unwrap();
        assert_closed_within_the_header_timeout(elapsed, "an HTTP/2 connection with no stream");
    }
}

#[tokio::test]
async fn connections_that_send_nothing_or_an_incomplete_head_are_closed_within_the_header_timeout()
{
    let server = start(&[]).await;
    let silent = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(b"GET /api/v1/sse?user_id=a HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let (silent, partial) = tokio::join!(
        time_to_close(silent, started),
        time_to_close(partial, started)
    );
    assert_closed_within_the_header_timeout(silent, "a connection that sent nothing");
    assert_closed_within_the_header_timeout(partial, "an incomplete HTTP/1.1 head");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_within_the_header_timeout() {
    let server = start(&[]).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    // Served by hyper after the first request (a publish), and by the head reader first
    // (a GET that is not a stream): both leave the connection open for the next request.
    for request in [
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_owned(),
        publish_request(&json!({"event": {"type": "x", "data": {}}})),
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_owned(),
    ] {
        let (status, _, body) = exchange(&mut socket, request.as_bytes()).await;
        assert!(status < 300, "{status}: {}", String::from_utf8_lossy(&body));
    }
    let answered = Instant::now();
    let elapsed = time_to_close(socket, answered).await;
    assert_closed_within_the_header_timeout(elapsed, "an idle keep-alive connection");
}

fn publish_request(body: &Value) -> String {
    let body = body.to_string();
    format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn tls_connections_without_a_request_after_the_handshake_are_closed_within_the_header_timeout()
 {
    let pki = Pki::new();
    let server = pki.start(&[]).await;
    let mut h2 = pki.connect(server.addr, b"h2").await;
    let h1 = pki.connect(server.addr, b"http/1.1").await;
    let started = Instant::now();
    h2.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();
    let (h2, h1) = tokio::join!(time_to_close(h2, started), time_to_close(h1, started));
    assert_closed_within_the_header_timeout(h2, "an HTTP/2 connection over TLS with no stream");
    assert_closed_within_the_header_timeout(h1, "an HTTP/1.1 connection over TLS with no request");
}

#[tokio::test]
async fn an_http2_connection_idle_after_its_streams_ended_is_closed_within_the_header_timeout() {
    let pki = Pki::new();
    let server = pki.start(&[]).await;
    let tls = pki.connect(server.addr, b"h2").await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor, hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let closed = tokio::spawn(async move {
        let result = connection.await;
        (Instant::now(), result)
    });
    let request = http::Request::get(format!("https://localhost:{}/healthz", server.addr.port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = guard(sender.send_request(request)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = guard(http_body_util::BodyExt::collect(response.into_body())).await;
    body.unwrap();
    let answered = Instant::now();
    let (closed_at, result) = guard(closed).await.unwrap();
    assert!(
        result.is_ok(),
        "the connection ended with an error: {result:?}"
    );
    assert_closed_within_the_header_timeout(
        closed_at - answered,
        "an HTTP/2 connection whose streams ended",
    );
}

/// Runs hyper's client connection tasks on tokio.
#[derive(Clone, Copy)]
struct TokioExecutor;

impl<F> hyper::rt::Executor<F> for TokioExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future);
    }
}

#[tokio::test]
async fn open_streams_outlive_the_header_timeout_over_http1_and_http2() {
    let pki = Pki::new();
    let server = pki.start(&[]).await;
    let http2 = pki.https_client(server.addr).build().unwrap();
    let url = format!(
        "https://localhost:{}/api/v1/sse?user_id=alice",
        server.addr.port()
    );
    let response = guard(http2.get(&url).send()).await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let mut over_http2 = Client::from_response(response);
    let http1 = pki.https_client(server.addr).http1_only().build().unwrap();
    let mut over_http1 = Client::from_response(guard(http1.get(&url).send()).await.unwrap());
    // Three header timeouts with nothing on the streams but heartbeats (every 15 s).
    tokio::time::sleep(HEADER_TIMEOUT * 3).await;
    let publish = json!({"user_id": "alice", "event": {"type": "still-here", "data": {}}});
    let (status, body) = {
        let response = guard(
            http2
                .post(format!(
                    "https://localhost:{}/api/v1/publish",
                    server.addr.port()
                ))
                .json(&publish)
                .send(),
        )
        .await
        .unwrap();
        (response.status(), response.text().await.unwrap())
    };
    assert!(status.is_success(), "{status}: {body}");
    assert_eq!(over_http2.next_event().await.event, "still-here");
    assert_eq!(over_http1.next_event().await.event, "still-here");
}

#[tokio::test]
async fn a_cleartext_http1_stream_outlives_the_header_timeout() {
    let server = start(&[]).await;
    let mut client = server.subscribe("bob", &[]).await;
    tokio::time::sleep(HEADER_TIMEOUT * 3).await;
    let (status, body) = server
        .publish(&json!({"user_id": "bob", "event": {"type": "still-here", "data": {}}}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(client.next_event().await.event, "still-here");
}

#[tokio::test]
async fn a_header_timeout_of_zero_or_not_a_duration_is_refused() {
    for value in ["0s", "soon"] {
        let run = run_to_exit(SSEOR, &["--header-timeout", value], &[]).await;
        assert_eq!(run.status.code(), Some(2), "{value}: {}", run.all_output());
        assert!(
            run.stderr.contains("SSEOR_HEADER_TIMEOUT"),
            "{value}: {}",
            run.all_output()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Request heads: both ways of reading one answer alike
// ---------------------------------------------------------------------------------------

/// The same request on a plain connection (a `GET` is read by the server loop itself,
/// anything else by hyper) and over TLS with HTTP/1.1 (read by hyper); both statuses
/// and bodies.
async fn on_both_front_ends(
    server: &Server,
    tls_server: &Server,
    pki: &Pki,
    request: &str,
) -> [(u16, Vec<u8>); 2] {
    let plain = plain_exchange(server.addr, request).await;
    let mut tls = pki.connect(tls_server.addr, b"http/1.1").await;
    let (status, _, body) = exchange(&mut tls, request.as_bytes()).await;
    [plain, (status, body)]
}

#[tokio::test]
async fn a_stream_request_with_two_differing_content_lengths_gets_400_on_both_front_ends() {
    let pki = Pki::new();
    let (server, tls_server) = (start(&[]).await, pki.start(&[]).await);
    for request in [
        "GET /api/v1/sse?user_id=a HTTP/1.1\r\nHost: localhost\r\n\
         Content-Length: 0\r\nContent-Length: 5\r\n\r\n",
        "GET /api/v1/sse?user_id=a HTTP/1.1\r\nHost: localhost\r\n\
         Content-Length: 5\r\nContent-Length: 0\r\n\r\n",
    ] {
        for (front_end, (status, body)) in ["plain", "tls"]
            .iter()
            .zip(on_both_front_ends(&server, &tls_server, &pki, request).await)
        {
            assert_eq!(
                status,
                400,
                "{front_end}: {request:?}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}

#[tokio::test]
async fn http11_requests_without_a_host_or_with_two_get_400_on_both_front_ends() {
    let pki = Pki::new();
    let (server, tls_server) = (start(&[]).await, pki.start(&[]).await);
    let publish = |hosts: &str| {
        format!(
            "POST /api/v1/publish HTTP/1.1\r\n{hosts}Content-Type: application/json\r\n\
             Content-Length: 2\r\n\r\n{{}}"
        )
    };
    for (request, expected) in [
        (
            "GET /api/v1/sse?user_id=a HTTP/1.1\r\n\r\n".to_owned(),
            "Host",
        ),
        (
            "GET /api/v1/sse?user_id=a HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n\r\n"
                .to_owned(),
            "exactly one Host",
        ),
        ("GET /healthz HTTP/1.1\r\n\r\n".to_owned(), "Host"),
        (publish(""), "Host"),
        (
            publish("Host: localhost\r\nHost: 127.0.0.1\r\n"),
            "exactly one Host",
        ),
    ] {
        for (front_end, (status, body)) in ["plain", "tls"]
            .iter()
            .zip(on_both_front_ends(&server, &tls_server, &pki, &request).await)
        {
            assert_eq!(status, 400, "{front_end}: {request:?}");
            let error = error_of(&body);
            assert!(
                error.contains(expected),
                "{front_end}: {request:?}: {error}"
            );
        }
    }
    // HTTP/1.0 has no Host requirement.
    let (status, body) = plain_exchange(server.addr, "GET /healthz HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn on_loopback_without_authentication_only_loopback_host_names_are_answered() {
    let server = start(&[]).await;
    let stream = |host: &str| format!("GET /api/v1/sse?user_id=a HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let health = |host: &str| format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let publish = |host: &str| {
        publish_request(&json!({"event": {"type": "x", "data": {}}})).replacen(
            "Host: 127.0.0.1",
            &format!("Host: {host}"),
            1,
        )
    };
    for host in [
        "evil.example",
        "evil.example:9090",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "10.0.0.1",
        "[::2]:9090",
        "localhost:notaport",
    ] {
        for request in [stream(host), health(host), publish(host)] {
            let (status, body) = plain_exchange(server.addr, &request).await;
            assert_eq!(status, 403, "{request:?}");
            let error = error_of(&body);
            assert!(
                error.contains("not a loopback name") && error.contains(host),
                "{request:?}: {error}"
            );
        }
    }
    for host in [
        "localhost",
        "LOCALHOST:9090",
        "app.localhost:1234",
        "127.0.0.1",
        "127.1.2.3:80",
        "[::1]",
        "[::1]:9090",
    ] {
        let (status, body) = plain_exchange(server.addr, &health(host)).await;
        assert_eq!(status, 200, "{host}: {}", String::from_utf8_lossy(&body));
    }
    // HTTP/2 names its host in `:authority`.
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("evil.example", server.addr)
        .build()
        .unwrap();
    let url = format!("http://evil.example:{}/healthz", server.addr.port());
    let response = guard(client.get(&url).send()).await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn any_host_is_answered_with_allow_any_host_or_with_authentication() {
    let evil = "GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    let open = start(&["--allow-any-host"]).await;
    assert_eq!(plain_exchange(open.addr, evil).await.0, 200);
    let authenticated = start(&["--jwt-secret", &"s".repeat(32)]).await;
    assert_eq!(plain_exchange(authenticated.addr, evil).await.0, 200);
    // Authentication, not the host, decides who reads a stream.
    let (status, _) = plain_exchange(
        authenticated.addr,
        "GET /api/v1/sse?user_id=a HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    )
    .await;
    assert_eq!(status, 401);
}

// ---------------------------------------------------------------------------------------
// One request head limit: 8 KiB, over HTTP/1.1 and HTTP/2
// ---------------------------------------------------------------------------------------

/// A `GET /healthz` with a cookie of `cookie_bytes`, over HTTP/1.1 on a raw socket; the
/// status the server answered.
async fn http1_status_with_cookie(addr: SocketAddr, path: &str, cookie_bytes: usize) -> u16 {
    let cookie = "c".repeat(cookie_bytes);
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\n\r\n");
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let (status, _, _) = exchange(&mut socket, request.as_bytes()).await;
    status
}

#[tokio::test]
async fn request_heads_up_to_7_kib_are_served_and_over_8_kib_refused_over_http1_and_http2() {
    let server = start(&[]).await;
    for path in ["/healthz", "/api/v1/sse?user_id=a"] {
        assert_eq!(
            http1_status_with_cookie(server.addr, path, 7 * 1024).await,
            200
        );
        assert_eq!(
            http1_status_with_cookie(server.addr, path, 9 * 1024).await,
            431
        );
    }
    // curl, whose HTTP/2 client sends what it is given (hyper's waits forever on a head
    // larger than the server announced).
    assert_eq!(curl_http2_status(&server, 7 * 1024).await, 200);
    assert_eq!(curl_http2_status(&server, 9 * 1024).await, 431);
}

/// `GET /healthz` with a cookie of `cookie_bytes` over cleartext HTTP/2, with curl; the
/// status.
async fn curl_http2_status(server: &Server, cookie_bytes: usize) -> u16 {
    let output = guard(
        tokio::process::Command::new("curl")
            .args([
                "--silent",
                "--http2-prior-knowledge",
                "--output",
                "/dev/null",
            ])
            .args(["--write-out", "%{http_version} %{http_code}", "--header"])
            .arg(format!("Cookie: {}", "c".repeat(cookie_bytes)))
            .arg(server.url("/healthz"))
            .output(),
    )
    .await
    .expect("cannot run curl");
    let written = String::from_utf8_lossy(&output.stdout).into_owned();
    let (version, status) = written.split_once(' ').expect("curl's --write-out");
    assert_eq!(version, "2", "curl did not speak HTTP/2: {written}");
    status.parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// Out of file descriptors
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn running_out_of_file_descriptors_is_logged_once_per_interval_with_a_count() {
    let mut command = tokio::process::Command::new("sh");
    command
        .args(["-c", r#"ulimit -n 64 && exec "$0" "$@""#])
        .arg(SSEOR)
        .args(["--port", "0", "--log-format", "json"]);
    clean_env(&mut command);
    let server = Server::spawn(command).await;
    // More connections than descriptors: the server accepts until it runs out, then each
    // attempt to accept fails (every 50 ms) while the rest wait in the backlog.
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failures: Vec<Value> = server
        .output()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|log| {
            log["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("failed to accept"))
        })
        .collect();
    assert_eq!(failures.len(), 1, "{}", server.output());
    assert!(
        failures[0]["fields"]["failed"].as_u64() >= Some(1),
        "{}",
        failures[0]
    );
    assert!(
        failures[0]["fields"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("Too many open files")),
        "{}",
        failures[0]
    );
    // Once descriptors are free again, the server serves.
    drop(held);
    let (status, body) = server.get_json("/healthz").await;
    assert_eq!(status, 200, "{body}");
}
