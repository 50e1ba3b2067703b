//! Real `redis-server` processes on free ports, which tests may kill, pause and restart.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// A new server with no persistence.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A new server with extra `redis-server` arguments (`["--requirepass", "x"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on_with(free_port(), extra)
    }

    /// A new server on a port chosen beforehand.
    pub fn start_on(port: u16) -> Self {
        Self::start_on_with(port, &[])
    }

    fn start_on_with(port: u16, extra: &[&str]) -> Self {
        let dir = data_dir(port);
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port,
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        server.spawn();
        server
    }

    /// A new server that also listens with TLS, with a certificate for 127.0.0.1 and
    /// localhost signed by a CA made for it. Returns the server, its TLS port, and the CA's
    /// PEM file.
    pub fn start_tls() -> (Self, u16, PathBuf) {
        // The certificates live in the server's own folder, removed with it.
        let port = free_port();
        let dir = data_dir(port);
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
        make_ca(&dir, "ca");
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &file("server.key"),
            "-out",
            &file("server.csr"),
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &file("server.csr"),
            "-CA",
            &file("ca.crt"),
            "-CAkey",
            &file("ca.key"),
            "-CAcreateserial",
            "-out",
            &file("server.crt"),
            "-days",
            "2",
            "-extfile",
            &file("ext.cnf"),
        ]);
        let tls_port = free_port();
        let server = Self::start_on_with(
            port,
            &[
                "--tls-port",
                &tls_port.to_string(),
                "--tls-cert-file",
                &file("server.crt"),
                "--tls-key-file",
                &file("server.key"),
                "--tls-ca-cert-file",
                &file("ca.crt"),
                "--tls-auth-clients",
                "no",
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not open its TLS port"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        (server, tls_port, dir.join("ca.crt"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

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
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server as a crash would (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("STOP");
    }

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
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is installed with redis-server");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume_quietly();
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisServer {
    fn resume_quietly(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
    }
}

fn data_dir(port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("sseor-redis-{}-{port}", std::process::id()))
}

/// Makes a self-signed CA `NAME.crt` / `NAME.key` in `dir`; returns the certificate's path.
pub fn make_ca(dir: &std::path::Path, name: &str) -> PathBuf {
    let crt = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
        "-subj",
        &format!("/CN=sseor test {name}"),
    ]);
    crt
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A Redis Sentinel watching one master as `mymaster`, deciding alone (quorum 1).
pub struct Sentinel {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl Sentinel {
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the sentinel did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { port, dir, child }
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
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

/// A TCP relay in front of a Redis that can make its subscription connections go silent
/// while their sockets stay open: what a half-dead network path or a stuck proxy does to
/// a pub/sub connection, and what no error on the client side reveals.
///
/// A connection counts as a subscription connection once it has sent a `SUBSCRIBE`. While
/// the relay is stalled, whatever Redis sends on such a connection is read and dropped;
/// commands on the other connections pass as usual.
pub struct StallingProxy {
    pub port: u16,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    subscriptions: std::sync::Arc<std::sync::Mutex<Vec<Relayed>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// One subscription connection, and whether it has gone silent.
struct Relayed {
    silent: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallingProxy {
    /// Relays 127.0.0.1:`port` (chosen here) to the Redis on `redis_port`.
    pub fn start(redis_port: u16) -> Self {
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            stalled: Arc::new(AtomicBool::new(false)),
            subscriptions: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (stalled, subscriptions, stop) = (
            proxy.stalled.clone(),
            proxy.subscriptions.clone(),
            proxy.stop.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", redis_port)) else {
                    continue;
                };
                relay(client, server, stalled.clone(), subscriptions.clone());
            }
        });
        proxy
    }

    /// A Redis URL that goes through the relay.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Every subscription connection, open now or opened later, goes silent.
    pub fn stall_subscriptions(&self) {
        use std::sync::atomic::Ordering;
        self.stalled.store(true, Ordering::SeqCst);
        for relayed in self.subscriptions.lock().unwrap().iter() {
            relayed.silent.store(true, Ordering::SeqCst);
        }
    }

    /// Subscription connections opened from now on work again; the silent ones stay
    /// silent until their client gives up on them.
    pub fn heal(&self) {
        self.stalled
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accepting thread so that it sees `stop`.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Pumps bytes both ways between `client` and `server` on two threads, until either
/// side closes.
fn relay(
    client: std::net::TcpStream,
    server: std::net::TcpStream,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    subscriptions: std::sync::Arc<std::sync::Mutex<Vec<Relayed>>>,
) {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let silent = Arc::new(AtomicBool::new(false));
    let (mut client_in, mut client_out) = (client.try_clone().unwrap(), client);
    let (mut server_in, mut server_out) = (server.try_clone().unwrap(), server);
    let upstream_silent = silent.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        let mut subscriber = false;
        while let Ok(read) = client_in.read(&mut buffer) {
            if read == 0 {
                break;
            }
            let sent = &buffer[..read];
            if !subscriber
                && String::from_utf8_lossy(sent)
                    .to_ascii_uppercase()
                    .contains("SUBSCRIBE")
            {
                subscriber = true;
                if stalled.load(Ordering::SeqCst) {
                    upstream_silent.store(true, Ordering::SeqCst);
                }
                subscriptions.lock().unwrap().push(Relayed {
                    silent: upstream_silent.clone(),
                });
            }
            if server_out.write_all(sent).is_err() {
                break;
            }
        }
        let _ = server_out.shutdown(std::net::Shutdown::Both);
        let _ = client_in.shutdown(std::net::Shutdown::Both);
    });
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(read) = server_in.read(&mut buffer) {
            if read == 0 {
                break;
            }
            // A silent connection: Redis's words are read and dropped, the socket stays.
            if silent.load(Ordering::SeqCst) {
                continue;
            }
            if client_out.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = client_out.shutdown(std::net::Shutdown::Both);
        let _ = server_in.shutdown(std::net::Shutdown::Both);
    });
}

/// Waits until Redis counts `expected` subscribers on `channel`; panics after 20 s.
pub async fn wait_for_subscribers(redis: &RedisServer, channel: &str, expected: &str) {
    let counted = async {
        while redis.cli(&["PUBSUB", "NUMSUB", channel]).lines().nth(1) != Some(expected) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), counted)
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
