//! Lifecycle changes across instances: a user online at their first stream anywhere and
//! offline at their last, a topic occupied and vacated, each reported once, by one
//! instance; nothing for a reload within the grace period; the users of an instance cut
//! off from Redis reported offline by the survivor.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sseor::{Builder, Lifecycle};
use sseor_testkit::guard;
use sseor_testkit::library::Server;
use sseor_testkit::redis::{RedisCluster, RedisServer, StallingProxy};

use crate::common::{open_live, quick_presence, wait_ready};

/// The grace period of these tests.
const GRACE: Duration = Duration::from_millis(300);

/// What the hooks of every instance heard, each change with the instance that told it.
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<(&'static str, Lifecycle)>>>);

impl Heard {
    /// `builder` with a hook that tells this record, as `instance`, and the short grace.
    fn on(&self, instance: &'static str, builder: Builder) -> Builder {
        let heard = self.0.clone();
        builder
            .lifecycle_grace(GRACE)
            .on_lifecycle(move |change| heard.lock().unwrap().push((instance, change)))
    }

    fn all(&self) -> Vec<(&'static str, Lifecycle)> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until `count` changes were heard; then a while longer, to be sure that no
    /// other comes; returns them.
    async fn exactly(&self, count: usize) -> Vec<(&'static str, Lifecycle)> {
        guard(async {
            while self.all().len() < count {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        tokio::time::sleep(GRACE * 3).await;
        let all = self.all();
        assert_eq!(all.len(), count, "{all:?}");
        all
    }
}

fn online(user: &str) -> Lifecycle {
    Lifecycle::UserOnline {
        user_id: user.into(),
    }
}

fn offline(user: &str) -> Lifecycle {
    Lifecycle::UserOffline {
        user_id: user.into(),
    }
}

fn occupied(topic: &str) -> Lifecycle {
    Lifecycle::TopicOccupied {
        topic: topic.into(),
    }
}

fn vacated(topic: &str) -> Lifecycle {
    Lifecycle::TopicVacated {
        topic: topic.into(),
    }
}

/// Two instances on `url`, telling `heard` as `a` and `b`, once ready.
async fn two_instances(heard: &Heard, url: &str) -> (Server, Server) {
    let a = Server::with(heard.on("a", quick_presence(url))).await;
    let b = Server::with(heard.on("b", quick_presence(url))).await;
    wait_ready(&a.manager).await;
    wait_ready(&b.manager).await;
    (a, b)
}

#[tokio::test]
async fn the_embedded_broker_reports_arrivals_at_once_and_departures_after_the_grace() {
    let heard = Heard::default();
    let server = Server::with(heard.on("a", sseor::Manager::builder())).await;
    let first = open_live(&server, "ann", &["news"]).await;
    let second = open_live(&server, "ann", &[]).await;
    let mut all = heard.exactly(2).await;
    all.sort_by_key(|(_, change)| format!("{change:?}"));
    assert_eq!(all, [("a", occupied("news")), ("a", online("ann"))]);

    // A reload: the last stream closes and another opens within the grace.
    drop(first);
    drop(second);
    server.wait_for_total(0).await;
    let again = open_live(&server, "ann", &["news"]).await;
    heard.exactly(2).await;

    drop(again);
    let all = heard.exactly(4).await;
    let mut departures = all[2..].to_vec();
    departures.sort_by_key(|(_, change)| format!("{change:?}"));
    assert_eq!(departures, [("a", vacated("news")), ("a", offline("ann"))]);

    // Whoever is connected when the instance closes goes offline with it.
    let _bob = open_live(&server, "bob", &[]).await;
    heard.exactly(5).await;
    server.manager.close().await;
    assert_eq!(heard.all()[5..], [("a", offline("bob"))]);
}

/// A user and a topic on two instances on the Redis (or cluster) at `url`: online and
/// occupied once, by the first instance; offline and vacated once, by the last.
async fn online_and_offline_once_across_two_instances(url: &str) {
    let heard = Heard::default();
    let (a, b) = two_instances(&heard, url).await;
    let on_a = open_live(&a, "cal", &["desk"]).await;
    let all = heard.exactly(2).await;
    assert!(all.contains(&("a", online("cal"))), "{all:?}");
    assert!(all.contains(&("a", occupied("desk"))), "{all:?}");

    let on_b = open_live(&b, "cal", &["desk"]).await;
    heard.exactly(2).await;
    drop(on_a);
    a.wait_for_total(0).await;
    heard.exactly(2).await;

    drop(on_b);
    let all = heard.exactly(4).await;
    assert!(all[2..].contains(&("b", offline("cal"))), "{all:?}");
    assert!(all[2..].contains(&("b", vacated("desk"))), "{all:?}");
}

#[tokio::test]
async fn a_user_on_two_instances_is_online_and_offline_once() {
    let redis = RedisServer::start();
    online_and_offline_once_across_two_instances(&redis.url()).await;
}

#[tokio::test]
async fn a_user_on_two_instances_is_online_and_offline_once_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    online_and_offline_once_across_two_instances(&cluster.url()).await;
}

#[tokio::test]
async fn a_reload_within_the_grace_period_reports_nothing_even_onto_another_instance() {
    let redis = RedisServer::start();
    let heard = Heard::default();
    let (a, b) = two_instances(&heard, &redis.url()).await;
    let first = open_live(&a, "dee", &[]).await;
    assert_eq!(heard.exactly(1).await, [("a", online("dee"))]);

    // Reloaded on the same instance, then onto the other one.
    drop(first);
    a.wait_for_total(0).await;
    let second = open_live(&a, "dee", &[]).await;
    drop(second);
    a.wait_for_total(0).await;
    let third = open_live(&b, "dee", &[]).await;
    heard.exactly(1).await;

    drop(third);
    assert_eq!(heard.exactly(2).await[1], ("b", offline("dee")));
}

#[tokio::test]
async fn an_instance_cut_off_from_redis_has_its_users_reported_offline_by_the_survivor() {
    let redis = RedisServer::start();
    let proxy = StallingProxy::start(redis.port);
    let heard = Heard::default();
    let a = Server::with(heard.on("a", quick_presence(&proxy.url()))).await;
    let b = Server::with(heard.on("b", quick_presence(&redis.url()))).await;
    wait_ready(&a.manager).await;
    wait_ready(&b.manager).await;
    let _eve = open_live(&a, "eve", &[]).await;
    let _fay_a = open_live(&a, "fay", &[]).await;
    let _fay_b = open_live(&b, "fay", &[]).await;
    let all = heard.exactly(2).await;
    assert!(all.contains(&("a", online("eve"))), "{all:?}");
    assert!(
        all.iter().any(|(_, change)| *change == online("fay")),
        "{all:?}"
    );

    // a's presence expires; b releases what only a held: eve, not fay.
    proxy.cut();
    let all = heard.exactly(3).await;
    assert_eq!(all[2], ("b", offline("eve")));

    // Back, a finds that it was swept: eve, still connected to it, is online again.
    proxy.heal();
    let all = heard.exactly(4).await;
    assert_eq!(all[3], ("a", online("eve")));
}

#[tokio::test]
async fn after_redis_restarts_empty_lifecycles_go_on_without_false_arrivals() {
    let mut redis = RedisServer::start();
    let heard = Heard::default();
    let (a, b) = two_instances(&heard, &redis.url()).await;
    let gus = open_live(&a, "gus", &[]).await;
    heard.exactly(1).await;

    redis.restart();
    wait_ready(&a.manager).await;
    wait_ready(&b.manager).await;
    // a writes what it holds again, silently; b, given gus, sees that a holds him.
    guard(async {
        while redis.cli(&["SCARD", "sseor:{user:gus}:holders"]) != "1" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut on_b = b.subscribe("gus", &[]).await;
    on_b.opening_id().await;
    heard.exactly(1).await;

    drop(gus);
    drop(on_b);
    let all = heard.exactly(2).await;
    assert_eq!(all[1].1, offline("gus"));
}
