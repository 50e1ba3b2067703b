//! The application whose login the `jwt` scenario's callout variants ask: an HTTP endpoint
//! in this process, on a free port of 127.0.0.1, that takes the cookie `session=USER` for
//! the user `USER` and counts the questions it is asked. It does no work of its own beyond
//! reading the cookie, so that what is timed is sseor's side of the callout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

/// The running application; it stops with the bench process.
pub(crate) struct LoginApp {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
}

impl LoginApp {
    /// Starts it.
    pub(crate) async fn start() -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the login application: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let calls = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route("/sseor-auth", post(decide))
            .with_state(Arc::clone(&calls));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, calls })
    }

    /// The URL of its endpoint, for `SSEOR_AUTH_URL`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/sseor-auth", self.addr)
    }

    /// How many questions it has been asked.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

/// The header line with which `user` opens its stream.
pub(crate) fn session_cookie(user: &str) -> String {
    format!("Cookie: session={user}\r\n")
}

async fn decide(
    State(calls): State<Arc<AtomicUsize>>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    calls.fetch_add(1, Ordering::Relaxed);
    let user = headers
        .get("cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|cookie| cookie.strip_prefix("session="));
    match user {
        Some(user) => (
            StatusCode::OK,
            Json(json!({"user": user, "expires_in": 3600})),
        ),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "no session"})),
        ),
    }
}
