//! The handlers of the standard API's routes.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::error;
use super::input::{backend_query, publisher_body, query_pairs, single_value};
use crate::manager::Asked;
use crate::{Error, Event, Manager, Target};

/// `GET /api/v1/sse`: the stream the query asks for, as far as the credential grants it.
pub(super) async fn subscribe(State(manager): State<Manager>, request: Request) -> Response {
    let params = match query_pairs(request.uri()) {
        Ok(params) => params,
        Err(refused) => return refused,
    };
    let values = |key: &'static str| {
        params
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let asked = Asked {
        users: values("user_id"),
        topics: values("topic"),
    };
    manager
        .open_asked(request.map(drop), asked)
        .await
        .into_response()
}

/// `POST /api/v1/tickets`: a single-use ticket for the stream the credential grants.
pub(super) async fn tickets(
    State(manager): State<Manager>,
    request: Parts,
) -> Result<Response, Error> {
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

/// The body of a single publish, and each item of a batch.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishRequest {
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

impl PublishRequest {
    /// Its target and event; the status and message of the refusal when the target is
    /// not one.
    pub(super) fn into_item(self) -> Result<(Target, Event), (StatusCode, String)> {
        let target = match (self.user_id, self.topic) {
            (Some(_), Some(_)) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "give `user_id` or `topic`, not both (neither sends to everyone)".into(),
                ));
            }
            (Some(user), None) => Target::user(&user),
            (None, Some(topic)) => Target::topic(&topic),
            (None, None) => Ok(Target::All),
        };
        match target {
            Ok(target) => Ok((target, self.event)),
            Err(invalid) => Err((StatusCode::BAD_REQUEST, invalid.to_string())),
        }
    }
}

/// `POST /api/v1/publish`: one event to a user, a topic or everyone.
pub(super) async fn publish(State(manager): State<Manager>, request: Request) -> Response {
    let max = manager.max_body_bytes();
    let request: PublishRequest = match publisher_body(&manager, request, max).await {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let (target, event) = match request.into_item() {
        Ok(item) => item,
        Err((status, message)) => return error(status, message),
    };
    match manager.publish_to(target, event).await {
        Ok(published) => (StatusCode::ACCEPTED, Json(published)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/connections`: open streams of a user and in all, here and everywhere.
pub(super) async fn connections(State(manager): State<Manager>, request: Parts) -> Response {
    let params = match backend_query(&manager, &request).await {
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

/// `GET /api/v1/cursor`: where the stream of `user_id` and its `topic`s would start now,
/// for a page rendered now to open its stream from. It names a user, so it needs what
/// `/api/v1/connections` needs: the backend's (publisher's) credential, which the
/// application that renders the page holds.
pub(super) async fn cursor(State(manager): State<Manager>, request: Parts) -> Response {
    let params = match backend_query(&manager, &request).await {
        Ok(params) => params,
        Err(refused) => return refused,
    };
    let user_id = match single_value(&params, "user_id") {
        Ok(Some(user_id)) => user_id,
        Ok(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the query parameter `user_id` is required",
            );
        }
        Err(refused) => return refused,
    };
    let topics: Vec<&str> = params
        .iter()
        .filter(|(key, _)| key == "topic")
        .map(|(_, topic)| topic.as_str())
        .collect();
    match manager.cursor(user_id, &topics).await {
        // A cursor is "now": a cached one would replay what the page already shows.
        Ok(cursor) => (
            [(http::header::CACHE_CONTROL, "no-store")],
            Json(json!({ "cursor": cursor })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /healthz`.
pub(super) async fn health(State(manager): State<Manager>) -> Response {
    if manager.is_closed() {
        error(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else {
        Json(json!({ "status": "ok" })).into_response()
    }
}

/// `GET /readyz`.
pub(super) async fn ready(State(manager): State<Manager>) -> Response {
    match manager.readiness() {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(reason) => error(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

/// `GET /metrics`.
#[cfg(feature = "prometheus")]
pub(super) async fn metrics(State(manager): State<Manager>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        manager.render_metrics(),
    )
        .into_response()
}
