//! The server's configuration: environment variables, each also a command-line flag.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Parser, ValueEnum};
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

    /// How long shutdown waits for streams to end before closing their connections.
    #[arg(long, env = "SSEOR_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    shutdown_timeout: Duration,

    /// TLS and CORS.
    #[command(flatten)]
    pub(crate) transport: crate::transport::TransportArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl Config {
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

/// Prints `--help` or `--version` (exit 0), or a usage error as one line naming the flag
/// and its environment variable (exit 2).
pub(crate) fn exit_on_usage_error(error: &clap::Error) -> std::process::ExitCode {
    use clap::error::{ContextKind, ErrorKind};
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return std::process::ExitCode::SUCCESS;
    }
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let message = first.strip_prefix("error: ").unwrap_or(first);
    let env = error
        .get(ContextKind::InvalidArg)
        .and_then(|arg| env_of(&arg.to_string()));
    match env {
        Some(env) => eprintln!("sseor: {message} (environment variable {env})"),
        None => eprintln!("sseor: {message}"),
    }
    std::process::ExitCode::from(2)
}

/// The environment variable behind a flag as clap names it in errors (`--port <PORT>`).
fn env_of(flag: &str) -> Option<String> {
    use clap::CommandFactory;
    let long = flag.split_whitespace().next()?.strip_prefix("--")?;
    let command = Config::command();
    let arg = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))?;
    Some(arg.get_env()?.to_string_lossy().into_owned())
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
    fn a_usage_error_names_the_environment_variable() {
        assert_eq!(env_of("--port <PORT>").as_deref(), Some("SERVER_PORT"));
        assert_eq!(env_of("--nope"), None);
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }
}
