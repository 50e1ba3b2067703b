//! How a run asks the server and records its answers for `check_answers.py`, and the
//! requests every run makes of the operations that need a credential.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Map, Value, json};
use sseor_testkit::server::Server;
use sseor_testkit::{guard, http};

use super::super::SECRET;

/// What the server answered one request: what `check_answers.py` reads.
pub(super) type Answer = Value;

/// The backend's queries, each a documented path and a query it serves: what a run asks
/// with each credential it tries (none, a subscriber's, a publisher's).
pub(super) const BACKEND_QUERIES: &[(&str, &str)] = &[
    ("/api/v1/connections", "?user_id=alice"),
    ("/api/v1/cursor", "?user_id=alice"),
    ("/api/v1/history", "?user_id=alice"),
    ("/api/v1/presence", "?user_id=alice"),
    ("/api/v1/presence", "?topic=news"),
    ("/api/v1/topics", ""),
];

/// The publisher's operations, each a path and a body it accepts: what a run sends with
/// each credential it tries.
pub(super) fn publisher_bodies() -> [(&'static str, String); 3] {
    [
        ("/api/v1/publish", json!({"event": {"type": "t"}})),
        (
            "/api/v1/publish/batch",
            json!({"events": [{"event": {"type": "t"}}]}),
        ),
        ("/api/v1/disconnect", json!({"user_id": "alice"})),
    ]
    .map(|(path, body)| (path, body.to_string()))
}

/// A JWT of [`SECRET`] for `sub`, with `extra` claims.
pub(super) fn token(sub: &str, extra: Value) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let mut claims = json!({"sub": sub, "exp": exp});
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap()
}

pub(super) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `request` with `Authorization: authorization`, or without when `None`.
pub(super) fn authorized(
    request: reqwest::RequestBuilder,
    authorization: Option<&str>,
) -> reqwest::RequestBuilder {
    match authorization {
        Some(value) => request.header("authorization", value),
        None => request,
    }
}

/// Each of [`BACKEND_QUERIES`] and [`publisher_bodies`] asked once with `authorization`.
pub(super) async fn ask_every_backend_operation(
    server: &Server,
    authorization: Option<&str>,
) -> Vec<Answer> {
    let mut answers = ask_backend_queries(server, authorization).await;
    for (path, body) in publisher_bodies() {
        let request = authorized(post_json(server, path, body), authorization);
        answers.push(ask("POST", path, request).await);
    }
    answers
}

/// Each of [`BACKEND_QUERIES`] asked once with `authorization`.
pub(super) async fn ask_backend_queries(
    server: &Server,
    authorization: Option<&str>,
) -> Vec<Answer> {
    let mut answers = Vec::new();
    for (path, query) in BACKEND_QUERIES {
        let request = authorized(get(server, &format!("{path}{query}")), authorization);
        answers.push(ask("GET", path, request).await);
    }
    answers
}

/// Sends `request` for the documented `method` and `path`; its answer, the body read.
pub(super) async fn ask(method: &str, path: &str, request: reqwest::RequestBuilder) -> Answer {
    let (answer, response) = ask_head(method, path, request).await;
    with_body(answer, response).await
}

/// `answer` with the body of `response`: parsed when JSON, and its length.
async fn with_body(mut answer: Answer, response: reqwest::Response) -> Answer {
    let text = guard(response.text()).await.unwrap();
    answer["body"] = serde_json::from_str(&text).unwrap_or(Value::Null);
    answer["body_bytes"] = text.len().into();
    answer
}

/// [`ask`] of the stream endpoint: the body of a stream that opens never ends, so it is
/// not read, and the response goes to `open`, which holds the stream open until dropped.
pub(super) async fn ask_stream(
    request: reqwest::RequestBuilder,
    open: &mut Vec<reqwest::Response>,
) -> Answer {
    let (answer, response) = ask_head("GET", "/api/v1/sse", request).await;
    if answer["content_type"] != "text/event-stream" {
        return with_body(answer, response).await;
    }
    open.push(response);
    answer
}

/// The status, headers and content type of the answer to `request`, and the response.
async fn ask_head(
    method: &str,
    path: &str,
    request: reqwest::RequestBuilder,
) -> (Answer, reqwest::Response) {
    let response = guard(request.send()).await.unwrap();
    let headers: Map<String, Value> = response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or(""))))
        .collect();
    let content_type = headers.get("content-type").cloned().unwrap_or(Value::Null);
    let answer = json!({"method": method, "path": path, "status": response.status().as_u16(),
                        "content_type": content_type, "headers": headers,
                        "body": null, "body_bytes": 0});
    (answer, response)
}

pub(super) fn get(server: &Server, path_and_query: &str) -> reqwest::RequestBuilder {
    http().get(server.url(path_and_query))
}

pub(super) fn post_json(
    server: &Server,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    http()
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body)
}

/// A body that never arrives: the server's body timeout answers it.
pub(super) fn stalled_body() -> reqwest::Body {
    let pending = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    reqwest::Body::wrap_stream(pending)
}
