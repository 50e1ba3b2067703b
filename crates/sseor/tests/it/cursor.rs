//! The cursor at render time (`GET /api/v1/cursor`, `Manager::cursor`): a stream opened
//! later from it gets exactly what was published after it was taken, on the embedded
//! broker and on Redis.

use std::time::Duration;

use http::request::Parts;
use serde_json::Value;
use sseor::auth::{AuthReason, Grant};
use sseor::{Error, Manager};
use sseor_testkit::library::Server;
use sseor_testkit::redis::RedisServer;
use sseor_testkit::sse::Client;
use sseor_testkit::{guard, http};

use crate::common::{instance, n_of, numbered};

/// `GET /api/v1/cursor?QUERY` with `headers`: the status and the JSON answer.
async fn get_cursor(server: &Server, query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = http().get(server.url(&format!("/api/v1/cursor?{query}")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = guard(request.send()).await.unwrap();
    let status = response.status().as_u16();
    (status, guard(response.json()).await.unwrap())
}

/// The cursor the API answers for `query`; panics on a refusal.
async fn cursor_of(server: &Server, query: &str) -> String {
    let (status, answer) = get_cursor(server, query, &[]).await;
    assert_eq!(status, 200, "{answer}");
    answer["cursor"].as_str().unwrap().to_owned()
}

/// Awaits `publish`, then lets the clock pass the millisecond: Redis orders the events
/// of different targets by the millisecond they were published in.
async fn publish_apart(
    publish: impl std::future::Future<Output = sseor::Result<sseor::Published>>,
) {
    publish.await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
}

/// Events before the cursor (to the user and everyone; the topic has none yet), the
/// cursor, events after it to the user, the topic, everyone and others; then a stream
/// opened from the cursor gets exactly the stream's events after it, in order, then live.
async fn events_after_the_cursor_and_only_those_reach_a_stream_opened_from_it(server: &Server) {
    let manager = &server.manager;
    publish_apart(manager.publish("u", numbered(0))).await;
    publish_apart(manager.publish_to_all(numbered(1))).await;
    let cursor = cursor_of(server, "user_id=u&topic=news").await;
    assert!(cursor.starts_with("1."), "{cursor}");

    publish_apart(manager.publish("u", numbered(2))).await;
    publish_apart(manager.publish_to_topic("news", numbered(3))).await;
    publish_apart(manager.publish_to_topic("sports", numbered(90))).await;
    publish_apart(manager.publish_to_all(numbered(4))).await;
    publish_apart(manager.publish("someone-else", numbered(91))).await;
    publish_apart(manager.publish("u", numbered(5))).await;

    let url = server.url(&format!(
        "/api/v1/sse?user_id=u&topic=news&last_event_id={cursor}"
    ));
    let mut client = Client::connect(&url).await;
    for n in [2, 3, 4, 5] {
        let event = client.next_event().await;
        assert_eq!(event.event, "n", "no reset: {event:?}");
        assert_eq!(n_of(&event), n);
    }
    manager.publish_to_topic("news", numbered(6)).await.unwrap();
    assert_eq!(
        n_of(&client.next_event().await),
        6,
        "then live, with nothing before it"
    );
}

#[tokio::test]
async fn a_stream_opened_from_a_cursor_gets_exactly_what_was_published_after_it() {
    let server = Server::start().await;
    events_after_the_cursor_and_only_those_reach_a_stream_opened_from_it(&server).await;
}

#[tokio::test]
async fn a_stream_opened_from_a_cursor_gets_exactly_what_was_published_after_it_on_redis() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    events_after_the_cursor_and_only_those_reach_a_stream_opened_from_it(&server).await;
}

#[tokio::test]
async fn the_library_cursor_is_the_one_the_api_answers_and_a_fresh_stream_holds() {
    let server = Server::start().await;
    server.manager.publish("u", numbered(0)).await.unwrap();
    server
        .manager
        .publish_to_topic("news", numbered(1))
        .await
        .unwrap();
    let cursor = server.manager.cursor("u", &["news"]).await.unwrap();
    assert_eq!(cursor, cursor_of(&server, "user_id=u&topic=news").await);
    let mut client = Client::connect(&server.url("/api/v1/sse?user_id=u&topic=news")).await;
    assert_eq!(
        client.opening_id().await,
        cursor,
        "a stream opened now starts where the cursor says"
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_400_naming_it() {
    let server = Server::with(Manager::builder().max_topics(2)).await;
    for (query, names) in [
        ("", "user_id"),
        ("topic=news", "user_id"),
        ("user_id=", "user"),
        ("user_id=a&user_id=b", "user_id"),
        ("user_id=%ff", "user_id"),
        ("user_id=bob&topic=%ff", "topic"),
        ("user_id=bob%E2%80%A8", "user"),
        ("user_id=bob&topic=news%E2%80%AE", "topic"),
        ("user_id=bob&topic=a&topic=b&topic=c", "at most 2 topics"),
    ] {
        let (status, answer) = get_cursor(&server, query, &[]).await;
        assert_eq!(status, 400, "{query}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(names), "{query}: {error}");
    }
    let posted = guard(http().post(server.url("/api/v1/cursor?user_id=bob")).send())
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 405);
    let too_many = server.manager.cursor("bob", &["a", "b", "c"]).await;
    assert!(
        matches!(too_many, Err(Error::InvalidTarget(_))),
        "{too_many:?}"
    );
    server.manager.close().await;
    assert!(matches!(
        server.manager.cursor("bob", &[]).await,
        Err(Error::Closed)
    ));
}

/// Subscribers name themselves in `x-user`; backends add `x-role: publisher`.
fn gateway(request: &Parts) -> sseor::Result<Grant> {
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
    let user = header("x-user").ok_or_else(|| Error::auth(AuthReason::Missing, "no x-user"))?;
    Ok(Grant::user(user)?.with_publish(header("x-role") == Some("publisher")))
}

#[tokio::test]
async fn with_authentication_only_a_backends_credential_gets_a_cursor() {
    const TOKEN: &str = "a-publish-token-for-tests";
    let server = Server::with(Manager::builder().authorizer(gateway).publish_token(TOKEN)).await;
    let query = "user_id=alice";
    let (status, answer) = get_cursor(&server, query, &[]).await;
    assert_eq!((status, &answer["reason"]), (401, &"missing".into()));
    let (status, answer) = get_cursor(&server, query, &[("x-user", "alice")]).await;
    assert_eq!(
        (status, &answer["reason"]),
        (403, &"forbidden_publish".into()),
        "a subscriber's own credential is not a backend's: {answer}"
    );
    let bearer = format!("Bearer {TOKEN}");
    for headers in [
        vec![("authorization", bearer.as_str())],
        vec![("x-user", "shop"), ("x-role", "publisher")],
    ] {
        let (status, answer) = get_cursor(&server, query, &headers).await;
        assert_eq!(status, 200, "{headers:?}: {answer}");
        assert!(answer["cursor"].as_str().unwrap().starts_with("1."));
    }
}
