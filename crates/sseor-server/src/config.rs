//! The server's configuration: environment variables, each also a command-line flag.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
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

    /// Address to listen on. Beyond loopback, subscribers must be authenticated (a JWT
    /// secret or public key), unless `--insecure`.
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

    /// Events that may wait for one stream; beyond, its slow-consumer policy applies
    /// (`--slow-consumer`: disconnect, drop-oldest or latest-per-type).
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

    /// Most bytes of history the embedded broker keeps across every user, topic and
    /// broadcast (the events' JSON plus about 200 bytes each); beyond, the oldest events
    /// are evicted first and a client resuming from before them gets `sseor.reset`.
    #[arg(long, env = "SSEOR_HISTORY_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    history_max_bytes: usize,

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
    #[command(flatten)]
    auth: AuthConfig,
    #[command(flatten)]
    input: InputLimits,
}

/// What the HTTP API accepts to read: how long a body may take, how many body bytes at
/// once, how many topics per stream.
#[derive(Debug, clap::Args)]
struct InputLimits {
    /// How long a request body may take to arrive once its headers are in (longer: 408).
    #[arg(long, env = "SSEOR_BODY_TIMEOUT", default_value = "10s", value_parser = parse_body_timeout)]
    body_timeout: Duration,

    /// Bytes of request bodies received at once, all requests together; a request whose
    /// body does not fit gets 503 with Retry-After.
    #[arg(long, env = "SSEOR_BODY_BYTES_IN_FLIGHT", default_value_t = 64 * 1024 * 1024, value_parser = parse_positive)]
    body_bytes_in_flight: usize,

    /// Most topics one stream may join (more: 400).
    #[arg(long, env = "SSEOR_MAX_TOPICS", default_value_t = 64, value_parser = parse_positive)]
    max_topics: usize,
}

impl InputLimits {
    /// `builder` with these limits.
    fn apply(&self, builder: sseor::Builder) -> sseor::Builder {
        builder
            .body_timeout(self.body_timeout)
            .body_bytes_in_flight(self.body_bytes_in_flight)
            .max_topics(self.max_topics)
    }
}

/// A body timeout: a duration above zero, since none would refuse every publish.
fn parse_body_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        timeout if timeout.is_zero() => Err("must be above 0, such as 10s".into()),
        timeout => Ok(timeout),
    }
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

/// Authentication and authorization settings, listed together in `--help`.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Authentication")]
struct AuthConfig {
    /// Shared secret of HS256 subscriber and publisher tokens (at least 32 bytes). Prefer
    /// the environment variable: a flag shows in the process list.
    #[arg(long, env = "SSEOR_JWT_SECRET", hide_env_values = true, value_parser = Secret::parse)]
    jwt_secret: Option<Secret>,

    /// PEM file of the public key of RS256 (RSA) or ES256 (P-256 EC) tokens; the
    /// algorithm follows the key.
    #[arg(long, env = "SSEOR_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,

    /// Required `iss` of tokens.
    #[arg(long, env = "SSEOR_JWT_ISSUER")]
    jwt_issuer: Option<String>,

    /// Required `aud` of tokens (without it, a token that has an `aud` is refused).
    #[arg(long, env = "SSEOR_JWT_AUDIENCE")]
    jwt_audience: Option<String>,

    /// Claim that lists the topics a token may join: an array of strings, `"*"` for every
    /// topic.
    #[arg(long, env = "SSEOR_JWT_TOPICS_CLAIM", default_value = "topics")]
    jwt_topics_claim: String,

    /// How far the clocks of token issuers and this server may disagree (whole seconds).
    #[arg(long, env = "SSEOR_JWT_LEEWAY", default_value = "5s", value_parser = parse_duration)]
    jwt_leeway: Duration,

    /// Cookie a subscriber's token may come in (besides `Authorization: Bearer` and
    /// `?token=`).
    #[arg(long, env = "SSEOR_AUTH_COOKIE", default_value = "sseor_token")]
    auth_cookie: String,

    /// Static secret of publishers, sent as `Authorization: Bearer` (at least 16
    /// characters); tokens with `"publish": true` publish too.
    #[arg(long, env = "SSEOR_PUBLISH_TOKEN", hide_env_values = true, value_parser = Secret::parse)]
    publish_token: Option<Secret>,

    /// How long a stream ticket (`POST /api/v1/tickets`) may be redeemed (1s to 10m).
    #[arg(long, env = "SSEOR_TICKET_TTL", default_value = "30s", value_parser = parse_duration)]
    ticket_ttl: Duration,

    /// Publishes per second allowed per credential (0: no limit); beyond, 429.
    #[arg(long, env = "SSEOR_PUBLISH_RATE", default_value_t = 0)]
    publish_rate: u32,

    /// Publishes a credential may make at once before the rate applies (0: as many as the
    /// rate).
    #[arg(long, env = "SSEOR_PUBLISH_BURST", default_value_t = 0)]
    publish_burst: u32,

    /// Allow listening beyond loopback without authentication: anyone who reaches the
    /// server reads every user's events and publishes.
    #[arg(
        long,
        env = "SSEOR_INSECURE",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    insecure: bool,
}

/// A secret from the command line or the environment; its debug output hides it.
#[derive(Clone)]
struct Secret(String);

impl Secret {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(Self(text.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The shortest publish token accepted, in characters.
const MIN_PUBLISH_TOKEN_LEN: usize = 16;

/// The longest stream ticket lifetime accepted: a ticket is meant to be used at once.
const MAX_TICKET_TTL: Duration = Duration::from_secs(600);

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

    /// Where to listen. Without authentication, only loopback unless `--insecure`.
    ///
    /// # Errors
    /// A non-loopback address without authentication and without `--insecure`.
    pub(crate) fn listen_address(&self) -> Result<SocketAddr, String> {
        if !self.authenticates() {
            if !self.host.is_loopback() && !self.auth.insecure {
                return Err(format!(
                    "refusing to listen on {} without authentication: set SSEOR_JWT_SECRET or \
                     SSEOR_JWT_PUBLIC_KEY, listen on 127.0.0.1, or pass --insecure \
                     (SSEOR_INSECURE=true)",
                    self.host
                ));
            }
            tracing::warn!(
                host = %self.host,
                "no authentication configured (development): anyone who can reach this \
                 address can read every user's events; set SSEOR_JWT_SECRET or \
                 SSEOR_JWT_PUBLIC_KEY"
            );
        }
        Ok(SocketAddr::new(self.host, self.port))
    }

    /// Whether subscribers must present a token.
    fn authenticates(&self) -> bool {
        self.auth.jwt_secret.is_some() || self.auth.jwt_public_key.is_some()
    }

    /// How subscribers are authenticated, for the logs.
    pub(crate) fn authentication_name(&self) -> &'static str {
        match (&self.auth.jwt_secret, &self.auth.jwt_public_key) {
            (Some(_), _) => "jwt-hs256",
            (None, Some(_)) => "jwt-public-key",
            (None, None) => "none",
        }
    }

    /// The manager's options.
    ///
    /// # Errors
    /// A setting that cannot be used (a key file that cannot be read or is no public key,
    /// a secret too short, settings that contradict each other), in one line that names
    /// it and never holds a secret.
    pub(crate) fn manager(&self) -> Result<sseor::Builder, String> {
        let builder = match &self.redis_ca_file {
            Some(path) => sseor::Manager::builder().redis_ca_file(path),
            None => sseor::Manager::builder(),
        };
        let builder = self.auth.apply(builder)?;
        let builder = self.input.apply(builder);
        Ok(builder
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
            .history_max_bytes(self.history_max_bytes)
            .redis_prefix(self.redis_prefix.clone())
            .redis_timeout(self.redis_timeout)
            .redis_probe_interval(self.probe_interval)
            .redis_presence_ttl(self.presence_ttl))
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

impl AuthConfig {
    /// `builder` with the authorizer, publish token, ticket TTL and publish rate.
    fn apply(&self, builder: sseor::Builder) -> Result<sseor::Builder, String> {
        let mut builder = builder
            .ticket_ttl(self.checked_ticket_ttl()?)
            .publish_rate(self.publish_rate, self.publish_burst);
        if self.publish_burst > 0 && self.publish_rate == 0 {
            return Err(
                "SSEOR_PUBLISH_BURST needs SSEOR_PUBLISH_RATE: a burst of a rate that \
                        is not limited means nothing"
                    .into(),
            );
        }
        if let Some(Secret(token)) = &self.publish_token {
            if token.chars().count() < MIN_PUBLISH_TOKEN_LEN {
                return Err(format!(
                    "SSEOR_PUBLISH_TOKEN is too short: use at least {MIN_PUBLISH_TOKEN_LEN} \
                     random characters"
                ));
            }
            builder = builder.publish_token(token);
        }
        Ok(match self.jwt()? {
            Some(jwt) => builder.authorizer(jwt),
            None => builder,
        })
    }

    fn checked_ticket_ttl(&self) -> Result<Duration, String> {
        if self.ticket_ttl < Duration::from_secs(1) || self.ticket_ttl > MAX_TICKET_TTL {
            return Err(format!(
                "SSEOR_TICKET_TTL must be between 1s and {}s: a ticket is meant to be used at once",
                MAX_TICKET_TTL.as_secs()
            ));
        }
        Ok(self.ticket_ttl)
    }

    /// The JWT authorizer, when a secret or a public key is set.
    fn jwt(&self) -> Result<Option<sseor::auth::JwtAuthorizer>, String> {
        let authorizer = match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(_), Some(_)) => {
                return Err(
                    "SSEOR_JWT_SECRET and SSEOR_JWT_PUBLIC_KEY are both set: tokens are \
                            checked with one or the other, choose"
                        .into(),
                );
            }
            (Some(Secret(secret)), None) => sseor::auth::JwtAuthorizer::hs256(secret)
                .map_err(|e| format!("SSEOR_JWT_SECRET: {e}"))?,
            (None, Some(path)) => {
                let pem = std::fs::read(path).map_err(|e| {
                    format!("cannot read SSEOR_JWT_PUBLIC_KEY `{}`: {e}", path.display())
                })?;
                sseor::auth::JwtAuthorizer::public_key_pem(&pem)
                    .map_err(|e| format!("SSEOR_JWT_PUBLIC_KEY `{}`: {e}", path.display()))?
            }
            (None, None) => return self.no_jwt().map(|()| None),
        };
        if self.jwt_topics_claim.is_empty() {
            return Err("SSEOR_JWT_TOPICS_CLAIM is empty: name the claim that lists topics".into());
        }
        if !is_cookie_name(&self.auth_cookie) {
            return Err(format!(
                "SSEOR_AUTH_COOKIE `{}` is not a cookie name (letters, digits and `-_.` only)",
                self.auth_cookie
            ));
        }
        let mut authorizer = authorizer
            .topics_claim(self.jwt_topics_claim.clone())
            .cookie(self.auth_cookie.clone())
            .leeway(self.jwt_leeway);
        if let Some(issuer) = &self.jwt_issuer {
            authorizer = authorizer.issuer(issuer);
        }
        if let Some(audience) = &self.jwt_audience {
            authorizer = authorizer.audience(audience);
        }
        Ok(Some(authorizer))
    }

    /// Refuses token settings given without a way to check tokens: they would be ignored.
    fn no_jwt(&self) -> Result<(), String> {
        let orphan = [
            ("SSEOR_JWT_ISSUER", self.jwt_issuer.is_some()),
            ("SSEOR_JWT_AUDIENCE", self.jwt_audience.is_some()),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name));
        match orphan {
            Some(name) => Err(format!(
                "{name} is set but tokens are not checked: set SSEOR_JWT_SECRET or \
                 SSEOR_JWT_PUBLIC_KEY too"
            )),
            None => Ok(()),
        }
    }
}

/// Whether `name` can name a cookie: a token of RFC 6265, kept to a safe subset.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses `250ms`, `15s`, `2m`, `1h`, or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
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
