//! `GET /api/v1/history` and `Manager::history`: what a target's history holds, on the
//! embedded broker and on a real `redis-server`.

use std::time::Duration;

use serde_json::{Value, json};
use sseor::{Manager, Position};
use sseor_testkit::library::Server;
use sseor_testkit::redis::RedisServer;
use sseor_testkit::{guard, http};

use crate::common::{numbered, published_position, redis_builder, wait_ready};

/// GETs `path`; the status and the JSON answer.
async fn get(server: &Server, path: &str) -> (u16, Value) {
    let response = guard(http().get(server.url(path)).send()).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The `n` of each event in a history answer, and their ids.
fn numbers_and_ids(answer: &Value) -> (Vec<u64>, Vec<String>) {
    let events = answer["events"].as_array().expect("events");
    let numbers = events
        .iter()
        .map(|e| e["event"]["data"]["n"].as_u64().expect("a numbered event"))
        .collect();
    let ids = events
        .iter()
        .map(|e| e["id"].as_str().expect("an id").to_owned())
        .collect();
    (numbers, ids)
}

/// Publishes events 1..=5 to user `una`, 10 and 11 to topic `news` and 20 to everyone;
/// the positions of una's.
async fn publish_some(manager: &Manager) -> Vec<Position> {
    let mut positions = Vec::new();
    for n in 1..=5 {
        positions.push(published_position(
            &manager.publish("una", numbered(n)).await.unwrap(),
        ));
    }
    for n in [10, 11] {
        manager.publish_to_topic("news", numbered(n)).await.unwrap();
    }
    manager.publish_to_all(numbered(20)).await.unwrap();
    positions
}

/// What the history API answers on `server`, whatever its broker.
async fn the_history_api_reads_each_target(server: &Server) {
    let una = publish_some(&server.manager).await;
    // Everything kept, each with the position its publish answered.
    let (status, answer) = get(server, "/api/v1/history?user_id=una").await;
    assert_eq!(status, 200, "{answer}");
    let (numbers, ids) = numbers_and_ids(&answer);
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
    let expected: Vec<String> = una.iter().map(ToString::to_string).collect();
    assert_eq!(ids, expected);
    assert_eq!(answer["position"], json!(una[4].to_string()));
    assert_eq!(answer["more"], json!(false));
    // After a position, and at most `limit`.
    let path = format!("/api/v1/history?user_id=una&after={}&limit=2", una[1]);
    let (status, answer) = get(server, &path).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(numbers_and_ids(&answer).0, [3, 4]);
    assert_eq!(answer["more"], json!(true));
    // After the last: nothing.
    let path = format!("/api/v1/history?user_id=una&after={}", una[4]);
    assert_eq!(
        numbers_and_ids(&get(server, &path).await.1).0,
        Vec::<u64>::new()
    );
    // A topic, and the broadcasts.
    let (_, answer) = get(server, "/api/v1/history?topic=news").await;
    assert_eq!(numbers_and_ids(&answer).0, [10, 11]);
    let (_, answer) = get(server, "/api/v1/history").await;
    assert_eq!(numbers_and_ids(&answer).0, [20]);
    // A target never published to: nothing, and no position.
    let (status, answer) = get(server, "/api/v1/history?user_id=nobody").await;
    assert_eq!(
        (status, numbers_and_ids(&answer).0),
        (200, vec![]),
        "{answer}"
    );
}

/// What the history API refuses, with the reason.
async fn bad_queries_are_refused(server: &Server) {
    for (query, says) in [
        ("user_id=a&topic=b", "not both"),
        ("user_id=a&user_id=b", "more than once"),
        ("user_id=a&after=yesterday", "`after`"),
        ("user_id=a&limit=0", "`limit`"),
        ("user_id=a&limit=1001", "`limit`"),
        ("user_id=a&limit=ten", "`limit`"),
        ("topic=", "topic"),
    ] {
        let (status, answer) = get(server, &format!("/api/v1/history?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{query}: {error}");
    }
}

#[tokio::test]
async fn the_history_api_reads_each_target_on_the_embedded_broker() {
    let server = Server::with(Manager::builder()).await;
    the_history_api_reads_each_target(&server).await;
    bad_queries_are_refused(&server).await;
}

#[tokio::test]
async fn the_history_api_reads_each_target_on_redis() {
    let redis = RedisServer::start();
    let server = Server::with(redis_builder(&redis.url())).await;
    wait_ready(&server.manager).await;
    the_history_api_reads_each_target(&server).await;
    bad_queries_are_refused(&server).await;
}

/// A position the history no longer reaches answers 410 with where the target stands.
async fn a_trimmed_position_is_gone(server: &Server) {
    let first = published_position(&server.manager.publish("vic", numbered(1)).await.unwrap());
    let mut last = first;
    for n in 2..=40 {
        last = published_position(&server.manager.publish("vic", numbered(n)).await.unwrap());
    }
    let (status, answer) = get(
        server,
        &format!("/api/v1/history?user_id=vic&after={first}"),
    )
    .await;
    assert_eq!(status, 410, "{answer}");
    assert_eq!(answer["position"], json!(last.to_string()));
    assert!(
        answer["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{answer}"
    );
    // Without `after`: what is kept, the newest last.
    let (status, answer) = get(server, "/api/v1/history?user_id=vic").await;
    assert_eq!(status, 200, "{answer}");
    let numbers = numbers_and_ids(&answer).0;
    assert_eq!(numbers.last(), Some(&40));
    assert!(numbers.len() < 40, "trimmed: {numbers:?}");
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "in order: {numbers:?}"
    );
}

#[tokio::test]
async fn a_position_the_history_no_longer_reaches_is_gone_on_the_embedded_broker() {
    let builder = Manager::builder().history(5, Duration::from_secs(3600));
    a_trimmed_position_is_gone(&Server::with(builder).await).await;
}

#[tokio::test]
async fn a_position_the_history_no_longer_reaches_is_gone_on_redis() {
    let redis = RedisServer::start();
    let builder = redis_builder(&redis.url()).history(5, Duration::from_secs(3600));
    let server = Server::with(builder).await;
    wait_ready(&server.manager).await;
    a_trimmed_position_is_gone(&server).await;
}
