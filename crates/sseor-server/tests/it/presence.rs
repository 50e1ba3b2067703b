//! `GET /api/v1/presence` and `GET /api/v1/topics` of the `sseor` binary: their answers,
//! their refusals of bad queries (400 naming the parameter), and the publisher's
//! credential they need when one is set; across two instances on Redis.

use serde_json::{Value, json};
use sseor_testkit::redis::RedisServer;
use sseor_testkit::server::{Server, command};
use sseor_testkit::{guard, http};

use crate::SSEOR;
use crate::stream::Stream;

const PUBLISH_TOKEN: &str = "presence-test-publish-token";

/// A stream of `user` and `topics` on `server`, once it has settled.
async fn open_stream(server: &Server, user: &str, topics: &[&str]) -> Stream {
    Stream::open(&server.sse_url(user, topics), None).await
}

/// Polls `path` until it answers `expected`.
async fn settle(server: &Server, path: &str, expected: &Value) {
    guard(async {
        loop {
            let (status, body) = server.get_json(path).await;
            assert_eq!(status, 200, "{body}");
            if body == *expected {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn presence_and_topics_answer_who_is_connected() {
    let server = Server::start(SSEOR, &[]).await;
    let _a = open_stream(&server, "ada", &["room", "hall"]).await;
    let _a2 = open_stream(&server, "ada", &["room"]).await;
    let _b = open_stream(&server, "bea", &["room"]).await;

    let users = |list: Value| json!({"topic": "room", "users": list, "more": false});
    settle(
        &server,
        "/api/v1/presence?topic=room",
        &users(json!([{"user_id": "ada", "connections": 2}, {"user_id": "bea", "connections": 1}])),
    )
    .await;
    let (_, first) = server.get_json("/api/v1/presence?topic=room&limit=1").await;
    assert_eq!(
        first["users"],
        json!([{"user_id": "ada", "connections": 2}])
    );
    assert_eq!(first["more"], true);
    let (_, next) = server
        .get_json("/api/v1/presence?topic=room&limit=1&after=ada")
        .await;
    assert_eq!(next, users(json!([{"user_id": "bea", "connections": 1}])));

    let (status, ada) = server.get_json("/api/v1/presence?user_id=ada").await;
    assert_eq!(status, 200);
    assert_eq!(
        ada,
        json!({"user_id": "ada", "online": true, "connections": 2})
    );
    let (_, zoe) = server.get_json("/api/v1/presence?user_id=zoe").await;
    assert_eq!(
        zoe,
        json!({"user_id": "zoe", "online": false, "connections": 0})
    );

    let (status, topics) = server.get_json("/api/v1/topics").await;
    assert_eq!(status, 200);
    let expected =
        json!([{"topic": "hall", "connections": 1}, {"topic": "room", "connections": 3}]);
    assert_eq!(topics, json!({"topics": expected, "more": false}));
    let (_, paged) = server.get_json("/api/v1/topics?after=hall&limit=5").await;
    assert_eq!(
        paged["topics"],
        json!([{"topic": "room", "connections": 3}])
    );
}

#[tokio::test]
async fn bad_presence_queries_get_400_naming_the_parameter() {
    let server = Server::start(SSEOR, &[]).await;
    for (query, named) in [
        ("/api/v1/presence", "`topic`"),
        ("/api/v1/presence?topic=a&user_id=b", "`user_id`"),
        ("/api/v1/presence?topic=", "`topic`"),
        ("/api/v1/presence?topic=a%0Ab", "`topic`"),
        ("/api/v1/presence?user_id=", "`user_id`"),
        ("/api/v1/presence?user_id=a&user_id=b", "`user_id`"),
        ("/api/v1/presence?topic=a&topic=b", "`topic`"),
        ("/api/v1/presence?user_id=a&after=b", "`after`"),
        ("/api/v1/presence?user_id=a&limit=5", "`limit`"),
        ("/api/v1/presence?topic=a&limit=0", "`limit`"),
        ("/api/v1/presence?topic=a&limit=1001", "`limit`"),
        ("/api/v1/presence?topic=a&limit=ten", "`limit`"),
        ("/api/v1/presence?topic=a&after=", "`after`"),
        ("/api/v1/presence?topic=a&after=x&after=y", "`after`"),
        ("/api/v1/topics?limit=-1", "`limit`"),
        ("/api/v1/topics?after=", "`after`"),
        ("/api/v1/topics?limit=%ff", "`limit`"),
    ] {
        let (status, body) = server.get_json(query).await;
        assert_eq!(status, 400, "{query}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(named), "{query}: {body}");
    }
}

#[tokio::test]
async fn presence_and_topics_need_the_publish_token_when_one_is_set() {
    let mut start = command(SSEOR);
    start
        .args(["--port", "0", "--log-format", "json"])
        .env("SSEOR_PUBLISH_TOKEN", PUBLISH_TOKEN);
    let server = Server::spawn(start).await;
    for path in [
        "/api/v1/presence?user_id=ada",
        "/api/v1/presence?topic=room",
        "/api/v1/topics",
    ] {
        let refused = guard(http().get(server.url(path)).send()).await.unwrap();
        assert_eq!(refused.status(), 401, "{path}");
        assert!(refused.headers().contains_key("www-authenticate"), "{path}");
        let wrong = http()
            .get(server.url(path))
            .bearer_auth("not-the-publish-token");
        assert_eq!(guard(wrong.send()).await.unwrap().status(), 401, "{path}");
        let allowed = http().get(server.url(path)).bearer_auth(PUBLISH_TOKEN);
        let allowed = guard(allowed.send()).await.unwrap();
        assert_eq!(allowed.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn presence_spans_two_servers_on_redis() {
    let redis = RedisServer::start();
    let args = ["--redis-url", &redis.url(), "--presence-ttl", "300ms"];
    let a = Server::start(SSEOR, &args).await;
    let b = Server::start(SSEOR, &args).await;
    let _on_a = open_stream(&a, "ada", &["room"]).await;
    let _on_b = open_stream(&b, "bea", &["room"]).await;
    let expected = json!({
        "topic": "room",
        "users": [{"user_id": "ada", "connections": 1}, {"user_id": "bea", "connections": 1}],
        "more": false,
    });
    settle(&a, "/api/v1/presence?topic=room", &expected).await;
    settle(&b, "/api/v1/presence?topic=room", &expected).await;
    let topics = json!({"topics": [{"topic": "room", "connections": 2}], "more": false});
    settle(&a, "/api/v1/topics", &topics).await;
    let bea = json!({"user_id": "bea", "online": true, "connections": 1});
    settle(&a, "/api/v1/presence?user_id=bea", &bea).await;
}
