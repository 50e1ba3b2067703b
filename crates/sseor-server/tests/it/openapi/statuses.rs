//! Every status the document gives an operation, reached on purpose against the running
//! server, and each answer checked against the document (status, content type, headers,
//! body schema) by `tests/openapi/check_answers.py` with the JSON Schema validator the
//! tools bring. Schemathesis explores what it generates; these are the answers it rarely
//! or never provokes: limits, timeouts, a broker that is down, a history that no longer
//! reaches, and the stream itself, which it cannot read.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Map, Value, json};
use sseor_testkit::redis::RedisServer;
use sseor_testkit::server::Server;
use sseor_testkit::{guard, http};
use tokio::process::Command;

use super::{PUBLISH_TOKEN, SECRET, served_document, start_authenticated, tools};
use crate::SSEOR;

/// What the server answered one request: what `check_answers.py` reads.
type Answer = Value;

/// A JWT of [`SECRET`] for `sub`, with `extra` claims.
fn token(sub: &str, extra: Value) -> String {
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

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Sends `request` for the documented `method` and `path`; its answer, the body read.
async fn ask(method: &str, path: &str, request: reqwest::RequestBuilder) -> Answer {
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
async fn ask_stream(request: reqwest::RequestBuilder, open: &mut Vec<reqwest::Response>) -> Answer {
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

fn get(server: &Server, path_and_query: &str) -> reqwest::RequestBuilder {
    http().get(server.url(path_and_query))
}

fn post_json(
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
fn stalled_body() -> reqwest::Body {
    let pending = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    reqwest::Body::wrap_stream(pending)
}

/// A server without authentication, with small limits to reach: 1 KiB bodies, 300 ms
/// for a body, 2 events a batch, 2 streams in all and 1 per user, 2 events of history.
async fn without_authentication() -> Vec<Answer> {
    let server = Server::start(
        SSEOR,
        &[
            "--max-body-bytes",
            "1024",
            "--body-timeout",
            "300ms",
            "--max-batch-events",
            "2",
            "--max-connections",
            "2",
            "--max-connections-per-user",
            "1",
            "--history-size",
            "2",
        ],
    )
    .await;
    let event = json!({"type": "t"});
    let mut answers = Vec::new();

    // Streams: one open per user, two in all.
    let mut open = Vec::new();
    for query in [
        "user_id=a",
        "user_id=a",
        "user_id=b&topic=news",
        "user_id=c",
        "user_id=",
    ] {
        let request = get(&server, &format!("/api/v1/sse?{query}"));
        answers.push(ask_stream(request, &mut open).await);
    }

    let publish = "/api/v1/publish";
    let ok = json!({"user_id": "a", "event": event}).to_string();
    answers.push(ask("POST", publish, post_json(&server, publish, ok.clone())).await);
    answers.push(ask("POST", publish, post_json(&server, publish, "{")).await);
    let large = json!({"event": {"type": "t", "data": {"x": "y".repeat(2000)}}}).to_string();
    answers.push(ask("POST", publish, post_json(&server, publish, large.clone())).await);
    let as_text = http()
        .post(server.url(publish))
        .header("content-type", "text/plain")
        .body(ok);
    answers.push(ask("POST", publish, as_text).await);
    let empty_type = json!({"event": {"type": ""}}).to_string();
    answers.push(ask("POST", publish, post_json(&server, publish, empty_type)).await);
    answers.push(ask("POST", publish, post_json(&server, publish, stalled_body())).await);

    let batch = "/api/v1/publish/batch";
    let items = |items: Value| json!({ "events": items }).to_string();
    let cases = [
        items(json!([{"event": event}, {"topic": "news", "event": event}])),
        items(json!([])),
        items(json!([{"event": event}, {"user_id": "a", "topic": "news", "event": event}])),
        items(json!([{"event": event}, {"event": event}, {"event": event}])),
        items(json!([{"event": {"type": "t", "data": {"x": "y".repeat(2000)}}}])),
        items(json!([{"event": event}, {"event": {"type": "a\nb"}}])),
    ];
    for body in cases {
        answers.push(ask("POST", batch, post_json(&server, batch, body)).await);
    }
    let as_text = http()
        .post(server.url(batch))
        .body(items(json!([{"event": event}])));
    answers.push(ask("POST", batch, as_text).await);
    answers.push(ask("POST", batch, post_json(&server, batch, stalled_body())).await);

    answers.extend(disconnect(&server).await);
    answers.extend(presence(&server).await);

    let connections = "/api/v1/connections";
    answers.push(
        ask(
            "GET",
            connections,
            get(&server, "/api/v1/connections?user_id=a"),
        )
        .await,
    );
    answers.push(ask("GET", connections, get(&server, "/api/v1/connections")).await);
    let twice = "/api/v1/connections?user_id=a&user_id=b";
    answers.push(ask("GET", connections, get(&server, twice)).await);

    let cursor = "/api/v1/cursor";
    answers.push(
        ask(
            "GET",
            cursor,
            get(&server, "/api/v1/cursor?user_id=a&topic=n"),
        )
        .await,
    );
    answers.push(ask("GET", cursor, get(&server, "/api/v1/cursor")).await);

    answers.extend(history(&server).await);

    answers.push(
        ask(
            "POST",
            "/api/v1/tickets",
            http().post(server.url("/api/v1/tickets")),
        )
        .await,
    );
    for path in [
        "/api/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
        "/sseor.js",
        "/sseor.mjs",
    ] {
        answers.push(ask("GET", path, get(&server, path)).await);
    }
    answers
}

/// Disconnects: done, refused for a bad field, too large, not JSON, and a body that
/// never arrives.
async fn disconnect(server: &Server) -> Vec<Answer> {
    let path = "/api/v1/disconnect";
    let mut answers = Vec::new();
    let large = json!({"user_id": "a", "reason": "y".repeat(2000)}).to_string();
    for body in [
        json!({"user_id": "a"}).to_string(),
        json!({"user_id": ""}).to_string(),
        large,
    ] {
        answers.push(ask("POST", path, post_json(server, path, body)).await);
    }
    let as_text = http()
        .post(server.url(path))
        .header("content-type", "text/plain")
        .body(json!({"user_id": "a"}).to_string());
    answers.push(ask("POST", path, as_text).await);
    answers.push(ask("POST", path, post_json(server, path, stalled_body())).await);
    answers
}

/// Presence of a user and of a topic, the topics, and a query of each that is refused.
async fn presence(server: &Server) -> Vec<Answer> {
    let mut answers = Vec::new();
    for (path, query) in [
        ("/api/v1/presence", "?user_id=a"),
        ("/api/v1/presence", "?topic=news&limit=1"),
        ("/api/v1/presence", ""),
        ("/api/v1/topics", "?limit=1"),
        ("/api/v1/topics", "?limit=0"),
    ] {
        answers.push(ask("GET", path, get(server, &format!("{path}{query}"))).await);
    }
    answers
}

/// The history of a user of four events, when two are kept: read from the start, and
/// after the first, which it no longer reaches (410).
async fn history(server: &Server) -> Vec<Answer> {
    let mut first = String::new();
    for n in 0..4 {
        let (status, published) = server
            .publish(&json!({"user_id": "h", "event": {"type": "t", "data": {"n": n}}}))
            .await;
        assert_eq!(status, 202, "{published}");
        if n == 0 {
            first = published["id"].as_str().unwrap().to_owned();
        }
    }
    let path = "/api/v1/history";
    let mut answers = Vec::new();
    for query in [
        "?user_id=h&limit=1",
        "?topic=news",
        "?limit=0",
        &format!("?user_id=h&after={first}"),
    ] {
        answers.push(ask("GET", path, get(server, &format!("{path}{query}"))).await);
    }
    answers
}

/// A server with authentication and a publish rate of one a second: each operation
/// refused without a credential (401) and with one that does not grant it (403), a
/// ticket issued, and a publisher over its rate (429).
async fn with_authentication() -> Vec<Answer> {
    let server = start_authenticated(&["--publish-rate", "1", "--publish-burst", "1"]).await;
    let subscriber = bearer(&token("alice", json!({"topics": ["news"]})));
    let publisher = bearer(&token("backend", json!({"publish": true})));
    let batch_publisher = bearer(&token("batcher", json!({"publish": true})));
    let publish_body = json!({"event": {"type": "t"}}).to_string();
    let batch_body = json!({"events": [{"event": {"type": "t"}}]}).to_string();
    let mut answers = Vec::new();

    let mut open = Vec::new();
    answers.push(ask_stream(get(&server, "/api/v1/sse"), &mut open).await);
    let other_user = get(&server, "/api/v1/sse?user_id=bob").header("authorization", &subscriber);
    answers.push(ask_stream(other_user, &mut open).await);

    let tickets = "/api/v1/tickets";
    answers.push(ask("POST", tickets, http().post(server.url(tickets))).await);
    let issued = http()
        .post(server.url(tickets))
        .header("authorization", &subscriber);
    answers.push(ask("POST", tickets, issued).await);

    let disconnector = bearer(&token("moderator", json!({"publish": true})));
    let disconnect_body = json!({"user_id": "alice"}).to_string();
    for (path, body, rated) in [
        ("/api/v1/publish", &publish_body, &publisher),
        ("/api/v1/publish/batch", &batch_body, &batch_publisher),
        ("/api/v1/disconnect", &disconnect_body, &disconnector),
    ] {
        answers.push(ask("POST", path, post_json(&server, path, body.clone())).await);
        let subscribers =
            post_json(&server, path, body.clone()).header("authorization", &subscriber);
        answers.push(ask("POST", path, subscribers).await);
        for _ in 0..2 {
            let publishing = post_json(&server, path, body.clone()).header("authorization", rated);
            answers.push(ask("POST", path, publishing).await);
        }
    }
    for path in [
        "/api/v1/connections",
        "/api/v1/cursor",
        "/api/v1/history",
        "/api/v1/presence",
        "/api/v1/topics",
    ] {
        let query = format!("{path}?user_id=alice");
        answers.push(ask("GET", path, get(&server, &query)).await);
        let subscribers = get(&server, &query).header("authorization", &subscriber);
        answers.push(ask("GET", path, subscribers).await);
    }
    answers
}

/// A server on a Redis that is then killed: what needs the broker answers 503 (tickets
/// included: the server authenticates), `/readyz` too.
async fn with_the_broker_down() -> Vec<Answer> {
    let mut redis = RedisServer::start();
    let server = start_authenticated(&["--redis-url", &redis.url()]).await;
    redis.kill();
    let publisher = bearer(PUBLISH_TOKEN);
    let subscriber = bearer(&token("alice", json!({})));
    let mut answers = Vec::new();
    // Not ready once the instance has noticed.
    let readyz = guard(async {
        loop {
            let answer = ask("GET", "/readyz", get(&server, "/readyz")).await;
            if answer["status"] == 503 {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    answers.push(readyz);
    let sse = get(&server, "/api/v1/sse").header("authorization", &subscriber);
    answers.push(ask_stream(sse, &mut Vec::new()).await);
    let tickets = http()
        .post(server.url("/api/v1/tickets"))
        .header("authorization", &subscriber);
    answers.push(ask("POST", "/api/v1/tickets", tickets).await);
    for (path, body) in [
        ("/api/v1/publish", json!({"event": {"type": "t"}})),
        (
            "/api/v1/publish/batch",
            json!({"events": [{"event": {"type": "t"}}]}),
        ),
    ] {
        let publish =
            post_json(&server, path, body.to_string()).header("authorization", &publisher);
        answers.push(ask("POST", path, publish).await);
    }
    let disconnect = post_json(
        &server,
        "/api/v1/disconnect",
        json!({"user_id": "alice"}).to_string(),
    )
    .header("authorization", &publisher);
    answers.push(ask("POST", "/api/v1/disconnect", disconnect).await);
    for (path, query) in [
        ("/api/v1/cursor", "?user_id=alice"),
        ("/api/v1/history", "?user_id=alice"),
        ("/api/v1/presence", "?topic=news"),
        ("/api/v1/topics", ""),
    ] {
        let query = get(&server, &format!("{path}{query}")).header("authorization", &publisher);
        answers.push(ask("GET", path, query).await);
    }
    answers
}

/// `/healthz` of a manager that is shutting down, served by the application's own
/// `axum::serve`: the `sseor` server stops taking requests as soon as it shuts down, so
/// only an application that serves [`sseor::api::router`] itself still answers them.
async fn shutting_down() -> Vec<Answer> {
    let manager = sseor::Manager::builder()
        .handle_signals(false)
        .build()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    let app: axum::Router = sseor::api::router(&manager);
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let closing = tokio::spawn({
        let manager = manager.clone();
        async move { manager.close().await }
    });
    let answer = guard(async {
        loop {
            let answer = ask("GET", "/healthz", http().get(&url)).await;
            if answer["status"] == 503 {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    guard(closing).await.unwrap();
    serving.abort();
    vec![answer]
}

/// Every documented operation asked with a request head over 8 KiB: 431.
async fn oversized_heads(server: &Server, document: &Value) -> Vec<Answer> {
    let padding = "p".repeat(9 * 1024);
    let mut answers = Vec::new();
    let operations: BTreeSet<(String, String)> = documented_statuses(document)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    for (method, path) in operations {
        let method_of = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let request = http()
            .request(method_of, server.url(&path))
            .header("x-padding", &padding);
        answers.push(ask(&method, &path, request).await);
    }
    answers
}

/// `(METHOD, path, status)` of every answer the document gives.
fn documented_statuses(document: &Value) -> BTreeSet<(String, String, u16)> {
    let mut statuses = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for status in operation["responses"].as_object().unwrap().keys() {
                let status = status.parse().expect("a documented status is a number");
                statuses.insert((method.to_uppercase(), path.clone(), status));
            }
        }
    }
    statuses
}

fn reached_statuses(answers: &[Answer]) -> BTreeSet<(String, String, u16)> {
    answers
        .iter()
        .map(|answer| {
            let method = answer["method"].as_str().unwrap().to_owned();
            let path = answer["path"].as_str().unwrap().to_owned();
            (method, path, answer["status"].as_u64().unwrap() as u16)
        })
        .collect()
}

#[tokio::test]
async fn every_documented_status_is_reached_and_answered_as_documented() {
    let python = tools::python();
    let (mut answers, authenticated, broker_down, closing) = tokio::join!(
        without_authentication(),
        with_authentication(),
        with_the_broker_down(),
        shutting_down(),
    );
    answers.extend(authenticated);
    answers.extend(broker_down);
    answers.extend(closing);

    let server = Server::start(SSEOR, &[]).await;
    let document = served_document(&server).await;
    answers.extend(oversized_heads(&server, &document).await);
    let documented = documented_statuses(&document);
    let reached = reached_statuses(&answers);
    let unreached: Vec<_> = documented.difference(&reached).collect();
    assert!(
        unreached.is_empty(),
        "documented statuses no test reached: {unreached:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let document_file = dir.path().join("openapi.json");
    let answers_file = dir.path().join("answers.json");
    std::fs::write(&document_file, document.to_string()).unwrap();
    let asked = answers.len();
    std::fs::write(&answers_file, Value::from(answers).to_string()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/openapi/check_answers.py"
    );
    let output = guard(
        Command::new(&python)
            .arg(script)
            .arg(&document_file)
            .arg(&answers_file)
            .output(),
    )
    .await
    .expect("cannot run check_answers.py");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "answers that the document does not describe:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        report.contains(&format!("{asked} answers checked, 0 failures")),
        "{report}"
    );
}
