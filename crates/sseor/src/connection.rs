//! One accepted connection. Its first request head is read here: when it is an HTTP/1.x
//! `GET` whose response is an event stream, the stream is written straight to the socket,
//! with no HTTP connection state kept beside it (hyper's read and write buffers were most
//! of an idle stream's memory). Every other request, and every request after it on the
//! same connection, is served by hyper.

use std::convert::Infallible;
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
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::stream::{AcceptsHandoff, EventBody, Handoff};
use crate::writer::StreamWriter;

/// Ends at once the stream a request opens: on HTTP/1 by closing the connection, on
/// HTTP/2 by resetting that stream alone. Put in every request's extensions, so that a
/// stream whose client stopped reading can be cut off.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionAbort(pub(crate) CancellationToken);

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
    /// Cancelled when the server stops accepting: idle connections close, hyper finishes
    /// the requests in flight.
    pub(crate) stopping: CancellationToken,
    /// Cancelled at the shutdown deadline: every connection closes at once.
    pub(crate) hard_stop: CancellationToken,
    /// Every connection's tasks, which shutdown waits for.
    pub(crate) tracker: TaskTracker,
}

/// The longest request head read here (hyper's own limit beyond: a longer one gets 431).
const MAX_HEAD: usize = 8192;

/// How long a new connection may take to send its first request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

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
    let (received, first) = match Box::pin(read_head(&mut socket, &server.stopping)).await {
        Head::Gone => return None,
        Head::Other(received) => (received, None),
        Head::Get(request, received) => {
            let chunked = request.version() == Version::HTTP_11;
            let mut request = with_connection_extensions(*request, peer, abort);
            request.extensions_mut().insert(AcceptsHandoff);
            let mut response = Box::pin(server.router.clone().oneshot(request))
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            let stream = response
                .extensions_mut()
                .remove::<Handoff>()
                .and_then(|handoff| handoff.take());
            if let Some(stream) = stream {
                let head = response_head(&response, chunked);
                return Some((socket, head, stream, chunked));
            }
            (received, Some(response))
        }
    };
    Box::pin(serve_with_hyper(
        socket, received, first, peer, server, abort,
    ))
    .await;
    None
}

enum Head {
    /// The client left, or sent nothing in time, or the server is stopping.
    Gone,
    /// A `GET` without a body, and the bytes received so far (the head and maybe more).
    Get(Box<Request>, Bytes),
    /// Anything else (another method, HTTP/2, a malformed or oversized head), for hyper.
    Other(Bytes),
}

async fn read_head(socket: &mut TcpStream, stopping: &CancellationToken) -> Head {
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
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
/// closes. `first`, when set, answers the first request.
pub(crate) async fn serve_io<I>(
    io: I,
    first: Option<Response>,
    peer: SocketAddr,
    server: &Server,
    abort: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let first = Arc::new(Mutex::new(first));
    let abort = abort.clone();
    let router = server.router.clone();
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let answered = first.lock().unwrap_or_else(PoisonError::into_inner).take();
        let mut request = with_connection_extensions(request, peer, &abort);
        let router = router.clone();
        async move {
            // An HTTP/2 request runs in its stream's task: a cut-off ends that stream only.
            if let Ok(stream) = STREAM_ABORT.try_with(CancellationToken::clone) {
                request.extensions_mut().insert(ConnectionAbort(stream));
            }
            match answered {
                Some(response) => Ok::<_, Infallible>(response),
                None => router.oneshot(request.map(Body::new)).await,
            }
        }
    });
    let connection = server
        .hyper
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = server.stopping.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
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
        ] {
            assert!(matches!(parse_get(other), Parsed::Other), "{other:?}");
        }
    }
}
