//! `POST /api/v1/publish/batch` and `publish_batch`, on the embedded broker and on Redis:
//! the items reach their streams at the positions the answer gives, in order per target;
//! a bad item refuses the whole batch, naming its index, and nothing is published; empty
//! and oversized batches are refused; publishers need their credential; and a batch Redis
//! cannot take answers 503 with one error per item.

use std::collections::HashMap;

use eventsource_stream::Event as SseEvent;
use serde_json::{Value, json};
use sseor::{Error, Event, Manager, Position, Publisher, Target};
use sseor_testkit::library::Server;
use sseor_testkit::redis::{RedisServer, wait_for_subscribers};
use sseor_testkit::sse::Client;
use sseor_testkit::{guard, http};

use crate::common::{
    ALL_CHANNEL, instance, open_live, position_in, publish, redis_builder, topic_channel,
    user_channel, wait_ready,
};

/// POSTs `body` as JSON to the server's `/api/v1/publish/batch`, with `token` as the
/// bearer credential when given; the status and the JSON answer.
async fn post_batch(server: &Server, body: &Value, token: Option<&str>) -> (u16, Value) {
    let mut request = http().post(server.url("/api/v1/publish/batch")).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = guard(request.send()).await.unwrap();
    let status = response.status().as_u16();
    (status, guard(response.json()).await.unwrap())
}

/// The batch of the ordering tests: events to alice, to the topic `news`, to everyone and
/// to bob, interleaved. Each event's type names its target; its data holds its index.
fn mixed_batch() -> Vec<Value> {
    let targets = [
        json!({"user_id": "alice"}),
        json!({"topic": "news"}),
        json!({}),
        json!({"user_id": "bob"}),
        json!({"user_id": "alice"}),
        json!({"topic": "news"}),
        json!({"user_id": "alice"}),
        json!({}),
        json!({"topic": "news"}),
        json!({"user_id": "bob"}),
    ];
    targets
        .into_iter()
        .enumerate()
        .map(|(index, mut item)| {
            let kind = match (&item["user_id"], &item["topic"]) {
                (Value::String(user), _) => format!("user:{user}"),
                (_, Value::String(topic)) => format!("topic:{topic}"),
                _ => "all".to_owned(),
            };
            item["event"] = json!({"type": kind, "data": {"index": index}});
            item
        })
        .collect()
}

/// The target an event of [`mixed_batch`] went to, from its type.
fn target_of(event: &SseEvent) -> Target {
    if let Some(user) = event.event.strip_prefix("user:") {
        return Target::user(user).unwrap();
    }
    match event.event.strip_prefix("topic:") {
        Some(topic) => Target::topic(topic).unwrap(),
        None => Target::All,
    }
}

/// Reads `count` events of `client`; checks that each carries, as its target's position,
/// the id the batch's answer gave its item, and that each target's events come in the
/// order of the items.
async fn assert_received_in_order(client: &mut Client, count: usize, results: &[Value]) {
    let mut last_index: HashMap<Target, u64> = HashMap::new();
    for _ in 0..count {
        let event = client.next_event().await;
        let target = target_of(&event);
        let data: Value = serde_json::from_str(&event.data).unwrap();
        let index = data["index"].as_u64().unwrap();
        let answered: Position = results[index as usize]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("item {index} has no id: {results:?}"))
            .parse()
            .unwrap();
        assert_eq!(position_in(&event.id, &target), answered, "item {index}");
        if let Some(before) = last_index.insert(target.clone(), index) {
            assert!(before < index, "{target}: item {index} came after {before}");
        }
    }
}

/// Publishes [`mixed_batch`] to `server` with alice (joined to `news`) and bob listening;
/// each receives exactly its events, in order, at the positions answered.
async fn mixed_targets_arrive_in_order(server: &Server, redis: Option<&RedisServer>) {
    let mut alice = open_live(server, "alice", &["news"]).await;
    let mut bob = open_live(server, "bob", &[]).await;
    if let Some(redis) = redis {
        wait_for_subscribers(redis, &user_channel("alice"), "1").await;
        wait_for_subscribers(redis, &user_channel("bob"), "1").await;
        wait_for_subscribers(redis, &topic_channel("news"), "1").await;
        wait_for_subscribers(redis, ALL_CHANNEL, "1").await;
    }
    let (status, answer) = post_batch(server, &json!({"events": mixed_batch()}), None).await;
    assert_eq!(status, 202, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 10, "{answer}");
    // alice: her 3, the 3 of `news`, the 2 broadcasts; bob: his 2 and the broadcasts.
    assert_received_in_order(&mut alice, 8, results).await;
    assert_received_in_order(&mut bob, 4, results).await;
    let (status, _) = publish(server, json!({"user_id": "bob", "event": {"type": "end"}})).await;
    assert_eq!(status, 202);
    assert_eq!(bob.next_event().await.event, "end", "bob got more than his");
}

#[tokio::test]
async fn mixed_targets_arrive_in_order_at_the_answered_positions_on_the_embedded_broker() {
    let server = Server::start().await;
    mixed_targets_arrive_in_order(&server, None).await;
}

#[tokio::test]
async fn mixed_targets_arrive_in_order_at_the_answered_positions_on_redis() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    mixed_targets_arrive_in_order(&server, Some(&redis)).await;
}

/// A valid item to bob, the user who must not receive anything of a refused batch.
fn to_bob(n: usize) -> Value {
    json!({"user_id": "bob", "event": {"type": "leaked", "data": {"n": n}}})
}

/// Sends batches whose item 2 is bad, each refused whole with that index; then bob's first
/// event is the marker published after them.
async fn a_bad_item_refuses_the_whole_batch(server: &Server, redis: Option<&RedisServer>) {
    let mut bob = open_live(server, "bob", &[]).await;
    if let Some(redis) = redis {
        wait_for_subscribers(redis, &user_channel("bob"), "1").await;
    }
    let oversize = json!({"type": "big", "data": {"blob": "x".repeat(2048)}});
    let cases = [
        (
            json!({"user_id": "bob", "event": {"type": "x"}, "extra": 1}),
            400,
            "extra",
        ),
        (
            json!({"user_id": "bob", "topic": "news", "event": {"type": "x"}}),
            400,
            "not both",
        ),
        (
            json!({"user_id": null, "event": {"type": "x"}}),
            400,
            "user_id",
        ),
        (
            json!({"user_id": "bob", "event": {"type": "x", "date": {}}}),
            400,
            "date",
        ),
        (
            json!({"user_id": "bob", "event": {"type": ""}}),
            422,
            "`type`",
        ),
        (
            json!({"user_id": "bob", "event": {"type": "a\nevent: forged"}}),
            422,
            "`type`",
        ),
        (
            json!({"user_id": "bob", "event": oversize}),
            413,
            "1024 bytes",
        ),
        (
            json!({"user_id": "", "event": {"type": "x"}}),
            400,
            "user_id",
        ),
        (json!("bob"), 400, "invalid type"),
    ];
    for (bad, expected, word) in cases {
        let batch = json!({"events": [to_bob(0), to_bob(1), bad, to_bob(3)]});
        let (status, answer) = post_batch(server, &batch, None).await;
        assert_eq!(status, expected, "{bad}: {answer}");
        assert_eq!(answer["index"], 2, "{bad}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.starts_with("item 2: "), "{bad}: {message}");
        assert!(message.contains(word), "{bad}: `{word}` not in {message}");
    }
    let marker = json!({"user_id": "bob", "event": {"type": "marker"}});
    assert_eq!(publish(server, marker).await.0, 202);
    assert_eq!(
        bob.next_event().await.event,
        "marker",
        "an item of a refused batch was published"
    );
}

#[tokio::test]
async fn a_bad_item_refuses_the_whole_batch_with_its_index_on_the_embedded_broker() {
    let server = Server::with(Manager::builder().max_body_bytes(1024)).await;
    a_bad_item_refuses_the_whole_batch(&server, None).await;
}

#[tokio::test]
async fn a_bad_item_refuses_the_whole_batch_with_its_index_on_redis() {
    let redis = RedisServer::start();
    let server = Server::with(redis_builder(&redis.url()).max_body_bytes(1024)).await;
    wait_ready(&server.manager).await;
    a_bad_item_refuses_the_whole_batch(&server, Some(&redis)).await;
}

#[tokio::test]
async fn empty_too_many_and_too_large_batches_are_refused_and_publish_nothing() {
    let builder = Manager::builder()
        .max_batch_events(3)
        .max_batch_body_bytes(4096);
    let server = Server::with(builder).await;
    let mut bob = open_live(&server, "bob", &[]).await;

    let (status, answer) = post_batch(&server, &json!({"events": []}), None).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("at least one"),
        "{answer}"
    );

    let four = json!({"events": [to_bob(0), to_bob(1), to_bob(2), to_bob(3)]});
    let (status, answer) = post_batch(&server, &four, None).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("at most 3"),
        "{answer}"
    );

    let big = json!({"user_id": "bob", "event": {"type": "big", "data": {"b": "x".repeat(3000)}}});
    let (status, answer) = post_batch(&server, &json!({"events": [big.clone(), big]}), None).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("4096"),
        "{answer}"
    );

    for body in [
        json!({}),
        json!({"events": null}),
        json!({"events": [], "more": 1}),
    ] {
        let (status, answer) = post_batch(&server, &body, None).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let response = guard(
        http()
            .post(server.url("/api/v1/publish/batch"))
            .body(json!({"events": [to_bob(0)]}).to_string())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 415, "a batch not sent as JSON");

    let marker = json!({"user_id": "bob", "event": {"type": "marker"}});
    assert_eq!(publish(&server, marker).await.0, 202);
    assert_eq!(bob.next_event().await.event, "marker");
}

#[tokio::test]
async fn a_batch_needs_the_publish_token_when_one_is_set() {
    const TOKEN: &str = "batch-test-publish-token-0123456789";
    let server = Server::with(Manager::builder().publish_token(TOKEN)).await;
    let batch = json!({"events": [to_bob(0)]});
    let (status, answer) = post_batch(&server, &batch, None).await;
    assert_eq!(
        (status, &answer["reason"]),
        (401, &json!("missing")),
        "{answer}"
    );
    let (status, answer) = post_batch(&server, &batch, Some("not-the-token")).await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = post_batch(&server, &batch, Some(TOKEN)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["results"][0]["delivered_locally"], 0, "{answer}");
}

#[tokio::test]
async fn a_batch_redis_cannot_take_is_503_with_an_error_per_item() {
    let mut redis = RedisServer::start();
    let server = instance(&redis).await;
    redis.kill();
    let batch = json!({"events": [to_bob(0), {"topic": "news", "event": {"type": "x"}}]});
    let response = guard(
        http()
            .post(server.url("/api/v1/publish/batch"))
            .json(&batch)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let answer: Value = guard(response.json()).await.unwrap();
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{answer}");
    for result in results {
        assert!(result["error"].as_str().is_some(), "{answer}");
        assert!(result.get("id").is_none(), "{answer}");
    }
}

#[tokio::test]
async fn the_libraries_batches_are_checked_whole_then_published_in_order() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let mut alice = open_live(&server, "alice", &[]).await;
    wait_for_subscribers(&redis, &user_channel("alice"), "1").await;
    let alice_target = Target::user("alice").unwrap();
    let numbered = |n: u64| {
        (
            alice_target.clone(),
            Event::new("n").with_data(json!({"n": n})),
        )
    };

    let leaked = (alice_target.clone(), Event::new("leaked"));

    let publisher = Publisher::new(&redis.url()).await.unwrap();
    let refused = publisher
        .publish_batch(vec![leaked.clone(), (Target::All, Event::new("")), leaked])
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidBatchItem { index: 1, .. })),
        "{refused:?}"
    );
    let too_many = (0..=sseor::MAX_BATCH_EVENTS as u64).map(numbered).collect();
    let refused = publisher.publish_batch(too_many).await;
    assert!(
        matches!(refused, Err(Error::BatchTooLarge { .. })),
        "{refused:?}"
    );

    // Half through the manager, half through the publisher: each batch in its order.
    let by_manager = server
        .manager
        .publish_batch((0..50).map(numbered).collect())
        .await
        .unwrap();
    let by_publisher = publisher
        .publish_batch((50..100).map(numbered).collect())
        .await
        .unwrap();
    for (n, published) in by_manager.iter().chain(&by_publisher).enumerate() {
        let event = guard(alice.next_event()).await;
        assert_eq!(event.event, "n", "an item of a refused batch was published");
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["n"], n, "events out of order");
        let answered: Position = published
            .as_ref()
            .unwrap()
            .id
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(position_in(&event.id, &alice_target), answered);
    }
}
