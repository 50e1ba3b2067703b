//! The servers under test: which there are, where each one's streams are, how to publish
//! to it, and which processes' memory is its own. Each server's start is in a module of its
//! own.

mod app;
mod floor;
mod nchan;
mod publish_api;
mod pushpin;
mod redis;
mod redis_cluster;
mod sseor;
mod tls;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::client::Connector;
use crate::process::Process;
use crate::temp_dir::TempDir;

pub(crate) use publish_api::PublishApi;
pub(crate) use redis::start_redis;
pub(crate) use redis_cluster::RedisCluster;
pub(crate) use sseor::start_sseor;

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
    /// An application that embeds the library (`sseor-app`), its router served by
    /// `sseor::serve`.
    AppSseorServe,
    /// The same application served by `Manager::serve`.
    AppManagerServe,
    /// The same application served by `axum::serve`.
    AppAxumServe,
    /// One sseor process, embedded broker, serving HTTPS; streams over HTTP/1.1 in TLS.
    SseorTls,
    /// One sseor process, embedded broker, serving HTTPS; streams over HTTP/2, one stream
    /// per connection.
    SseorH2,
    /// `sseor-floor`: the least a server of event streams does (one thread writing each
    /// event to its sockets at once), for what the machine and the load generator leave.
    Floor,
}

impl Target {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Sseor => "sseor",
            Target::SseorRedis => "sseor-redis",
            Target::Nchan => "nchan",
            Target::NchanRedis => "nchan-redis",
            Target::Pushpin => "pushpin",
            Target::AppSseorServe => "app-sseor-serve",
            Target::AppManagerServe => "app-manager-serve",
            Target::AppAxumServe => "app-axum-serve",
            Target::SseorTls => "sseor-tls",
            Target::SseorH2 => "sseor-h2",
            Target::Floor => "floor",
        }
    }

    /// Whether it takes many events in one publish request (sseor's batch endpoint).
    pub(crate) fn publishes_in_batches(self) -> bool {
        matches!(self, Target::Sseor | Target::SseorRedis)
    }
}

/// Where the servers' files are.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct ServerOptions {
    /// The sseor server binary.
    #[arg(long, default_value = "target/release/sseor", global = true)]
    pub(crate) server: PathBuf,
    /// The application that embeds the library, for the `app-*` targets.
    #[arg(long, default_value = "target/release/sseor-app", global = true)]
    pub(crate) app: PathBuf,
    /// The folder of the peers' configurations (nchan.conf, pushpin.conf, pushpin.routes).
    #[arg(long, default_value = "bench/peers", global = true)]
    pub(crate) peers: PathBuf,
    /// nginx `worker_processes` for nchan (`1`, `2`, `auto`).
    #[arg(long, default_value = "1", global = true)]
    pub(crate) nchan_workers: String,
    /// The CPUs every process the bench starts (servers, Redis) runs on, e.g. `0` or
    /// `0,1`: with the bench itself started on the others (`taskset -c 1 sseor-bench
    /// --server-cpus 0 ...`), the load generator does not compete with the server.
    #[arg(long, value_delimiter = ',', global = true)]
    pub(crate) server_cpus: Vec<usize>,
}

/// What a stream subscribes to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Channel {
    /// The channel every stream shares.
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

/// A running server under test.
pub(crate) struct Server {
    pub(crate) target: Target,
    /// The processes whose memory is the server's.
    measured: Vec<Process>,
    /// Processes the server needs but whose memory is not counted (Redis).
    _infrastructure: Vec<Process>,
    /// The URL of the Redis the instances share, for the Redis variants.
    redis_url: Option<String>,
    /// Pushpin's origin, served inside this process.
    origin: Option<JoinHandle<()>>,
    stream_port: u16,
    /// How streams are opened: plain, or over TLS.
    connector: Connector,
    /// The certificate (DER) to trust, for a server that speaks HTTPS.
    tls_root: Option<Vec<u8>>,
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
            Target::Sseor | Target::SseorRedis => sseor::start(target, options).await?,
            Target::Nchan | Target::NchanRedis => nchan::start(target, options).await?,
            Target::Pushpin => pushpin::start(options).await?,
            Target::AppSseorServe | Target::AppManagerServe | Target::AppAxumServe => {
                app::start(target, options).await?
            }
            Target::SseorTls | Target::SseorH2 => tls::start(target, options).await?,
            Target::Floor => floor::start(options).await?,
        };
        let path = server.stream_path(Channel::Own(usize::MAX), usize::MAX);
        crate::client::wait_until_serving_over(&server.connector, server.stream_port, &path, "")
            .await
            .map_err(|e| format!("{} does not serve streams: {e}", target.name()))?;
        Ok(server)
    }

    /// A server of the `measured` processes, its streams on `stream_port`; nothing else
    /// held yet.
    fn new(target: Target, measured: Vec<Process>, stream_port: u16, publish: PublishApi) -> Self {
        Self {
            target,
            measured,
            _infrastructure: Vec::new(),
            redis_url: None,
            origin: None,
            stream_port,
            connector: Connector::Plain,
            tls_root: None,
            publish,
            _dirs: Vec::new(),
        }
    }

    /// How streams are opened on this server.
    pub(crate) fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The certificate (DER) a client of this server trusts, when it speaks HTTPS.
    pub(crate) fn tls_root(&self) -> Option<&[u8]> {
        self.tls_root.as_deref()
    }

    /// The port streams are opened on.
    pub(crate) fn stream_port(&self) -> u16 {
        self.stream_port
    }

    /// The path of stream `index` on `channel`.
    pub(crate) fn stream_path(&self, channel: Channel, index: usize) -> String {
        if app::serve_flag(self.target).is_some() {
            return app::stream_path(channel, index);
        }
        match (&self.publish, channel) {
            (PublishApi::Sseor(_), Channel::Broadcast) => format!("/api/v1/sse?user_id=u{index}"),
            (PublishApi::Sseor(_), Channel::Own(_)) => {
                format!("/api/v1/sse?user_id={}", channel.name())
            }
            _ => format!("/sub/{}", channel.name()),
        }
    }

    /// The URL of the Redis the instances share (`redis://127.0.0.1:PORT/0`), for the
    /// Redis variants.
    pub(crate) fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_deref()
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
