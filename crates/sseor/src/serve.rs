//! The HTTP server loop: accepts connections, serves a router on each, and shuts down
//! within a deadline even while streams are open.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Closes the HTTP connection a request arrived on; put in every request's extensions by
/// the server loop, so a stream whose client stopped reading can be cut off.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionAbort(pub(crate) CancellationToken);

/// hyper's per-connection buffer limit, in bytes (its minimum).
const MAX_BUF_SIZE: usize = 8192;

/// How many connections may wait to be accepted. A burst of reconnecting clients (after
/// a deploy, say) overflows a small queue, and each dropped SYN costs its client a second.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener for `addr` (`":PORT"` for every interface, as in Go, or `"HOST:PORT"`)
/// with a deep accept queue.
pub(crate) async fn bind(addr: &str) -> crate::Result<TcpListener> {
    let invalid = || crate::Error::InvalidAddress(addr.to_owned());
    let (host, port) = addr.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    let host = match host {
        "" => "0.0.0.0",
        host => host.trim_start_matches('[').trim_end_matches(']'),
    };
    let address = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| invalid())?
        .next()
        .ok_or_else(invalid)?;
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    Ok(socket.listen(LISTEN_BACKLOG)?)
}

/// Serves `router` on `listener` until `stop` completes, then stops accepting, lets open
/// connections finish for up to `grace`, and closes whatever is left.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let connections = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's smallest buffer limit: its read buffer otherwise grows to 16 KiB on every
    // idle stream, most of an idle connection's memory. Request heads stay under 8 KiB.
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(MAX_BUF_SIZE);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(stop);

    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let abort = CancellationToken::new();
        let service = connection_service(router.clone(), peer, abort.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let hard_stop = hard_stop.clone();
        connections.spawn(async move {
            tokio::select! {
                result = connection => if let Err(error) = result {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                },
                () = abort.cancelled() => tracing::debug!(%peer, "connection closed by the server"),
                () = hard_stop.cancelled() => {},
            }
        });
    }
    drop(listener);

    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown deadline; closing them"
        );
        hard_stop.cancel();
    }
    connections.close();
    connections.wait().await;
}

fn connection_service(
    router: Router,
    peer: SocketAddr,
    abort: CancellationToken,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>>
             + Send
             + 'static,
> + Clone
+ Send
+ 'static {
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let extensions = request.extensions_mut();
        extensions.insert(ConnectionAbort(abort.clone()));
        extensions.insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    })
}
