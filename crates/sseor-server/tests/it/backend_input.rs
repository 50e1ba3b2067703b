//! The README's bad-input rows for the batch publish and the history, against the running
//! `sseor` binary: each refusal is a JSON error naming what is wrong (the batch's item by
//! its index), and a refused batch publishes none of its items.

use serde_json::{Value, json};
use sseor_testkit::server::Server;

use crate::SSEOR;
use crate::input::{assert_nothing_leaked, assert_refused, post, watch_for_leaks};

const BATCH: &str = "/api/v1/publish/batch";
const JSON: Option<&str> = Some("application/json");

/// An item of a batch that would reach `bob`.
fn to_bob(kind: &str) -> Value {
    json!({"user_id": "bob", "event": {"type": kind}})
}

#[tokio::test]
async fn a_bad_batch_is_refused_whole_naming_its_item_and_reaches_nobody() {
    let server = Server::start(SSEOR, &["--max-batch-events", "3"]).await;
    let mut bob = watch_for_leaks(&server).await;
    let good = to_bob("leaked");
    for (case, body, status, words) in [
        ("no events field", json!({}), 400, vec!["events"]),
        (
            "events not a list",
            json!({"events": {}}),
            400,
            vec!["events"],
        ),
        (
            "an empty batch",
            json!({"events": []}),
            400,
            vec!["at least one"],
        ),
        (
            "an unknown field in an item",
            json!({"events": [good, {"userid": "bob", "event": {"type": "t"}}]}),
            400,
            vec!["item 1", "userid"],
        ),
        (
            "a null target in an item",
            json!({"events": [good, good, {"user_id": null, "event": {"type": "t"}}]}),
            400,
            vec!["item 2", "user_id"],
        ),
        (
            "a NUL in an item's topic",
            json!({"events": [{"topic": "a\u{0}b", "event": {"type": "t"}}, good]}),
            400,
            vec!["item 0", "topic"],
        ),
        (
            "an event type with a newline",
            json!({"events": [good, {"user_id": "bob", "event": {"type": "a\nb"}}]}),
            422,
            vec!["item 1", "type"],
        ),
        (
            "more events than --max-batch-events",
            json!({"events": [good, good, good, good]}),
            413,
            vec!["3"],
        ),
    ] {
        let answer = post(&server, BATCH, JSON, &body.to_string()).await;
        let index = answer.1["index"].clone();
        assert_refused(case, answer, status, &words);
        if let Some(item) = words.iter().find_map(|word| word.strip_prefix("item ")) {
            assert_eq!(index.to_string(), item, "{case}: the index of the item");
        }
    }
    let body = json!({"events": [good]}).to_string();
    assert_refused(
        "a batch sent as text/plain",
        post(&server, BATCH, Some("text/plain"), &body).await,
        415,
        &["Content-Type"],
    );
    assert_nothing_leaked(&server, &mut bob).await;
}

#[tokio::test]
async fn bad_history_queries_are_400_naming_the_parameter_and_a_trimmed_one_410() {
    let server = Server::start(SSEOR, &["--history-size", "2"]).await;
    for (case, query, words) in [
        (
            "both a user and a topic",
            "user_id=a&topic=t",
            vec!["user_id", "topic"],
        ),
        (
            "a position that is not one",
            "user_id=a&after=later",
            vec!["after"],
        ),
        ("a limit of 0", "user_id=a&limit=0", vec!["limit"]),
        ("a limit over 1000", "user_id=a&limit=1001", vec!["limit"]),
        (
            "a limit that is not a number",
            "user_id=a&limit=ten",
            vec!["limit"],
        ),
        ("user_id twice", "user_id=a&user_id=b", vec!["user_id"]),
        ("a NUL in the topic", "topic=a%00b", vec!["topic"]),
    ] {
        let answer = server.get_json(&format!("/api/v1/history?{query}")).await;
        assert_refused(case, answer, 400, &words);
    }

    // Four events where two are kept: after the first, the second is needed and gone.
    let mut ids = Vec::new();
    for n in 0..4 {
        let event = json!({"user_id": "a", "event": {"type": "n", "data": {"n": n}}});
        let (status, answer) = server.publish(&event).await;
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    let (status, gone) = server
        .get_json(&format!("/api/v1/history?user_id=a&after={}", ids[0]))
        .await;
    assert_eq!(status, 410, "{gone}");
    assert_eq!(gone["position"], ids[3].as_str(), "{gone}");
    assert!(gone["error"].is_string(), "{gone}");
    // From the second on, what is kept is answered.
    let (status, kept) = server
        .get_json(&format!("/api/v1/history?user_id=a&after={}", ids[1]))
        .await;
    assert_eq!(status, 200, "{kept}");
    let kept: Vec<&Value> = kept["events"].as_array().unwrap().iter().collect();
    let kept_ids: Vec<&str> = kept.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(kept_ids, [ids[2].as_str(), ids[3].as_str()]);
}
