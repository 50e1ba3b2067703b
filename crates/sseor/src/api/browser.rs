//! `sseor.js`, the browser client, to serve beside your streams.
//!
//! A thin layer over `EventSource` that shares one stream among all tabs of the same origin
//! and user (one tab holds it, the others receive through a `BroadcastChannel`, another takes
//! over when it closes), keeps the last event id so that a reload resumes where it left off,
//! reconnects by itself with backoff (also after a 429 or 503, which `EventSource` gives up
//! on), fetches a stream ticket when it is given a token, and starts from the cursor a page
//! was rendered with (`cursor`, see [`Manager::cursor`](crate::Manager::cursor)), and stops
//! for good in every tab on a [`DISCONNECT_EVENT`](crate::DISCONNECT_EVENT) that allows no
//! reconnection (see [`Manager::disconnect`](crate::Manager::disconnect)).
//!
//! [`api::router`](crate::api::router) serves it at `/sseor.js` (a plain script defining
//! `Sseor`) and `/sseor.mjs` (the same as an ES module). In a router of your own:
//!
//! ```
//! use axum::{Router, routing::get};
//!
//! let app: Router = Router::new()
//!     .route("/sseor.js", get(sseor::browser::script))
//!     .route("/sseor.mjs", get(sseor::browser::module));
//! ```
//!
//! In the page:
//!
//! ```html
//! <script src="/sseor.js"></script>
//! <script>
//!   const stream = Sseor.connect({ user: "user123", topics: ["news"] });
//!   stream.on("transaction.updated", (event) => console.log(JSON.parse(event.data)));
//!   stream.onState(({ state, retryAt }) => console.log(state, retryAt));
//! </script>
//! ```

use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};

/// The client as a plain script: `<script src="/sseor.js">` defines `Sseor`.
pub const SCRIPT: &str = include_str!("../../assets/sseor.js");

/// The client as an ES module (it imports `./sseor.js`, so serve both side by side).
pub const MODULE: &str = include_str!("../../assets/sseor.mjs");

/// Answers [`SCRIPT`] as JavaScript.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let response = sseor::browser::script().await;
/// assert_eq!(response.headers()["content-type"], "text/javascript; charset=utf-8");
/// # }
/// ```
pub async fn script() -> Response {
    javascript(SCRIPT)
}

/// Answers [`MODULE`] as JavaScript.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let response = sseor::browser::module().await;
/// assert_eq!(response.status(), 200);
/// # }
/// ```
pub async fn module() -> Response {
    javascript(MODULE)
}

fn javascript(source: &'static str) -> Response {
    // Revalidated on every load: a page must not run a client older than its server.
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        source,
    )
        .into_response()
}
