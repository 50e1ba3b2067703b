//! `GET /api/v1/history`: what a target's history holds, for a backend that wants to know
//! what a user missed (to send an e-mail digest, to render a page with it).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use serde_json::{Value, json};

use super::error;
use super::input::{backend_query, limit, single_value};
use crate::{History, Manager, Position, Target};

/// Events answered when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;

/// The most events one answer holds.
const MOST_EVENTS: usize = 1000;

/// What the query asks for.
struct Asked {
    target: Target,
    after: Option<Position>,
    limit: usize,
}

/// `GET /api/v1/history?user_id=U` (or `topic=T`, or neither for the broadcasts)
/// `&after=POSITION&limit=N`: the events after `after` (from the oldest kept when it is
/// not given), at most `limit`, in order, each with its position; 410 when the history no
/// longer reaches `after`.
pub(super) async fn history(State(manager): State<Manager>, request: Parts) -> Response {
    let params = match backend_query(&manager, &request).await {
        Ok(params) => params,
        Err(refused) => return refused,
    };
    let asked = match asked(&params) {
        Ok(asked) => asked,
        Err(refused) => return refused,
    };
    match manager.history(asked.target, asked.after).await {
        Ok(History::Events { events, positions }) => {
            let more = events.len() > asked.limit;
            let events: Vec<Value> = events
                .into_iter()
                .take(asked.limit)
                .map(|(_, position, event)| json!({"id": position.to_string(), "event": event}))
                .collect();
            let position = positions.first().map(|(_, position)| position.to_string());
            Json(json!({"events": events, "more": more, "position": position})).into_response()
        }
        Ok(History::Reset { reason, positions }) => {
            let position = positions.first().map(|(_, position)| position.to_string());
            let body = json!({"error": reason, "position": position});
            (StatusCode::GONE, Json(body)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The target, position and limit the query `params` give.
#[allow(clippy::result_large_err)]
fn asked(params: &[(String, String)]) -> Result<Asked, Response> {
    let user = single_value(params, "user_id")?;
    let topic = single_value(params, "topic")?;
    let target = match (user, topic) {
        (Some(_), Some(_)) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "give `user_id` or `topic`, not both (neither reads the broadcasts)",
            ));
        }
        (Some(user), None) => Target::user(user),
        (None, Some(topic)) => Target::topic(topic),
        (None, None) => Ok(Target::All),
    }
    .map_err(IntoResponse::into_response)?;
    let after = single_value(params, "after")?
        .map(|after| {
            after.parse::<Position>().map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    "`after` must be a position as a publish answers it (`id`), EPOCH-SEQ",
                )
            })
        })
        .transpose()?;
    let limit = limit(params, DEFAULT_LIMIT, MOST_EVENTS)?;
    Ok(Asked {
        target,
        after,
        limit,
    })
}
