//! The standard HTTP API: subscribe, publish, counts and health, as JSON over HTTP.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /api/v1/sse?user_id=U&topic=T` | the event stream of user `U`, its topics (`topic` repeats) and broadcasts |
//! | `POST /api/v1/publish` | `{"user_id": "U", "event": {...}}`, `{"topic": "T", "event": {...}}` or `{"event": {...}}` (everyone); answers 202 `{"id", "delivered_locally"}` (embedded broker) or `{"id", "instances"}` (Redis) |
//! | `GET /api/v1/connections?user_id=U` | `{"user_id", "user", "total", "cluster_user", "cluster_total"}`: open connections of `U` and in all, on this instance and on every instance |
//! | `GET /healthz` | 200 `{"status": "ok"}` while serving, 503 once shutting down |
//! | `GET /metrics` | this instance's metrics in the Prometheus (OpenMetrics) text format; see [`Manager::render_metrics`] |
//! | `GET /readyz` | 200 `{"status": "ready"}` when published events reach this instance (Redis subscription confirmed by a probe), else 503 with the reason |
//! | `GET /sseor.js`, `GET /sseor.mjs` | the browser client, as a plain script and as an ES module; see [`browser`](crate::browser) |
//! | `POST /api/v1/tickets` | with an authorizer: `{"ticket", "expires_in"}`, a single-use ticket for the stream the `Authorization` header grants, to open as `GET /api/v1/sse?ticket=...` |
//!
//! Errors are JSON `{"error": "..."}` with a 4xx or 5xx status.
//!
//! # With an authorizer
//!
//! When the manager has an [`Authorizer`](crate::auth::Authorizer) (see
//! [`Builder::authorizer`](crate::Builder::authorizer)):
//!
//! * `GET /api/v1/sse` needs a credential (or `?ticket=`); `user_id` may be left out (the
//!   credential's user) and must otherwise be that user; every `topic` must be granted.
//! * `POST /api/v1/publish` and `GET /api/v1/connections` need a publisher's credential in
//!   the request headers: the publish token or a grant with the publish right.
//! * A request without a valid credential gets 401 with `WWW-Authenticate: Bearer`, one
//!   whose credential does not grant what it asks 403; both answer
//!   `{"error", "reason"}`, the reason being one of [`AuthReason`](crate::auth::AuthReason).
//! * Over the publish rate: 429 with `Retry-After`.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{Method, StatusCode, Uri};
use serde::Deserialize;
use serde_json::json;

use crate::{Error, Event, Manager, Subscription, Target};

/// The standard API of `manager`, with a JSON 404 for every other path.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
/// let manager = sseor::Manager::new("").await?;
/// let app = sseor::api::router(&manager).merge(manager.router());
/// # drop(app); Ok(()) }
/// ```
pub fn router(manager: &Manager) -> Router {
    Router::new()
        .route("/api/v1/sse", get(subscribe))
        .route("/api/v1/publish", post(publish))
        .route("/api/v1/connections", get(connections))
        .route("/api/v1/tickets", post(tickets))
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/sseor.js", get(crate::browser::script))
        .route("/sseor.mjs", get(crate::browser::module))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(manager.max_body_bytes()))
        .with_state(manager.clone())
}

/// A JSON error response: `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

pub(crate) fn error_response(error: &Error) -> Response {
    let status = match error {
        Error::InvalidEvent(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::InvalidTarget(_) => StatusCode::BAD_REQUEST,
        Error::Closed | Error::Broker(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::TooManyConnections { limit, .. } => match limit {
            crate::ConnectionLimit::Total => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::TOO_MANY_REQUESTS,
        },
        Error::Auth { reason, message } => return crate::auth::refusal(*reason, message),
        Error::RateLimited { retry_after } => {
            return crate::auth::rate_limited(*retry_after, &error.to_string());
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = self::error(status, error.to_string());
    if let Error::TooManyConnections { retry_after, .. } = error {
        // Whole seconds, at least one: what `Retry-After` can say.
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, seconds.into());
    }
    response
}

async fn subscribe(
    State(manager): State<Manager>,
    Query(params): Query<Vec<(String, String)>>,
    request: Request,
) -> Result<Response, Error> {
    let value_of = |key: &'static str| {
        params
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let (parts, _) = request.into_parts();
    let subscription = match manager.authorize_stream(&parts).await? {
        Some(grant) => {
            // Every `user_id` given must be the credential's user.
            let asked = value_of("user_id").find(|asked| *asked != grant.user_id());
            manager.counted(grant.subscription(asked, value_of("topic")))?
        }
        None => {
            let Some(user_id) = value_of("user_id").next() else {
                return Ok(error(
                    StatusCode::BAD_REQUEST,
                    "the query parameter `user_id` is required",
                ));
            };
            value_of("topic").try_fold(Subscription::user(user_id)?, |s, topic| s.topic(topic))?
        }
    };
    manager.handle_sse_with(&Request::from_parts(parts, ()), subscription)
}

async fn tickets(State(manager): State<Manager>, request: Parts) -> Result<Response, Error> {
    let Some(grant) = manager.authorize_ticket(&request).await? else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "no authentication is configured: open streams with `user_id`, no ticket needed",
        ));
    };
    let ticket = manager.issue_ticket(&grant).await?;
    let answer = json!({"ticket": ticket.value(), "expires_in": ticket.ttl().as_secs()});
    Ok(Json(answer).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    event: Event,
}

async fn publish(
    State(manager): State<Manager>,
    request: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(refused) = manager.authorize_publish(&request).await {
        return refused.into_response();
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is larger than {} bytes",
                    manager.max_body_bytes()
                ),
            );
        }
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let request: PublishRequest =
        match serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body)) {
            Ok(request) => request,
            Err(e) => return error(StatusCode::BAD_REQUEST, describe_json_error(&e)),
        };
    let target = match (&request.user_id, &request.topic) {
        (Some(_), Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "give `user_id` or `topic`, not both (neither sends to everyone)",
            );
        }
        (Some(user), None) => Target::user(user),
        (None, Some(topic)) => Target::topic(topic),
        (None, None) => Ok(Target::All),
    };
    match target.map(|target| manager.publish_to(target, request.event)) {
        Ok(published) => match published.await {
            Ok(published) => (StatusCode::ACCEPTED, Json(published)).into_response(),
            Err(e) => e.into_response(),
        },
        Err(e) => e.into_response(),
    }
}

fn describe_json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.inner();
    if path == "." || path.is_empty() {
        format!("invalid JSON body: {inner}")
    } else {
        format!("invalid JSON body at `{path}`: {inner}")
    }
}

#[derive(Deserialize)]
struct CountQuery {
    user_id: Option<String>,
}

async fn connections(
    State(manager): State<Manager>,
    request: Parts,
    Query(query): Query<CountQuery>,
) -> Response {
    if let Err(refused) = manager.authorize_backend(&request).await {
        return refused.into_response();
    }
    // Cluster-wide counts are null while Redis cannot be read; local ones always answer.
    let mut counts = json!({
        "total": manager.total_connections(),
        "cluster_total": manager.cluster_total_connections().await.ok(),
    });
    if let Some(user_id) = query.user_id {
        counts["user"] = manager.connection_count(&user_id).into();
        counts["cluster_user"] = manager.cluster_connection_count(&user_id).await.ok().into();
        counts["user_id"] = user_id.into();
    }
    Json(counts).into_response()
}

async fn health(State(manager): State<Manager>) -> Response {
    if manager.is_closed() {
        error(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else {
        Json(json!({ "status": "ok" })).into_response()
    }
}

async fn ready(State(manager): State<Manager>) -> Response {
    match manager.readiness() {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(reason) => error(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

async fn metrics(State(manager): State<Manager>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        manager.render_metrics(),
    )
        .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}
