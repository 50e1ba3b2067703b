//! A Redis Sentinel, for tests of failing over.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{cli, data_dir, wait_for_port};
use crate::net::free_port;

/// A Redis Sentinel watching one master as `mymaster`, deciding alone (quorum 1).
pub struct Sentinel {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl Sentinel {
    /// A sentinel on a free port watching the master on `master_port`.
    pub fn start(master_port: u16) -> Self {
        let port = free_port();
        let dir = data_dir(port);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 5000\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs as a sentinel too");
        wait_for_port(port, "the sentinel did not start");
        Self { port, dir, child }
    }

    /// Runs `redis-cli` against the sentinel and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// The port of the master the sentinel names now.
    pub fn master_port(&self) -> String {
        self.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
            .lines()
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
