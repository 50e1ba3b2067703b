//! The socket side: the server loop that accepts connections, reads each connection's
//! first request head, serves a router on it, writes event streams to their sockets, and
//! shuts down within a deadline even while streams are open.
//!
//! * [`connection`]: one accepted connection: its first `GET` routed here, the rest served
//!   by hyper; [`head`] reads that first head, [`host`] checks its `Host`, [`idle`] closes
//!   a connection with nothing to do.
//! * [`handoff`]: how an event stream passes from a response to the server loop.
//! * [`body`]: the response body of one stream, under any server.
//! * [`writer`]: a handed-over stream written straight to its connection; [`socket`]: the
//!   connections it writes to, plain or TLS.
//! * `tls`: TLS termination with rustls (feature `tls`).

pub(crate) mod body;
mod connection;
pub(crate) mod handoff;
mod head;
mod host;
mod idle;
#[cfg(feature = "tls")]
mod sealed;
mod socket;
#[cfg(feature = "tls")]
pub(crate) mod tls;
mod writer;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use connection::{Server, StreamExecutor};

/// hyper's per-connection buffer limit, in bytes (its minimum), which is also the limit
/// of an HTTP/1.1 request head.
const MAX_BUF_SIZE: usize = 8192;

/// The largest request head, HTTP/1.1 or HTTP/2 (a longer one gets 431).
pub(crate) const MAX_HEAD_BYTES: usize = MAX_BUF_SIZE;

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

/// How often a failure to accept (typically: out of file descriptors) is logged at most.
/// While the limit is hit every attempt fails; one line per attempt would flood the log.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How long to wait before accepting again after a failure: a failing `accept` returns at
/// once, and retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What the server loop enforces on every connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionRules {
    /// How long a connection may go without a request in flight: the time allowed for
    /// the first request head, between requests on a kept-alive connection, and for an
    /// HTTP/2 connection to open a stream.
    pub(crate) header_timeout: Duration,
    /// Refuse requests whose `Host` is not a loopback name (DNS rebinding).
    pub(crate) loopback_hosts_only: bool,
}

/// Counts failed accepts and logs them at most once per [`ACCEPT_ERROR_LOG_INTERVAL`].
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<tokio::time::Instant>,
    failed_since_logged: u64,
}

impl AcceptErrors {
    fn record(&mut self, error: &io::Error) {
        self.failed_since_logged += 1;
        let now = tokio::time::Instant::now();
        let due = self
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= ACCEPT_ERROR_LOG_INTERVAL);
        if due {
            tracing::warn!(
                %error,
                failed = self.failed_since_logged,
                "failed to accept connections (counted since the previous such line); \
                 retrying every 50 ms"
            );
            self.last_logged = Some(now);
            self.failed_since_logged = 0;
        }
    }
}

/// How accepted connections are served.
#[derive(Clone)]
pub(crate) enum Transport {
    /// Plain TCP: the first request head is read by the server loop (see `connection`).
    Plain,
    /// TLS first, then HTTP/2 (hyper) or HTTP/1.1 (as `Plain`), as negotiated by ALPN.
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
    rules: ConnectionRules,
    stop: impl Future<Output = Duration>,
) {
    let mut hyper = auto::Builder::new(StreamExecutor);
    // hyper's smallest buffer limit: its read buffer otherwise grows to 16 KiB per
    // connection. Request heads stay under 8 KiB.
    hyper
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(rules.header_timeout)
        .max_buf_size(MAX_BUF_SIZE);
    // The same request head limit as HTTP/1.1 (hyper's default for HTTP/2 is 16 KiB).
    hyper
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    let server = Arc::new(Server {
        router,
        hyper,
        rules,
        stopping: CancellationToken::new(),
        hard_stop: CancellationToken::new(),
        tracker: TaskTracker::new(),
    });
    let connections = &server.tracker;
    tokio::pin!(stop);
    let mut accept_errors = AcceptErrors::default();

    let grace = loop {
        let (socket, peer) = tokio::select! {
            grace = &mut stop => break grace,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    accept_errors.record(&error);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        match &transport {
            Transport::Plain => connections.spawn(connection::serve(socket, peer, server.clone())),
            #[cfg(feature = "tls")]
            Transport::Tls(acceptor) => {
                connections.spawn(tls::serve(socket, peer, acceptor.clone(), server.clone()))
            }
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
