//! A Redis Cluster of the bench's own: masters without replicas (`redis-server
//! --cluster-enabled yes` on free ports), joined by `redis-cli --cluster create`, ready
//! once every node says `cluster_state:ok` and knows every other.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::{free_port, wait_for_port};
use crate::process::Process;
use crate::redis_info::{RedisNode, info_field};
use crate::temp_dir::TempDir;

/// How long the cluster may take to form.
const FORMING: Duration = Duration::from_secs(60);

/// A running Redis Cluster, stopped when dropped.
pub(crate) struct RedisCluster {
    /// `127.0.0.1:PORT` of each master.
    addresses: Vec<String>,
    _nodes: Vec<Process>,
    _dir: TempDir,
}

impl RedisCluster {
    /// Starts `masters` masters (at least 3: `redis-cli --cluster create` wants them) and
    /// waits until they form a cluster that serves every slot.
    pub(crate) async fn start(masters: usize) -> Result<Self, String> {
        let dir = TempDir::new("redis-cluster")?;
        let ports = distinct_free_ports(2 * masters)?;
        let mut nodes = Vec::with_capacity(masters);
        let mut addresses = Vec::with_capacity(masters);
        for pair in ports.chunks(2) {
            nodes.push(start_node(&dir, pair[0], pair[1])?);
            addresses.push(format!("127.0.0.1:{}", pair[0]));
        }
        for pair in ports.chunks(2) {
            wait_for_port(pair[0], "redis-server --cluster-enabled yes").await?;
        }
        create(&addresses).await?;
        wait_until_formed(&addresses).await?;
        Ok(Self {
            addresses,
            _nodes: nodes,
            _dir: dir,
        })
    }

    /// The URL sseor takes for it: `redis+cluster://HOST:PORT,HOST:PORT,...`.
    pub(crate) fn url(&self) -> String {
        format!("redis+cluster://{}", self.addresses.join(","))
    }

    /// `redis://HOST:PORT` of each master, to reach it alone.
    pub(crate) fn node_urls(&self) -> Vec<String> {
        self.addresses
            .iter()
            .map(|address| format!("redis://{address}"))
            .collect()
    }
}

/// `count` free ports, no two the same.
fn distinct_free_ports(count: usize) -> Result<Vec<u16>, String> {
    let mut ports: Vec<u16> = Vec::with_capacity(count);
    for _ in 0..count * 10 {
        let port = free_port()?;
        if !ports.contains(&port) {
            ports.push(port);
        }
        if ports.len() == count {
            return Ok(ports);
        }
    }
    Err(format!("not {count} distinct free ports"))
}

/// A cluster-enabled `redis-server` on `port`, its cluster bus on `bus_port`, its node
/// file in `dir`, without persistence.
fn start_node(dir: &TempDir, port: u16, bus_port: u16) -> Result<Process, String> {
    let nodes_file = format!("nodes-{port}.conf");
    Process::spawn(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-port", &bus_port.to_string()])
            .args(["--cluster-config-file", &nodes_file])
            .arg("--dir")
            .arg(dir.root())
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null()),
        "redis-server (apt-get install redis-server)",
    )
}

/// Joins the masters at `addresses` into one cluster, the slots shared evenly.
async fn create(addresses: &[String]) -> Result<(), String> {
    let output = tokio::time::timeout(
        FORMING,
        Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "redis-cli --cluster create did not end in 60 s".to_owned())?
    .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stdout);
    let last = said.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
    Err(format!(
        "redis-cli --cluster create failed ({}): {last}",
        output.status
    ))
}

/// Waits until every node at `addresses` says `cluster_state:ok` and knows all of them.
async fn wait_until_formed(addresses: &[String]) -> Result<(), String> {
    let deadline = Instant::now() + FORMING;
    for address in addresses {
        let mut node = RedisNode::connect(&format!("redis://{address}")).await?;
        loop {
            let info: String = node.query(redis::cmd("CLUSTER").arg("INFO")).await?;
            let known = info_field(&info, "cluster_known_nodes").and_then(|n| n.parse().ok());
            if info_field(&info, "cluster_state") == Some("ok") && known == Some(addresses.len()) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the Redis Cluster did not form: {address} says {info}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn three_masters_share_the_slots() {
        let cluster = RedisCluster::start(3).await.expect("a cluster");
        assert!(cluster.url().starts_with("redis+cluster://127.0.0.1:"));
        let urls = cluster.node_urls();
        assert_eq!(urls.len(), 3);
        for url in &urls {
            let mut node = RedisNode::connect(url).await.expect("connected");
            let info: String = node
                .query(redis::cmd("CLUSTER").arg("INFO"))
                .await
                .expect("CLUSTER INFO");
            assert_eq!(info_field(&info, "cluster_slots_assigned"), Some("16384"));
            assert_eq!(info_field(&info, "cluster_size"), Some("3"));
        }
    }
}
