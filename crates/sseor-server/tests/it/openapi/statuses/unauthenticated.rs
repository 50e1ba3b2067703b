//! A server without authentication, with small limits to reach: 1 KiB bodies, 300 ms
//! for a body, 2 events a batch, 2 streams in all and 1 per user, 2 events of history.

use serde_json::{Value, json};
use sseor_testkit::http;
use sseor_testkit::server::Server;

use super::asking::{Answer, ask, ask_stream, get, post_json, stalled_body};
use crate::SSEOR;

/// Every operation's answers to good and bad input, its limits reached.
pub(super) async fn answers() -> Vec<Answer> {
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
    let mut answers = Vec::new();
    // Streams: one open per user, two in all: `a`, and `b` in the topic `news`.
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
    answers.extend(publishes(&server).await);
    answers.extend(batches(&server).await);
    answers.extend(counts_and_cursors(&server).await);
    answers.extend(history(&server).await);
    answers.extend(presence(&server).await);
    // Last: it ends the stream of `b` that the presence lists.
    answers.extend(disconnects(&server).await);
    answers.extend(the_rest(&server).await);
    answers
}

/// The answers to `bodies`, each sent to `path` as JSON.
async fn posted(server: &Server, path: &str, bodies: Vec<reqwest::Body>) -> Vec<Answer> {
    let mut answers = Vec::new();
    for body in bodies {
        answers.push(ask("POST", path, post_json(server, path, body)).await);
    }
    answers
}

/// `body` sent to `path` as `text/plain`: 415.
async fn as_text(server: &Server, path: &str, body: String) -> Answer {
    let request = http()
        .post(server.url(path))
        .header("content-type", "text/plain")
        .body(body);
    ask("POST", path, request).await
}

async fn publishes(server: &Server) -> Vec<Answer> {
    let path = "/api/v1/publish";
    let ok = json!({"user_id": "a", "event": {"type": "t"}}).to_string();
    let large = json!({"event": {"type": "t", "data": {"x": "y".repeat(2000)}}});
    let empty_type = json!({"event": {"type": ""}});
    let bodies = vec![
        ok.clone().into(),
        "{".into(),
        large.to_string().into(),
        empty_type.to_string().into(),
        stalled_body(),
    ];
    let mut answers = posted(server, path, bodies).await;
    answers.push(as_text(server, path, ok).await);
    answers
}

async fn batches(server: &Server) -> Vec<Answer> {
    let path = "/api/v1/publish/batch";
    let event = json!({"type": "t"});
    let items = |items: Value| json!({ "events": items }).to_string();
    let bodies = vec![
        items(json!([{"event": event}, {"topic": "news", "event": event}])).into(),
        items(json!([])).into(),
        items(json!([{"event": event}, {"user_id": "a", "topic": "news", "event": event}])).into(),
        items(json!([{"event": event}, {"event": event}, {"event": event}])).into(),
        items(json!([{"event": {"type": "t", "data": {"x": "y".repeat(2000)}}}])).into(),
        items(json!([{"event": event}, {"event": {"type": "a\nb"}}])).into(),
        stalled_body(),
    ];
    let mut answers = posted(server, path, bodies).await;
    answers.push(as_text(server, path, items(json!([{"event": event}]))).await);
    answers
}

/// The answers to `GET path` with each of `queries`.
async fn queried(server: &Server, path: &str, queries: &[&str]) -> Vec<Answer> {
    let mut answers = Vec::new();
    for query in queries {
        let request = get(server, &format!("{path}{query}"));
        answers.push(ask("GET", path, request).await);
    }
    answers
}

async fn counts_and_cursors(server: &Server) -> Vec<Answer> {
    let mut answers = queried(
        server,
        "/api/v1/connections",
        &["?user_id=a", "", "?user_id=a&user_id=b"],
    )
    .await;
    answers.extend(queried(server, "/api/v1/cursor", &["?user_id=a&topic=n", ""]).await);
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
    let after_the_first = format!("?user_id=h&after={first}");
    let queries = [
        "?user_id=h&limit=1",
        "?topic=news",
        "?limit=0",
        &after_the_first,
    ];
    queried(server, "/api/v1/history", &queries).await
}

/// A user present and one absent, the users of a topic in pages, the topics, and each
/// way of asking wrongly.
async fn presence(server: &Server) -> Vec<Answer> {
    let mut answers = queried(
        server,
        "/api/v1/presence",
        &[
            "?user_id=a",
            "?user_id=nobody",
            "?topic=news",
            "?topic=news&limit=1&after=a",
            "",
            "?user_id=a&topic=news",
            "?user_id=a&limit=1",
            "?topic=news&after=",
            "?topic=news&limit=1001",
            "?topic=%00",
        ],
    )
    .await;
    answers.extend(
        queried(
            server,
            "/api/v1/topics",
            &["", "?limit=1&after=a", "?after=", "?limit=0"],
        )
        .await,
    );
    answers
}

/// The streams of `b` in `news` ended, and each way of asking wrongly.
async fn disconnects(server: &Server) -> Vec<Answer> {
    let path = "/api/v1/disconnect";
    let ok = json!({"user_id": "b", "topic": "news", "reason": "closed", "reconnect": true});
    let large = json!({"user_id": "a", "reason": "r".repeat(2000)});
    let bodies = vec![
        ok.to_string().into(),
        json!({}).to_string().into(),
        json!({"user_id": "a", "reason": "a\nb"}).to_string().into(),
        large.to_string().into(),
        stalled_body(),
    ];
    let mut answers = posted(server, path, bodies).await;
    let ok = json!({"user_id": "a"}).to_string();
    answers.push(as_text(server, path, ok).await);
    answers
}

/// Tickets, which this server does not issue (404), and the operations' routes.
async fn the_rest(server: &Server) -> Vec<Answer> {
    let tickets = "/api/v1/tickets";
    let mut answers = vec![ask("POST", tickets, http().post(server.url(tickets))).await];
    for path in [
        "/api/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
        "/sseor.js",
        "/sseor.mjs",
    ] {
        answers.push(ask("GET", path, get(server, path)).await);
    }
    answers
}
