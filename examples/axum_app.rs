//! An existing axum application that adds event streams: its own router, its own way of
//! knowing who the user is, its own shutdown signal, served by `sseor::serve` where it
//! had `axum::serve`.
//!
//! ```text
//! cargo run -p sseor --example axum_app
//! curl -N -H 'x-session-user: alice' 'http://127.0.0.1:3000/events?topic=prices'
//! curl -X POST -H 'x-session-user: alice' http://127.0.0.1:3000/orders
//! ```
//!
//! `SERVER_PORT` (default 3000) picks the port; it listens on 127.0.0.1 only. Ctrl-C or
//! SIGTERM ends the open streams, then the process, within the shutdown timeout.

use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use sseor::{Event, Manager, Subscription};

/// How long shutdown may take, from the signal.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();

    let sse = Manager::builder()
        .shutdown_timeout(SHUTDOWN_TIMEOUT)
        .max_connections_per_user(10)
        .max_connections_per_ip(100)
        .build()
        .await?;
    let app = Router::new()
        .route("/events", get(events))
        .route("/orders", post(place_order))
        .with_state(sse.clone());

    let port = std::env::var("SERVER_PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    tracing::info!("axum_app example on http://{}/", listener.local_addr()?);
    // `sseor::serve` where the application had `axum::serve`: the same router, but each
    // open event stream is written straight to its socket once its response head is out,
    // without hyper's connection state beside it (about 2.2 KiB per idle stream, against
    // about 21 KiB under `axum::serve`). It also gives every request its client's address
    // (the per-address limit needs it) and closes what is still open at the shutdown
    // timeout, so that a client that stopped reading cannot hold the shutdown.
    // The manager wraps the app's signal: when it fires, the streams end first (cleanly),
    // then the server stops and returns; `close` finishes the rest.
    sseor::serve(listener, app)
        .with_graceful_shutdown(sse.shutdown_signal(terminated()))
        .shutdown_timeout(SHUTDOWN_TIMEOUT)
        .await?;
    sse.close().await;
    Ok(())
}

/// Ctrl-C or SIGTERM: the application's own shutdown signal.
async fn terminated() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigterm = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = sigterm.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The application's authentication. A real one checks a session cookie or a token; the
/// point is that the user comes from it, never from a query parameter the client chooses.
fn session_user(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-session-user")?.to_str().ok()
}

#[derive(Deserialize)]
struct StreamParams {
    /// A topic to join besides the user's own events, e.g. `?topic=prices`.
    topic: Option<String>,
}

/// `GET /events[?topic=T]`: the signed-in user's stream.
async fn events(
    State(sse): State<Manager>,
    Query(params): Query<StreamParams>,
    request: Request,
) -> Response {
    let Some(user) = session_user(request.headers()) else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let subscription = match params.topic.as_deref() {
        Some(topic) => Subscription::user(user).and_then(|s| s.topic(topic)),
        None => Subscription::user(user),
    };
    subscription
        .and_then(|subscription| sse.handle_sse_with(&request, subscription))
        .into_response()
}

/// `POST /orders`: the application's own work, then an event to the user's open pages.
async fn place_order(State(sse): State<Manager>, headers: HeaderMap) -> Response {
    let Some(user) = session_user(&headers) else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let event = Event::new("order.placed").with_data(json!({"status": "placed"}));
    match sse.publish(user, event).await {
        Ok(published) => (StatusCode::ACCEPTED, axum::Json(published)).into_response(),
        Err(error) => error.into_response(),
    }
}
