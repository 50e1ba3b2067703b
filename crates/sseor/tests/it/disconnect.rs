//! `Manager::disconnect`: the streams of a user end, each after a last `sseor.disconnect`
//! event, on the embedded broker, across instances on Redis, and on a Redis Cluster.

use std::time::Duration;

use serde_json::json;
use sseor::{DISCONNECT_EVENT, Disconnect, Disconnected, Event, MAX_RETRY_MS};
use sseor_testkit::guard;
use sseor_testkit::library::Server;
use sseor_testkit::redis::{RedisCluster, RedisServer, wait_for_subscribers};
use sseor_testkit::sse::{Client, data_of};

use crate::cluster::users_on_every_master;
use crate::common::{instance, open_live, redis_builder, user_channel, wait_ready};

/// Reads `client`'s next events, `before` and then the disconnect event with `reason` and
/// `reconnect`, and the clean end of the stream after it.
async fn ends_after(client: &mut Client, before: &[&str], reason: &str, reconnect: bool) {
    for expected in before {
        assert_eq!(client.next_event().await.event, *expected);
    }
    let last = client.next_event().await;
    assert_eq!(last.event, DISCONNECT_EVENT);
    assert_eq!(
        data_of(&last),
        json!({"reason": reason, "reconnect": reconnect})
    );
    let retry = (!reconnect).then(|| Duration::from_millis(MAX_RETRY_MS));
    assert_eq!(last.retry, retry, "the `retry:` of the disconnect event");
    assert!(
        client.try_next_event().await.is_none(),
        "the stream must end cleanly right after the disconnect event"
    );
}

#[tokio::test]
async fn disconnect_ends_every_stream_of_the_user_after_what_was_queued_and_no_other() {
    let server = Server::start().await;
    let manager = &server.manager;
    let mut alice = open_live(&server, "alice", &[]).await;
    let mut alice_in_room = open_live(&server, "alice", &["room"]).await;
    let mut bob = open_live(&server, "bob", &["room"]).await;
    manager
        .publish("alice", Event::new("before"))
        .await
        .unwrap();

    let banned = Disconnect::user("alice").unwrap().reason("banned").unwrap();
    let done = manager.disconnect(banned).await.unwrap();
    assert_eq!(done, Disconnected::new(2, None));
    for stream in [&mut alice, &mut alice_in_room] {
        ends_after(stream, &["before"], "banned", false).await;
    }
    assert_eq!(manager.connection_count("alice"), 0);

    manager
        .publish_to_topic("room", Event::new("still-here"))
        .await
        .unwrap();
    assert_eq!(bob.next_event().await.event, "still-here");
    assert_eq!(manager.connection_count("bob"), 1);
    let metrics = manager.render_metrics();
    assert!(
        metrics
            .lines()
            .any(|line| line == r#"sseor_connections_closed_total{reason="disconnected"} 2"#),
        "{metrics}"
    );
    manager.close().await;
}

#[tokio::test]
async fn a_topic_narrows_the_disconnect_to_the_streams_that_joined_it() {
    let server = Server::start().await;
    let manager = &server.manager;
    let mut in_room = open_live(&server, "alice", &["room"]).await;
    let mut elsewhere = open_live(&server, "alice", &["lobby"]).await;

    let kicked = Disconnect::user("alice")
        .unwrap()
        .topic("room")
        .unwrap()
        .reason("room closed")
        .unwrap()
        .reconnect(true);
    assert_eq!(manager.disconnect(kicked).await.unwrap().disconnected, 1);
    ends_after(&mut in_room, &[], "room closed", true).await;
    manager.publish("alice", Event::new("after")).await.unwrap();
    assert_eq!(elsewhere.next_event().await.event, "after");
    assert_eq!(manager.connection_count("alice"), 1);
    // The stream left open is still registered in full: the drain ends it.
    let closing = manager.close();
    let (ended, ()) = tokio::join!(elsewhere.try_next_event(), closing);
    assert!(ended.is_none(), "{ended:?}");
    assert_eq!(manager.total_connections(), 0);
}

#[tokio::test]
async fn on_redis_a_disconnect_from_one_instance_ends_the_streams_on_every_instance() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let mut alice_on_a = open_live(&a, "alice", &[]).await;
    let mut alice_on_b = open_live(&b, "alice", &[]).await;
    let mut carol_on_a = open_live(&a, "carol", &[]).await;
    wait_for_subscribers(&redis, &user_channel("alice"), "2").await;

    // Published through A, disconnected through B at once: every stream, B's own
    // included, gets the event first, as Redis keeps the order of the user's channel.
    a.manager
        .publish("alice", Event::new("farewell"))
        .await
        .unwrap();
    let banned = Disconnect::user("alice").unwrap().reason("banned").unwrap();
    let done = b.manager.disconnect(banned).await.unwrap();
    assert_eq!(done, Disconnected::new(1, Some(2)));
    for stream in [&mut alice_on_a, &mut alice_on_b] {
        ends_after(stream, &["farewell"], "banned", false).await;
    }
    guard(async {
        while a.manager.connection_count("alice") > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    b.manager.publish("carol", Event::new("hi")).await.unwrap();
    assert_eq!(carol_on_a.next_event().await.event, "hi");
    // Nobody follows alice any more: the disconnect reaches no instance.
    wait_for_subscribers(&redis, &user_channel("alice"), "0").await;
    let again = Disconnect::user("alice").unwrap();
    assert_eq!(
        b.manager.disconnect(again).await.unwrap(),
        Disconnected::new(0, Some(0))
    );
}

#[tokio::test]
async fn on_redis_a_disconnect_that_redis_cannot_take_is_an_error_and_ends_nothing() {
    let mut redis = RedisServer::start();
    let a = instance(&redis).await;
    let _alice = open_live(&a, "alice", &[]).await;
    redis.kill();
    let refused = a
        .manager
        .disconnect(Disconnect::user("alice").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(refused, sseor::Error::Broker(_)), "{refused:?}");
    assert_eq!(a.manager.connection_count("alice"), 1);
}

#[tokio::test]
async fn on_a_redis_cluster_disconnects_reach_users_on_every_master() {
    let cluster = RedisCluster::start(3, 0);
    let a = Server::with(redis_builder(&cluster.url())).await;
    let b = Server::with(redis_builder(&cluster.url())).await;
    wait_ready(&a.manager).await;
    wait_ready(&b.manager).await;
    let users = users_on_every_master(&cluster, 1);
    let mut streams = Vec::new();
    for user in &users {
        streams.push(open_live(&a, user, &[]).await);
    }
    for (user, stream) in users.iter().zip(&mut streams) {
        a.manager
            .publish(user, Event::new("farewell"))
            .await
            .unwrap();
        let done = b
            .manager
            .disconnect(Disconnect::user(user).unwrap().reason("banned").unwrap())
            .await
            .unwrap();
        assert_eq!(done, Disconnected::new(0, Some(1)), "{user}");
        ends_after(stream, &["farewell"], "banned", false).await;
    }
    a.wait_for_total(0).await;
}
