//! `GET /api/v1/presence` and `GET /api/v1/topics`: who is connected, across every
//! instance, for a backend (who is online, who watches a topic, which topics are
//! watched).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use serde_json::json;

use super::error;
use super::input::{backend_query, limit, single_value};
use crate::presence::{DEFAULT_PRESENCE_PAGE, MAX_PRESENCE_PAGE};
use crate::{Manager, Target};

/// `GET /api/v1/presence?topic=T&after=U&limit=N`: the users of topic `T` on every
/// instance, by user id, `{"topic", "users": [{"user_id", "connections"}], "more"}`;
/// `GET /api/v1/presence?user_id=U`: `{"user_id", "online", "connections"}`.
pub(super) async fn presence(State(manager): State<Manager>, request: Parts) -> Response {
    let params = match backend_query(&manager, &request).await {
        Ok(params) => params,
        Err(refused) => return refused,
    };
    let answered = match (
        single_value(&params, "user_id"),
        single_value(&params, "topic"),
    ) {
        (Err(refused), _) | (_, Err(refused)) => Err(refused),
        (Ok(Some(user_id)), Ok(None)) => of_user(&manager, &params, user_id).await,
        (Ok(None), Ok(Some(topic))) => of_topic(&manager, &params, topic).await,
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "give exactly one of `topic` (the users connected to it) or `user_id` (whether \
             that user is connected)",
        )),
    };
    answered.unwrap_or_else(|refused| refused)
}

/// Whether `user_id` is connected, and how many times.
async fn of_user(
    manager: &Manager,
    params: &[(String, String)],
    user_id: &str,
) -> Result<Response, Response> {
    if let Some(paging) = ["after", "limit"]
        .into_iter()
        .find(|key| params.iter().any(|(k, _)| k == key))
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("`{paging}` pages the users of a `topic`; it does not go with `user_id`"),
        ));
    }
    let presence = manager
        .presence_of_user(user_id)
        .await
        .map_err(IntoResponse::into_response)?;
    let answer = json!({
        "user_id": presence.user_id,
        "online": presence.online(),
        "connections": presence.connections,
    });
    Ok(Json(answer).into_response())
}

/// A page of the users connected to `topic`.
async fn of_topic(
    manager: &Manager,
    params: &[(String, String)],
    topic: &str,
) -> Result<Response, Response> {
    Target::topic(topic).map_err(IntoResponse::into_response)?;
    let (after, limit) = page(params)?;
    let page = manager
        .presence_of_topic(topic, after, limit)
        .await
        .map_err(IntoResponse::into_response)?;
    let answer = json!({"topic": topic, "users": page.items, "more": page.more});
    Ok(Json(answer).into_response())
}

/// `GET /api/v1/topics?after=T&limit=N`: the topics with streams on every instance, by
/// name, `{"topics": [{"topic", "connections"}], "more"}`.
pub(super) async fn topics(State(manager): State<Manager>, request: Parts) -> Response {
    let params = match backend_query(&manager, &request).await {
        Ok(params) => params,
        Err(refused) => return refused,
    };
    let (after, limit) = match page(&params) {
        Ok(page) => page,
        Err(refused) => return refused,
    };
    match manager.topics(after, limit).await {
        Ok(page) => Json(json!({"topics": page.items, "more": page.more})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The page a listing's query asks for: after which name, and how many.
#[allow(clippy::result_large_err)]
fn page(params: &[(String, String)]) -> Result<(Option<&str>, usize), Response> {
    let after = single_value(params, "after")?;
    if after == Some("") {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "`after` must not be empty: leave it out for the first page",
        ));
    }
    Ok((
        after,
        limit(params, DEFAULT_PRESENCE_PAGE, MAX_PRESENCE_PAGE)?,
    ))
}
