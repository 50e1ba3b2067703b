//! Who is connected, across instances: a user, the users of a topic (in pages), the
//! topics with their counts; on the embedded broker and on Redis with two instances.

use std::time::Duration;

use sseor::{Manager, PresencePage, TopicPresence, UserPresence};
use sseor_testkit::guard;
use sseor_testkit::library::Server;
use sseor_testkit::redis::{RedisCluster, RedisServer};

use crate::common::{open_live, quick_presence, wait_ready};

/// The users of a page, as `(user, connections)`.
fn users(page: &PresencePage<UserPresence>) -> Vec<(&str, usize)> {
    let users = page.items.iter();
    users.map(|u| (u.user_id.as_str(), u.connections)).collect()
}

/// The topics of a page, as `(topic, connections)`.
fn topics(page: &PresencePage<TopicPresence>) -> Vec<(&str, usize)> {
    let topics = page.items.iter();
    topics.map(|t| (t.topic.as_str(), t.connections)).collect()
}

/// Polls until `manager` sees `expected` as the first page of `topic`'s users.
async fn settle_topic(manager: &Manager, topic: &str, limit: usize, expected: &[(&str, usize)]) {
    guard(async {
        loop {
            let page = manager.presence_of_topic(topic, None, limit).await.unwrap();
            if users(&page) == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Waits until `manager` lists `expected` as the topics and their connections: what
/// another instance holds arrives with its next presence refresh.
async fn settle_topics(manager: &Manager, expected: &[(&str, usize)]) {
    guard(async {
        loop {
            let page = manager.topics(None, 10).await.unwrap();
            if topics(&page) == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn the_embedded_broker_pages_a_topics_users_in_order_and_counts_topics() {
    let server = Server::start().await;
    let _b = open_live(&server, "bea", &["room"]).await;
    let _a1 = open_live(&server, "ada", &["room", "hall"]).await;
    let _a2 = open_live(&server, "ada", &["room"]).await;
    let _c = open_live(&server, "cyd", &["room"]).await;
    let _d = open_live(&server, "dov", &["hall"]).await;
    let manager = &server.manager;

    let first = manager.presence_of_topic("room", None, 2).await.unwrap();
    assert_eq!(users(&first), [("ada", 2), ("bea", 1)]);
    assert!(first.more);
    let next = manager
        .presence_of_topic("room", Some("bea"), 2)
        .await
        .unwrap();
    assert_eq!(users(&next), [("cyd", 1)]);
    assert!(!next.more);
    let empty = manager.presence_of_topic("nobody", None, 10).await.unwrap();
    assert!(empty.items.is_empty() && !empty.more);

    let all = manager.topics(None, 10).await.unwrap();
    assert_eq!(topics(&all), [("hall", 2), ("room", 4)]);
    let paged = manager.topics(None, 1).await.unwrap();
    assert_eq!((topics(&paged), paged.more), (vec![("hall", 2)], true));
    assert_eq!(
        topics(&manager.topics(Some("hall"), 1).await.unwrap()),
        [("room", 4)]
    );

    let ada = manager.presence_of_user("ada").await.unwrap();
    assert_eq!((ada.online(), ada.connections), (true, 2));
    let zed = manager.presence_of_user("zed").await.unwrap();
    assert_eq!((zed.online(), zed.connections), (false, 0));
    assert!(manager.presence_of_user("").await.is_err());
    assert!(manager.presence_of_topic("", None, 1).await.is_err());
}

/// Two instances on the Redis (or cluster) at `url` whose presence is refreshed every
/// 100 ms; users of `room` on both, one of them on both: every page, from either
/// instance, adds them up, in order.
async fn presence_spans_two_instances(url: &str) {
    let a = Server::with(quick_presence(url)).await;
    let b = Server::with(quick_presence(url)).await;
    wait_ready(&a.manager).await;
    wait_ready(&b.manager).await;
    let _u1 = open_live(&a, "u1", &["room"]).await;
    let _u3a = open_live(&a, "u3", &["room", "hall"]).await;
    let u2 = open_live(&b, "u2", &["room"]).await;
    let _u3b = open_live(&b, "u3", &["room"]).await;
    let _u4 = open_live(&b, "u4", &["hall"]).await;

    for manager in [&a.manager, &b.manager] {
        settle_topic(manager, "room", 10, &[("u1", 1), ("u2", 1), ("u3", 2)]).await;
        settle_topics(manager, &[("hall", 2), ("room", 4)]).await;
        let first = manager.presence_of_topic("room", None, 2).await.unwrap();
        assert!(first.more);
        let next = manager
            .presence_of_topic("room", Some("u2"), 2)
            .await
            .unwrap();
        assert_eq!((users(&next), next.more), (vec![("u3", 2)], false));
        let all = manager.topics(None, 10).await.unwrap();
        assert_eq!(
            (topics(&all), all.more),
            (vec![("hall", 2), ("room", 4)], false)
        );
        let paged = manager.topics(Some("hall"), 1).await.unwrap();
        assert_eq!((topics(&paged), paged.more), (vec![("room", 4)], false));
        assert_eq!(manager.presence_of_user("u3").await.unwrap().connections, 2);
        assert!(manager.presence_of_user("u4").await.unwrap().online());
    }

    drop(u2);
    settle_topic(&a.manager, "room", 10, &[("u1", 1), ("u3", 2)]).await;
    assert!(!a.manager.presence_of_user("u2").await.unwrap().online());

    // An instance that closes leaves the presence at once.
    b.manager.close().await;
    settle_topic(&a.manager, "room", 10, &[("u1", 1), ("u3", 1)]).await;
    let all = a.manager.topics(None, 10).await.unwrap();
    assert_eq!(topics(&all), [("hall", 1), ("room", 2)]);
}

#[tokio::test]
async fn presence_of_topics_and_users_spans_two_instances_on_redis() {
    let redis = RedisServer::start();
    presence_spans_two_instances(&redis.url()).await;
}

#[tokio::test]
async fn presence_of_topics_and_users_spans_two_instances_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    presence_spans_two_instances(&cluster.url()).await;
}

#[tokio::test]
async fn pages_of_many_users_come_whole_and_in_order_across_instances() {
    let redis = RedisServer::start();
    let a = Server::with(quick_presence(&redis.url())).await;
    let b = Server::with(quick_presence(&redis.url())).await;
    wait_ready(&a.manager).await;
    wait_ready(&b.manager).await;
    let mut streams = Vec::new();
    let mut expected = Vec::new();
    for n in 0..25 {
        let user = format!("user{n:02}");
        let server = if n % 3 == 0 { &a } else { &b };
        streams.push(open_live(server, &user, &["big"]).await);
        expected.push(user);
    }
    let expected_pairs: Vec<(&str, usize)> = expected.iter().map(|u| (u.as_str(), 1)).collect();
    settle_topic(&a.manager, "big", 100, &expected_pairs).await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = a
            .manager
            .presence_of_topic("big", after.as_deref(), 7)
            .await
            .unwrap();
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|u| u.user_id.clone()));
        after = page.items.last().map(|u| u.user_id.clone());
        if !page.more {
            break;
        }
    }
    assert_eq!(seen, expected);
}
