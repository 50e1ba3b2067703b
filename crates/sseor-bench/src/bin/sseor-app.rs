//! `sseor-app`: an application that embeds the sseor library, as a user would write one,
//! for the bench's `app-*` targets: its own axum router with its own routes, its own
//! stream handler that calls `Manager::handle_sse`, and sseor's JSON API merged in for
//! publishing. `--serve` picks how the router is served, so that the ways compare on one
//! build:
//!
//! ```text
//! sseor-app --serve sseor     # sseor::serve(listener, app)
//! sseor-app --serve manager   # manager.serve(listener, app)
//! sseor-app --serve axum      # axum::serve(listener, app)
//! ```
//!
//! It listens on 127.0.0.1 (`--port`, 0 for any free port) and prints
//! `listening on 127.0.0.1:PORT` on stdout once it does. SIGTERM or Ctrl-C ends it.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::{Parser, ValueEnum};
use serde_json::json;
use sseor::Manager;

/// jemalloc, as in the `sseor` binary, so that the memory figures compare.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How the application's router is served.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ServeWith {
    /// `sseor::serve(listener, app)`: the fast path, shaped like `axum::serve`.
    Sseor,
    /// `manager.serve(listener, app)`: the fast path, tied to the manager's shutdown.
    Manager,
    /// `axum::serve(listener, app)`: hyper holds every stream's connection.
    Axum,
}

/// An application that embeds sseor.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// How the router is served.
    #[arg(long, value_enum, default_value = "sseor")]
    serve: ServeWith,
    /// The port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 3000)]
    port: u16,
}

/// `GET /events?user=U`: the user's stream. A real application takes the user from its
/// session; the bench names it in the query.
async fn events(
    State(sse): State<Manager>,
    Query(params): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    match params.get("user") {
        Some(user) => sse.handle_sse(&request, user).into_response(),
        None => (StatusCode::BAD_REQUEST, "?user= is missing").into_response(),
    }
}

/// `GET /status`: one of the application's own routes.
async fn status(State(sse): State<Manager>) -> Response {
    axum::Json(json!({"streams": sse.total_connections()})).into_response()
}

fn app(sse: &Manager) -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/status", get(status))
        .merge(sseor::api::router(sse))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(sse.clone())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // The manager's own signal handling only serves `Manager::serve`; the other two get
    // the signal through `shutdown_signal`.
    let sse = Manager::builder().build().await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    println!("listening on {}", listener.local_addr()?);
    let app = app(&sse);
    match args.serve {
        ServeWith::Sseor => {
            sseor::serve(listener, app)
                .with_graceful_shutdown(sse.shutdown_signal(terminated()))
                .await?;
        }
        ServeWith::Manager => sse.serve(listener, app).await?,
        ServeWith::Axum => {
            // With the address of each connection, as the library's documentation asks.
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(sse.shutdown_signal(terminated()))
                .await?;
        }
    }
    sse.close().await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut sigterm) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = sigterm.recv() => {},
    }
}
