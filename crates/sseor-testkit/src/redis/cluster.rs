//! A Redis Cluster on loopback: masters with their replicas, which tests fail over, restart
//! and reshard.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{RedisServer, cli};
use crate::hang::HANG_GUARD;

/// The number of hash slots of every Redis Cluster.
const SLOTS: u16 = 16384;

/// How long to sleep between two looks at a cluster that is still settling.
const POLL: Duration = Duration::from_millis(20);

/// How long `redis-cli --cluster` may take to create or reshard a cluster.
const CLUSTER_TOOL_DEADLINE: Duration = Duration::from_secs(60);

/// How many keys one `MIGRATE` moves.
const MIGRATE_BATCH: &str = "100";

/// A Redis Cluster of `redis-server` processes on 127.0.0.1, each with no persistence in a
/// data directory of its own (where it keeps its `nodes.conf`); every process is killed,
/// and its directory removed, when the cluster is dropped.
///
/// Nodes fail fast (a node timeout of 1 s) and any replica may take over from its master,
/// so that a failover takes two or three seconds.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// A cluster of `masters` masters (3 at least, as `redis-cli --cluster create`
    /// demands), each with `replicas_per_master` replicas, once every node agrees on who
    /// serves which slot and every replica is in sync with its master.
    pub fn start(masters: usize, replicas_per_master: usize) -> Self {
        assert!(masters >= 3, "a Redis Cluster needs 3 masters at least");
        let count = masters * (1 + replicas_per_master);
        // Built before the cluster is created, so that a failure below kills the nodes.
        let cluster = Self {
            nodes: (0..count).map(|_| start_node()).collect(),
        };
        cluster.create(replicas_per_master);
        cluster.wait_until_settled();
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...`: the current masters, as a seed
    /// list.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.masters().iter().map(|port| address(*port)).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The ports of all the nodes, running or killed, in the order they were started.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// The ports of the running masters, as the cluster tells them now (a failover changes
    /// them).
    pub fn masters(&self) -> Vec<u16> {
        self.view()
            .nodes
            .iter()
            .filter(|node| node.is_master() && self.node(node.port).is_running())
            .map(|node| node.port)
            .collect()
    }

    /// The ports of the running replicas of the master on `master`, as the cluster tells
    /// them now.
    pub fn replicas_of(&self, master: u16) -> Vec<u16> {
        let view = self.view();
        let Some(master_id) = view.node(master).map(|node| node.id.clone()) else {
            return Vec::new();
        };
        view.nodes
            .iter()
            .filter(|node| matches!(&node.role, Role::Replica { of } if *of == master_id))
            .filter(|node| self.node(node.port).is_running())
            .map(|node| node.port)
            .collect()
    }

    /// The port of the master that serves `slot` now.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        self.view()
            .nodes
            .iter()
            .find(|node| node.serves(slot))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
            .port
    }

    /// The slots that the master on `master` serves now, in order.
    pub fn slots_of(&self, master: u16) -> Vec<u16> {
        match self.view().node(master).map(|node| &node.role) {
            Some(Role::Master { slots }) => slots.iter().flat_map(|&(a, b)| a..=b).collect(),
            _ => Vec::new(),
        }
    }

    /// The slot of `key`, as Redis computes it: CRC16 of the key, or of its hash tag (what
    /// lies between its first `{` and the first `}` after it, if not empty), modulo 16384.
    pub fn slot_of(&self, key: &str) -> u16 {
        crc16(hash_tag(key.as_bytes())) % SLOTS
    }

    /// Kills the master on `master` as a crash would (SIGKILL), keeping its data directory
    /// so that it can [`restart`](Self::restart); waits until one of its replicas has taken
    /// over and the cluster is whole again. Returns the port of the new master.
    pub fn kill_master(&mut self, master: u16) -> u16 {
        let replicas = self.replicas_of(master);
        assert!(
            !replicas.is_empty(),
            "{master} is not a master with a replica to take over"
        );
        self.node_mut(master).kill();
        let promoted = wait_for("promoted a replica", || {
            let promoted = replicas.iter().find(|&&port| role(port) == "master");
            promoted
                .copied()
                .ok_or_else(|| format!("no replica of {master} is a master yet"))
        });
        self.wait_until_settled();
        promoted
    }

    /// Starts the killed node on `port` again, with its `nodes.conf`, and waits until the
    /// cluster counts it again (a master that was replaced comes back as a replica of the
    /// node that replaced it).
    pub fn restart(&mut self, port: u16) {
        self.node_mut(port).restart();
        self.wait_until_settled();
    }

    /// Moves `slot`, with its keys, to the master on `to`, as `redis-cli --cluster
    /// reshard` moves each slot; waits until every node agrees. Keys must not hold line
    /// breaks (they are read from `redis-cli`, one a line).
    pub fn migrate_slot(&self, slot: u16, to: u16) {
        let from = self.master_of_slot(slot);
        if from == to {
            return;
        }
        let (from_id, to_id) = (node_id(from), node_id(to));
        let slot_arg = slot.to_string();
        expect_ok(
            to,
            &["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &from_id],
        );
        expect_ok(
            from,
            &["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &to_id],
        );
        move_keys(&slot_arg, from, to);
        // The new owner first, so that it claims the slot with a new epoch before the
        // others hear of it; then the old owner, which from then on redirects clients
        // there for good (MOVED rather than ASK).
        let others = self.masters().into_iter().filter(|&m| m != to && m != from);
        for master in [to, from].into_iter().chain(others) {
            expect_ok(master, &["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id]);
        }
        self.wait_until_settled();
        assert_eq!(self.master_of_slot(slot), to, "slot {slot} did not move");
    }

    /// Moves `slots` slots, with their keys, from the master on `from` to the master on
    /// `to` with `redis-cli --cluster reshard`; waits until every node agrees.
    pub fn reshard(&self, from: u16, to: u16, slots: usize) {
        let (from_id, to_id) = (node_id(from), node_id(to));
        let slots = slots.to_string();
        cluster_tool(&[
            "reshard",
            &address(from),
            "--cluster-from",
            &from_id,
            "--cluster-to",
            &to_id,
            "--cluster-slots",
            &slots,
            "--cluster-yes",
        ]);
        self.wait_until_settled();
    }

    /// Runs `redis-cli -p PORT ARGS` (put `-c` first in `args` to follow redirections)
    /// and returns its output, trimmed.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli(port, args)
    }

    /// Disconnects every client of the node on `port` that is subscribed to something;
    /// returns how many there were.
    pub fn kill_pubsub_clients(&self, port: u16) -> usize {
        let killed = cli(port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
        killed
            .parse()
            .unwrap_or_else(|_| panic!("CLIENT KILL answered {killed:?}"))
    }

    fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("{port} is not a node of the cluster"))
    }

    fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("{port} is not a node of the cluster"))
    }

    fn running(&self) -> Vec<u16> {
        let running = self.nodes.iter().filter(|node| node.is_running());
        running.map(|node| node.port).collect()
    }

    /// The cluster as the first running node sees it.
    fn view(&self) -> View {
        let port = *self
            .running()
            .first()
            .expect("every node of the cluster is killed");
        View::of(port)
    }

    /// Makes the nodes one cluster: `redis-cli --cluster create` gives the slots to the
    /// masters, makes the others their replicas, and introduces them to each other.
    fn create(&self, replicas_per_master: usize) {
        let addresses: Vec<String> = self.ports().into_iter().map(address).collect();
        let replicas = replicas_per_master.to_string();
        let mut args = vec!["create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        cluster_tool(&args);
    }

    /// Waits until the running nodes all say the cluster is ok and see it alike, and every
    /// running replica is in sync with its master.
    fn wait_until_settled(&self) {
        wait_for("settled", || self.check_settled());
    }

    /// `Ok` if the cluster is settled; else what is not settled yet.
    fn check_settled(&self) -> Result<(), String> {
        let running = self.running();
        let Some(&first) = running.first() else {
            return Ok(());
        };
        let view = View::of(first);
        view.steady().map_err(|why| format!("{first} sees {why}"))?;
        for &port in &running {
            if !cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                return Err(format!("{port} does not say cluster_state:ok"));
            }
            if View::of(port) != view {
                return Err(format!("{port} and {first} see different clusters"));
            }
        }
        running.iter().try_for_each(|&port| view.counts(port))
    }
}

/// A new node, on ports no other node of this process has; tried again on other ports if
/// another process's server took one of them before the node could.
fn start_node() -> RedisServer {
    for _ in 0..10 {
        let args = node_args(quiet_port());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut node = RedisServer::start_on_with(quiet_port(), &args, None);
        if serves_its_ports(&mut node) {
            return node;
        }
    }
    panic!("every port tried for a cluster node was taken by another process");
}

/// How `redis-server` runs as a node: one that fails fast and is replaced by any replica.
fn node_args(bus_port: u16) -> Vec<String> {
    let args = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        // The bus is told its own port, so that it need not be the client port + 10000,
        // which may be taken or beyond 65535.
        "--cluster-port",
        &bus_port.to_string(),
        "--cluster-node-timeout",
        "1000",
        // A replica out of touch with its master for long may still take over from it.
        "--cluster-replica-validity-factor",
        "0",
        // Replicas stay with their master, so that tests know which replica takes over.
        "--cluster-allow-replica-migration",
        "no",
        // A master sends a replica its data at once, rather than 5 s later in case more
        // replicas come to share the transfer.
        "--repl-diskless-sync-delay",
        "0",
    ];
    args.map(str::to_owned).to_vec()
}

/// Whether the node's own process serves its ports, rather than another process's server
/// that bound one of them first (and made the node's process end at once). Asked on the
/// node's Unix socket, which only the node's process may listen on: it answers there only
/// once it has bound its client and bus ports.
fn serves_its_ports(node: &mut RedisServer) -> bool {
    let socket = node.unix_socket();
    let socket = socket.to_str().expect("a UTF-8 path");
    let deadline = Instant::now() + HANG_GUARD;
    while !node.has_exited() && Instant::now() < deadline {
        let answer = Command::new("redis-cli")
            .args(["-s", socket, "PING"])
            .output();
        if answer.is_ok_and(|answer| answer.stdout.starts_with(b"PONG")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Ports handed out in this process, so that no two nodes of concurrent tests share one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port of 127.0.0.1 that was free a moment ago, drawn at random below the ports that
/// the system gives out itself, for a node's clients or its bus: a node binds two ports and
/// its peers connect to it often, and in the system's own range a port that was free a
/// moment ago is often taken by an outgoing connection before the node binds it.
fn quiet_port() -> u16 {
    let (low, high) = quiet_range();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let port = low + (random() % u64::from(high - low)) as u16;
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
}

/// From 10000 up to the first port the system gives to outgoing connections.
fn quiet_range() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let first_ephemeral = ephemeral
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    (10000, first_ephemeral.max(20000))
}

/// A random number, from the random keys the standard library draws for each hash map.
fn random() -> u64 {
    RandomState::new().build_hasher().finish()
}

fn address(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Runs `redis-cli --cluster ARGS`; panics with its output if it fails, or if it has not
/// ended within a minute (it waits for ever for nodes that never agree).
fn cluster_tool(args: &[&str]) {
    // A file rather than a pipe, which would block the tool once full while it is not read.
    let mut output = tempfile::tempfile().expect("cannot make a temporary file");
    let mut tool = Command::new("redis-cli")
        .arg("--cluster")
        .args(args)
        .stdout(output.try_clone().unwrap())
        .stderr(output.try_clone().unwrap())
        .spawn()
        .expect("redis-cli is installed with redis-server");
    let deadline = Instant::now() + CLUSTER_TOOL_DEADLINE;
    let status = loop {
        match tool.try_wait().unwrap() {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => break None,
            None => std::thread::sleep(POLL),
        }
    };
    let _ = tool.kill();
    let _ = tool.wait();
    if !status.is_some_and(|status| status.success()) {
        let mut printed = String::new();
        output.seek(SeekFrom::Start(0)).unwrap();
        output.read_to_string(&mut printed).unwrap();
        let ending = status.map_or("did not end".to_owned(), |status| status.to_string());
        panic!(
            "redis-cli --cluster {} {ending}:\n{printed}",
            args.join(" ")
        );
    }
}

fn expect_ok(port: u16, args: &[&str]) {
    let answer = cli(port, args);
    assert_eq!(answer, "OK", "{port} answered {args:?} with {answer:?}");
}

fn node_id(port: u16) -> String {
    cli(port, &["CLUSTER", "MYID"])
}

/// The first line of `ROLE`: `master` or `slave`, or nothing if the node is down.
fn role(port: u16) -> String {
    let answer = cli(port, &["ROLE"]);
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Moves the keys of a slot that `from` is migrating to `to`, a batch at a time.
fn move_keys(slot: &str, from: u16, to: u16) {
    let to = to.to_string();
    loop {
        let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH]);
        if keys.is_empty() {
            return;
        }
        let mut args = vec!["MIGRATE", "127.0.0.1", &to, "", "0", "5000", "KEYS"];
        args.extend(keys.lines());
        expect_ok(from, &args);
    }
}

/// Polls `check` until it is `Ok`, returning its value; panics with the last reason it
/// gave after the hang guard's 20 s.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        match check() {
            Ok(value) => return value,
            Err(why) if Instant::now() > deadline => {
                panic!("the cluster never {what}: {why}")
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// The cluster as one node sees it (`CLUSTER NODES`), leaving out what each node sees for
/// itself only (links, pings, suspicions), so that two nodes that agree see equal views.
#[derive(Debug, PartialEq)]
struct View {
    /// In order of port.
    nodes: Vec<NodeView>,
}

#[derive(Debug, PartialEq)]
struct NodeView {
    port: u16,
    id: String,
    role: Role,
    /// Flagged `fail`: the cluster agreed that it is down.
    failed: bool,
    /// Still being introduced (`handshake`): not a member yet.
    joining: bool,
    /// Has a slot that is being migrated or imported.
    moving_slots: bool,
}

#[derive(Debug, PartialEq)]
enum Role {
    /// Serves these ranges of slots (each inclusive).
    Master { slots: Vec<(u16, u16)> },
    /// Replicates the master of this id.
    Replica { of: String },
}

impl View {
    /// The view of the node on `port`: empty if it does not answer.
    fn of(port: u16) -> Self {
        let listing = cli(port, &["CLUSTER", "NODES"]);
        let mut nodes: Vec<NodeView> = listing.lines().filter_map(NodeView::parse).collect();
        nodes.sort_by_key(|node| node.port);
        Self { nodes }
    }

    fn node(&self, port: u16) -> Option<&NodeView> {
        self.nodes.iter().find(|node| node.port == port)
    }

    /// `Ok` if no node is joining and no slot moving; else which.
    fn steady(&self) -> Result<(), String> {
        match self.nodes.iter().find(|n| n.joining || n.moving_slots) {
            Some(node) if node.joining => Err(format!("{} still joining", node.port)),
            Some(node) => Err(format!("slots of {} moving", node.port)),
            None => Ok(()),
        }
    }

    /// `Ok` if the running node on `port` is a member in good standing: known, not
    /// failed, and in sync with its master if it is a replica.
    fn counts(&self, port: u16) -> Result<(), String> {
        let node = self.node(port).ok_or(format!("{port} is not known"))?;
        if node.failed {
            return Err(format!("{port} is flagged as failed"));
        }
        let in_sync = node.is_master()
            || cli(port, &["INFO", "replication"]).contains("master_link_status:up");
        in_sync
            .then_some(())
            .ok_or(format!("{port} is not in sync with its master"))
    }
}

impl NodeView {
    /// A line of `CLUSTER NODES`: `id ip:port@bus flags master ping pong epoch link slots...`.
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [
            id,
            address,
            flags,
            master,
            _ping,
            _pong,
            _epoch,
            _link,
            slots @ ..,
        ] = fields.as_slice()
        else {
            return None;
        };
        // `127.0.0.1:6379@16379`, or `:6379@16379` while a node does not know its own IP.
        let endpoint = address.split(['@', ',']).next()?;
        let port = endpoint.rsplit(':').next()?.parse().ok()?;
        let flags: Vec<&str> = flags.split(',').collect();
        let role = if flags.contains(&"slave") {
            Role::Replica {
                of: (*master).to_owned(),
            }
        } else {
            Role::Master {
                slots: slots.iter().filter_map(|range| slot_range(range)).collect(),
            }
        };
        Some(Self {
            port,
            id: (*id).to_owned(),
            role,
            failed: flags.contains(&"fail"),
            joining: flags.contains(&"handshake"),
            moving_slots: slots.iter().any(|range| range.starts_with('[')),
        })
    }

    fn is_master(&self) -> bool {
        matches!(self.role, Role::Master { .. })
    }

    fn serves(&self, slot: u16) -> bool {
        match &self.role {
            Role::Master { slots } => slots.iter().any(|&(a, b)| (a..=b).contains(&slot)),
            Role::Replica { .. } => false,
        }
    }
}

/// `5461-10922` or `42`; `None` for a slot being migrated or imported (`[42->-id]`).
fn slot_range(range: &str) -> Option<(u16, u16)> {
    match range.split_once('-') {
        Some((first, last)) => Some((first.parse().ok()?, last.parse().ok()?)),
        None => range.parse().ok().map(|slot| (slot, slot)),
    }
}

/// What of `key` is hashed: its hash tag if it has a non-empty one, else all of it.
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &rest[..len],
        _ => key,
    }
}

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), the checksum of Redis Cluster.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0, |crc, &byte| {
        (0..8).fold(crc ^ (u16::from(byte) << 8), |crc, _| {
            if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            }
        })
    })
}
