//! The servers under test: how to start each one's processes, where its streams are, how to
//! publish to it, and which processes' memory to add up.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// A server variant to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Target {
    /// One sseor process, embedded (memory) broker.
    Sseor,
    /// Two sseor processes on one Redis: streams on the second, publishes to the first.
    SseorRedis,
    /// nginx with nchan, memory store.
    Nchan,
    /// Two nginx + nchan instances on one Redis (nchan's Redis store): streams on the
    /// second, publishes to the first.
    NchanRedis,
    /// Pushpin (condure, zurl, pushpin-proxy, pushpin-handler) with an origin inside this
    /// process that answers every stream with `Grip-Hold: stream`.
    Pushpin,
}

impl Target {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Sseor => "sseor",
            Target::SseorRedis => "sseor-redis",
            Target::Nchan => "nchan",
            Target::NchanRedis => "nchan-redis",
            Target::Pushpin => "pushpin",
        }
    }
}

/// Where the servers' files are.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct ServerOptions {
    /// The sseor server binary.
    #[arg(long, default_value = "target/release/sseor", global = true)]
    pub(crate) server: PathBuf,
    /// The folder of the peers' configurations (nchan.conf, pushpin.conf, pushpin.routes).
    #[arg(long, default_value = "bench/peers", global = true)]
    pub(crate) peers: PathBuf,
    /// nginx `worker_processes` for nchan (`1`, `2`, `auto`).
    #[arg(long, default_value = "1", global = true)]
    pub(crate) nchan_workers: String,
}

/// What a stream subscribes to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Channel {
    /// The channel every connection shares.
    Broadcast,
    /// A channel of its own, by number.
    Own(usize),
}

impl Channel {
    fn name(self) -> String {
        match self {
            Channel::Broadcast => "all".into(),
            Channel::Own(k) => format!("c{k}"),
        }
    }
}

/// A process started by the bench, with every process it starts in turn: stopped (SIGTERM,
/// then SIGKILL after 3 s) when dropped, whatever the reason of the drop (end, error,
/// Ctrl-C).
pub(crate) struct Process {
    child: Child,
    pid: u32,
}

impl Process {
    /// Starts `command` as the leader of a new process group.
    pub(crate) fn spawn(command: &mut Command, what: &str) -> Result<Self, String> {
        let child = command
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        let pid = child.id().ok_or_else(|| format!("{what} exited at once"))?;
        Ok(Self { child, pid })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Resident memory of the process and all its live descendants, KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        family(self.pid).into_iter().map(rss_kib).sum()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Pushpin's runner puts each of its processes in a group of its own and stops them
        // on SIGTERM; nginx's workers share the master's group.
        let mut left = family(self.pid);
        let signal = |name: &str, target: &str| {
            let _ = std::process::Command::new("kill")
                .args([name, "--", target])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM", &format!("-{}", self.pid));
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let _ = self.child.try_wait();
            left.retain(|pid| alive(*pid));
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                for pid in &left {
                    signal("-KILL", &pid.to_string());
                }
                let _ = self.child.try_wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `pid`, the processes of its group and all their descendants, zombies left out.
fn family(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // (pid, parent, group) of every live process.
    let table: Vec<(u32, u32, u32)> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // After "(comm)": state, ppid, pgrp.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            let parent = fields.next()?.parse().ok()?;
            let group = fields.next()?.parse().ok()?;
            (state != "Z").then_some((p, parent, group))
        })
        .collect();
    let mut found: Vec<u32> = table
        .iter()
        .filter(|(p, _, group)| *p == pid || *group == pid)
        .map(|(p, _, _)| *p)
        .collect();
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        for (p, _, _) in table.iter().filter(|(_, pp, _)| *pp == parent) {
            if !found.contains(p) {
                found.push(*p);
            }
        }
        next += 1;
    }
    found
}

/// Whether `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

/// VmRSS of a process, KiB (0 when it is gone).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Waits until something accepts connections on `port`.
async fn wait_for_port(port: u16, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() >= deadline {
            return Err(format!("{what} does not listen on port {port}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A directory of its own under the system's temporary directory, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(what: &str) -> Result<Self, String> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sseor-bench-{}-{what}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self(path))
    }

    /// The path of `name` in this directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `template` (from the peers' folder) into this directory as `name`, with each
    /// `@KEY@` replaced.
    fn write(&self, template: &Path, name: &str, values: &[(&str, &str)]) -> Result<(), String> {
        let mut text = std::fs::read_to_string(template)
            .map_err(|e| format!("cannot read {}: {e}", template.display()))?;
        for (key, value) in values {
            text = text.replace(&format!("@{key}@"), value);
        }
        std::fs::write(self.0.join(name), text).map_err(|e| format!("{name}: {e}"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Kept to read the servers' logs with SSEOR_BENCH_KEEP_DIRS=1.
        if std::env::var_os("SSEOR_BENCH_KEEP_DIRS").is_some() {
            eprintln!("sseor-bench: kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` without persistence on a free port of 127.0.0.1, and its URL.
pub(crate) async fn start_redis() -> Result<(Process, String), String> {
    let port = free_port()?;
    let mut redis = Process::spawn(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null()),
        "redis-server (apt-get install redis-server)",
    )?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() >= deadline || !matches!(redis.child().try_wait(), Ok(None)) {
            return Err(format!("redis-server did not start on port {port}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((redis, format!("redis://127.0.0.1:{port}/0")))
}

/// Starts an sseor server on a free port, with `env`, and reads the port from its log.
pub(crate) async fn start_sseor(
    binary: &Path,
    env: &[(&str, &str)],
) -> Result<(Process, u16), String> {
    let mut process = Process::spawn(
        Command::new(binary)
            .args(["--port", "0", "--log-format", "json"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
        &binary.display().to_string(),
    )?;
    let stdout = process.child().stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(address) = log["fields"]["address"].as_str() {
            let port = address
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse().ok())
                .ok_or_else(|| format!("unexpected address {address}"))?;
            // Keep draining the log so the server never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((process, port));
        }
    }
    Err("the server exited before it listened".into())
}

/// How events are published to a server.
#[derive(Clone, Debug)]
pub(crate) enum PublishApi {
    /// `POST /api/v1/publish` with `{"user_id"?, "event": {...}}`.
    Sseor(String),
    /// `POST {base}CHANNEL` with the event's data as the body.
    Nchan(String),
    /// Pushpin's HTTP control API, `POST /publish/` with items.
    Pushpin(String),
}

impl PublishApi {
    /// sseor's API at 127.0.0.1:`port`.
    pub(crate) fn sseor(port: u16) -> Self {
        Self::Sseor(format!("http://127.0.0.1:{port}/api/v1/publish"))
    }

    /// The request that publishes event `n` with publish time `t` (unix ns) to `channel`.
    pub(crate) fn request(&self, channel: Channel, n: u64, t: u64) -> PublishRequest {
        let data = json!({"n": n, "t": t});
        match self {
            PublishApi::Sseor(url) => {
                let event = json!({"type": "bench", "data": data});
                let body = match channel {
                    Channel::Broadcast => json!({ "event": event }),
                    Channel::Own(_) => json!({"user_id": channel.name(), "event": event}),
                };
                PublishRequest {
                    url: url.clone(),
                    body: body.to_string(),
                }
            }
            PublishApi::Nchan(base) => PublishRequest {
                url: format!("{base}{}", channel.name()),
                body: data.to_string(),
            },
            PublishApi::Pushpin(url) => {
                let content = format!("event: bench\ndata: {data}\n\n");
                let body = json!({"items": [{
                    "channel": channel.name(),
                    "formats": {"http-stream": {"content": content}},
                }]});
                PublishRequest {
                    url: url.clone(),
                    body: body.to_string(),
                }
            }
        }
    }
}

/// One publish request: its URL and body.
pub(crate) struct PublishRequest {
    pub(crate) url: String,
    pub(crate) body: String,
}

/// A running server under test.
pub(crate) struct Server {
    pub(crate) target: Target,
    /// The processes whose memory is the server's.
    measured: Vec<Process>,
    /// Processes the server needs but whose memory is not counted (Redis).
    _infrastructure: Vec<Process>,
    origin: Option<JoinHandle<()>>,
    stream_port: u16,
    publish: PublishApi,
    _dirs: Vec<TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(origin) = &self.origin {
            origin.abort();
        }
    }
}

impl Server {
    /// Starts `target` and waits until it serves streams.
    pub(crate) async fn start(target: Target, options: &ServerOptions) -> Result<Self, String> {
        let server = match target {
            Target::Sseor => {
                let (process, port) = start_sseor(&options.server, &[]).await?;
                Self::plain(target, vec![process], Vec::new(), port, port)
            }
            Target::SseorRedis => {
                let (redis, url) = start_redis().await?;
                let env = [("REDIS_URL", url.as_str())];
                let (publishing, publish_port) = start_sseor(&options.server, &env).await?;
                let (streaming, stream_port) = start_sseor(&options.server, &env).await?;
                Self::plain(
                    target,
                    vec![publishing, streaming],
                    vec![redis],
                    publish_port,
                    stream_port,
                )
            }
            Target::Nchan => {
                let (process, dir, port) = start_nchan(options, None).await?;
                let mut server = Self::plain(target, vec![process], Vec::new(), port, port);
                server._dirs.push(dir);
                server
            }
            Target::NchanRedis => {
                let (redis, url) = start_redis().await?;
                let (publishing, dir1, publish_port) = start_nchan(options, Some(&url)).await?;
                let (streaming, dir2, stream_port) = start_nchan(options, Some(&url)).await?;
                let mut server = Self::plain(
                    target,
                    vec![publishing, streaming],
                    vec![redis],
                    publish_port,
                    stream_port,
                );
                server._dirs.extend([dir1, dir2]);
                server
            }
            Target::Pushpin => start_pushpin(options).await?,
        };
        server.wait_until_serving().await?;
        Ok(server)
    }

    fn plain(
        target: Target,
        measured: Vec<Process>,
        infrastructure: Vec<Process>,
        publish_port: u16,
        stream_port: u16,
    ) -> Self {
        let publish = match target {
            Target::Nchan | Target::NchanRedis => {
                PublishApi::Nchan(format!("http://127.0.0.1:{publish_port}/pub/"))
            }
            _ => PublishApi::sseor(publish_port),
        };
        Self {
            target,
            measured,
            _infrastructure: infrastructure,
            origin: None,
            stream_port,
            publish,
            _dirs: Vec::new(),
        }
    }

    /// Opens one stream until it is answered 200, for up to 15 s.
    async fn wait_until_serving(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let path = self.stream_path(Channel::Own(usize::MAX), usize::MAX);
            let attempt = tokio::time::timeout(
                Duration::from_secs(2),
                crate::client::open(self.stream_port, &path, 1, ""),
            )
            .await;
            match attempt {
                Ok(Ok(_)) => return Ok(()),
                _ if Instant::now() >= deadline => {
                    return Err(format!("{} does not serve streams", self.target.name()));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The port streams are opened on.
    pub(crate) fn stream_port(&self) -> u16 {
        self.stream_port
    }

    /// The path of connection `index`'s stream on `channel`.
    pub(crate) fn stream_path(&self, channel: Channel, index: usize) -> String {
        match (&self.publish, channel) {
            (PublishApi::Sseor(_), Channel::Broadcast) => format!("/api/v1/sse?user_id=u{index}"),
            (PublishApi::Sseor(_), Channel::Own(_)) => {
                format!("/api/v1/sse?user_id={}", channel.name())
            }
            _ => format!("/sub/{}", channel.name()),
        }
    }

    /// How events are published to this server.
    pub(crate) fn publish_api(&self) -> &PublishApi {
        &self.publish
    }

    /// Resident memory of every process of the server (not Redis), KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        self.measured.iter().map(Process::rss_kib).sum()
    }
}

/// Starts nginx with nchan's configuration on a free port, with the Redis store at
/// `redis_url` or the memory store.
async fn start_nchan(
    options: &ServerOptions,
    redis_url: Option<&str>,
) -> Result<(Process, TempDir, u16), String> {
    let dir = TempDir::new("nchan")?;
    let port = free_port()?;
    let upstream = redis_url.map_or(String::new(), |url| {
        let address = url.trim_end_matches("/0");
        format!("upstream redis_store {{ nchan_redis_server {address}; }}")
    });
    let store = if redis_url.is_some() {
        "nchan_redis_pass redis_store;"
    } else {
        ""
    };
    dir.write(
        &options.peers.join("nchan.conf"),
        "nginx.conf",
        &[
            ("WORKERS", &options.nchan_workers),
            ("PORT", &port.to_string()),
            ("UPSTREAM", &upstream),
            ("STORE", store),
        ],
    )?;
    let process = Process::spawn(
        Command::new("nginx")
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(dir.0.join("nginx.conf"))
            // Before it reads its configuration nginx logs to the package's default file.
            .args(["-e", "error.log"])
            .stdout(Stdio::null()),
        "nginx (apt-get install nginx libnginx-mod-nchan)",
    )?;
    wait_for_port(port, "nginx").await?;
    Ok((process, dir, port))
}

/// Starts the origin and Pushpin in front of it.
async fn start_pushpin(options: &ServerOptions) -> Result<Server, String> {
    let dir = TempDir::new("pushpin")?;
    let origin = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("origin: {e}"))?;
    let origin_port = origin.local_addr().map_err(|e| e.to_string())?.port();
    let origin = tokio::spawn(serve_origin(origin));
    let ports: Vec<String> = (0..5)
        .map(|_| free_port().map(|p| p.to_string()))
        .collect::<Result<_, _>>()?;
    let dir_text = dir.0.display().to_string();
    let values = [
        ("DIR", dir_text.as_str()),
        ("HTTP_PORT", &ports[0]),
        ("PUBLISH_PORT", &ports[1]),
        ("PUSH_PORT", &ports[2]),
        ("SUB_PORT", &ports[3]),
        ("COMMAND_PORT", &ports[4]),
        ("ORIGIN_PORT", &origin_port.to_string()),
    ];
    dir.write(&options.peers.join("pushpin.conf"), "pushpin.conf", &values)?;
    dir.write(
        &options.peers.join("pushpin.routes"),
        "pushpin.routes",
        &values,
    )?;
    for sub in ["run", "log"] {
        std::fs::create_dir_all(dir.0.join(sub)).map_err(|e| e.to_string())?;
    }
    let process = Process::spawn(
        Command::new("pushpin")
            .arg("--config")
            .arg(dir.0.join("pushpin.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "pushpin (apt-get install pushpin)",
    )?;
    let stream_port: u16 = ports[0].parse().map_err(|_| "port")?;
    wait_for_port(stream_port, "pushpin").await?;
    wait_for_port(ports[1].parse().map_err(|_| "port")?, "pushpin-handler").await?;
    Ok(Server {
        target: Target::Pushpin,
        measured: vec![process],
        _infrastructure: Vec::new(),
        origin: Some(origin),
        stream_port,
        publish: PublishApi::Pushpin(format!("http://127.0.0.1:{}/publish/", ports[1])),
        _dirs: vec![dir],
    })
}

/// The origin behind Pushpin: answers every request for `/sub/CHANNEL` with an empty
/// event stream that Pushpin holds open on channel CHANNEL (keep-alive, several requests
/// per connection).
async fn serve_origin(listener: TcpListener) {
    while let Ok((mut socket, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                pending.drain(..end + 4);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let channel = path.rsplit('/').next().unwrap_or("none");
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nGrip-Hold: stream\r\nGrip-Channel: {channel}\r\nContent-Length: 0\r\n\r\n"
                );
                if socket.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}
