//! The Redis broker on a real Redis Cluster: 3 masters (and a replica each where a test
//! kills a master), several instances, sharded pub/sub.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sseor::RESET_EVENT;
use sseor_testkit::guard;
use sseor_testkit::library::Server;
use sseor_testkit::redis::RedisCluster;
use sseor_testkit::sse::Client;

use crate::common::{n_of, numbered, redis_builder, wait_ready, wait_unready};

/// An instance on `cluster`, once ready.
async fn instance(cluster: &RedisCluster) -> Server {
    let server = Server::with(redis_builder(&cluster.url())).await;
    wait_ready(&server.manager).await;
    server
}

/// A stream of `user` (and `topics`) on `server`, once subscribed: its opening id has
/// come, which the stream sends only once all its channels are subscribed.
async fn stream(server: &Server, user: &str, topics: &[&str]) -> Client {
    let mut client = server.subscribe(user, topics).await;
    client.opening_id().await;
    client
}

/// The master that holds `user`'s keys and channel.
pub(crate) fn master_of_user(cluster: &RedisCluster, user: &str) -> u16 {
    cluster.master_of_slot(cluster.slot_of(&format!("sseor:{{user:{user}}}")))
}

/// Users whose keys spread over every master of `cluster`, `per_master` on each.
pub(crate) fn users_on_every_master(cluster: &RedisCluster, per_master: usize) -> Vec<String> {
    let mut by_master: HashMap<u16, Vec<String>> = HashMap::new();
    for n in 0.. {
        let user = format!("u{n}");
        let list = by_master.entry(master_of_user(cluster, &user)).or_default();
        if list.len() < per_master {
            list.push(user);
        }
        if by_master.len() == cluster.masters().len()
            && by_master.values().all(|list| list.len() == per_master)
        {
            break;
        }
    }
    by_master.into_values().flatten().collect()
}

/// What a stream received: the numbers of its numbered events, and whether a reset came.
#[derive(Debug, Default)]
struct Received {
    numbers: Vec<u64>,
    reset: bool,
}

/// Reads `client` until it has every number of `expected`, or a reset and then nothing
/// for a while; panics on the stream ending.
async fn receive(client: &mut Client, expected: &BTreeSet<u64>) -> Received {
    let mut received = Received::default();
    loop {
        let wait = if received.reset {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(20)
        };
        let have: BTreeSet<u64> = received.numbers.iter().copied().collect();
        if expected.is_subset(&have) {
            return received;
        }
        let Ok(event) = tokio::time::timeout(wait, client.next_event()).await else {
            return received;
        };
        if event.event == RESET_EVENT {
            received.reset = true;
        } else {
            received.numbers.push(n_of(&event));
        }
    }
}

/// The promise of a resumed or live stream: no event twice, in the order published, and
/// every acknowledged one unless a reset said some were lost.
fn assert_no_silent_gap(who: &str, received: &Received, acknowledged: &BTreeSet<u64>) {
    let unique: BTreeSet<u64> = received.numbers.iter().copied().collect();
    assert_eq!(
        unique.len(),
        received.numbers.len(),
        "{who}: an event twice: {received:?}"
    );
    assert!(
        received.numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "{who}: out of order: {received:?}"
    );
    let missing: Vec<_> = acknowledged.difference(&unique).collect();
    assert!(
        missing.is_empty() || received.reset,
        "{who}: acknowledged events {missing:?} missing without a reset: {received:?}"
    );
}

#[tokio::test]
async fn events_cross_instances_for_users_on_every_master_topics_and_broadcasts() {
    let cluster = RedisCluster::start(3, 0);
    let a = instance(&cluster).await;
    let b = instance(&cluster).await;
    let users = users_on_every_master(&cluster, 3);
    let mut streams = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let server = if i % 2 == 0 { &b } else { &a };
        streams.push(stream(server, user, &["news"]).await);
    }
    for (i, user) in users.iter().enumerate() {
        let publisher = if i % 2 == 0 { &a } else { &b };
        publisher
            .manager
            .publish(user, numbered(i as u64))
            .await
            .unwrap();
    }
    a.manager
        .publish_to_topic("news", numbered(1000))
        .await
        .unwrap();
    b.manager.publish_to_all(numbered(2000)).await.unwrap();
    for (i, client) in streams.iter_mut().enumerate() {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(n_of(&client.next_event().await));
        }
        assert_eq!(got, [i as u64, 1000, 2000], "{}", users[i]);
    }
    // Nothing arrived twice: the next event of each stream is the next one published.
    a.manager.publish_to_all(numbered(3000)).await.unwrap();
    for client in &mut streams {
        assert_eq!(n_of(&client.next_event().await), 3000);
    }
}

#[tokio::test]
async fn a_stream_resumes_on_another_instance() {
    let cluster = RedisCluster::start(3, 0);
    let a = instance(&cluster).await;
    let b = instance(&cluster).await;
    let mut first = stream(&a, "carol", &["news"]).await;
    a.manager.publish("carol", numbered(1)).await.unwrap();
    assert_eq!(n_of(&first.next_event().await), 1);
    let last = first.last_id().to_owned();
    drop(first);
    // Across targets, the order of a replay is that of the publishing times, to the
    // millisecond.
    let tick = || tokio::time::sleep(Duration::from_millis(3));
    b.manager.publish("carol", numbered(2)).await.unwrap();
    tick().await;
    b.manager
        .publish_to_topic("news", numbered(3))
        .await
        .unwrap();
    tick().await;
    a.manager.publish_to_all(numbered(4)).await.unwrap();
    let url = b.url("/api/v1/sse?user_id=carol&topic=news");
    let mut resumed = Client::resume(&url, Some(&last)).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(n_of(&resumed.next_event().await));
    }
    assert_eq!(got, [2, 3, 4], "the missed events, in the order published");
    a.manager.publish("carol", numbered(5)).await.unwrap();
    assert_eq!(
        n_of(&resumed.next_event().await),
        5,
        "then live, nothing twice"
    );
}

#[tokio::test]
async fn a_gap_on_a_live_stream_is_repaired_from_the_history() {
    let cluster = RedisCluster::start(3, 0);
    let server = instance(&cluster).await;
    let mut client = stream(&server, "dave", &[]).await;
    server.manager.publish("dave", numbered(1)).await.unwrap();
    assert_eq!(n_of(&client.next_event().await), 1);
    let master = master_of_user(&cluster, "dave");
    // The subscription to dave's master is cut, and events are published straight on the
    // master while the instance is away: they never reach it by pub/sub.
    assert!(cluster.kill_pubsub_clients(master) >= 1);
    for n in 2..=4 {
        let event = format!(r#"{{"type":"n","data":{{"n":{n}}}}}"#);
        cluster.cli(
            master,
            &[
                "FCALL",
                "sseor_publish_sharded",
                "2",
                "sseor:{user:dave}",
                "sseor:{user:dave}:history",
                &event,
            ],
        );
    }
    server.manager.publish("dave", numbered(5)).await.unwrap();
    let mut got = Vec::new();
    for _ in 2..=5 {
        let event = client.next_event().await;
        assert_ne!(
            event.event, RESET_EVENT,
            "the history holds what was missed"
        );
        got.push(n_of(&event));
    }
    assert_eq!(
        got,
        [2, 3, 4, 5],
        "missed events first, in order, on the open stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_while_events_flow_loses_nothing() {
    let cluster = Arc::new(RedisCluster::start(3, 0));
    let server = instance(&cluster).await;
    let user = "erin";
    let mut client = stream(&server, user, &[]).await;
    let slot = cluster.slot_of(&format!("sseor:{{user:{user}}}"));
    let from = cluster.master_of_slot(slot);
    let to = *cluster.masters().iter().find(|m| **m != from).unwrap();

    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let publishing = tokio::spawn({
        let manager = server.manager.clone();
        let acknowledged = acknowledged.clone();
        async move {
            for n in 0..300u64 {
                if manager.publish(user, numbered(n)).await.is_ok() {
                    acknowledged.lock().unwrap().insert(n);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Moved while events flow: the kit runs redis-cli, which blocks.
    let moving = cluster.clone();
    tokio::task::spawn_blocking(move || moving.migrate_slot(slot, to))
        .await
        .unwrap();
    assert_eq!(cluster.master_of_slot(slot), to);
    guard(publishing).await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 250,
        "publishes went on: {}",
        acknowledged.len()
    );
    let received = receive(&mut client, &acknowledged).await;
    assert!(
        !received.reset,
        "the history moved with the slot: {received:?}"
    );
    assert_no_silent_gap(user, &received, &acknowledged);
    assert_eq!(received.numbers.len(), acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_and_no_acknowledged_event_is_lost_silently() {
    let cluster = RedisCluster::start(3, 1);
    let a = instance(&cluster).await;
    let b = instance(&cluster).await;
    let users = users_on_every_master(&cluster, 2);
    let victim = master_of_user(&cluster, &users[0]);
    let mut live = Vec::new();
    for user in &users {
        live.push(stream(&b, user, &[]).await);
    }
    // A client that goes away before the failover and resumes after it.
    let mut away = stream(&b, &users[0], &[]).await;
    a.manager.publish(&users[0], numbered(0)).await.unwrap();
    assert_eq!(n_of(&away.next_event().await), 0);
    for client in &mut live[..1] {
        assert_eq!(n_of(&client.next_event().await), 0);
    }
    let away_id = away.last_id().to_owned();
    drop(away);

    let acknowledged: Arc<Mutex<HashMap<String, BTreeSet<u64>>>> = Arc::default();
    acknowledged
        .lock()
        .unwrap()
        .entry(users[0].clone())
        .or_default()
        .insert(0);
    let stop = tokio_util::sync::CancellationToken::new();
    let publishing = tokio::spawn({
        let manager = a.manager.clone();
        let users = users.clone();
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        async move {
            let mut n = 1u64;
            while !stop.is_cancelled() {
                let user = &users[(n as usize) % users.len()];
                if manager.publish(user, numbered(n)).await.is_ok() {
                    acknowledged
                        .lock()
                        .unwrap()
                        .entry(user.clone())
                        .or_default()
                        .insert(n);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dipped = tokio::spawn({
        let manager = b.manager.clone();
        async move { wait_unready(&manager).await }
    });
    // Killed while events flow: the kit waits for the promotion, which blocks.
    let (cluster, promoted) = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        let promoted = cluster.kill_master(victim);
        (cluster, promoted)
    })
    .await
    .unwrap();
    assert_ne!(promoted, victim);
    assert!(cluster.masters().contains(&promoted));
    let reason = guard(dipped).await.unwrap();
    assert!(reason.contains("Redis"), "readiness dipped: {reason}");
    wait_ready(&b.manager).await;
    // Delivery resumed by itself: events published now arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    guard(publishing).await.unwrap();

    let acknowledged = acknowledged.lock().unwrap().clone();
    for (user, client) in users.iter().zip(&mut live) {
        let mut expected = acknowledged.get(user).cloned().unwrap_or_default();
        // The first user's stream read event 0 already.
        expected.remove(&0);
        let received = receive(client, &expected).await;
        assert_no_silent_gap(user, &received, &expected);
        let after_failover = expected
            .iter()
            .rev()
            .take(5)
            .all(|n| received.numbers.contains(n));
        assert!(
            after_failover,
            "{user}: delivery resumed by itself: {received:?}"
        );
    }
    let url = b.url(&format!("/api/v1/sse?user_id={}", users[0]));
    let mut resumed = Client::resume(&url, Some(&away_id)).await;
    let mut expected = acknowledged[&users[0]].clone();
    expected.remove(&0);
    let received = receive(&mut resumed, &expected).await;
    assert_no_silent_gap("the resuming client", &received, &expected);
}

#[tokio::test]
async fn random_comings_and_goings_across_instances_on_a_cluster_lose_nothing() {
    let cluster = RedisCluster::start(3, 0);
    crate::common::random_comings_and_goings_on(&cluster.url()).await;
}

#[tokio::test]
async fn with_wait_replicas_a_publish_is_acknowledged_only_once_a_replica_has_it() {
    let cluster = RedisCluster::start(3, 1);
    let server = Server::with(redis_builder(&cluster.url()).redis_wait_replicas(1)).await;
    wait_ready(&server.manager).await;
    let mut client = stream(&server, "fay", &[]).await;
    server.manager.publish("fay", numbered(1)).await.unwrap();
    assert_eq!(n_of(&client.next_event().await), 1);
    // The replica of fay's master stops (SIGSTOP): WAIT cannot be confirmed in time.
    let master = master_of_user(&cluster, "fay");
    let replica = cluster.replicas_of(master)[0];
    let info = cluster.cli(replica, &["INFO", "server"]);
    let pid = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .to_owned();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, pid.as_str()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let refused = server.manager.publish("fay", numbered(2)).await;
    signal("-CONT");
    let Err(sseor::Error::Broker(reason)) = refused else {
        panic!("a publish no replica confirmed is not acknowledged: {refused:?}");
    };
    assert!(reason.contains("replicas"), "{reason}");
    server.manager.publish("fay", numbered(3)).await.unwrap();
    // The event refused an acknowledgement may still have reached the stream; the one
    // acknowledged after it does.
    let mut got = n_of(&client.next_event().await);
    if got == 2 {
        got = n_of(&client.next_event().await);
    }
    assert_eq!(got, 3);
}

#[tokio::test]
async fn counts_tickets_and_publisher_ids_work_across_instances_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let a = instance(&cluster).await;
    let b = instance(&cluster).await;
    let users = users_on_every_master(&cluster, 1);
    let mut streams = Vec::new();
    for user in &users {
        streams.push(stream(&a, user, &[]).await);
    }
    // b counts a's streams (from a's presence, refreshed every few seconds) and its own.
    guard(async {
        while b.manager.cluster_total_connections().await.unwrap() != users.len() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(
        b.manager.cluster_connection_count(&users[0]).await.unwrap(),
        1
    );

    let ticket = a
        .manager
        .issue_ticket(&sseor::auth::Grant::user(&users[1]).unwrap())
        .await
        .unwrap();
    let grant = b.manager.redeem_ticket(ticket.value()).await.unwrap();
    assert_eq!(grant.user_id(), users[1]);
    assert!(
        a.manager.redeem_ticket(ticket.value()).await.is_err(),
        "used up"
    );

    let once = || numbered(7).with_id("order-7");
    let first = a.manager.publish(&users[2], once()).await.unwrap();
    let again = b.manager.publish(&users[2], once()).await.unwrap();
    assert!(again.duplicate, "{again:?}");
    assert_eq!(again.id, first.id);
    assert_eq!(n_of(&streams[2].next_event().await), 7);
    b.manager.publish(&users[2], numbered(8)).await.unwrap();
    assert_eq!(n_of(&streams[2].next_event().await), 8, "sent once");
}
