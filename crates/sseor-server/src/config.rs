//! The server's configuration: environment variables, each also a command-line flag.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Server-Sent Events fan-out: clients hold event streams, services publish to one user,
/// a topic, or everyone.
#[derive(Debug, Parser)]
#[command(name = "sseor", version)]
pub(crate) struct Config {
    /// Broker URL; unset or `memory://` runs the embedded broker.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,

    /// Port to listen on.
    #[arg(long, env = "SERVER_PORT", default_value_t = 9090)]
    port: u16,

    /// Address to listen on. Anything other than loopback exposes every user's events to
    /// whoever can reach it: there is no authentication yet.
    #[arg(long, env = "SERVER_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,

    /// Log filter, in tracing's syntax (`info`, `sseor=debug,warn`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Interval of the keep-alive comment on every stream (`15s`, `500ms`, `2m`).
    #[arg(long, env = "SSEOR_HEARTBEAT", default_value = "15s", value_parser = parse_duration)]
    heartbeat: Duration,

    /// Reconnection delay announced to clients when a stream opens (`0s` announces none).
    #[arg(long, env = "SSEOR_RETRY", default_value = "3s", value_parser = parse_duration)]
    retry: Duration,

    /// Events that may wait for one connection before it counts as stalled and is closed.
    #[arg(long, env = "SSEOR_QUEUE_CAPACITY", default_value_t = 256)]
    queue_capacity: usize,

    /// Largest accepted request body, in bytes (larger: 413).
    #[arg(long, env = "SSEOR_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    max_body_bytes: usize,

    /// Events kept per user, topic and broadcast for clients that resume with
    /// `Last-Event-ID`.
    #[arg(long, env = "SSEOR_HISTORY_SIZE", default_value_t = 1000)]
    history_size: usize,

    /// How long events are kept for clients that resume.
    #[arg(long, env = "SSEOR_HISTORY_MAX_AGE", default_value = "1h", value_parser = parse_duration)]
    history_max_age: Duration,

    /// Prefix of every Redis key and channel, so that applications can share a Redis.
    #[arg(long, env = "SSEOR_REDIS_PREFIX", default_value = "sseor")]
    redis_prefix: String,

    /// How long one Redis command or connection attempt may take.
    #[arg(long, env = "SSEOR_REDIS_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    redis_timeout: Duration,

    /// How often the Redis subscription is checked with a probe; not ready after three
    /// intervals without an answer.
    #[arg(long, env = "SSEOR_PROBE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    probe_interval: Duration,

    /// PEM file of the certificate authority of the Redis server, for `rediss://` with a
    /// private CA (default: the system's roots).
    #[arg(long, env = "SSEOR_REDIS_CA_FILE")]
    redis_ca_file: Option<std::path::PathBuf>,

    /// How long an instance's presence in Redis outlives its last refresh: how long a
    /// crashed instance still counts in the cluster-wide counts.
    #[arg(long, env = "SSEOR_PRESENCE_TTL", default_value = "15s", value_parser = parse_duration)]
    presence_ttl: Duration,

    /// How long shutdown may take in all (the drain period included), after which the
    /// connections still open are closed.
    #[arg(long, env = "SSEOR_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    shutdown_timeout: Duration,

    /// TLS and CORS.
    #[command(flatten)]
    pub(crate) transport: crate::transport::TransportArgs,
    #[command(flatten)]
    flow: Flow,
}

/// Slow consumers, limits on open streams, and how shutdown spreads reconnections.
#[derive(Debug, clap::Args)]
struct Flow {
    /// Bytes of events that may wait for one connection (with the queue capacity, what
    /// bounds each connection's memory).
    #[arg(long, env = "SSEOR_QUEUE_BYTES", default_value_t = 1024 * 1024, value_parser = parse_positive)]
    queue_bytes: usize,

    /// What happens to a client whose queue is full: `disconnect` (it reconnects and
    /// resumes from history), `drop-oldest` or `latest-per-type` (it stays and misses the
    /// dropped events, which are not replayed).
    #[arg(long, env = "SSEOR_SLOW_CONSUMER", value_enum, default_value_t = Policy::Disconnect)]
    slow_consumer: Policy,

    /// Most streams open on this instance (0: no limit); beyond, 503 with Retry-After.
    #[arg(long, env = "SSEOR_MAX_CONNECTIONS", default_value_t = 0)]
    max_connections: usize,

    /// Most streams open per user (0: no limit); beyond, 429 with Retry-After.
    #[arg(long, env = "SSEOR_MAX_CONNECTIONS_PER_USER", default_value_t = 0)]
    max_connections_per_user: usize,

    /// Most streams open per client IP address (0: no limit); beyond, 429 with
    /// Retry-After.
    #[arg(long, env = "SSEOR_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    max_connections_per_ip: usize,

    /// Header in which the trusted proxy in front names the client's address (such as
    /// X-Forwarded-For; its right-most address is used). Unset: the socket's peer.
    #[arg(long, env = "SSEOR_CLIENT_IP_HEADER", value_parser = parse_header_name)]
    client_ip_header: Option<http::HeaderName>,

    /// Over how long shutdown ends the open streams, in 20 paced batches [default: 5s, or
    /// the shutdown timeout when shorter]. Must not exceed the shutdown timeout.
    #[arg(long, env = "SSEOR_DRAIN_PERIOD", value_parser = parse_duration)]
    drain_period: Option<Duration>,

    /// How far each stream's `retry:` (and a refusal's Retry-After) is spread around the
    /// retry setting: uniformly within ±this fraction of it (0 to 1; 0: not spread).
    #[arg(long, env = "SSEOR_RETRY_JITTER", default_value_t = 0.5, value_parser = parse_fraction)]
    retry_jitter: f64,
}

/// [`sseor::SlowConsumer`], as the command line names it.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Policy {
    Disconnect,
    DropOldest,
    LatestPerType,
}

impl From<Policy> for sseor::SlowConsumer {
    fn from(policy: Policy) -> Self {
        match policy {
            Policy::Disconnect => Self::Disconnect,
            Policy::DropOldest => Self::DropOldest,
            Policy::LatestPerType => Self::LatestPerType,
        }
    }
}

/// The drain period when none is set: 5 s, or the shutdown timeout when shorter.
const DEFAULT_DRAIN_PERIOD: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// The configuration from the command line and the environment. On an invalid value,
    /// prints one line naming the setting and exits with code 2 (`--help` and `--version`
    /// print and exit 0).
    pub(crate) fn load() -> Self {
        let config = Self::try_parse()
            .map_err(|error| match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    error.exit()
                }
                _ => one_line(&error),
            })
            .and_then(|config| config.validate().map(|()| config));
        config.unwrap_or_else(|message| {
            eprintln!("sseor: {message}");
            std::process::exit(2)
        })
    }

    /// Checks what depends on several settings.
    fn validate(&self) -> Result<(), String> {
        if let Some(drain) = self.flow.drain_period
            && drain > self.shutdown_timeout
        {
            return Err(format!(
                "invalid SSEOR_DRAIN_PERIOD (--drain-period) {drain:?}: it must not exceed \
                 SSEOR_SHUTDOWN_TIMEOUT (--shutdown-timeout) {:?}, which bounds the whole \
                 shutdown",
                self.shutdown_timeout
            ));
        }
        Ok(())
    }

    /// Starts logging; fails on a filter that does not parse.
    pub(crate) fn init_logging(&self) -> Result<(), String> {
        let filter = EnvFilter::builder()
            .parse(&self.log_level)
            .map_err(|e| format!("invalid LOG_LEVEL `{}`: {e}", self.log_level))?;
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
        match self.log_format {
            LogFormat::Text => logs.init(),
            LogFormat::Json => logs.json().init(),
        }
        Ok(())
    }

    pub(crate) fn listen_address(&self) -> Result<SocketAddr, String> {
        if !self.host.is_loopback() {
            tracing::warn!(
                host = %self.host,
                "listening beyond loopback without authentication: anyone who can reach this \
                 address can read every user's events"
            );
        }
        Ok(SocketAddr::new(self.host, self.port))
    }

    pub(crate) fn manager(&self) -> sseor::Builder {
        let builder = match &self.redis_ca_file {
            Some(path) => sseor::Manager::builder().redis_ca_file(path),
            None => sseor::Manager::builder(),
        };
        builder
            .broker_url(self.redis_url.clone().unwrap_or_default())
            .heartbeat(self.heartbeat)
            .retry(Some(self.retry).filter(|d| !d.is_zero()))
            .queue_capacity(self.queue_capacity)
            .max_body_bytes(self.max_body_bytes)
            .shutdown_timeout(self.shutdown_timeout)
            .queue_bytes(self.flow.queue_bytes)
            .slow_consumer(self.flow.slow_consumer.into())
            .max_connections(self.flow.max_connections)
            .max_connections_per_user(self.flow.max_connections_per_user)
            .max_connections_per_ip(self.flow.max_connections_per_ip)
            .client_ip_header(self.flow.client_ip_header.clone())
            .drain_period(
                self.flow
                    .drain_period
                    .unwrap_or(DEFAULT_DRAIN_PERIOD.min(self.shutdown_timeout)),
            )
            .retry_jitter(self.flow.retry_jitter)
            .history(self.history_size, self.history_max_age)
            .redis_prefix(self.redis_prefix.clone())
            .redis_timeout(self.redis_timeout)
            .redis_probe_interval(self.probe_interval)
            .redis_presence_ttl(self.presence_ttl)
    }

    /// The broker's kind, for the logs; never the URL, which may hold a password.
    pub(crate) fn broker_name(&self) -> &'static str {
        match self.redis_url.as_deref() {
            None | Some("") => "embedded",
            Some(url) if url.starts_with("memory:") => "embedded",
            Some(_) => "redis",
        }
    }
}

/// A command-line error as one line, naming the environment variable too:
/// "invalid value 'x' for --queue-bytes (SSEOR_QUEUE_BYTES): ...".
fn one_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let mut line = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    if let Some(clap::error::ContextValue::String(arg)) =
        error.get(clap::error::ContextKind::InvalidArg)
    {
        let long = arg.split_whitespace().next().unwrap_or_default();
        let env = Config::command()
            .get_arguments()
            .find(|candidate| {
                candidate.get_long().map(|l| format!("--{l}")).as_deref() == Some(long)
            })
            .and_then(|candidate| candidate.get_env())
            .map(|env| env.to_string_lossy().into_owned());
        let named = match env {
            Some(env) => format!("{long} ({env})"),
            None => long.to_owned(),
        };
        line = line.replace(&format!("'{arg}'"), &named);
    }
    if let Some(clap::error::ContextValue::Strings(valid)) =
        error.get(clap::error::ContextKind::ValidValue)
    {
        line.push_str(&format!(": expected one of {}", valid.join(", ")));
    }
    line
}

/// A whole number above 0.
fn parse_positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(number) => Ok(number),
        Err(e) => Err(format!("`{text}` is not a whole number: {e}")),
    }
}

/// A number from 0 to 1.
fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(number) if (0.0..=1.0).contains(&number) => Ok(number),
        _ => Err(format!("`{text}` is not a number from 0 to 1, such as 0.5")),
    }
}

/// An HTTP header name, such as `X-Forwarded-For`.
fn parse_header_name(text: &str) -> Result<http::HeaderName, String> {
    http::HeaderName::from_bytes(text.trim().as_bytes())
        .map_err(|_| format!("`{text}` is not an HTTP header name, such as X-Forwarded-For"))
}

/// Parses `250ms`, `15s`, `2m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 15s or 2m"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`: use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 days").is_err());
    }

    #[test]
    fn the_cli_is_well_formed() {
        Config::command().debug_assert();
    }

    #[test]
    fn a_bad_value_is_one_line_naming_the_flag_and_the_variable() {
        let error = Config::try_parse_from(["sseor", "--queue-bytes", "lots"]).unwrap_err();
        let line = one_line(&error);
        assert!(
            line.starts_with("invalid value 'lots' for --queue-bytes (SSEOR_QUEUE_BYTES)"),
            "{line}"
        );
        assert!(!line.contains('\n'));
        assert!(parse_fraction("1.5").is_err());
        assert!(parse_positive("0").is_err());
        assert!(parse_header_name("X Forwarded").is_err());
    }
}
