//! The Quick Start of sseor: an SSE route for transaction updates, a deposit endpoint that
//! publishes one, and a page to watch them arrive.
//!
//! ```text
//! cargo run -p sseor --example transactions
//! # open http://127.0.0.1:9090/ , or:
//! curl -N 'http://127.0.0.1:9090/api/v1/sse/transactions?user_id=user123'
//! curl -X POST http://127.0.0.1:9090/api/v1/deposit -d '{"user_id":"user123","amount":500}'
//! ```
//!
//! `SERVER_PORT` (default 9090) picks the port; it listens on 127.0.0.1 only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::to_bytes;
use axum::extract::{Query, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sseor::{Event, Manager};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();

    let sse = Manager::new("memory://").await?;
    let transactions = TransactionHandler::default();

    sse.route("/api/v1/sse/transactions", TransactionHandler::handle)?;
    sse.route("/api/v1/deposit", move |request, manager| {
        transactions.clone().deposit(request, manager)
    })?;
    sse.route("/", |_request, _manager| async {
        Html(include_str!("client_example.html"))
    })?;
    // The browser client the page uses: shares one stream among tabs, resumes, reconnects.
    sse.route("/sseor.js", |_request, _manager| sseor::browser::script())?;
    // The page's look: the stylesheet of the sseor server's demo page.
    sse.route("/demo.css", |_request, _manager| async {
        (
            [(CONTENT_TYPE, "text/css; charset=utf-8")],
            include_str!("../crates/sseor-server/assets/demo.css"),
        )
    })?;

    let port = std::env::var("SERVER_PORT").unwrap_or_else(|_| "9090".into());
    tracing::info!("transactions example on http://127.0.0.1:{port}/");
    sse.listen_and_serve(&format!("127.0.0.1:{port}")).await?;
    sse.close().await;
    Ok(())
}

/// Numbers transactions, like an application's own store would.
#[derive(Clone, Default)]
struct TransactionHandler {
    next: std::sync::Arc<AtomicU64>,
}

#[derive(Deserialize)]
struct Deposit {
    user_id: String,
    amount: f64,
}

impl TransactionHandler {
    /// `GET /api/v1/sse/transactions?user_id=U`: the user's stream of transaction updates.
    async fn handle(request: Request, manager: Manager) -> Response {
        let user_id = Query::<HashMap<String, String>>::try_from_uri(request.uri())
            .ok()
            .and_then(|Query(mut query)| query.remove("user_id"))
            .unwrap_or_default();
        if user_id.is_empty() {
            return error(StatusCode::BAD_REQUEST, "user_id required");
        }
        manager.handle_sse(&request, &user_id).into_response()
    }

    /// `POST /api/v1/deposit` with `{"user_id": "U", "amount": 500.0}`: records a deposit and
    /// tells the user's open pages.
    async fn deposit(self, request: Request, manager: Manager) -> Response {
        let Ok(body) = to_bytes(request.into_body(), 64 * 1024).await else {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        };
        let deposit: Deposit = match serde_json::from_slice(&body) {
            Ok(deposit) => deposit,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid deposit: {e}")),
        };
        let transaction_id = format!("txn_{}", self.next.fetch_add(1, Ordering::Relaxed) + 1);
        let event = Event::new("transaction.updated").with_data(json!({
            "transaction_id": transaction_id,
            "status": "completed",
            "amount": deposit.amount,
        }));
        match manager.publish(&deposit.user_id, event).await {
            Ok(published) => (
                StatusCode::ACCEPTED,
                Json(json!({"id": published.id, "transaction_id": transaction_id})),
            )
                .into_response(),
            Err(e) => e.into_response(),
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
