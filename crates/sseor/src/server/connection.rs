//! One accepted connection (plain, or TLS unless it chose HTTP/2). Its first request head
//! is read here: when it is an HTTP/1.x `GET` whose response is an event stream, the
//! stream is written straight to the connection, with no HTTP connection state kept
//! beside it (hyper's read and write buffers were most of an idle stream's memory). Every
//! other request, and every request after it on the same connection, is served by hyper.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Version;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::ConnectionRules;
use super::body::EventBody;
use super::handoff::{AcceptsHandoff, ConnectionAbort, Handoff};
use super::head::{Head, read_head};
use super::host::refuse_host;
use super::idle::{Activity, InFlightBody};
use super::socket::{Connection, Replay};
use super::writer::StreamWriter;

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

/// How long a connection that went idle may still finish the requests that raced its
/// closing (HTTP/2 streams opened before the client saw `GOAWAY`), and take to close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serves one connection (plain, or TLS that did not choose HTTP/2) until it ends, its
/// stream is cut off, or the server stops. An event stream goes on in a task of its own,
/// which holds only what the stream needs.
pub(crate) async fn serve<I: Connection>(socket: I, peer: SocketAddr, server: Arc<Server>) {
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
        let Some(socket) = socket.into_stream() else {
            return;
        };
        server.tracker.spawn(async move {
            tokio::select! {
                biased;
                () = abort.cancelled() => tracing::debug!(%peer, "stream cut off"),
                () = StreamWriter::new(socket, head, stream, chunked) => {},
            }
        });
    }
}

/// What an event stream takes over from its connection's first task: the connection, the
/// response head, the stream, and whether it is chunked.
type Handover<I> = (I, Vec<u8>, EventBody, bool);

/// Answers the connection's requests; returns the stream to write when the first one
/// opened one.
async fn handle<I: Connection>(
    mut socket: I,
    peer: SocketAddr,
    server: &Server,
    abort: &CancellationToken,
) -> Option<Handover<I>> {
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
async fn serve_with_hyper<I: Connection>(
    socket: I,
    received: Bytes,
    first: Option<Response>,
    peer: SocketAddr,
    server: &Server,
    abort: &CancellationToken,
) {
    serve_io(Replay::new(received, socket), first, peer, server, abort).await;
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
    Future = BoxFuture<'static, Result<Response, Infallible>>,
> + Clone
+ Send
+ 'static {
    let first = Arc::new(Mutex::new(first));
    hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let in_flight = activity.start();
        let answered = first.lock().unwrap_or_else(PoisonError::into_inner).take();
        let mut request = with_connection_extensions(request, peer, &abort);
        let router = router.clone();
        // Boxed: hyper keeps an HTTP/2 stream's task as large as this future for as long
        // as the stream lasts, though the future is done once the response head is out.
        let answer: BoxFuture<'static, _> = Box::pin(async move {
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
        });
        answer
    })
}
