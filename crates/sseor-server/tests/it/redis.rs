//! Two `sseor` processes sharing one real Redis.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use sseor_testkit::guard;
use sseor_testkit::redis::{RedisServer, wait_for_subscribers};
use sseor_testkit::server::{Server, listening_command};
use sseor_testkit::sse::events_of;

use crate::SSEOR;

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

async fn subscribe(
    base: &str,
    user: &str,
) -> impl futures_util::Stream<Item = eventsource_stream::Event> + Unpin {
    let response = reqwest::get(format!("{base}/api/v1/sse?user_id={user}"))
        .await
        .unwrap();
    events_of(response)
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
    wait_for_subscribers(&redis, "sseor:user:alice", "2").await;
    wait_for_subscribers(&redis, "sseor:user:bob", "1").await;

    let via_a = publish(&a, json!({"user_id": "alice", "event": {"type": "via-a"}})).await;
    assert_eq!(via_a["instances"], 2);
    publish(&b, json!({"user_id": "bob", "event": {"type": "via-b"}})).await;
    redis.cli(&[
        "PUBLISH",
        "sseor:user:alice",
        r#"{"id":"cli-1","type":"via-cli","data":{"from":"redis-cli"}}"#,
    ]);
    publish(&a, json!({"event": {"type": "everyone"}})).await;

    for alice in [&mut alice_on_a, &mut alice_on_b] {
        let received: Vec<String> = guard(alice.by_ref().take(3).map(|e| e.event).collect()).await;
        assert_eq!(received, ["via-a", "via-cli", "everyone"]);
    }
    let received: Vec<String> = guard(bob_on_b.by_ref().take(2).map(|e| e.event).collect()).await;
    assert_eq!(received, ["via-b", "everyone"]);
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
    wait_for_subscribers(&redis, "sseor:user:vera", "1").await;
    let number = |n: u64| json!({"user_id": "vera", "event": {"type": "n", "data": {"n": n}}});
    for n in 0..3 {
        publish(&b, number(n)).await;
    }
    let mut last = String::new();
    for n in 0..3 {
        let event = guard(on_a.next()).await.unwrap();
        assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap()["n"], n);
        last = event.id;
    }

    a.signal("KILL");
    a.wait_exit().await;
    for n in 3..40 {
        publish(&b, number(n)).await;
    }
    let response = reqwest::Client::new()
        .get(format!("{b}/api/v1/sse?user_id=vera"))
        .header("last-event-id", &last)
        .send()
        .await
        .unwrap();
    let mut on_b = events_of(response);
    for n in 3..40 {
        let event = guard(on_b.next()).await.unwrap();
        assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap()["n"], n);
    }
    wait_for_subscribers(&redis, "sseor:user:vera", "1").await;
    publish(&b, number(40)).await;
    let event = guard(on_b.next()).await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap()["n"], 40);
}
