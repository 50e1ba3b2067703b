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
//! * `POST /api/v1/publish` and `GET /api/v1/connections` need a publisher's credential in
//!   the request headers: the publish token or a grant with the publish right.
//! * A request without a valid credential gets 401 with `WWW-Authenticate: Bearer`, one
//!   whose credential does not grant what it asks 403; both answer
//!   `{"error", "reason"}`, the reason being one of [`AuthReason`](crate::auth::AuthReason).
//! * Over the publish rate: 429 with `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode, Uri};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Error, Event, Manager, Subscription, Target};

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
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(manager.clone())
}

/// A JSON error response: `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The limits the HTTP API puts on what it reads, set with the [`Builder`](crate::Builder).
#[derive(Debug, Clone)]
pub(crate) struct InputLimits {
    /// How long a request body may take to arrive.
    pub(crate) body_timeout: Duration,
    /// The most topics one stream may join.
    pub(crate) max_topics: usize,
    /// Bytes of request bodies that may be received at once, in the whole process.
    body_bytes_in_flight: usize,
    /// The budget of those bytes, in KiB: one permit per KiB.
    bodies: Arc<Semaphore>,
}

/// Request bodies are reserved in units of this many bytes (a permit count is a `u32`).
const BODY_UNIT: usize = 1024;

impl Default for InputLimits {
    fn default() -> Self {
        let mut limits = Self {
            body_timeout: Duration::from_secs(10),
            max_topics: 64,
            body_bytes_in_flight: 0,
            bodies: Arc::new(Semaphore::new(0)),
        };
        limits.set_body_bytes_in_flight(64 * 1024 * 1024);
        limits
    }
}

impl InputLimits {
    /// Sets the budget of body bytes in flight (at least one unit).
    pub(crate) fn set_body_bytes_in_flight(&mut self, bytes: usize) {
        let units = bytes.div_ceil(BODY_UNIT).clamp(1, u32::MAX as usize);
        self.body_bytes_in_flight = units * BODY_UNIT;
        self.bodies = Arc::new(Semaphore::new(units));
    }

    /// Reserves `bytes` of the budget until the permit is dropped; `None` when it is spent.
    fn reserve_body(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let units = bytes
            .div_ceil(BODY_UNIT)
            .clamp(1, self.body_bytes_in_flight / BODY_UNIT);
        let units = u32::try_from(units).unwrap_or(u32::MAX);
        self.bodies.clone().try_acquire_many_owned(units).ok()
    }

    /// Checks the number of topics of a stream.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] naming the limit when there are more.
    pub(crate) fn check_topics(&self, targets: &[Target]) -> crate::Result<()> {
        let topics = targets
            .iter()
            .filter(|target| matches!(target, Target::Topic(_)))
            .count();
        if topics > self.max_topics {
            return Err(Error::InvalidTarget(format!(
                "a stream may join at most {} topics; this one asks for {topics}",
                self.max_topics
            )));
        }
        Ok(())
    }
}

/// When a client refused because the broker is unavailable should try again.
const BROKER_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

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
    let retry_after = match error {
        Error::TooManyConnections { retry_after, .. } => Some(*retry_after),
        // The broker reconnects with a backoff of at most 2 s.
        Error::Broker(_) => Some(BROKER_RETRY_AFTER),
        _ => None,
    };
    if let Some(retry_after) = retry_after {
        // Whole seconds, at least one: what `Retry-After` can say.
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, seconds.into());
    }
    response
}

async fn subscribe(State(manager): State<Manager>, request: Request) -> Result<Response, Error> {
    let params = match query_pairs(request.uri()) {
        Ok(params) => params,
        Err(refused) => return Ok(refused),
    };
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
            let user_id = match single_value(&params, "user_id") {
                Ok(Some(user_id)) => user_id,
                Ok(None) => {
                    return Ok(error(
                        StatusCode::BAD_REQUEST,
                        "the query parameter `user_id` is required",
                    ));
                }
                Err(refused) => return Ok(refused),
            };
            value_of("topic").try_fold(Subscription::user(user_id)?, |s, topic| s.topic(topic))?
        }
    };
    manager.handle_sse_with(&Request::from_parts(parts, ()), subscription)
}

/// The query's parameters, percent-decoded (`+` is a space).
///
/// # Errors
/// 400 when a name or value is not UTF-8 once decoded: decoding it lossily would make
/// different byte strings the same user.
#[allow(clippy::result_large_err)]
fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, Response> {
    let Some(query) = uri.query() else {
        return Ok(Vec::new());
    };
    let decode = |text: &str| {
        let spaced = text.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|decoded| decoded.into_owned())
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key).map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    "a query parameter's name is not UTF-8 once percent-decoded",
                )
            })?;
            let value = decode(value).map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("the query parameter `{key}` is not UTF-8 once percent-decoded"),
                )
            })?;
            Ok((key, value))
        })
        .collect()
}

/// The value of the parameter `key`, when there is one.
///
/// # Errors
/// 400 when it is given more than once: which one was meant is anyone's guess.
#[allow(clippy::result_large_err)]
fn single_value<'a>(
    params: &'a [(String, String)],
    key: &str,
) -> Result<Option<&'a str>, Response> {
    let mut values = params
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("the query parameter `{key}` is given more than once"),
        ));
    }
    Ok(first)
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
    #[serde(default, deserialize_with = "target_name")]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "target_name")]
    topic: Option<String>,
    event: Event,
}

/// A `user_id` or `topic` that is present: a string. `null` is refused, not read as
/// absent: a publisher that writes a missing user as `null` would otherwise send that
/// user's event to everyone.
fn target_name<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(de)? {
        Some(name) => Ok(Some(name)),
        None => Err(D::Error::custom(
            "null is not a target: give a string, or leave out both `user_id` and `topic` \
             to send to everyone",
        )),
    }
}

async fn publish(State(manager): State<Manager>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // From the headers alone: an anonymous client gets its answer before sending a byte.
    if let Err(refused) = manager.authorize_publish(&parts).await {
        return refused.into_response();
    }
    if let Err(refused) = require_json(&parts.headers) {
        return refused;
    }
    let body = match read_body(&manager, &parts.headers, body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let request: PublishRequest = match parse_json(&body) {
        Ok(request) => request,
        Err(refused) => return refused,
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

/// Refuses a body that is not declared as JSON: browsers send forms and `text/plain` to
/// any site without asking it first, `application/json` only after a CORS preflight.
#[allow(clippy::result_large_err)]
fn require_json(headers: &HeaderMap) -> Result<(), Response> {
    let mut declared = headers.get_all(http::header::CONTENT_TYPE).iter();
    let media_type = match (declared.next(), declared.next()) {
        (Some(value), None) => value.to_str().ok(),
        _ => None,
    };
    let is_json = media_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        return Ok(());
    }
    Err(error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "the body must be JSON, sent with the header `Content-Type: application/json`",
    ))
}

/// The request body, read within the body timeout and the budget of bytes in flight.
async fn read_body(manager: &Manager, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let max = manager.max_body_bytes();
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        return Err(too_large(max));
    }
    let limits = manager.input_limits();
    // A body of unknown length may grow up to the largest accepted.
    let expected = declared.map_or(max, |length| length as usize);
    let Some(_reserved) = limits.reserve_body(expected) else {
        let mut busy = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many request bodies are being received at once; retry in a second",
        );
        busy.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
        return Err(busy);
    };
    match tokio::time::timeout(limits.body_timeout, collect(body, max)).await {
        Ok(read) => read,
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms",
                limits.body_timeout.as_millis()
            ),
        )),
    }
}

/// The whole body, refused as soon as it grows past `max` bytes.
async fn collect(body: Body, max: usize) -> Result<Bytes, Response> {
    let mut chunks = body.into_data_stream();
    let mut collected = bytes::BytesMut::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            )
        })?;
        if collected.len() + chunk.len() > max {
            return Err(too_large(max));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
}

fn too_large(max: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {max} bytes"),
    )
}

/// `body` as exactly one JSON value of type `T`.
///
/// # Errors
/// 400 naming the field at fault, or saying that more follows the value.
#[allow(clippy::result_large_err)]
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut json)
        .map_err(|e| error(StatusCode::BAD_REQUEST, describe_json_error(&e)))?;
    json.end().map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: it must be exactly one JSON value, and more follows ({e})"),
        )
    })?;
    Ok(value)
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

async fn connections(State(manager): State<Manager>, request: Parts) -> Response {
    if let Err(refused) = manager.authorize_backend(&request).await {
        return refused.into_response();
    }
    let params = match query_pairs(&request.uri) {
        Ok(params) => params,
        Err(refused) => return refused,
    };
    let user_id = match single_value(&params, "user_id") {
        Ok(user_id) => user_id.map(str::to_owned),
        Err(refused) => return refused,
    };
    if let Some(Err(invalid)) = user_id.as_deref().map(Target::user) {
        return invalid.into_response();
    }
    // Cluster-wide counts are null while Redis cannot be read; local ones always answer.
    let mut counts = json!({
        "total": manager.total_connections(),
        "cluster_total": manager.cluster_total_connections().await.ok(),
    });
    if let Some(user_id) = user_id {
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
