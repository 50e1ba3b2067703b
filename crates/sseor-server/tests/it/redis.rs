//! Two `sseor` processes sharing one real Redis.

use std::time::Duration;

use serde_json::{Value, json};
use sseor_testkit::guard;
use sseor_testkit::redis::{RedisServer, wait_for_subscribers};
use sseor_testkit::server::{Server, listening_command};

use crate::SSEOR;
use crate::cursor::{position_in, user};
use crate::stream::Stream;

/// Starts `sseor` on `redis_url` and returns it with its base URL, once it is ready.
async fn start(redis_url: &str) -> (Server, String) {
    start_with(redis_url, &[]).await
}

async fn start_with(redis_url: &str, args: &[&str]) -> (Server, String) {
    let mut command = listening_command(SSEOR);
    command
        .args(["--probe-interval", "100ms"])
        .args(args)
        .env("REDIS_URL", redis_url);
    let server = Server::spawn(command).await;
    assert_eq!(server.listening_log()["fields"]["broker"], "redis");
    let base = server.url("");
    guard(async {
        while reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status()
            != 200
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    (server, base)
}

/// The stream of `user` on `base`, once it has started.
async fn subscribe(base: &str, user: &str) -> Stream {
    Stream::open(&format!("{base}/api/v1/sse?user_id={user}"), None).await
}

/// The types of the next `count` events of `stream`.
async fn next_types(stream: &mut Stream, count: usize) -> Vec<String> {
    let mut types = Vec::new();
    while types.len() < count {
        types.push(stream.next_event().await.event);
    }
    types
}

async fn publish(base: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/publish"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    response.json().await.unwrap()
}

#[tokio::test]
async fn two_servers_and_redis_cli_deliver_exactly_once() {
    let redis = RedisServer::start();
    let (_a, a) = start(&redis.url()).await;
    let (_b, b) = start(&redis.url()).await;
    let mut alice_on_a = subscribe(&a, "alice").await;
    let mut alice_on_b = subscribe(&b, "alice").await;
    let mut bob_on_b = subscribe(&b, "bob").await;
    wait_for_subscribers(&redis, "sseor:{user:alice}", "2").await;
    wait_for_subscribers(&redis, "sseor:{user:bob}", "1").await;

    let via_a = publish(&a, json!({"user_id": "alice", "event": {"type": "via-a"}})).await;
    assert_eq!(via_a["instances"], 2);
    publish(&b, json!({"user_id": "bob", "event": {"type": "via-b"}})).await;
    redis.cli(&[
        "PUBLISH",
        "sseor:{user:alice}",
        r#"{"id":"cli-1","type":"via-cli","data":{"from":"redis-cli"}}"#,
    ]);
    publish(&a, json!({"event": {"type": "everyone"}})).await;

    for alice in [&mut alice_on_a, &mut alice_on_b] {
        let via_a_event = alice.next_event().await;
        assert_eq!(via_a_event.event, "via-a");
        assert_eq!(
            position_in(&via_a_event.id, &user("alice")),
            via_a["id"].as_str().unwrap()
        );
        // Another Redis client's event has no position: it comes without an `id:`.
        let via_cli = alice.next_event().await;
        assert_eq!(
            (via_cli.event.as_str(), via_cli.id.as_str()),
            ("via-cli", "")
        );
        assert_eq!(alice.next_event().await.event, "everyone");
    }
    assert_eq!(next_types(&mut bob_on_b, 2).await, ["via-b", "everyone"]);
}

async fn counts(base: &str, user: &str) -> Value {
    reqwest::get(format!("{base}/api/v1/connections?user_id={user}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_killed_instance_drops_out_of_the_cluster_counts() {
    let redis = RedisServer::start();
    let fast = ["--presence-ttl", "900ms"];
    let (_a, a) = start_with(&redis.url(), &fast).await;
    let (mut b, b_base) = start_with(&redis.url(), &fast).await;
    let _on_a = subscribe(&a, "zed").await;
    let _on_b = subscribe(&b_base, "zed").await;
    guard(async {
        while counts(&a, "zed").await["cluster_user"] != 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let seen = counts(&a, "zed").await;
    assert_eq!(
        (seen["user"].clone(), seen["cluster_total"].clone()),
        (json!(1), json!(2))
    );

    b.signal("KILL"); // no goodbye
    b.wait_exit().await;
    guard(async {
        while counts(&a, "zed").await["cluster_user"] != 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(counts(&a, "zed").await["cluster_total"], 1);
}

#[tokio::test]
async fn a_client_of_a_killed_instance_resumes_on_another_with_nothing_lost_or_twice() {
    let redis = RedisServer::start();
    let (mut a, a_base) = start(&redis.url()).await;
    let (_b, b) = start(&redis.url()).await;
    let mut on_a = subscribe(&a_base, "vera").await;
    wait_for_subscribers(&redis, "sseor:{user:vera}", "1").await;
    let number = |n: u64| json!({"user_id": "vera", "event": {"type": "n", "data": {"n": n}}});
    for n in 0..3 {
        publish(&b, number(n)).await;
    }
    let mut last = String::new();
    for n in 0..3 {
        let event = on_a.next_event().await;
        assert_eq!(event.n(), Some(n));
        last = event.id;
    }

    a.signal("KILL");
    a.wait_exit().await;
    for n in 3..40 {
        publish(&b, number(n)).await;
    }
    let mut on_b = Stream::open(&format!("{b}/api/v1/sse?user_id=vera"), Some(&last)).await;
    for n in 3..40 {
        assert_eq!(on_b.next_event().await.n(), Some(n));
    }
    wait_for_subscribers(&redis, "sseor:{user:vera}", "1").await;
    publish(&b, number(40)).await;
    assert_eq!(on_b.next_event().await.n(), Some(40));
}
