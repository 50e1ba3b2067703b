//! The OpenAPI 3.1 document of the standard API, served at `GET /api/v1/openapi.json`.
//!
//! It describes every route of [`router`](super::router): its parameters, request bodies,
//! security (the publisher's bearer token; the subscriber's JWT in the `Authorization`
//! header, the cookie or `?token=`; a `?ticket=`), and every answer, errors included, with
//! their headers (`Retry-After`, `WWW-Authenticate`) and content types. The file is
//! `crates/sseor/assets/openapi.json`; a test checks that it names exactly the routes the
//! router serves, and the server's tests validate it and fuzz the running server against
//! it.
//!
//! Its paths are those of the router as [`router`](super::router) makes it: nested under
//! a prefix, the prefix is not in them.
//!
//! ```
//! let document: serde_json::Value = serde_json::from_str(sseor::api::openapi::DOCUMENT).unwrap();
//! assert_eq!(document["openapi"], "3.1.0");
//! assert!(document["paths"]["/api/v1/publish"]["post"].is_object());
//! ```

use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};

/// The document, as JSON text. A build without the `prometheus` feature serves it without
/// `/metrics`, which it then does not route.
pub const DOCUMENT: &str = include_str!("../../assets/openapi.json");

/// Answers the document as `application/json`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let response = sseor::api::openapi::document().await;
/// assert_eq!(response.headers()["content-type"], "application/json");
/// # }
/// ```
pub async fn document() -> Response {
    (
        [
            (CONTENT_TYPE, "application/json"),
            // Revalidated: the document changes with the server it describes.
            (CACHE_CONTROL, "no-cache"),
        ],
        served(),
    )
        .into_response()
}

/// The document of the routes this build serves.
#[cfg(feature = "prometheus")]
fn served() -> &'static str {
    DOCUMENT
}

/// The document of the routes this build serves: without `/metrics`.
#[cfg(not(feature = "prometheus"))]
fn served() -> &'static str {
    static WITHOUT_METRICS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut document: serde_json::Value =
            serde_json::from_str(DOCUMENT).expect("the document is JSON");
        if let Some(paths) = document["paths"].as_object_mut() {
            paths.remove("/metrics");
        }
        document.to_string()
    });
    &WITHOUT_METRICS
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::api::routes;

    /// The HTTP methods an OpenAPI path item may hold.
    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn served_document() -> Value {
        serde_json::from_str(served()).expect("the document is JSON")
    }

    /// `(METHOD, path)` of every operation of the document.
    fn documented_operations(document: &Value) -> BTreeSet<(String, String)> {
        let paths = document["paths"]
            .as_object()
            .expect("the document has paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                METHODS
                    .iter()
                    .filter(|method| item.get(**method).is_some())
                    .map(move |method| (method.to_uppercase(), path.clone()))
            })
            .collect()
    }

    #[test]
    fn documents_exactly_the_routes_the_router_serves() {
        let routed: BTreeSet<(String, String)> = routes()
            .iter()
            .map(|route| (route.method.to_string(), route.path.to_owned()))
            .collect();
        let documented = documented_operations(&served_document());
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let not_routed: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from assets/openapi.json: {undocumented:?}"
        );
        assert!(
            not_routed.is_empty(),
            "documented but not routed: {not_routed:?}"
        );
    }

    #[test]
    fn every_error_answer_is_a_json_error_object() {
        let document = served_document();
        let resolve = |value: &Value| -> Value {
            match value["$ref"].as_str() {
                Some(pointer) => document
                    .pointer(pointer.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("{pointer} resolves"))
                    .clone(),
                None => value.clone(),
            }
        };
        for (method, path) in documented_operations(&document) {
            let operation = &document["paths"][&path][method.to_lowercase()];
            let responses = operation["responses"].as_object().expect("responses");
            for (status, response) in responses {
                // 431 is the HTTP layer's, before any route: it has no body.
                let by_the_api = status.starts_with('4') || status.starts_with('5');
                if !by_the_api || status == "431" {
                    continue;
                }
                let response = resolve(response);
                let schema = &response["content"]["application/json"]["schema"];
                assert!(
                    schema.is_object(),
                    "{method} {path} {status}: an error answers application/json"
                );
                let text = resolve(schema).to_string();
                assert!(
                    text.contains("\"error\"") || text.contains("#/components/schemas/Error"),
                    "{method} {path} {status}: an error holds `error`: {text}"
                );
            }
        }
    }

    #[tokio::test]
    async fn is_served_as_json() {
        let response = document().await;
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let served: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(served, served_document());
    }
}
