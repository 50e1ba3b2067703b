//! The Redis broker when Redis loses its data, when other Redis clients publish on its
//! channels, and where its keys and counts could mislead it; against real `redis-server`
//! processes, killed with SIGKILL and restarted empty.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sseor::{Event, Manager, Position, Publisher, Target};
use sseor_testkit::guard;
use sseor_testkit::library::Server;
use sseor_testkit::redis::{RedisServer, wait_for_subscribers};
use sseor_testkit::sse::Client;

use crate::common::{
    instance, n_of, numbered, open_live, position_in, published_position, receive_some,
    redis_builder, user, user_channel, wait_ready,
};

/// Publishes `event` to `user`, again while the command connection is still reconnecting
/// after a Redis restart (a publish that fails is not acknowledged).
async fn publish_until_taken(manager: &Manager, user: &str, event: Event) -> sseor::Published {
    guard(async {
        loop {
            match manager.publish(user, event.clone()).await {
                Ok(published) => return published,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
}

/// The `n` of every numbered event received, in order.
fn numbers_of(received: &[Received]) -> Vec<u64> {
    received
        .iter()
        .filter(|r| r.event.event == "n")
        .map(|r| n_of(&r.event))
        .collect()
}

/// An event a client received, and when.
struct Received {
    event: eventsource_stream::Event,
    at: Instant,
}

/// Reads the stream `client` of `user` until an event of type `end` arrives, on that one
/// stream: it must stay open throughout.
async fn read_until_the_end(mut client: Client, user: &str) -> Vec<Received> {
    let mut received: Vec<Received> = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let Some(event) = client.try_next_event().await else {
                panic!("the stream of {user} ended: it should stay open");
            };
            let end = event.event == "end";
            received.push(Received {
                event,
                at: Instant::now(),
            });
            if end {
                return;
            }
        }
    })
    .await
    .expect("the client never received the last event");
    received
}

/// Whether a reset the client received stands for `position` of `user`, acknowledged at
/// `acked`: a reset tells the client to reload its state, which covers every event
/// acknowledged before it arrived and every event up to the position it carries.
fn covered_by_a_reset(
    received: &[Received],
    user: &Target,
    position: &Position,
    acked: Instant,
) -> bool {
    received
        .iter()
        .filter(|r| r.event.event == sseor::RESET_EVENT)
        .any(|reset| {
            let at = position_in(&reset.event.id, user);
            acked < reset.at || (at.epoch() == position.epoch() && position.seq() <= at.seq())
        })
}

#[tokio::test]
async fn an_emptied_redis_loses_no_acknowledged_event_silently() {
    let mut redis = RedisServer::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let client = open_live(&a, "ana", &[]).await;
    let reader = tokio::spawn(read_until_the_end(client, "ana"));
    wait_for_subscribers(&redis, &user_channel("ana"), "1").await;

    let sent = Arc::new(AtomicUsize::new(0));
    let publishing = tokio::spawn({
        let (a, b, sent) = (a.manager.clone(), b.manager.clone(), sent.clone());
        async move {
            let mut acked = Vec::new();
            for n in 0..300u64 {
                let through = if n % 2 == 0 { &a } else { &b };
                if let Ok(published) = through.publish("ana", numbered(n)).await {
                    acked.push((n, published_position(&published), Instant::now()));
                }
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            acked
        }
    });
    guard(async {
        while sent.load(Ordering::Relaxed) < 100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart();
    let acked = guard(publishing).await.unwrap();
    publish_until_taken(&b.manager, "ana", Event::new("end")).await;
    let received = guard(reader).await.unwrap();

    let numbers = numbers_of(&received);
    let mut distinct = numbers.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), numbers.len(), "an event arrived twice");
    let missing: Vec<u64> = acked
        .iter()
        .filter(|(n, position, at)| {
            !numbers.contains(n) && !covered_by_a_reset(&received, &user("ana"), position, *at)
        })
        .map(|(n, _, _)| *n)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events never arrived and no reset stands for them: {missing:?}",
        missing.len(),
        acked.len()
    );
    assert!(
        acked.len() > 150,
        "most publishes were acknowledged: {}",
        acked.len()
    );
}

#[tokio::test]
async fn a_client_away_while_redis_lost_its_data_resumes_with_a_reset() {
    let mut redis = RedisServer::start();
    let server = instance(&redis).await;
    let last = receive_some(&server, &redis, "bea", 3).await;
    wait_for_subscribers(&redis, &user_channel("bea"), "0").await;
    redis.restart();
    // The new history goes further than the old one did: its positions must not pass for
    // the old one's.
    for n in 100..110 {
        publish_until_taken(&server.manager, "bea", numbered(n)).await;
    }
    let url = server.url("/api/v1/sse?user_id=bea");
    let mut client = Client::resume(&url, Some(&last)).await;
    let reset = client.next_event().await;
    assert_eq!(reset.event, sseor::RESET_EVENT, "{reset:?}");
    let old = position_in(&last, &user("bea"));
    let new = position_in(&reset.id, &user("bea"));
    assert_ne!(old.epoch(), new.epoch());
    assert_eq!(
        new.seq(),
        10,
        "the reset stands after the events of the new history"
    );
    // From the reset on, the same stream gets what follows, and nothing else.
    let reader = tokio::spawn(read_until_the_end(client, "bea"));
    publish_until_taken(&server.manager, "bea", numbered(110)).await;
    publish_until_taken(&server.manager, "bea", Event::new("end")).await;
    let received = guard(reader).await.unwrap();
    let types: Vec<&str> = received.iter().map(|r| r.event.event.as_str()).collect();
    assert_eq!(types, ["n", "end"]);
    assert_eq!(numbers_of(&received), [110]);
}

#[tokio::test]
async fn a_stream_open_while_redis_is_flushed_gets_everything_after_it_without_a_reset() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let mut client = open_live(&server, "cleo", &[]).await;
    wait_for_subscribers(&redis, &user_channel("cleo"), "1").await;
    server.manager.publish("cleo", numbered(0)).await.unwrap();
    assert_eq!(n_of(&client.next_event().await), 0);
    // The subscription stays up while Redis loses every key: the stream saw every event of
    // the old history, and the next event is the first of a new epoch, numbered from 1.
    assert_eq!(redis.cli(&["FLUSHALL"]), "OK");
    let first = server.manager.publish("cleo", numbered(1)).await.unwrap();
    let new = published_position(&first);
    assert_eq!(new.seq(), 1);
    let event = client.next_event().await;
    assert_eq!(
        (
            event.event.as_str(),
            n_of(&event),
            position_in(&event.id, &user("cleo"))
        ),
        ("n", 1, new),
        "no reset: nothing was missed"
    );
    // And the stream goes on in the new epoch.
    server.manager.publish("cleo", numbered(2)).await.unwrap();
    assert_eq!(n_of(&client.next_event().await), 2);
}

#[tokio::test]
async fn a_foreign_message_neither_disables_gap_detection_nor_leaks_its_id() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let mut client = open_live(&a, "alice", &[]).await;
    wait_for_subscribers(&redis, &user_channel("alice"), "1").await;
    let first = b.manager.publish("alice", numbered(0)).await.unwrap();
    let zero = client.next_event().await;
    assert_eq!(
        position_in(&zero.id, &user("alice")),
        published_position(&first)
    );
    let foreign_position = Position::new(published_position(&first).epoch(), 999);
    redis.cli(&[
        "PUBLISH",
        &user_channel("alice"),
        &format!(r#"{{"id":"{foreign_position}","type":"foreign","data":{{}}}}"#),
    ]);
    let foreign = client.next_event().await;
    assert_eq!(foreign.event, "foreign");
    // Without an id of its own, the client's last id stays where its stream stood.
    assert_eq!(foreign.id, zero.id);

    // Every subscription connection is cut; B publishes before A is back. The stream stays
    // open and gets what it missed from the history.
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    for n in 1..=20 {
        b.manager.publish("alice", numbered(n)).await.unwrap();
    }
    let mut numbers = Vec::new();
    while numbers.len() < 20 {
        numbers.push(n_of(&client.next_event().await));
    }
    assert_eq!(numbers, (1..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_oversized_foreign_message_is_dropped() {
    let redis = RedisServer::start();
    let server = Server::with(redis_builder(&redis.url()).max_body_bytes(16 * 1024)).await;
    wait_ready(&server.manager).await;
    let mut client = open_live(&server, "dora", &[]).await;
    wait_for_subscribers(&redis, &user_channel("dora"), "1").await;
    let big = json!({"type": "big", "data": {"blob": "x".repeat(20 * 1024)}}).to_string();
    assert_eq!(redis.cli(&["PUBLISH", &user_channel("dora"), &big]), "1");
    redis.cli(&[
        "PUBLISH",
        &user_channel("dora"),
        r#"{"type":"small","data":{}}"#,
    ]);
    assert_eq!(client.next_event().await.event, "small");
    // sseor's own events are not held to that limit: they passed the publish checks.
    let own = Event::new("own").with_data(json!({"blob": "y".repeat(20 * 1024)}));
    server.manager.publish("dora", own).await.unwrap();
    assert_eq!(client.next_event().await.event, "own");
}

#[tokio::test]
async fn publisher_ids_of_different_targets_never_collide() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let mut client = open_live(&server, "a", &[]).await;
    wait_for_subscribers(&redis, &user_channel("a"), "1").await;
    let first = server
        .manager
        .publish("a:b", Event::new("first").with_id("c"))
        .await
        .unwrap();
    let second = server
        .manager
        .publish("a", Event::new("second").with_id("b:c"))
        .await
        .unwrap();
    assert!(!first.duplicate && !second.duplicate);
    // Each is the first event of its own target: neither was taken for the other.
    assert_eq!(published_position(&first).seq(), 1);
    assert_eq!(published_position(&second).seq(), 1);
    let event = client.next_event().await;
    assert_eq!(
        (event.event.as_str(), position_in(&event.id, &user("a"))),
        ("second", published_position(&second))
    );
    // The same pair is still recognized.
    let again = server
        .manager
        .publish("a", Event::new("second").with_id("b:c"))
        .await
        .unwrap();
    assert!(again.duplicate);
}

#[tokio::test]
async fn a_default_publisher_keeps_the_longer_history_of_the_serving_instances() {
    let redis = RedisServer::start();
    let server =
        Server::with(redis_builder(&redis.url()).history(3000, Duration::from_secs(86_400))).await;
    wait_ready(&server.manager).await;
    // The instance records its retention as it starts; give it a moment to.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while redis.cli(&["GET", "sseor:{retention}:events"]) != "3000" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let publisher = Publisher::new(&redis.url()).await.unwrap();
    let mut client = open_live(&server, "eve", &[]).await;
    publisher.publish("eve", numbered(0)).await.unwrap();
    let first = client.next_event().await;
    assert_eq!(n_of(&first), 0);
    drop(client);
    // More than a default publisher keeps (1,000), fewer than the server keeps.
    for n in 1..=1500 {
        publisher.publish("eve", numbered(n)).await.unwrap();
    }
    let url = server.url("/api/v1/sse?user_id=eve");
    let mut client = Client::resume(&url, Some(&first.id)).await;
    for n in 1..=1500 {
        let event = client.next_event().await;
        assert_eq!(event.event, "n", "{event:?}");
        assert_eq!(n_of(&event), n);
    }
}

#[tokio::test]
async fn an_unreadable_history_entry_means_a_reset() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let last = receive_some(&server, &redis, "finn", 1).await;
    wait_for_subscribers(&redis, &user_channel("finn"), "0").await;
    server.manager.publish("finn", numbered(1)).await.unwrap();
    // An entry in the place of the next event, that is not an event.
    let sequence = user_channel("finn");
    let epoch = position_in(&last, &user("finn")).epoch().to_string();
    assert_eq!(redis.cli(&["HINCRBY", &sequence, &epoch, "1"]), "3");
    let history = format!("{sequence}:history");
    redis.cli(&["RPUSH", &history, "not an event"]);
    server.manager.publish("finn", numbered(2)).await.unwrap();
    let url = server.url("/api/v1/sse?user_id=finn");
    let mut client = Client::resume(&url, Some(&last)).await;
    let first = client.next_event().await;
    assert_eq!(first.event, sseor::RESET_EVENT, "{first:?}");
}

#[tokio::test]
async fn cluster_counts_include_this_instance_at_once() {
    let redis = RedisServer::start();
    // Presence is refreshed every 20 s: the counts cannot wait for it.
    let server =
        Server::with(redis_builder(&redis.url()).redis_presence_ttl(Duration::from_secs(60))).await;
    wait_ready(&server.manager).await;
    let other = Server::with(redis_builder(&redis.url())).await;
    wait_ready(&other.manager).await;
    let client = server.subscribe("gil", &[]).await;
    let elsewhere = other.subscribe("gil", &[]).await;
    server.wait_for_total(1).await;
    other.wait_for_total(1).await;
    let manager = &server.manager;
    assert!(manager.cluster_total_connections().await.unwrap() >= 1);
    assert!(manager.cluster_connection_count("gil").await.unwrap() >= 1);
    // Once the other instance's presence is stored, both count.
    guard(async {
        while manager.cluster_connection_count("gil").await.unwrap() != 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(manager.cluster_total_connections().await.unwrap(), 2);
    drop(client);
    server.wait_for_total(0).await;
    assert_eq!(manager.cluster_connection_count("gil").await.unwrap(), 1);
    assert_eq!(manager.cluster_total_connections().await.unwrap(), 1);
    drop(elsewhere);
}

#[tokio::test]
async fn a_full_redis_without_eviction_refuses_publishes_and_keeps_what_it_acknowledged() {
    let redis =
        RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]);
    let server = instance(&redis).await;
    let last = receive_some(&server, &redis, "hal", 1).await;
    wait_for_subscribers(&redis, &user_channel("hal"), "0").await;
    let blob = "z".repeat(32 * 1024);
    let mut acked = Vec::new();
    // 400 events of 32 KiB are three times what this Redis may hold.
    for n in 1..=400u64 {
        let event = Event::new("n").with_data(json!({ "n": n, "blob": blob }));
        match server.manager.publish("hal", event).await {
            Ok(_) => acked.push(n),
            Err(sseor::Error::Broker(_)) => break,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(acked.len() < 400, "the Redis filled up: {}", acked.len());
    let url = server.url("/api/v1/sse?user_id=hal");
    let mut client = Client::resume(&url, Some(&last)).await;
    for n in acked {
        let event = client.next_event().await;
        assert_eq!(event.event, "n", "{}", event.event);
        assert_eq!(n_of(&event), n);
    }
}

#[tokio::test]
async fn a_number_that_went_back_gets_a_new_epoch_and_its_streams_a_reset() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let mut client = open_live(&server, "gus", &[]).await;
    wait_for_subscribers(&redis, &user_channel("gus"), "1").await;
    for n in 1..=3 {
        server.manager.publish("gus", numbered(n)).await.unwrap();
        assert_eq!(n_of(&client.next_event().await), n);
    }
    let old = client.last_id().to_owned();
    let old_epoch = position_in(&old, &user("gus")).epoch();
    // What a failover to a replica that lacked the last two events does: the number goes
    // back, while the instance is cut off from Redis. Numbers 2 and 3 would be given again.
    redis.cli(&["HSET", "sseor:{user:gus}", &old_epoch.to_string(), "1"]);
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let reset = client.next_event().await;
    assert_eq!(reset.event, sseor::RESET_EVENT, "{reset:?}");
    let renewed = position_in(&reset.id, &user("gus"));
    assert_ne!(renewed.epoch(), old_epoch, "a new epoch");
    // The same stream goes on in the new epoch.
    let next = server.manager.publish("gus", numbered(4)).await.unwrap();
    let next_position = published_position(&next);
    assert_eq!(
        next_position,
        Position::new(renewed.epoch(), renewed.seq() + 1)
    );
    let event = client.next_event().await;
    assert_eq!(
        (n_of(&event), position_in(&event.id, &user("gus"))),
        (4, next_position)
    );
    // A client that comes back with a number of the old epoch gets a reset, never an event
    // given that number again.
    let url = server.url("/api/v1/sse?user_id=gus");
    let mut resumed = Client::resume(&url, Some(&old)).await;
    assert_eq!(resumed.next_event().await.event, sseor::RESET_EVENT);
}
