//! The test kit's Redis Cluster: it starts whole, keys find their slots, a killed master is
//! replaced and comes back, slots move with their keys.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use sseor_testkit::redis::RedisCluster;

#[test]
fn a_cluster_starts_with_every_slot_served_and_a_replica_for_each_master() {
    let cluster = RedisCluster::start(3, 1);
    assert_eq!(cluster.ports().len(), 6);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let served: usize = masters.iter().map(|&m| cluster.slots_of(m).len()).sum();
    assert_eq!(served, 16384);
    for &master in &masters {
        assert_eq!(cluster.replicas_of(master).len(), 1, "replicas of {master}");
        let first_slot = cluster.slots_of(master)[0];
        assert_eq!(cluster.master_of_slot(first_slot), master);
    }
    let seeds: Vec<String> = masters.iter().map(|m| format!("127.0.0.1:{m}")).collect();
    assert_eq!(
        cluster.url(),
        format!("redis+cluster://{}", seeds.join(","))
    );
}

#[test]
fn keys_written_through_one_node_are_read_through_any_other() {
    let cluster = RedisCluster::start(3, 1);
    let ports = cluster.ports();
    for i in 0..12 {
        let key = format!("key:{i}");
        let (writer, reader) = (ports[i % ports.len()], ports[(i + 1) % ports.len()]);
        assert_eq!(cluster.cli(writer, &["-c", "SET", &key, "value"]), "OK");
        assert_eq!(cluster.cli(reader, &["-c", "GET", &key]), "value");
        // The key lives on the master of its slot: read there, it needs no redirection.
        let owner = cluster.master_of_slot(cluster.slot_of(&key));
        assert_eq!(cluster.cli(owner, &["GET", &key]), "value");
    }
}

#[test]
fn slot_of_agrees_with_cluster_keyslot() {
    let cluster = RedisCluster::start(3, 1);
    let port = cluster.ports()[0];
    let keys = [
        "",
        "foo",
        "user:42",
        "{user:42}",
        "{user:42}:profile",
        "a{b}c",
        "{}x",
        "x{",
        "x}{y}",
        "{a}{b}",
        "{{a}}",
        "ключ",
    ];
    for key in keys {
        let expected = cluster.cli(port, &["CLUSTER", "KEYSLOT", key]);
        assert_eq!(
            cluster.slot_of(key).to_string(),
            expected,
            "slot of {key:?}"
        );
    }
    assert_eq!(
        cluster.slot_of("{user:42}:profile"),
        cluster.slot_of("user:42")
    );
    assert_eq!(cluster.slot_of("a{b}c"), cluster.slot_of("b"));
}

#[test]
fn a_killed_master_is_replaced_by_its_replica_and_rejoins_as_its_replica() {
    let mut cluster = RedisCluster::start(3, 1);
    let slot = cluster.slot_of("survivor");
    let old = cluster.master_of_slot(slot);
    assert_eq!(cluster.cli(old, &["SET", "survivor", "kept"]), "OK");
    // The replica has the key before its master dies.
    assert_eq!(cluster.cli(old, &["WAIT", "1", "5000"]), "1");
    let replicas = cluster.replicas_of(old);

    let promoted = cluster.kill_master(old);
    assert_eq!(replicas, [promoted]);
    assert_eq!(cluster.master_of_slot(slot), promoted);
    assert!(!cluster.masters().contains(&old));
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.cli(promoted, &["GET", "survivor"]), "kept");

    cluster.restart(old);
    assert_eq!(cluster.replicas_of(promoted), [old]);
    assert!(cluster.cli(old, &["ROLE"]).starts_with("slave"));
    assert_eq!(cluster.cli(old, &["-c", "GET", "survivor"]), "kept");
}

#[test]
fn a_migrated_slot_takes_its_keys_to_its_new_master() {
    let cluster = RedisCluster::start(3, 1);
    // More keys than one MIGRATE moves, all in one slot.
    let keys: Vec<String> = (0..250).map(|i| format!("{{moving}}:{i}")).collect();
    let slot = cluster.slot_of(&keys[0]);
    let from = cluster.master_of_slot(slot);
    let mut mset = vec!["MSET"];
    mset.extend(keys.iter().flat_map(|key| [key.as_str(), key.as_str()]));
    assert_eq!(cluster.cli(from, &mset), "OK");
    let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();

    cluster.migrate_slot(slot, to);
    assert_eq!(cluster.master_of_slot(slot), to);
    let slot_arg = slot.to_string();
    let count = ["CLUSTER", "COUNTKEYSINSLOT", &slot_arg];
    assert_eq!(cluster.cli(to, &count), "250");
    assert_eq!(cluster.cli(from, &count), "0");
    assert_eq!(cluster.cli(to, &["GET", &keys[137]]), keys[137]);
    // The old master now redirects to the new one.
    assert_eq!(cluster.cli(from, &["-c", "GET", &keys[7]]), keys[7]);
}

#[test]
fn reshard_moves_slots_between_masters() {
    let cluster = RedisCluster::start(3, 1);
    let masters = cluster.masters();
    let (from, to) = (masters[0], masters[1]);
    let (from_before, to_before) = (cluster.slots_of(from), cluster.slots_of(to));
    // A key in a slot that may move, and does if it is the first one the tool picks.
    let key = (0..)
        .map(|i| format!("reshard:{i}"))
        .find(|key| cluster.slot_of(key) == from_before[0])
        .unwrap();
    assert_eq!(cluster.cli(from, &["SET", &key, "moved"]), "OK");

    cluster.reshard(from, to, 100);
    let (from_after, to_after) = (cluster.slots_of(from), cluster.slots_of(to));
    assert_eq!(from_after.len(), from_before.len() - 100);
    assert_eq!(to_after.len(), to_before.len() + 100);
    let moved = from_before.iter().filter(|slot| !from_after.contains(slot));
    assert!(moved.clone().all(|slot| to_after.contains(slot)));
    let owner = cluster.master_of_slot(cluster.slot_of(&key));
    assert_eq!(cluster.cli(owner, &["GET", &key]), "moved");
}

#[test]
fn pubsub_clients_of_one_node_are_disconnected() {
    let cluster = RedisCluster::start(3, 1);
    let port = cluster.ports()[0];
    let mut subscriber = TcpStream::connect(("127.0.0.1", port)).unwrap();
    subscriber
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    subscriber
        .write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$7\r\nchannel\r\n")
        .unwrap();
    let mut confirmation = [0; 64];
    assert!(subscriber.read(&mut confirmation).unwrap() > 0);

    assert_eq!(cluster.kill_pubsub_clients(port), 1);
    let mut rest = Vec::new();
    // The node closed the connection: the read ends rather than times out.
    subscriber.read_to_end(&mut rest).unwrap();
    assert_eq!(cluster.kill_pubsub_clients(port), 0);
}
