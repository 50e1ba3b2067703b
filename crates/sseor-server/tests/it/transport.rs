//! How browsers reach the `sseor` binary: HTTPS with HTTP/2 (many streams on one
//! connection), HTTP/1.1 over TLS, CORS, proxy-friendly stream headers, and settings that
//! cannot be used. A real process, real sockets, a certificate made for the test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Version;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sseor_testkit::certs::CertFiles;
use sseor_testkit::server::{Finished, Server, command, run_to_exit};
use sseor_testkit::sse::{Client, data_of};
use sseor_testkit::{guard, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::SSEOR;
use crate::cursor::{position_in, user};

// ---------------------------------------------------------------------------------------
// Helpers: a certificate, a server that uses it, clients that trust it
// ---------------------------------------------------------------------------------------

/// A self-signed certificate for `localhost` and 127.0.0.1 (see [`CertFiles`]), with its
/// paths as the `&str` that arguments take.
struct Pki(CertFiles);

impl Pki {
    fn new() -> Self {
        Self(CertFiles::self_signed())
    }

    /// Writes `contents` to a new file `name` beside the certificate; its path.
    fn file(&self, name: &str, contents: &str) -> String {
        self.0.file(name, contents).display().to_string()
    }

    fn cert(&self) -> &str {
        self.0.cert.to_str().unwrap()
    }

    fn key(&self) -> &str {
        self.0.key.to_str().unwrap()
    }
}

/// `sseor` over TLS with this certificate (from the environment), plus `args`.
async fn start_tls(pki: &Pki, args: &[&str]) -> Server {
    let mut command = command(SSEOR);
    command
        .args(["--port", "0", "--log-format", "json"])
        .args(args)
        .env("SSEOR_TLS_CERT", pki.cert())
        .env("SSEOR_TLS_KEY", pki.key());
    Server::spawn(command).await
}

/// An HTTPS client that trusts only `pki`'s certificate and finds `localhost` at `addr`.
/// It keeps its connection: every request it sends shares one HTTP/2 connection.
fn https_client(pki: &Pki, addr: SocketAddr) -> reqwest::ClientBuilder {
    let root = reqwest::Certificate::from_pem(pki.0.cert_pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .https_only(true)
        .resolve("localhost", addr)
}

fn https_url(port: u16, path: &str) -> String {
    format!("https://localhost:{port}{path}")
}

/// Sends `request`, guarded against hanging.
async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    guard(request.send()).await.expect("the request failed")
}

/// Publishes `body` with `client`; the response's HTTP version, status and JSON.
async fn publish_with(client: &reqwest::Client, url: &str, body: &Value) -> (Version, u16, Value) {
    let response = send(client.post(url).json(body)).await;
    let version = response.version();
    let status = response.status().as_u16();
    let json = guard(response.json()).await.unwrap();
    (version, status, json)
}

/// The headers that keep proxies from buffering or transforming an event stream, and no
/// compression even though the client offered it.
fn assert_stream_headers(headers: &HeaderMap) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(
        header("content-type"),
        Some("text/event-stream"),
        "{headers:?}"
    );
    assert_eq!(
        header("cache-control"),
        Some("no-cache, no-transform"),
        "{headers:?}"
    );
    assert_eq!(header("x-accel-buffering"), Some("no"), "{headers:?}");
    assert_eq!(header("content-encoding"), None, "{headers:?}");
}

/// A TCP relay to `target` that counts the connections it accepts: what a client opens.
async fn counting_relay(target: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, accepted)
}

// ---------------------------------------------------------------------------------------
// HTTPS and HTTP/2
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_event_published_over_h2_reaches_an_h2_stream_with_proxy_headers() {
    let pki = Pki::new();
    let server = start_tls(&pki, &[]).await;
    assert!(
        server
            .log_messages()
            .iter()
            .any(|m| m.starts_with("sseor listening on https://")),
        "the startup log should say https://:\n{}",
        server.output()
    );
    let client = https_client(&pki, server.addr).build().unwrap();
    let port = server.addr.port();

    let health = send(client.get(https_url(port, "/healthz"))).await;
    assert_eq!(health.version(), Version::HTTP_2);
    assert_eq!(health.status(), 200);

    let response = send(
        client
            .get(https_url(port, "/api/v1/sse?user_id=alice"))
            .header("accept-encoding", "gzip, deflate, br, zstd"),
    )
    .await;
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_stream_headers(response.headers());
    let mut stream = Client::from_response(response);

    let (version, status, published) = publish_with(
        &client,
        &https_url(port, "/api/v1/publish"),
        &json!({"user_id": "alice", "event": {"type": "greeting", "data": {"over": "h2"}}}),
    )
    .await;
    assert_eq!((version, status), (Version::HTTP_2, 202), "{published}");
    let event = stream.next_event().await;
    assert_eq!(event.event, "greeting");
    assert_eq!(data_of(&event), json!({"over": "h2"}));
    assert_eq!(
        position_in(&event.id, &user("alice")),
        published["id"].as_str().unwrap()
    );
}

/// A browser allows 6 HTTP/1.1 connections per origin; over HTTP/2 one connection carries
/// every stream of the page.
#[tokio::test]
async fn twenty_streams_share_one_h2_connection_and_all_receive_a_broadcast() {
    const STREAMS: usize = 20;
    let pki = Pki::new();
    let server = start_tls(&pki, &[]).await;
    let (relay, connections) = counting_relay(server.addr).await;
    let client = https_client(&pki, relay).build().unwrap();
    let port = relay.port();
    // The first request opens the connection that every later one shares.
    let health = send(client.get(https_url(port, "/healthz"))).await;
    assert_eq!(health.version(), Version::HTTP_2);

    let responses = futures_util::future::join_all((0..STREAMS).map(|tab| {
        let url = https_url(port, &format!("/api/v1/sse?user_id=tab-{tab}"));
        send(client.get(url))
    }))
    .await;
    let mut streams: Vec<Client> = responses
        .into_iter()
        .map(|response| {
            assert_eq!(response.version(), Version::HTTP_2);
            assert_eq!(response.status(), 200);
            Client::from_response(response)
        })
        .collect();

    let (_, status, body) = publish_with(
        &client,
        &https_url(port, "/api/v1/publish"),
        &json!({"event": {"type": "announcement", "data": {"n": 1}}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["delivered_locally"], STREAMS, "{body}");
    for stream in &mut streams {
        let event = stream.next_event().await;
        assert_eq!(event.event, "announcement");
        assert_eq!(data_of(&event), json!({"n": 1}));
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "all {STREAMS} streams and both requests should share one connection"
    );
}

#[tokio::test]
async fn http1_over_tls_still_streams() {
    let pki = Pki::new();
    let server = start_tls(&pki, &[]).await;
    let client = https_client(&pki, server.addr)
        .http1_only()
        .build()
        .unwrap();
    let port = server.addr.port();

    let response = send(client.get(https_url(port, "/api/v1/sse?user_id=bob"))).await;
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(response.status(), 200);
    assert_stream_headers(response.headers());
    let mut stream = Client::from_response(response);

    let (version, status, body) = publish_with(
        &client,
        &https_url(port, "/api/v1/publish"),
        &json!({"user_id": "bob", "event": {"type": "greeting", "data": {"over": "http/1.1"}}}),
    )
    .await;
    assert_eq!((version, status), (Version::HTTP_11, 202), "{body}");
    let event = stream.next_event().await;
    assert_eq!(data_of(&event), json!({"over": "http/1.1"}));
}

#[tokio::test]
async fn plain_http_to_the_tls_port_fails_and_the_server_keeps_serving() {
    let pki = Pki::new();
    let server = start_tls(&pki, &[]).await;

    // A raw plain-text request: the connection is closed without an HTTP answer.
    let mut socket = guard(TcpStream::connect(server.addr)).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // A reset instead of a clean close is fine too: the point is that it ends.
    let _ = guard(socket.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // A plain HTTP client gets an error, not a hang.
    let plain = guard(http().get(server.url("/healthz")).send()).await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    let client = https_client(&pki, server.addr).build().unwrap();
    let health = send(client.get(https_url(server.addr.port(), "/healthz"))).await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), Version::HTTP_2);
}

/// SIGTERM ends every TLS stream (HTTP/2 and HTTP/1.1) cleanly and the server exits 0,
/// well before a long shutdown timeout, even with a connection that never started its
/// TLS handshake (dropped at once, not left to its handshake timeout).
#[tokio::test]
async fn sigterm_ends_tls_streams_and_exits_0() {
    let pki = Pki::new();
    let mut command = command(SSEOR);
    // A shutdown that waited for the timeout would outlast the test's hang guard.
    command
        .args(["--port", "0", "--log-format", "json"])
        .args(["--shutdown-timeout", "60s"])
        .env("SSEOR_TLS_CERT", pki.cert())
        .env("SSEOR_TLS_KEY", pki.key())
        .env("LOG_LEVEL", "sseor=debug,info");
    let mut server = Server::spawn(command).await;
    let port = server.addr.port();
    let h2 = https_client(&pki, server.addr).build().unwrap();
    let h1 = https_client(&pki, server.addr)
        .http1_only()
        .build()
        .unwrap();
    let mut streams = Vec::new();
    for (client, version, user) in [
        (&h2, Version::HTTP_2, "a"),
        (&h2, Version::HTTP_2, "b"),
        (&h2, Version::HTTP_2, "c"),
        (&h1, Version::HTTP_11, "d"),
    ] {
        let url = https_url(port, &format!("/api/v1/sse?user_id={user}"));
        let response = send(client.get(url)).await;
        assert_eq!(response.version(), version);
        streams.push(Client::from_response(response));
    }
    let idle = guard(TcpStream::connect(server.addr)).await.unwrap();

    server.signal("TERM");
    for stream in &mut streams {
        let ended = stream.read_to_end().await;
        assert!(
            ended.is_ok(),
            "the stream failed instead of ending: {ended:?}"
        );
    }
    let status = server.wait_exit().await;
    let output = server.output();
    assert!(status.success(), "{status:?}\n{output}");
    assert!(
        !output.contains("TLS handshake timed out"),
        "the idle connection held up the shutdown:\n{output}"
    );
    drop(idle);
}

// ---------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------

const APP: &str = "https://app.example.com";
const LOCAL_APP: &str = "http://localhost:3000";

/// A CORS preflight for `method` from `origin` to `path`.
async fn preflight(server: &Server, path: &str, origin: &str, method: &str) -> reqwest::Response {
    send(
        http()
            .request(reqwest::Method::OPTIONS, server.url(path))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "content-type, last-event-id",
            ),
    )
    .await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn no_cors_headers_by_default() {
    let server = Server::start(SSEOR, &[]).await;
    let answer = preflight(&server, "/api/v1/publish", APP, "POST").await;
    assert!(
        !answer
            .headers()
            .keys()
            .any(|name| name.as_str().starts_with("access-control-")),
        "{:?}",
        answer.headers()
    );
    let stream = send(
        http()
            .get(server.sse_url("carol", &[]))
            .header("origin", APP),
    )
    .await;
    assert_eq!(stream.status(), 200);
    assert_eq!(
        header(stream.headers(), "access-control-allow-origin"),
        None
    );
}

#[tokio::test]
async fn configured_origins_get_cors_answers_and_others_do_not() {
    let origins = format!("{APP}, {LOCAL_APP}");
    let server = Server::start(SSEOR, &["--cors-origins", &origins]).await;

    for origin in [APP, LOCAL_APP] {
        let answer = preflight(&server, "/api/v1/publish", origin, "POST").await;
        assert!(answer.status().is_success(), "{}", answer.status());
        let headers = answer.headers();
        assert_eq!(header(headers, "access-control-allow-origin"), Some(origin));
        assert_eq!(
            header(headers, "access-control-allow-credentials"),
            Some("true")
        );
        let methods = header(headers, "access-control-allow-methods").unwrap_or_default();
        for method in ["GET", "POST", "OPTIONS"] {
            assert!(methods.contains(method), "{methods}");
        }
        let allowed = header(headers, "access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        for name in [
            "authorization",
            "content-type",
            "last-event-id",
            "cache-control",
        ] {
            assert!(allowed.contains(name), "{allowed}");
        }
        assert_eq!(header(headers, "access-control-max-age"), Some("600"));
    }

    let refused = preflight(
        &server,
        "/api/v1/publish",
        "https://evil.example.com",
        "POST",
    )
    .await;
    assert_eq!(
        header(refused.headers(), "access-control-allow-origin"),
        None,
        "{:?}",
        refused.headers()
    );

    // The event stream itself, written straight to the socket on plain HTTP/1.1.
    let response = send(
        http()
            .get(server.sse_url("dave", &[]))
            .header("origin", APP),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    assert_eq!(
        header(response.headers(), "access-control-allow-credentials"),
        Some("true")
    );
    assert_stream_headers(response.headers());
    let mut stream = Client::from_response(response);
    let (status, body) = server
        .publish(&json!({"user_id": "dave", "event": {"type": "hello"}}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(stream.next_event().await.event, "hello");

    let other = send(
        http()
            .get(server.sse_url("erin", &[]))
            .header("origin", "https://evil.example.com"),
    )
    .await;
    assert_eq!(header(other.headers(), "access-control-allow-origin"), None);
}

#[tokio::test]
async fn cors_headers_reach_h2_streams_too() {
    let pki = Pki::new();
    let mut command = command(SSEOR);
    command
        .args(["--port", "0", "--log-format", "json"])
        .env("SSEOR_TLS_CERT", pki.cert())
        .env("SSEOR_TLS_KEY", pki.key())
        .env("SSEOR_CORS_ORIGINS", APP);
    let server = Server::spawn(command).await;
    let client = https_client(&pki, server.addr).build().unwrap();
    let url = https_url(server.addr.port(), "/api/v1/sse?user_id=frank");
    let response = send(client.get(url).header("origin", APP)).await;
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    assert_stream_headers(response.headers());
}

// ---------------------------------------------------------------------------------------
// Settings that cannot be used
// ---------------------------------------------------------------------------------------

/// The run stopped with exit code 2 and one line on stderr that contains every `expected`
/// piece and none of the `secrets`; it never listened.
fn assert_refused(run: &Finished, expected: &[&str], secrets: &[&str]) {
    let output = run.all_output();
    assert_eq!(run.status.code(), Some(2), "{output}");
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one line on stderr expected:\n{output}");
    for piece in expected {
        assert!(lines[0].contains(piece), "`{piece}` missing:\n{output}");
    }
    for secret in secrets {
        assert!(!output.contains(secret), "file contents leaked:\n{output}");
    }
    assert!(
        !output.contains("listening"),
        "it must not start:\n{output}"
    );
}

#[tokio::test]
async fn a_certificate_without_a_key_or_a_key_without_a_certificate_is_refused() {
    let pki = Pki::new();
    let run = run_to_exit(SSEOR, &["--port", "0"], &[("SSEOR_TLS_CERT", pki.cert())]).await;
    assert_refused(&run, &["SSEOR_TLS_KEY", "both"], &[]);
    let run = run_to_exit(SSEOR, &["--port", "0", "--tls-key", pki.key()], &[]).await;
    assert_refused(&run, &["SSEOR_TLS_CERT", "both"], &[]);
}

#[tokio::test]
async fn a_missing_certificate_file_is_refused() {
    let pki = Pki::new();
    let missing = pki.0.dir().join("nowhere.pem");
    let missing = missing.to_str().unwrap();
    let run = run_to_exit(
        SSEOR,
        &["--port", "0", "--tls-cert", missing, "--tls-key", pki.key()],
        &[],
    )
    .await;
    assert_refused(&run, &["cannot read", missing], &[]);
}

#[tokio::test]
async fn garbage_pem_files_are_refused_without_echoing_them() {
    let pki = Pki::new();
    let secret = "TOPSECRETBYTES";
    let not_pem = pki.file("not-pem.pem", &format!("hello {secret}\n"));
    let broken = pki.file(
        "broken.pem",
        &format!("-----BEGIN CERTIFICATE-----\n{secret}!!!\n-----END CERTIFICATE-----\n"),
    );
    let unterminated = pki.file(
        "unterminated.pem",
        &format!("-----BEGIN PRIVATE KEY-----\n{secret}\n"),
    );
    let cases = [
        (not_pem.as_str(), pki.key(), "no certificate"),
        (broken.as_str(), pki.key(), "not usable"),
        (pki.cert(), not_pem.as_str(), "no private key"),
        (pki.cert(), unterminated.as_str(), "not usable"),
    ];
    for (cert, key, why) in cases {
        let run = run_to_exit(
            SSEOR,
            &["--port", "0"],
            &[("SSEOR_TLS_CERT", cert), ("SSEOR_TLS_KEY", key)],
        )
        .await;
        assert_refused(&run, &[why], &[secret]);
    }
}

#[tokio::test]
async fn a_key_of_another_certificate_is_refused_without_echoing_it() {
    let pki = Pki::new();
    let other = Pki::new();
    let run = run_to_exit(
        SSEOR,
        &[
            "--port",
            "0",
            "--tls-cert",
            pki.cert(),
            "--tls-key",
            other.key(),
        ],
        &[],
    )
    .await;
    // A line of the key's base64 body must not appear anywhere.
    let key_line = other.0.key_pem.lines().nth(1).unwrap();
    assert_refused(&run, &["does not belong", other.key()], &[key_line]);
    // The matching pair starts.
    let server = start_tls(&other, &[]).await;
    assert_ne!(server.addr.port(), 0);
}

#[tokio::test]
async fn an_origin_that_is_not_scheme_host_port_is_refused() {
    for (origins, named) in [
        ("*", "`*`"),
        ("app.example.com", "`app.example.com`"),
        ("https://app.example.com/", "`https://app.example.com/`"),
        ("https://ok.example.com,ftp//x", "`ftp//x`"),
    ] {
        let run = run_to_exit(SSEOR, &["--port", "0"], &[("SSEOR_CORS_ORIGINS", origins)]).await;
        assert_refused(&run, &["SSEOR_CORS_ORIGINS", named], &[]);
        let run = run_to_exit(SSEOR, &["--port", "0", "--cors-origins", origins], &[]).await;
        assert_refused(&run, &["SSEOR_CORS_ORIGINS", named], &[]);
    }
}
