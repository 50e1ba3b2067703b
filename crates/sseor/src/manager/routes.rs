//! The seed's Go-style façade: a route table of handlers that get the [`Manager`], and the
//! server loop that serves it ([`Manager::route`], [`Manager::listen_and_serve`]). An
//! axum application needs none of it: its own handlers call
//! [`Manager::handle_sse`].

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, PoisonError};

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use tokio::net::TcpListener;

use super::Manager;
use crate::server::{bind, serve};
use crate::{Error, Result};

/// A handler of [`Manager::route`], as stored.
pub(super) type RouteHandler =
    Arc<dyn Fn(Request, Manager) -> BoxFuture<'static, Response> + Send + Sync>;

impl Manager {
    /// Registers `handler` for `path` (any method), in the syntax of axum's router (`/a/{id}`).
    /// The handler gets the request and this manager, and usually ends with
    /// [`handle_sse`](Self::handle_sse).
    ///
    /// # Errors
    /// [`Error::InvalidRoute`] when the path does not start with `/` or conflicts with a route
    /// already registered.
    pub fn route<H, F, R>(&self, path: &str, handler: H) -> Result<()>
    where
        H: Fn(Request, Manager) -> F + Send + Sync + 'static,
        F: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        let handler: RouteHandler = Arc::new(move |request, manager| {
            let response = handler(request, manager);
            Box::pin(async move { response.await.into_response() })
        });
        let mut routes = self
            .inner
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        routes.push((path.to_owned(), handler));
        // axum panics on a bad or conflicting path: find out now, while it can be refused.
        let check =
            std::panic::catch_unwind(AssertUnwindSafe(|| build_router::<()>(&routes, self)));
        if let Err(panic) = check {
            routes.pop();
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "rejected by the router".to_owned());
            return Err(Error::InvalidRoute(format!("`{path}`: {reason}")));
        }
        Ok(())
    }

    /// An axum router with every route registered through [`route`](Self::route), to serve
    /// or to merge into an application's own router, whatever its state type `S`.
    ///
    /// ```
    /// use axum::Router;
    /// use axum::extract::{Request, State};
    /// use axum::response::IntoResponse;
    /// use axum::routing::get;
    ///
    /// #[derive(Clone)]
    /// struct AppState {
    ///     greeting: &'static str,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// let sse = sseor::Manager::new("").await?;
    /// sse.route("/events", |request: Request, manager: sseor::Manager| async move {
    ///     manager.handle_sse(&request, "user123").into_response()
    /// })?;
    /// let app: Router = Router::new()
    ///     .route("/", get(|State(app): State<AppState>| async move { app.greeting }))
    ///     .merge(sse.router())
    ///     .with_state(AppState { greeting: "hello" });
    /// # drop(app); Ok(()) }
    /// ```
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let routes = self
            .inner
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        build_router(&routes, self)
    }

    /// Serves the registered routes on `addr` until [`close`](Self::close) (or SIGTERM or
    /// Ctrl-C, unless turned off in the builder). `addr` is `":9090"` (every interface, as
    /// in Go) or `"host:port"`.
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] for an address of another form, [`Error::Io`] when it
    /// cannot be bound.
    pub async fn listen_and_serve(&self, addr: &str) -> Result<()> {
        let listener = bind(addr).await?;
        tracing::info!(address = %listener.local_addr()?, "listening");
        self.serve(listener, self.router()).await
    }

    /// Binds `addr` (`":9090"` or `"host:port"`) with a deep accept queue, for
    /// [`serve`](Self::serve).
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] for an address of another form or a host that does not
    /// resolve, [`Error::Io`] when it cannot be bound.
    pub async fn bind(addr: &str) -> Result<TcpListener> {
        bind(addr).await
    }

    /// Serves `router` on `listener`, like [`listen_and_serve`](Self::listen_and_serve).
    /// Returns once every connection has ended, at most the shutdown timeout after
    /// shutdown began.
    ///
    /// # Errors
    /// [`Error::Closed`] when the manager is already closed.
    pub async fn serve(&self, listener: TcpListener, router: Router) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let _running = self.inner.servers.token();
        // The server goes on accepting during the drain, so that health checks see 503
        // and new streams are refused with a status rather than a closed port.
        let stop = {
            let manager = self.clone();
            async move {
                manager.stopped(manager.inner.config.handle_signals).await;
                manager.begin_close();
                manager.inner.drained.cancelled().await;
                manager.remaining_shutdown_time()
            }
        };
        let config = &self.inner.config;
        let rules = config.connection_rules(&listener);
        serve(listener, router, config.transport(), rules, stop).await;
        Ok(())
    }
}

fn build_router<S>(routes: &[(String, RouteHandler)], manager: &Manager) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes
        .iter()
        .fold(Router::new(), |router, (path, handler)| {
            let handler = handler.clone();
            let manager = manager.clone();
            router.route(
                path,
                axum::routing::any(move |request: Request| handler(request, manager.clone())),
            )
        })
}
