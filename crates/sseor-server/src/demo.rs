//! The demo page: `/` and its parts, and `/demo/settings.json`, which tells the page
//! whether streams need a credential.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// The demo page served at `/`.
const INDEX_HTML: &str = include_str!("../assets/index.html");

/// The demo page's stylesheet, served at `/demo.css`.
const DEMO_CSS: &str = include_str!("../assets/demo.css");

/// The demo page's script, served at `/demo.js`.
const DEMO_JS: &str = include_str!("../assets/demo.js");

/// `app` with the demo page's routes; `requires_auth` says whether streams need a
/// credential, so that the page asks for a token.
pub(crate) fn routes(app: Router, requires_auth: bool) -> Router {
    let settings = serde_json::json!({ "auth": requires_auth }).to_string();
    app.route("/", get(|| async { Html(INDEX_HTML) }))
        .route(
            "/demo.css",
            get(|| async { asset("text/css; charset=utf-8", DEMO_CSS.into()) }),
        )
        .route(
            "/demo.js",
            get(|| async { asset("text/javascript; charset=utf-8", DEMO_JS.into()) }),
        )
        .route(
            "/demo/settings.json",
            get(move || async move { asset("application/json", settings) }),
        )
}

/// Answers one of the demo page's files.
fn asset(content_type: &'static str, body: String) -> Response {
    // Revalidated on every load, like `/sseor.js`: the page and its parts stay of one version.
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}
