//! `sseor-bench`: starts a server under test (sseor, or nchan or Pushpin for comparison),
//! loads it, and prints one JSON line of figures per scenario.
//!
//! ```text
//! cargo build --release -p sseor-server -p sseor-bench
//! target/release/sseor-bench idle --target nchan --connections 5000
//! target/release/sseor-bench broadcast --target pushpin --events 25 --rate 5
//! bench/compare.sh     # every scenario against every server, and the table
//! target/release/sseor-bench jwt --connections 10000   # streams opened/s with and without JWT
//! target/release/sseor-bench jwt --variants none,hs256,callout-uncached,callout-cached   # and with the auth callout
//! target/release/sseor-bench publish-cost --target nchan-redis   # Redis time per publish
//! bench/cluster.sh     # publishes spread over a Redis Cluster, against one Redis
//! target/release/sseor-bench batch --target sseor-redis   # one batch request against single publishes
//! taskset -c 1 target/release/sseor-bench --server-cpus 0 sends   # the machine alone: bare writes
//! ```

mod batch;
mod client;
mod cluster;
mod herd;
mod jwt;
mod login_app;
mod monitor;
mod process;
mod publish;
mod publish_cost;
mod random;
mod redis;
mod redis_info;
mod scale;
mod scenario;
mod sends;
mod server;
mod slow;
mod sse;
mod stats;
mod table;
mod temp_dir;
mod tls_client;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::batch::BatchArgs;
use crate::cluster::ClusterArgs;
use crate::herd::HerdArgs;
use crate::publish_cost::PublishCostArgs;
use crate::redis::RedisArgs;
use crate::scale::{ClientArgs, ScaleArgs};
use crate::scenario::{Common, Sweep};
use crate::sends::SendsArgs;
use crate::server::ServerOptions;
use crate::slow::SlowArgs;

#[derive(Parser)]
#[command(name = "sseor-bench", version, about)]
struct Cli {
    #[command(flatten)]
    servers: ServerOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Opens idle streams, each on a connection of its own: memory per stream and the time
    /// to open them.
    Idle {
        #[command(flatten)]
        common: Common,
    },
    /// Every stream on one channel; events published at a fixed rate: deliveries per
    /// second, losses and publish-to-receipt latency.
    Broadcast {
        #[command(flatten)]
        common: Common,
        /// Events to publish.
        #[arg(long, default_value_t = 250)]
        events: u64,
        /// Events per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
    },
    /// Each stream on a channel of its own; events to random channels at a fixed rate.
    Targeted {
        #[command(flatten)]
        common: Common,
        /// Events per second.
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        /// Seconds to publish for.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// `targeted` at increasing rates: the highest rate whose p99 latency stays under the
    /// limit with nothing lost.
    TargetedMax {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        sweep: Sweep,
    },
    /// sseor only: streams opened per second when each presents a JWT (HS256, ES256,
    /// RS256) or a session cookie the application checks (the auth callout, asked for every
    /// stream or kept), against none; a fresh server per variant.
    Jwt(jwt::JwtArgs),
    /// Only opens streams and reports what they receive (used by `scale`; see its docs).
    Client(ClientArgs),
    /// Redis, several sseor instances and several `client` processes: broadcasts
    /// published on one instance reach every stream of every instance.
    Scale(ScaleArgs),
    /// The comparison table (markdown) of the JSON lines in FILE (`-`: standard input).
    Table {
        /// JSON lines written by the scenarios.
        file: String,
    },
    /// sseor only: two servers on one Redis: streams on the second, one user each;
    /// publishes to random users through the first's HTTP API.
    Redis(RedisArgs),
    /// sseor only: one client never reads while events are broadcast to it and to readers:
    /// the server's memory before and at its peak, under a slow-consumer policy.
    Slow(SlowArgs),
    /// sseor only: the thundering herd: one instance dies; its clients all resume at once
    /// on another.
    Herd(HerdArgs),
    /// Two instances on a fresh Redis (sseor-redis or nchan-redis): Redis's time per
    /// publish (`INFO commandstats`, `INFO cpu`), against bare `PUBLISH`es.
    PublishCost(PublishCostArgs),
    /// sseor only: a Redis Cluster of its own, one instance on it, publishes through the
    /// library to random users: publishes/s and each master's share, then the same on one
    /// Redis.
    Cluster(ClusterArgs),
    /// sseor only: events published as one batch request, against as many single publish
    /// requests, one at a time and many in flight: events per second of each.
    Batch(BatchArgs),
    /// The machine alone, no server: a frame written to each of N loopback sockets by bare
    /// writes, read by another thread: the least time any server's broadcast takes here.
    Sends(SendsArgs),
}

impl Command {
    /// The target and label of a scenario run against one server, for its error line.
    fn common(&self) -> Option<&Common> {
        match self {
            Command::Idle { common }
            | Command::Broadcast { common, .. }
            | Command::Targeted { common, .. }
            | Command::TargetedMax { common, .. } => Some(common),
            _ => None,
        }
    }

    fn scenario(&self) -> &'static str {
        match self {
            Command::Idle { .. } => "idle",
            Command::Broadcast { .. } => "broadcast",
            Command::Targeted { .. } => "targeted",
            Command::TargetedMax { .. } => "targeted-max",
            Command::Jwt(_) => "jwt",
            Command::Client(_) => "client",
            Command::Scale(_) => "scale",
            Command::Table { .. } => "table",
            Command::Redis(_) => "redis",
            Command::Herd(_) => "herd",
            Command::Slow(_) => "slow",
            Command::PublishCost(_) => "publish-cost",
            Command::Cluster(_) => "cluster",
            Command::Batch(_) => "batch",
            Command::Sends(_) => "sends",
        }
    }

    /// The start of the JSON line a failed run prints, for the scenarios whose line a
    /// comparison reads: the server, the scenario and the label.
    fn error_line(&self) -> Option<Value> {
        let scenario = self.scenario();
        match self {
            Command::PublishCost(args) => {
                Some(json!({"server": args.target.name(), "scenario": scenario}))
            }
            Command::Cluster(_) => Some(json!({"scenario": scenario})),
            Command::Batch(args) => {
                Some(json!({"server": args.target.name(), "scenario": scenario}))
            }
            _ => self.common().map(|common| {
                json!({
                    "server": common.target.name(),
                    "scenario": scenario,
                    "label": common.label,
                })
            }),
        }
    }
}

async fn run(cli: &Cli) -> Result<(), String> {
    let servers = &cli.servers;
    process::pin_started_processes(&servers.server_cpus)?;
    match &cli.command {
        Command::Idle { common } => scenario::idle(common, servers).await,
        Command::Broadcast {
            common,
            events,
            rate,
        } => scenario::broadcast(common, servers, *events, *rate).await,
        Command::Targeted {
            common,
            rate,
            seconds,
        } => scenario::targeted(common, servers, *rate, *seconds).await,
        Command::TargetedMax { common, sweep } => {
            scenario::targeted_max(common, servers, sweep).await
        }
        Command::Jwt(args) => jwt::jwt(args, servers).await,
        Command::Client(args) => scale::client(args).await,
        Command::Scale(args) => scale::scale(args, servers).await,
        Command::Table { file } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(file)
            }
            .map_err(|e| format!("{file}: {e}"))?;
            print!("{}", table::table(&text));
            Ok(())
        }
        Command::Redis(args) => redis::redis(args, servers).await,
        Command::Slow(args) => slow::slow(&servers.server, args).await,
        Command::Herd(args) => herd::herd(&servers.server, args).await,
        Command::PublishCost(args) => publish_cost::publish_cost(args, servers).await,
        Command::Cluster(args) => cluster::cluster(args, &servers.server).await,
        Command::Batch(args) => batch::batch(args, servers).await,
        Command::Sends(args) => sends::sends(args).await,
    }
}

/// Runs the command until it ends or SIGINT/SIGTERM arrives; either way every process it
/// started is stopped before the exit (dropping the command stops them). A failure prints a
/// JSON line with `error`, so that a comparison run records it and goes on.
#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let interrupted = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let outcome = tokio::select! {
        outcome = run(&cli) => outcome,
        () = interrupted => Err("interrupted".into()),
    };
    if let Err(error) = outcome {
        eprintln!("sseor-bench: {error}");
        if let Some(mut line) = cli.command.error_line() {
            line["error"] = json!(error);
            println!("{line}");
        }
        std::process::exit(1);
    }
}
