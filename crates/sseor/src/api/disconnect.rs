//! `POST /api/v1/disconnect`: ends a user's streams on every instance (a ban, a revoked
//! session), with the credential a publish needs.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use super::input::publisher_body;
use crate::{Disconnect, Manager};

/// `POST /api/v1/disconnect`: `{"user_id", "topic", "reason", "reconnect"}` (all but
/// `user_id` optional), read strictly; 200 `{"disconnected", "instances"}`.
pub(super) async fn disconnect(State(manager): State<Manager>, request: Request) -> Response {
    let max = manager.max_body_bytes();
    let disconnect: Disconnect = match publisher_body(&manager, request, max).await {
        Ok(disconnect) => disconnect,
        Err(refused) => return refused,
    };
    match manager.disconnect(disconnect).await {
        Ok(done) => Json(done).into_response(),
        Err(e) => e.into_response(),
    }
}
