//! Real `redis-server` processes on free ports, which tests may kill, pause and restart;
//! a Sentinel; a Redis Cluster; a relay that makes subscriptions go silent.

mod cluster;
mod proxy;
mod sentinel;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use cluster::RedisCluster;
pub use proxy::StallingProxy;
pub use sentinel::Sentinel;

use crate::certs::{Ca, CertFiles};
use crate::hang::HANG_GUARD;
use crate::net::free_port;

/// A `redis-server` with no persistence, in a data directory of its own; killed (and its
/// directory removed) when dropped.
pub struct RedisServer {
    /// The TCP port it listens on (127.0.0.1).
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
    /// The certificates of a server that also listens with TLS: held, never read, so that
    /// their files last as long as the server.
    _certs: Option<CertFiles>,
}

impl RedisServer {
    /// A new server with no persistence.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A new server with extra `redis-server` arguments (`["--requirepass", "x"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on_with(free_port(), extra, None)
    }

    /// A new server on a port chosen beforehand.
    pub fn start_on(port: u16) -> Self {
        Self::start_on_with(port, &[], None)
    }

    /// A new server that also listens with TLS, with a certificate for 127.0.0.1 and
    /// localhost issued by a CA made for it. Returns the server, its TLS port, and the CA's
    /// PEM file.
    pub fn start_tls() -> (Self, u16, PathBuf) {
        let ca = Ca::new("ca");
        let files = ca.issue();
        let ca_file = files.file("ca.crt", &ca.pem());
        let tls_port = free_port();
        let args = [
            "--tls-port".to_owned(),
            tls_port.to_string(),
            "--tls-cert-file".to_owned(),
            path_arg(&files.cert),
            "--tls-key-file".to_owned(),
            path_arg(&files.key),
            "--tls-ca-cert-file".to_owned(),
            path_arg(&ca_file),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Self::start_on_with(free_port(), &args, Some(files));
        wait_for_port(tls_port, "redis-server did not open its TLS port");
        (server, tls_port, ca_file)
    }

    fn start_on_with(port: u16, extra: &[&str], certs: Option<CertFiles>) -> Self {
        let dir = data_dir(port);
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port,
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
            _certs: certs,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The Unix socket it also listens on.
    pub fn unix_socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(["--unixsocket", self.unix_socket().to_str().unwrap()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it with `apt-get install redis-server`"
                )
            });
        self.child = Some(child);
        wait_for_port(self.port, "redis-server did not start");
    }

    /// Kills the server as a crash would (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether its process has ended by itself, or was killed: a server that cannot bind
    /// its ports ends at once.
    fn has_exited(&mut self) -> bool {
        let child = self.child.as_mut();
        child.is_none_or(|child| !matches!(child.try_wait(), Ok(None)))
    }

    /// Whether its process runs: false after [`kill`](Self::kill), until
    /// [`restart`](Self::restart).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server again on the same port, in the same data directory (where a
    /// cluster node keeps its `nodes.conf`); kills it first if it still runs.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Thaws a server frozen by [`pause`](Self::pause) (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A server a test left paused is thawed first, so that it ends as any other does.
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The data directory of the server (or sentinel) on `port`, unique to this process.
fn data_dir(port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("sseor-redis-{}-{port}", std::process::id()))
}

fn path_arg(path: &std::path::Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Waits until 127.0.0.1:`port` accepts connections; panics with `failure` after 10 s.
fn wait_for_port(port: u16, failure: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{failure}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `redis-cli -p PORT ARGS`; its output, trimmed.
fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is installed with redis-server");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Waits until Redis counts `expected` subscribers on `channel`; panics after the hang
/// guard's 20 s.
pub async fn wait_for_subscribers(redis: &RedisServer, channel: &str, expected: &str) {
    let counted = async {
        while redis.cli(&["PUBSUB", "NUMSUB", channel]).lines().nth(1) != Some(expected) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(HANG_GUARD, counted)
        .await
        .unwrap_or_else(|_| panic!("Redis never counted {expected} subscribers on {channel}"));
}

/// A Redis user `app` that may do anything, and the URL that logs in as it.
pub fn app_user(redis: &RedisServer) -> String {
    let created = redis.cli(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">app-pass",
        "~*",
        "&*",
        "+@all",
    ]);
    assert_eq!(created, "OK");
    format!("redis://app:app-pass@127.0.0.1:{}/0", redis.port)
}
