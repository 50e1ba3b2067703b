//! One accepted connection. Its first request head is read here: when it is an HTTP/1.x
//! `GET` whose response is an event stream, the stream is written straight to the socket,
//! with no HTTP connection state kept beside it (hyper's read and write buffers were most
//! of an idle stream's memory). Every other request, and every request after it on the
//! same connection, is served by hyper.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::body::EventBody;
use super::handoff::{AcceptsHandoff, ConnectionAbort, Handoff};
use super::writer::StreamWriter;
use super::{ConnectionRules, MAX_HEAD_BYTES};

tokio::task_local! {
    /// The token that ends the HTTP/2 stream whose task is running; see
    /// [`StreamExecutor`].
    static STREAM_ABORT: CancellationToken;
}

/// Runs each HTTP/2 stream in a task of its own, as hyper's default executor does, with a
/// token that ends that task alone: dropping it resets the stream (`RST_STREAM`) while
/// the connection's other streams go on. A stalled stream cannot be ended through its
/// body, which hyper stops polling while the peer's flow-control window is closed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        let abort = CancellationToken::new();
        let cut_off = abort.clone();
        tokio::spawn(STREAM_ABORT.scope(abort, async move {
            // A cut-off stream must not end cleanly, even when its queue could drain.
            tokio::select! {
                biased;
                () = cut_off.cancelled() => {},
                _ = future => {},
            }
        }));
    }
}

/// What every connection of one server shares.
pub(crate) struct Server {
    pub(crate) router: Router,
    pub(crate) hyper: auto::Builder<StreamExecutor>,
    pub(crate) rules: ConnectionRules,
    /// Cancelled when the server stops accepting: idle connections close, hyper finishes
    /// the requests in flight.
    pub(crate) stopping: CancellationToken,
    /// Cancelled at the shutdown deadline: every connection closes at once.
    pub(crate) hard_stop: CancellationToken,
    /// Every connection's tasks, which shutdown waits for.
    pub(crate) tracker: TaskTracker,
}

/// The longest request head read here (hyper's own limit beyond: a longer one gets 431).
const MAX_HEAD: usize = MAX_HEAD_BYTES;

/// How long a connection that went idle may still finish the requests that raced its
/// closing (HTTP/2 streams opened before the client saw `GOAWAY`), and take to close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The most request headers parsed here (hyper's default limit).
const MAX_HEADERS: usize = 100;

/// Serves one connection until it ends, its stream is cut off, or the server stops. An
/// event stream goes on in a task of its own, which holds only what the stream needs.
pub(crate) async fn serve(socket: TcpStream, peer: SocketAddr, server: Arc<Server>) {
    // Cut off with the stream (a slow consumer) or with every connection (hard stop).
    let abort = server.hard_stop.child_token();
    // The abort comes first: a cut-off stream must not end cleanly, even when its queue
    // could drain.
    let stream = tokio::select! {
        biased;
        () = abort.cancelled() => None,
        stream = handle(socket, peer, &server, &abort) => stream,
    };
    if let Some((socket, head, stream, chunked)) = stream {
        server.tracker.spawn(async move {
            tokio::select! {
                biased;
                () = abort.cancelled() => tracing::debug!(%peer, "stream cut off"),
                () = StreamWriter::new(socket, head, stream, chunked) => {},
            }
        });
    }
}

/// What an event stream takes over from its connection's first task: the socket, the
/// response head, the stream, and whether it is chunked.
type Handover = (TcpStream, Vec<u8>, EventBody, bool);

/// Answers the connection's requests; returns the stream to write when the first one
/// opened one.
async fn handle(
    mut socket: TcpStream,
    peer: SocketAddr,
    server: &Server,
    abort: &CancellationToken,
) -> Option<Handover> {
    let head_timeout = server.rules.header_timeout;
    let (received, first) =
        match Box::pin(read_head(&mut socket, &server.stopping, head_timeout)).await {
            Head::Gone => return None,
            Head::Other(received) => (received, None),
            Head::Get(request, received) => {
                let chunked = request.version() == Version::HTTP_11;
                match Box::pin(route_get(*request, peer, server, abort)).await {
                    Routed::Stream(head, stream) => {
                        return Some((socket, response_head(&head, chunked), stream, chunked));
                    }
                    Routed::Response(response) => (received, Some(response)),
                }
            }
        };
    Box::pin(serve_with_hyper(
        socket, received, first, peer, server, abort,
    ))
    .await;
    None
}

/// What the router made of a `GET` read here.
enum Routed {
    /// An event stream, to write to the socket: the response (its head) and the stream.
    Stream(Response, EventBody),
    /// Any other response, for hyper to send.
    Response(Response),
}

/// Routes a `GET` read by the server loop, unless its `Host` is refused.
async fn route_get(
    request: Request,
    peer: SocketAddr,
    server: &Server,
    abort: &CancellationToken,
) -> Routed {
    if let Some(refusal) = refuse_host(&request, server.rules.loopback_hosts_only) {
        return Routed::Response(refusal);
    }
    let mut request = with_connection_extensions(request, peer, abort);
    request.extensions_mut().insert(AcceptsHandoff);
    let mut response = server
        .router
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|never: Infallible| match never {});
    let stream = response
        .extensions_mut()
        .remove::<Handoff>()
        .and_then(|handoff| handoff.take());
    match stream {
        Some(stream) => Routed::Stream(response, stream),
        None => Routed::Response(response),
    }
}

enum Head {
    /// The client left, or sent nothing in time, or the server is stopping.
    Gone,
    /// A `GET` without a body, and the bytes received so far (the head and maybe more).
    Get(Box<Request>, Bytes),
    /// Anything else (another method, HTTP/2, a malformed or oversized head), for hyper.
    Other(Bytes),
}

async fn read_head(
    socket: &mut TcpStream,
    stopping: &CancellationToken,
    timeout: Duration,
) -> Head {
    let deadline = tokio::time::Instant::now() + timeout;
    // No buffer until the first bytes arrive: an idle connection holds nothing here.
    tokio::select! {
        ready = socket.readable() => if ready.is_err() { return Head::Gone },
        () = stopping.cancelled() => return Head::Gone,
        () = tokio::time::sleep_until(deadline) => return Head::Gone,
    }
    let mut received = BytesMut::with_capacity(1024);
    loop {
        let read = tokio::select! {
            read = socket.read_buf(&mut received) => read,
            () = stopping.cancelled() => return Head::Gone,
            () = tokio::time::sleep_until(deadline) => return Head::Gone,
        };
        match read {
            Ok(0) if received.is_empty() => return Head::Gone,
            Ok(0) => return Head::Other(received.freeze()),
            Ok(_) => {}
            Err(_) => return Head::Gone,
        }
        match parse_get(&received) {
            Parsed::Get(request) => return Head::Get(request, received.freeze()),
            Parsed::Partial if received.len() < MAX_HEAD => {
                if received.capacity() == received.len() {
                    received.reserve(received.len().min(MAX_HEAD - received.len()));
                }
            }
            Parsed::Partial | Parsed::Other => return Head::Other(received.freeze()),
        }
    }
}

enum Parsed {
    Get(Box<Request>),
    Partial,
    Other,
}

/// Parses a request head that is a `GET` without a body and without an upgrade.
fn parse_get(received: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    match head.parse(received) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    }
    let version = match head.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Parsed::Other,
    };
    if head.method != Some("GET") {
        return Parsed::Other;
    }
    let Some(uri) = head.path.and_then(|path| http::Uri::try_from(path).ok()) else {
        return Parsed::Other;
    };
    let mut map = HeaderMap::with_capacity(head.headers.len());
    for header in head.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return Parsed::Other;
        };
        map.append(name, value);
    }
    // Two `Content-Length` headers are hyper's to judge (400 when they differ), so that
    // both ways of reading a request answer alike.
    if map
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .nth(1)
        .is_some()
    {
        return Parsed::Other;
    }
    let has_body = map.contains_key(http::header::TRANSFER_ENCODING)
        || map
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|length| length != "0");
    if has_body || map.contains_key(http::header::UPGRADE) {
        return Parsed::Other;
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    Parsed::Get(Box::new(request))
}

fn with_connection_extensions<B>(
    mut request: http::Request<B>,
    peer: SocketAddr,
    abort: &CancellationToken,
) -> http::Request<B> {
    let extensions = request.extensions_mut();
    extensions.insert(ConnectionAbort(abort.clone()));
    extensions.insert(ConnectInfo(peer));
    request
}

/// The status line and headers of an event stream's response.
fn response_head(response: &Response, chunked: bool) -> Vec<u8> {
    let status = response.status();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"date: ");
    head.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    head.extend_from_slice(b"\r\n");
    // An HTTP/1.0 client reads the stream until the connection closes.
    if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    } else {
        head.extend_from_slice(b"connection: close\r\n\r\n");
    }
    head
}

/// Serves the connection with hyper, first replaying the bytes already read from it. When
/// the first request was already answered (`first`), hyper parses it again and gets that
/// response, so that no handler runs twice.
async fn serve_with_hyper(
    socket: TcpStream,
    received: Bytes,
    first: Option<Response>,
    peer: SocketAddr,
    server: &Server,
    abort: &CancellationToken,
) {
    let (reader, writer) = socket.into_split();
    let replayed_first = std::io::Cursor::new(received).chain(reader);
    let io = tokio::io::join(replayed_first, writer);
    serve_io(io, first, peer, server, abort).await;
}

/// Serves a connection's requests with hyper (HTTP/1.x or HTTP/2, as the client speaks)
/// until it ends; once the server stops accepting, finishes the requests in flight and
/// closes. `first`, when set, answers the first request. A connection with no request in
/// flight for the header timeout is closed: it must not hold a socket and buffers for
/// nothing (an HTTP/2 connection that opens no stream, an idle keep-alive connection).
pub(crate) async fn serve_io<I>(
    io: I,
    first: Option<Response>,
    peer: SocketAddr,
    server: &Server,
    abort: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (activity, mut idle) = Activity::new();
    let service = request_service(
        first,
        peer,
        server.router.clone(),
        server.rules.loopback_hosts_only,
        abort.clone(),
        activity,
    );
    let connection = server
        .hyper
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut idle_timeout = server.rules.header_timeout;
    let mut closing_since = None;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = server.stopping.cancelled(), if closing_since.is_none() => {
                connection.as_mut().graceful_shutdown();
                break connection.await;
            }
            () = idle.expired(idle_timeout, closing_since) => {
                if closing_since.is_some() {
                    tracing::debug!(%peer, "idle connection closed");
                    break Ok(());
                }
                // A polite close first (HTTP/2 `GOAWAY`); a client that ignores it is
                // dropped once idle for the grace period.
                connection.as_mut().graceful_shutdown();
                closing_since = Some(tokio::time::Instant::now());
                idle_timeout = CLOSE_GRACE;
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}

/// The service hyper calls for each request of one connection.
fn request_service(
    first: Option<Response>,
    peer: SocketAddr,
    router: Router,
    loopback_hosts_only: bool,
    abort: CancellationToken,
    activity: Activity,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    let first = Arc::new(Mutex::new(first));
    hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let in_flight = activity.start();
        let answered = first.lock().unwrap_or_else(PoisonError::into_inner).take();
        let mut request = with_connection_extensions(request, peer, &abort);
        let router = router.clone();
        async move {
            // An HTTP/2 request runs in its stream's task: a cut-off ends that stream only.
            if let Ok(stream) = STREAM_ABORT.try_with(CancellationToken::clone) {
                request.extensions_mut().insert(ConnectionAbort(stream));
            }
            let response = match (answered, refuse_host(&request, loopback_hosts_only)) {
                (Some(response), _) | (None, Some(response)) => response,
                (None, None) => router
                    .oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|never: Infallible| match never {}),
            };
            Ok(response.map(|body| {
                Body::new(InFlightBody {
                    body,
                    _in_flight: in_flight,
                })
            }))
        }
    })
}

// ---------------------------------------------------------------------------------------
// Idle connections: requests in flight, and since when there were none
// ---------------------------------------------------------------------------------------

/// How busy a connection is.
#[derive(Clone, Copy, Debug)]
struct Load {
    in_flight: usize,
    /// When the last request ended (or the connection started).
    idle_since: tokio::time::Instant,
}

/// Counts a connection's requests in flight, from the moment hyper hands one over until
/// its response body is dropped (sent, or abandoned).
#[derive(Clone)]
struct Activity(Arc<watch::Sender<Load>>);

/// One request in flight; it ends when this is dropped.
struct InFlight(Arc<watch::Sender<Load>>);

/// Waits for a connection to be idle too long.
struct Idle(watch::Receiver<Load>);

impl Activity {
    fn new() -> (Self, Idle) {
        let (sender, receiver) = watch::channel(Load {
            in_flight: 0,
            idle_since: tokio::time::Instant::now(),
        });
        (Self(Arc::new(sender)), Idle(receiver))
    }

    fn start(&self) -> InFlight {
        self.0.send_modify(|load| load.in_flight += 1);
        InFlight(self.0.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|load| {
            load.in_flight -= 1;
            if load.in_flight == 0 {
                load.idle_since = tokio::time::Instant::now();
            }
        });
    }
}

impl Idle {
    /// Completes once the connection has had no request in flight for `timeout`, counted
    /// from `not_before` at the earliest.
    async fn expired(&mut self, timeout: Duration, not_before: Option<tokio::time::Instant>) {
        loop {
            let load = *self.0.borrow_and_update();
            if load.in_flight == 0 {
                let since = not_before.map_or(load.idle_since, |at| at.max(load.idle_since));
                tokio::select! {
                    () = tokio::time::sleep_until(since + timeout) => return,
                    changed = self.0.changed() => if changed.is_err() { return },
                }
            } else if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
struct InFlightBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for InFlightBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

// ---------------------------------------------------------------------------------------
// The `Host` of a request
// ---------------------------------------------------------------------------------------

/// The answer to a request whose `Host` is refused: an HTTP/1.1 request needs exactly one
/// (RFC 9112, section 3.2), and a server that trusts whoever reaches its loopback address
/// answers only loopback names, or any web page could read it through DNS rebinding.
fn refuse_host<B>(request: &http::Request<B>, loopback_hosts_only: bool) -> Option<Response> {
    let hosts = request.headers().get_all(http::header::HOST);
    let count = hosts.iter().count();
    if request.version() == Version::HTTP_11 && count != 1 {
        let message = if count == 0 {
            "an HTTP/1.1 request needs a Host header"
        } else {
            "an HTTP/1.1 request needs exactly one Host header, not several"
        };
        return Some(refusal(http::StatusCode::BAD_REQUEST, message));
    }
    if !loopback_hosts_only {
        return None;
    }
    let authority = request.uri().authority().map(http::uri::Authority::as_str);
    let names = hosts
        .iter()
        .map(|value| value.to_str().unwrap_or("\u{fffd}"))
        .chain(authority);
    for name in names {
        if !is_loopback_name(name) {
            let message = format!(
                "the host `{}` is not a loopback name: this server listens on loopback \
                 without authentication and answers only localhost, *.localhost, \
                 127.x.x.x and [::1]",
                name.escape_debug()
            );
            return Some(refusal(http::StatusCode::FORBIDDEN, &message));
        }
    }
    None
}

/// Whether `host` (with or without a port) names this machine's loopback interface:
/// `localhost`, `*.localhost`, `127.x.x.x` or `[::1]`.
fn is_loopback_name(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((ip, rest)) if rest.is_empty() || is_port(rest) => {
                return ip
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok_and(|ip| ip.is_loopback());
            }
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if is_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        },
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `text` is `:` followed by a port number.
fn is_port(text: &str) -> bool {
    text.strip_prefix(':')
        .is_some_and(|port| port.parse::<u16>().is_ok())
}

/// A JSON error answer, as every other refusal of the API.
fn refusal(status: http::StatusCode, message: &str) -> Response {
    crate::error::json_error(status, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_plain_gets() {
        assert!(matches!(
            parse_get(b"GET /sse?user_id=a HTTP/1.1\r\nHost: x\r\n\r\n"),
            Parsed::Get(_)
        ));
        assert!(matches!(
            parse_get(b"GET /sse HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
        for other in [
            &b"POST /publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"[..],
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
        ] {
            assert!(matches!(parse_get(other), Parsed::Other), "{other:?}");
        }
    }

    #[test]
    fn loopback_names_are_localhost_127_and_ipv6_one_with_any_port() {
        for host in [
            "localhost",
            "localhost.",
            "LocalHost:80",
            "a.b.localhost:9090",
            "127.0.0.1",
            "127.255.0.9:1",
            "[::1]",
            "[::1]:443",
        ] {
            assert!(is_loopback_name(host), "{host}");
        }
        for host in [
            "",
            "example.com",
            "localhost.example.com",
            "notlocalhost",
            "127.0.0.1.nip.io",
            "128.0.0.1",
            "0.0.0.0",
            "[::2]",
            "[::1",
            "[::1]x",
            "::1",
            "localhost:99999",
            "localhost:",
        ] {
            assert!(!is_loopback_name(host), "{host}");
        }
    }
}
