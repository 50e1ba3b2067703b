//! [`serve`]: any axum application served by sseor's own server loop, shaped like
//! `axum::serve`, so that an application's event streams take the fast path.
//!
//! Under `axum::serve`, every open event stream keeps hyper's connection state (its read
//! and write buffers, the connection task): about 21 KiB per idle stream. sseor's server
//! loop reads the first request head of each connection itself; when the application
//! answers it with an event stream ([`Manager::handle_sse`](crate::Manager::handle_sse)),
//! the loop writes the stream straight to the socket and drops the HTTP connection's
//! state: about 2.2 KiB per idle stream. Every other request is served by hyper, as
//! `axum::serve` would.

use std::future::{Future, IntoFuture, Pending};
use std::io;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::server::{self, ConnectionRules, Transport};

/// How long [`Serve`] lets open connections finish after the shutdown signal, unless
/// [`Serve::shutdown_timeout`] says otherwise: the default of
/// [`Builder::shutdown_timeout`](crate::Builder::shutdown_timeout).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may go without a request, unless [`Serve::header_timeout`] says
/// otherwise: the default of [`Builder::header_timeout`](crate::Builder::header_timeout).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` with sseor's server loop, where event streams opened by
/// [`Manager::handle_sse`](crate::Manager::handle_sse) are written straight to their
/// sockets (about 2.2 KiB per idle stream, against about 21 KiB under `axum::serve`).
/// Shaped like `axum::serve`: swapping one for the other is one line.
///
/// Await the returned [`Serve`] to run it. Every request gets
/// [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo) (so
/// [`Builder::max_connections_per_ip`](crate::Builder::max_connections_per_ip) works
/// without `into_make_service_with_connect_info`); HTTP/1.1 and HTTP/2 (prior knowledge)
/// are both served.
///
/// # Shutting down
///
/// Event streams end only when their [`Manager`](crate::Manager) ends them, so give
/// [`with_graceful_shutdown`](Serve::with_graceful_shutdown) your signal wrapped by
/// [`Manager::shutdown_signal`](crate::Manager::shutdown_signal): when the signal comes
/// the manager begins closing and ends the open streams (cleanly, in paced batches over
/// its drain period), the server then stops accepting, lets the requests in flight finish
/// for up to the [shutdown timeout](Serve::shutdown_timeout) and closes whatever is
/// still open (a client that stopped reading, a slow request), and `serve` returns;
/// [`Manager::close`](crate::Manager::close) then finishes the rest. Calling
/// `close` first, from anywhere, ends the server the same way.
///
/// ```
/// use axum::Router;
/// use axum::extract::{Request, State};
/// use axum::response::{IntoResponse, Response};
/// use axum::routing::get;
/// use sseor::Manager;
///
/// async fn events(State(sse): State<Manager>, request: Request) -> Response {
///     // The user comes from the application's own authentication.
///     sse.handle_sse(&request, "user123").into_response()
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sse = Manager::builder().handle_signals(false).build().await?;
/// let app = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .route("/events", get(events))
///     .with_state(sse.clone());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// // Here the signal comes at once; an application waits for Ctrl-C or SIGTERM.
/// let signal = async {};
/// sseor::serve(listener, app) // was: axum::serve(listener, app)
///     .with_graceful_shutdown(sse.shutdown_signal(signal))
///     .await?;
/// sse.close().await;
/// # Ok(()) }
/// ```
pub fn serve(listener: TcpListener, app: Router) -> Serve<Pending<()>> {
    Serve {
        listener,
        app,
        signal: std::future::pending(),
        shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        header_timeout: DEFAULT_HEADER_TIMEOUT,
        transport: Transport::Plain,
    }
}

/// A server that [`serve`] set up: await it to run it; it completes once the shutdown
/// signal has come and every connection has ended or been closed at the shutdown timeout.
///
/// Its output is `std::io::Result<()>`, as `axum::serve`'s, so that code that awaits
/// `axum::serve(..)?` in a function returning `io::Result` compiles unchanged; it never
/// fails today (a failing `accept`, out of file descriptors say, is logged and retried).
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<S> {
    listener: TcpListener,
    app: Router,
    signal: S,
    shutdown_timeout: Duration,
    header_timeout: Duration,
    transport: Transport,
}

impl<S> Serve<S> {
    /// Shuts the server down once `signal` completes: it stops accepting, lets open
    /// connections finish for up to the [shutdown timeout](Self::shutdown_timeout), and
    /// closes the rest. Give it your signal wrapped by
    /// [`Manager::shutdown_signal`](crate::Manager::shutdown_signal) (see [`serve`]), so
    /// that the open event streams end first; given the bare signal, they would be cut
    /// off at the shutdown timeout.
    pub fn with_graceful_shutdown<F>(self, signal: F) -> Serve<F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Serve {
            listener: self.listener,
            app: self.app,
            signal,
            shutdown_timeout: self.shutdown_timeout,
            header_timeout: self.header_timeout,
            transport: self.transport,
        }
    }

    /// How long open connections may go on after the shutdown signal before they are
    /// closed (default [`DEFAULT_SHUTDOWN_TIMEOUT`], 10 s), counted from when the signal
    /// completes: with [`Manager::shutdown_signal`](crate::Manager::shutdown_signal),
    /// once the manager has ended the open streams.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long a connection may go without a request before it is closed (default
    /// [`DEFAULT_HEADER_TIMEOUT`], 30 s): the time allowed for its first request head, and
    /// between requests on a kept-alive connection. A connection that carries an open
    /// event stream is never idle.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Serves HTTPS: TLS on every connection, then HTTP/2 or HTTP/1.1 as the client
    /// chooses by ALPN (with the `tls` feature, on by default). Streams over TLS are served
    /// by hyper, not written straight to the socket.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: crate::TlsConfig) -> Self {
        self.transport = Transport::Tls(config.acceptor());
        self
    }
}

impl<S> IntoFuture for Serve<S>
where
    S: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let rules = ConnectionRules {
            header_timeout: self.header_timeout,
            // The application authenticates its own routes, and `axum::serve` checks no
            // `Host` either: the loopback check is the standalone server's, for its API.
            loopback_hosts_only: false,
        };
        let grace = self.shutdown_timeout;
        let signal = self.signal;
        let stop = async move {
            signal.await;
            grace
        };
        Box::pin(async move {
            server::serve(self.listener, self.app, self.transport, rules, stop).await;
            Ok(())
        })
    }
}

impl<S> std::fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener.local_addr().ok())
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("header_timeout", &self.header_timeout)
            .finish_non_exhaustive()
    }
}
