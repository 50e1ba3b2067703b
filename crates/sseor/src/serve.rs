//! The HTTP server loop: accepts connections, serves a router on each, and shuts down
//! within a deadline even while streams are open.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection::{self, Server, StreamExecutor};

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

/// How accepted connections are served.
#[derive(Clone)]
pub(crate) enum Transport {
    /// Plain TCP: the first request head is read by the server loop (see `connection`).
    Plain,
    /// TLS first, then hyper, HTTP/2 or HTTP/1.1 as negotiated by ALPN.
    #[cfg(feature = "tls")]
    Tls(tokio_rustls::TlsAcceptor),
}

/// Serves `router` on `listener` until `stop` completes, then stops accepting, lets open
/// connections finish for up to the grace period `stop` returns, and closes whatever is
/// left.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    transport: Transport,
    stop: impl Future<Output = Duration>,
) {
    let mut hyper = auto::Builder::new(StreamExecutor);
    // hyper's smallest buffer limit: its read buffer otherwise grows to 16 KiB per
    // connection. Request heads stay under 8 KiB.
    hyper
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(MAX_BUF_SIZE);
    hyper.http2().timer(TokioTimer::new());
    let server = Arc::new(Server {
        router,
        hyper,
        stopping: CancellationToken::new(),
        hard_stop: CancellationToken::new(),
        tracker: TaskTracker::new(),
    });
    let connections = &server.tracker;
    tokio::pin!(stop);

    let grace = loop {
        let (socket, peer) = tokio::select! {
            grace = &mut stop => break grace,
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
        let _ = socket.set_nodelay(true);
        match &transport {
            Transport::Plain => connections.spawn(connection::serve(socket, peer, server.clone())),
            #[cfg(feature = "tls")]
            Transport::Tls(acceptor) => connections.spawn(crate::tls::serve(
                socket,
                peer,
                acceptor.clone(),
                server.clone(),
            )),
        };
    };
    drop(listener);

    server.stopping.cancel();
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown deadline; closing them"
        );
        server.hard_stop.cancel();
        connections.wait().await;
    }
}
