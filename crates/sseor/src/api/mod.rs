//! The standard HTTP API: subscribe, publish, counts and health, as JSON over HTTP.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /api/v1/sse?user_id=U&topic=T` | the event stream of user `U`, its topics (`topic` repeats) and broadcasts |
//! | `POST /api/v1/publish` | `{"user_id": "U", "event": {...}}`, `{"topic": "T", "event": {...}}` or `{"event": {...}}` (everyone); answers 202 `{"id", "delivered_locally"}` (embedded broker) or `{"id", "instances"}` (Redis) |
//! | `POST /api/v1/publish/batch` | `{"events": [...]}`, each item a single publish's body, at most [`Builder::max_batch_events`](crate::Builder::max_batch_events) (1,000): every item checked first (a bad one refuses the batch: 4xx `{"error", "index"}`), then 202 `{"results": [...]}`, one per item in order, each a single publish's answer or `{"error"}`; see [`Manager::publish_batch`] |
//! | `POST /api/v1/disconnect` | `{"user_id": "U", "topic": "T", "reason": "...", "reconnect": false}` (all but `user_id` optional): ends the streams of `U` (those that joined `T`) on every instance, each after a last `sseor.disconnect` event; 200 `{"disconnected", "instances"}`; see [`Manager::disconnect`] |
//! | `GET /api/v1/connections?user_id=U` | `{"user_id", "user", "total", "cluster_user", "cluster_total"}`: open streams of `U` and in all, on this instance and on every instance |
//! | `GET /api/v1/cursor?user_id=U&topic=T` | `{"cursor"}`: where the stream of `U`, its topics and broadcasts would start now (see [`Manager::cursor`]), for a page rendered now to open its stream from with `?last_event_id=` |
//! | `GET /api/v1/history?user_id=U&after=POSITION&limit=N` | (`topic=T` for a topic, neither for the broadcasts) `{"events": [{"id", "event"}], "more", "position"}`: what the target's history holds after `after` (from the oldest kept without it), at most `limit` (100 by default, 1000 at most), in order; 410 `{"error", "position"}` when the history no longer reaches `after` |
//! | `GET /api/v1/openapi.json` | the OpenAPI 3.1 document of every route here, each answer and error included; see [`openapi`] |
//! | `GET /api/v1/presence?topic=T&after=U&limit=N` | `{"topic", "users": [{"user_id", "connections"}], "more"}`: the users connected to `T` on every instance, by user id after `after`, at most `limit` (100 by default, 1000 at most); `?user_id=U` instead: `{"user_id", "online", "connections"}` (see [`Manager::presence_of_topic`], [`Manager::presence_of_user`]) |
//! | `GET /api/v1/topics?after=T&limit=N` | `{"topics": [{"topic", "connections"}], "more"}`: the topics with streams on every instance, by name, paged as above (see [`Manager::topics`]) |
//! | `GET /healthz` | 200 `{"status": "ok"}` while serving, 503 once shutting down |
//! | `GET /metrics` | this instance's metrics in the Prometheus (OpenMetrics) text format; see [`Manager::render_metrics`] |
//! | `GET /readyz` | 200 `{"status": "ready"}` when published events reach this instance (Redis subscription confirmed by a probe), else 503 with the reason |
//! | `GET /sseor.js`, `GET /sseor.mjs` | the browser client, as a plain script and as an ES module; see [`browser`] |
//! | `POST /api/v1/tickets` | with an authorizer: `{"ticket", "expires_in"}`, a single-use ticket for the stream the `Authorization` header grants, to open as `GET /api/v1/sse?ticket=...` |
//!
//! Errors are JSON `{"error": "..."}` with a 4xx or 5xx status.
//!
//! # Input
//!
//! * A JSON body is exactly one JSON value sent with `Content-Type: application/json`
//!   (415 otherwise): a page on another site cannot publish with a form or a `text/plain`
//!   "simple request".
//! * Fields are read strictly: an unknown field, a `null` or a value of another type is a
//!   400 naming the field. `{"user_id": null}` is not a broadcast: only the absence of both
//!   `user_id` and `topic` sends to everyone.
//! * Credentials are checked from the headers before any body is read; a body must arrive
//!   within [`Builder::body_timeout`](crate::Builder::body_timeout) (408 otherwise) and
//!   the bodies being received at once are bounded by
//!   [`Builder::body_bytes_in_flight`](crate::Builder::body_bytes_in_flight) (503 with
//!   `Retry-After` beyond).
//! * Query parameters must be UTF-8 once percent-decoded, and `user_id` is given at most
//!   once (400 otherwise).
//!
//! # Mounting it in an application
//!
//! [`router`] adds no fallback, so it merges or nests into an application's router whatever
//! fallback and state that router has; add [`not_found`] as the fallback for a JSON 404.
//!
//! ```
//! use axum::Router;
//! use axum::extract::State;
//! use axum::routing::get;
//!
//! #[derive(Clone)]
//! struct AppState {
//!     name: &'static str,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
//! let manager = sseor::Manager::new("").await?;
//! let app: Router = Router::new()
//!     .route("/", get(|State(app): State<AppState>| async move { app.name }))
//!     .fallback(|| async { "the application's own 404" })
//!     .merge(sseor::api::router(&manager))
//!     .merge(manager.router())
//!     .with_state(AppState { name: "shop" });
//! # drop(app); Ok(()) }
//! ```
//!
//! # With an authorizer
//!
//! When the manager has an [`Authorizer`](crate::auth::Authorizer) (see
//! [`Builder::authorizer`](crate::Builder::authorizer)):
//!
//! * `GET /api/v1/sse` needs a credential (or `?ticket=`); `user_id` may be left out (the
//!   credential's user) and must otherwise be that user; every `topic` must be granted.
//! * `POST /api/v1/publish`, `POST /api/v1/publish/batch`, `POST /api/v1/disconnect`,
//!   `GET /api/v1/connections`, `GET /api/v1/history`, `GET /api/v1/presence` and
//!   `GET /api/v1/topics` need a publisher's credential in the request headers: the
//!   publish token or a grant with the publish right. A batch (or a disconnect) counts as
//!   one publish against the publish rate.
//! * `GET /api/v1/cursor` needs the same publisher's credential: the backend that renders
//!   a page holds it, and the answer names a user.
//! * A request without a valid credential gets 401 with `WWW-Authenticate: Bearer`, one
//!   whose credential does not grant what it asks 403; both answer
//!   `{"error", "reason"}`, the reason being one of [`AuthReason`](crate::auth::AuthReason).
//! * An authorizer whose grants never carry the publish right
//!   ([`Authorizer::grants_publish`](crate::auth::Authorizer::grants_publish), such as
//!   [`HttpAuthorizer`](crate::auth::HttpAuthorizer), which asks the application about a
//!   session cookie) is not asked about publishers: they need the publish token.
//! * When the authorizer cannot decide (the application it asks is down or slow:
//!   [`Error::AuthUnavailable`](crate::Error::AuthUnavailable)): 503 with `Retry-After`.
//! * Over the publish rate: 429 with `Retry-After`.

mod batch;
pub mod browser;
mod disconnect;
mod handlers;
mod history;
mod input;
pub mod openapi;
mod presence;

use axum::Router;
use axum::handler::Handler;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter, on};
use http::{Method, StatusCode, Uri};

use crate::Manager;
pub use crate::error::json_error as error;
use handlers::{connections, health, publish, ready, subscribe, tickets};

/// One route of the API: the method and path it answers, and its handler.
struct Route {
    /// What `handler` answers; read by the test that compares the table with the document.
    #[cfg_attr(not(test), allow(dead_code))]
    method: Method,
    path: &'static str,
    handler: MethodRouter<Manager>,
}

/// `handler` for `method` on `path`: the method is named once, so the table below says
/// exactly what the router serves.
fn route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, Manager>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a method axum routes");
    Route {
        method,
        path,
        handler: on(filter, handler),
    }
}

/// Every route of the API, in one table: [`router`] serves these and nothing else, and a
/// test checks that the OpenAPI document ([`openapi`]) describes exactly these.
fn routes() -> Vec<Route> {
    let routes = vec![
        route(Method::GET, "/api/v1/sse", subscribe),
        route(Method::POST, "/api/v1/publish", publish),
        route(Method::POST, "/api/v1/publish/batch", batch::publish_batch),
        route(Method::POST, "/api/v1/disconnect", disconnect::disconnect),
        route(Method::GET, "/api/v1/connections", connections),
        route(Method::GET, "/api/v1/cursor", handlers::cursor),
        route(Method::GET, "/api/v1/history", history::history),
        route(Method::GET, "/api/v1/presence", presence::presence),
        route(Method::GET, "/api/v1/topics", presence::topics),
        route(Method::POST, "/api/v1/tickets", tickets),
        route(Method::GET, "/api/v1/openapi.json", openapi::document),
        route(Method::GET, "/healthz", health),
        route(Method::GET, "/readyz", ready),
        route(Method::GET, "/sseor.js", browser::script),
        route(Method::GET, "/sseor.mjs", browser::module),
    ];
    #[cfg(feature = "prometheus")]
    let routes = routes
        .into_iter()
        .chain([route(Method::GET, "/metrics", handlers::metrics)])
        .collect();
    routes
}

/// The standard API of `manager`, for an application router of any state type `S`.
///
/// It has no fallback of its own, so that it merges into an application that has one; a
/// method a route does not serve gets a JSON 405. For a JSON 404 on every other path, add
/// [`not_found`] as the fallback (the `sseor` server does).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
/// let manager = sseor::Manager::new("").await?;
/// let app: axum::Router = sseor::api::router(&manager)
///     .merge(manager.router())
///     .fallback(sseor::api::not_found);
/// # drop(app); Ok(()) }
/// ```
pub fn router<S>(manager: &Manager) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    // Routes are added in `routes()` only, so that the document's test sees every one.
    routes()
        .into_iter()
        .fold(Router::new(), |router, route| {
            router.route(route.path, route.handler)
        })
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(manager.clone())
}

/// The JSON 405 of the API's routes: `{"error": "POST is not allowed on /healthz"}`.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// A JSON 404, `{"error": "no route for GET /path"}`, to set as the fallback of an
/// application that serves only JSON (see [`router`]).
pub async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::routing::get;
    use tower::ServiceExt;

    #[derive(Clone)]
    struct AppState {
        name: &'static str,
    }

    async fn status_of(app: &Router, path: &str) -> StatusCode {
        let request = Request::get(path).body(Body::empty()).unwrap();
        app.clone().oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn merges_into_an_app_with_its_own_fallback_and_state() {
        let manager = Manager::new("").await.unwrap();
        let app: Router = Router::new()
            .route(
                "/",
                get(|State(app): State<AppState>| async move { app.name }),
            )
            .fallback(|| async { (StatusCode::IM_A_TEAPOT, "the application's own") })
            .merge(router(&manager))
            .merge(manager.router())
            .with_state(AppState { name: "shop" });
        assert_eq!(status_of(&app, "/").await, StatusCode::OK);
        assert_eq!(status_of(&app, "/healthz").await, StatusCode::OK);
        assert_eq!(status_of(&app, "/elsewhere").await, StatusCode::IM_A_TEAPOT);
        manager.close().await;
    }

    #[tokio::test]
    async fn nests_under_a_prefix_with_the_json_not_found() {
        let manager = Manager::new("").await.unwrap();
        let app: Router = Router::new()
            .nest("/sse", router(&manager).fallback(not_found))
            .fallback(|| async { StatusCode::IM_A_TEAPOT });
        assert_eq!(status_of(&app, "/sse/healthz").await, StatusCode::OK);
        assert_eq!(status_of(&app, "/sse/nothing").await, StatusCode::NOT_FOUND);
        assert_eq!(status_of(&app, "/other").await, StatusCode::IM_A_TEAPOT);
        manager.close().await;
    }
}
