//! `POST /api/v1/disconnect` against the real `sseor` binary: across two servers on one
//! Redis, while Redis is down, with bad input, and behind the publish credential.

use std::time::Duration;

use serde_json::{Value, json};
use sseor_testkit::redis::{RedisServer, wait_for_subscribers};
use sseor_testkit::server::{Server, listening_command};
use sseor_testkit::sse::{Client, data_of};
use sseor_testkit::{guard, http};

use crate::SSEOR;

const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

/// `sseor` on `redis_url`, noticing faults fast, once ready.
async fn on_redis(redis_url: &str, envs: &[(&str, &str)]) -> Server {
    let mut command = listening_command(SSEOR);
    command
        .args(["--probe-interval", "100ms", "--redis-timeout", "300ms"])
        .env("REDIS_URL", redis_url)
        .envs(envs.iter().copied());
    let server = Server::spawn(command).await;
    guard(async {
        while server.get_json("/readyz").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    server
}

/// The stream of `user` on `server`, once live (its opening id came).
async fn live(server: &Server, user: &str) -> Client {
    let mut client = server.subscribe(user, &[]).await;
    client.opening_id().await;
    client
}

/// POSTs `body` to `/api/v1/disconnect` as JSON.
async fn disconnect(server: &Server, body: &Value) -> (u16, Value) {
    let bytes = body.to_string().into_bytes();
    server.post_to("/api/v1/disconnect", &JSON, bytes).await
}

#[tokio::test]
async fn a_disconnect_through_one_server_ends_the_users_streams_on_another() {
    let redis = RedisServer::start();
    let a = on_redis(&redis.url(), &[]).await;
    let b = on_redis(&redis.url(), &[]).await;
    let mut alice_on_a = live(&a, "alice").await;
    let mut bob_on_a = live(&a, "bob").await;
    wait_for_subscribers(&redis, "sseor:{user:alice}", "1").await;

    let asked = json!({"user_id": "alice", "reason": "banned"});
    assert_eq!(
        disconnect(&b, &asked).await,
        (200, json!({"disconnected": 0, "instances": 1}))
    );
    let last = alice_on_a.next_event().await;
    assert_eq!(last.event, "sseor.disconnect");
    assert_eq!(
        data_of(&last),
        json!({"reason": "banned", "reconnect": false})
    );
    assert!(alice_on_a.try_next_event().await.is_none(), "a clean end");
    a.wait_for_connections("alice", (0, 1)).await;

    let note = json!({"user_id": "bob", "event": {"type": "note"}});
    assert_eq!(b.publish(&note).await.0, 202);
    assert_eq!(bob_on_a.next_event().await.event, "note");
}

#[tokio::test]
async fn a_disconnect_while_redis_is_down_is_answered_503_and_ends_nothing() {
    let mut redis = RedisServer::start();
    let server = on_redis(&redis.url(), &[]).await;
    let _alice = live(&server, "alice").await;
    redis.kill();
    let response = guard(
        http()
            .post(server.url("/api/v1/disconnect"))
            .json(&json!({"user_id": "alice"}))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("broker unavailable"),
        "{body}"
    );
    assert_eq!(server.connections("alice").await, (1, 1));
}

#[tokio::test]
async fn bad_disconnect_requests_are_refused_naming_the_field_and_end_nothing() {
    let server = Server::start(SSEOR, &[]).await;
    let mut alice = live(&server, "alice").await;
    let long = "r".repeat(257);
    let cases: [(&str, Value, &str); 11] = [
        ("no user", json!({"reason": "x"}), "user_id"),
        ("null user", json!({"user_id": null}), "user_id"),
        ("empty user", json!({"user_id": ""}), "user_id"),
        (
            "hidden character",
            json!({"user_id": "ali\u{202e}ce"}),
            "user_id",
        ),
        (
            "null topic",
            json!({"user_id": "alice", "topic": null}),
            "topic",
        ),
        (
            "empty topic",
            json!({"user_id": "alice", "topic": ""}),
            "topic",
        ),
        (
            "long reason",
            json!({"user_id": "alice", "reason": long}),
            "reason",
        ),
        (
            "LF in reason",
            json!({"user_id": "alice", "reason": "a\nb"}),
            "reason",
        ),
        (
            "number reason",
            json!({"user_id": "alice", "reason": 7}),
            "reason",
        ),
        (
            "text reconnect",
            json!({"user_id": "alice", "reconnect": "no"}),
            "reconnect",
        ),
        (
            "unknown field",
            json!({"user_id": "alice", "userid": "x"}),
            "userid",
        ),
    ];
    for (case, body, field) in cases {
        let (status, answer) = disconnect(&server, &body).await;
        assert_eq!(status, 400, "{case}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(field),
            "{case}: `{field}` not named: {answer}"
        );
    }
    let raw = |body: &str| body.as_bytes().to_vec();
    let (status, answer) = server
        .post_to(
            "/api/v1/disconnect",
            &JSON,
            raw(r#"{"user_id":"alice"} {}"#),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let plain = [("content-type", "text/plain")];
    let (status, answer) = server
        .post_to("/api/v1/disconnect", &plain, raw(r#"{"user_id":"alice"}"#))
        .await;
    assert_eq!(status, 415, "{answer}");

    // Nothing ended: the stream is counted and receives what comes next.
    assert_eq!(server.connections("alice").await, (1, 1));
    let note = json!({"user_id": "alice", "event": {"type": "note"}});
    assert_eq!(server.publish(&note).await.0, 202);
    assert_eq!(alice.next_event().await.event, "note");
}

#[tokio::test]
async fn a_disconnect_needs_the_publish_credential() {
    const TOKEN: &str = "sseor-disconnect-publish-token-7";
    let mut command = listening_command(SSEOR);
    command.env("SSEOR_PUBLISH_TOKEN", TOKEN);
    let server = Server::spawn(command).await;
    let mut alice = live(&server, "alice").await;
    let body = || br#"{"user_id":"alice","reconnect":true}"#.to_vec();
    let (status, answer) = server.post_to("/api/v1/disconnect", &JSON, body()).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (401, Some("missing")),
        "{answer}"
    );

    let bearer = format!("Bearer {TOKEN}");
    let headers = [JSON[0], ("authorization", bearer.as_str())];
    let answered = server.post_to("/api/v1/disconnect", &headers, body()).await;
    assert_eq!(answered, (200, json!({"disconnected": 1})));
    let last = alice.next_event().await;
    assert_eq!(
        data_of(&last),
        json!({"reason": "disconnected", "reconnect": true})
    );
    assert_eq!(
        last.retry, None,
        "a client allowed back keeps the server's delay"
    );
    assert!(alice.try_next_event().await.is_none(), "a clean end");
}
