//! The server's settings, declared once for clap: every flag with its environment variable,
//! default, help heading and the rules between settings (`requires`, groups).
//! [`Settings`](crate::settings::Settings) turns what was parsed into what the server runs
//! with. In the help texts a *stream* is one SSE response and a *connection* one TCP (or
//! TLS) connection, as in the library's documentation.
//!
//! One file for the whole command line: it is one declaration, read as `--help` reads.

mod env;
pub(crate) mod values;

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, ValueEnum};

pub use env::{DEPRECATED, Deprecated, command, environment_variables};
pub(crate) use env::{describe, name, reason};
use values::Secret;

/// Server-Sent Events fan-out: clients hold event streams, services publish to one user,
/// a topic, or everyone.
#[derive(Debug, Parser)]
#[command(name = "sseor", version)]
pub struct Cli {
    #[command(flatten)]
    pub(crate) listen: Listen,
    #[command(flatten)]
    pub(crate) logging: Logging,
    #[command(flatten)]
    pub(crate) broker: Broker,
    #[command(flatten)]
    pub(crate) streams: Streams,
    #[command(flatten)]
    pub(crate) limits: Limits,
    #[command(flatten)]
    pub(crate) shutdown: Shutdown,
    #[command(flatten)]
    pub(crate) auth: Auth,
    #[command(flatten)]
    pub(crate) tls_cors: TlsCors,
    #[command(flatten)]
    pub(crate) webhook: Webhook,
}

/// Where the server listens and how it treats connections and host names.
#[derive(Debug, Args)]
#[command(next_help_heading = "Listen")]
pub(crate) struct Listen {
    /// Port to listen on.
    #[arg(long, env = "SERVER_PORT", default_value_t = 9090)]
    pub(crate) port: u16,

    /// Address to listen on. Beyond loopback, streams need a credential (a JWT secret or
    /// public key, or the application's login with `--auth-url`), unless `--insecure`.
    #[arg(long, env = "SSEOR_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub(crate) host: IpAddr,

    /// How long a connection may go without a request before it is closed: the time for
    /// the first request head (after the TLS handshake), between requests on a kept-alive
    /// connection, and for an HTTP/2 connection to open a stream.
    #[arg(long, env = "SSEOR_HEADER_TIMEOUT", default_value = "30s", value_parser = values::positive_duration)]
    pub(crate) header_timeout: Duration,

    /// Answer requests for any host name. Without it, a server on loopback without
    /// authentication answers only `localhost`, `*.localhost`, `127.x.x.x` and `[::1]`
    /// (403 otherwise), so that a web page cannot reach it through DNS rebinding. For a
    /// reverse proxy on the same machine that forwards the public `Host`.
    #[arg(
        long,
        env = "SSEOR_ALLOW_ANY_HOST",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) allow_any_host: bool,

    /// Header in which the trusted proxy in front names the client's address (such as
    /// X-Forwarded-For; its right-most address is used). Unset: the connection's peer.
    #[arg(long, env = "SSEOR_CLIENT_IP_HEADER", value_parser = values::header_name)]
    pub(crate) client_ip_header: Option<http::HeaderName>,
}

/// What is logged and how.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
pub(crate) struct Logging {
    /// Log filter, in tracing's syntax (`info`, `sseor=debug,warn`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info", value_parser = values::log_filter)]
    pub(crate) log_level: String,

    /// Log format.
    #[arg(long, env = "SSEOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    /// One line of text per record.
    Text,
    /// One JSON object per record.
    Json,
}

/// The broker that carries events between instances, and the history it keeps.
#[derive(Debug, Args)]
#[command(next_help_heading = "Broker & Redis")]
pub(crate) struct Broker {
    /// Broker URL; unset or `memory://` runs the embedded broker.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: Option<String>,

    /// Prefix of every Redis key and channel, so that applications can share a Redis.
    #[arg(long, env = "SSEOR_REDIS_PREFIX", default_value = "sseor")]
    pub(crate) redis_prefix: String,

    /// How long one Redis command or connection attempt may take.
    #[arg(long, env = "SSEOR_REDIS_TIMEOUT", default_value = "2s", value_parser = values::duration)]
    pub(crate) redis_timeout: Duration,

    /// How often the Redis subscription is checked with a probe; not ready after three
    /// intervals without an answer.
    #[arg(long, env = "SSEOR_PROBE_INTERVAL", default_value = "1s", value_parser = values::duration)]
    pub(crate) probe_interval: Duration,

    /// PEM file of the certificate authority of the Redis server, for `rediss://` with a
    /// private CA (default: the system's roots).
    #[arg(long, env = "SSEOR_REDIS_CA_FILE")]
    pub(crate) redis_ca_file: Option<PathBuf>,

    /// How long an instance's presence in Redis outlives its last refresh: how long a
    /// crashed instance's streams still count in the cluster-wide counts.
    #[arg(long, env = "SSEOR_PRESENCE_TTL", default_value = "15s", value_parser = values::duration)]
    pub(crate) presence_ttl: Duration,

    /// How long a user's last stream (or a topic's last subscriber) must stay gone on
    /// every instance before it counts as offline (vacated): a reload within it is no
    /// change at all.
    #[arg(long, env = "SSEOR_LIFECYCLE_GRACE", default_value = "5s", value_parser = values::duration)]
    pub(crate) lifecycle_grace: Duration,

    /// Redis replicas that must confirm each publish (`WAIT`) before it is acknowledged,
    /// so that an acknowledged event survives a failover; 0 for none.
    #[arg(long, env = "SSEOR_REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub(crate) redis_wait_replicas: usize,

    /// Events kept per user, topic and broadcast for clients that resume with
    /// `Last-Event-ID`.
    #[arg(long, env = "SSEOR_HISTORY_SIZE", default_value_t = 1000)]
    pub(crate) history_size: usize,

    /// How long events are kept for clients that resume.
    #[arg(long, env = "SSEOR_HISTORY_MAX_AGE", default_value = "1h", value_parser = values::duration)]
    pub(crate) history_max_age: Duration,

    /// Most bytes of history the embedded broker keeps across every user, topic and
    /// broadcast (the events' JSON plus about 200 bytes each); beyond, the oldest events
    /// are evicted first and a client resuming from before them gets `sseor.reset`.
    #[arg(long, env = "SSEOR_HISTORY_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub(crate) history_max_bytes: usize,
}

/// What every stream is sent, and how much may wait for it.
#[derive(Debug, Args)]
#[command(next_help_heading = "Streams")]
pub(crate) struct Streams {
    /// The longest a stream stays silent: it gets a keep-alive comment when nothing else
    /// went out on it for this long (`15s`, `500ms`, `2m`).
    #[arg(long, env = "SSEOR_HEARTBEAT", default_value = "15s", value_parser = values::duration)]
    pub(crate) heartbeat: Duration,

    /// Reconnection delay announced to clients when a stream opens (`0s` announces none).
    #[arg(long, env = "SSEOR_RETRY", default_value = "3s", value_parser = values::duration)]
    pub(crate) retry: Duration,

    /// How far each stream's `retry:` (and a refusal's Retry-After) is spread around the
    /// retry setting: uniformly within ±this fraction of it (0 to 1; 0: not spread).
    #[arg(long, env = "SSEOR_RETRY_JITTER", default_value_t = 0.5, value_parser = values::fraction)]
    pub(crate) retry_jitter: f64,

    /// Events that may wait for one stream; beyond, its slow-consumer policy applies
    /// (`--slow-consumer`: disconnect, drop-oldest or latest-per-type).
    #[arg(long, env = "SSEOR_QUEUE_CAPACITY", default_value_t = 256)]
    pub(crate) queue_capacity: usize,

    /// Bytes of events that may wait for one stream (with the queue capacity, what bounds
    /// each stream's memory).
    #[arg(long, env = "SSEOR_QUEUE_BYTES", default_value_t = 1024 * 1024, value_parser = values::positive)]
    pub(crate) queue_bytes: usize,

    /// What happens to a stream whose queue is full: `disconnect` (the client reconnects
    /// and resumes from history), `drop-oldest` or `latest-per-type` (it stays and misses
    /// the dropped events, which are not replayed).
    #[arg(long, env = "SSEOR_SLOW_CONSUMER", value_enum, default_value_t = Policy::Disconnect)]
    pub(crate) slow_consumer: Policy,
}

/// [`sseor::SlowConsumer`], as the command line names it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Policy {
    /// End the stream; the client reconnects and resumes from history.
    Disconnect,
    /// Drop the oldest waiting event.
    DropOldest,
    /// Keep only the latest waiting event of each type.
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

/// How many streams may be open, and what requests may ask of the server.
#[derive(Debug, Args)]
#[command(next_help_heading = "Limits")]
pub(crate) struct Limits {
    /// Most streams open on this instance (0: no limit); beyond, 503 with Retry-After.
    #[arg(long, env = "SSEOR_MAX_CONNECTIONS", default_value_t = 0)]
    pub(crate) max_connections: usize,

    /// Most streams open per user (0: no limit); beyond, 429 with Retry-After.
    #[arg(long, env = "SSEOR_MAX_CONNECTIONS_PER_USER", default_value_t = 0)]
    pub(crate) max_connections_per_user: usize,

    /// Most streams open per client IP address (0: no limit); beyond, 429 with
    /// Retry-After.
    #[arg(long, env = "SSEOR_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub(crate) max_connections_per_ip: usize,

    /// Most topics one stream may join (more: 400).
    #[arg(long, env = "SSEOR_MAX_TOPICS", default_value_t = 64, value_parser = values::positive)]
    pub(crate) max_topics: usize,

    /// Largest accepted request body, in bytes (larger: 413).
    #[arg(long, env = "SSEOR_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub(crate) max_body_bytes: usize,

    /// Most events one batch publish (`POST /api/v1/publish/batch`) holds (more: 413).
    #[arg(long, env = "SSEOR_MAX_BATCH_EVENTS", default_value_t = 1000, value_parser = values::positive)]
    pub(crate) max_batch_events: usize,

    /// Largest accepted batch publish body, in bytes (larger: 413).
    #[arg(long, env = "SSEOR_MAX_BATCH_BODY_BYTES", default_value_t = 1024 * 1024, value_parser = values::positive)]
    pub(crate) max_batch_body_bytes: usize,

    /// How long a request body may take to arrive once its headers are in (longer: 408).
    #[arg(long, env = "SSEOR_BODY_TIMEOUT", default_value = "10s", value_parser = values::positive_duration)]
    pub(crate) body_timeout: Duration,

    /// Bytes of request bodies received at once, all requests together; a request whose
    /// body does not fit gets 503 with Retry-After.
    #[arg(long, env = "SSEOR_BODY_BYTES_IN_FLIGHT", default_value_t = 64 * 1024 * 1024, value_parser = values::positive)]
    pub(crate) body_bytes_in_flight: usize,

    /// Publishes per second allowed per credential (0: no limit); beyond, 429.
    #[arg(long, env = "SSEOR_PUBLISH_RATE", default_value_t = 0)]
    pub(crate) publish_rate: u32,

    /// Publishes a credential may make at once before the rate applies (0: as many as the
    /// rate).
    #[arg(long, env = "SSEOR_PUBLISH_BURST", default_value_t = 0)]
    pub(crate) publish_burst: u32,
}

/// How the server stops on SIGTERM or SIGINT.
#[derive(Debug, Args)]
#[command(next_help_heading = "Shutdown")]
pub(crate) struct Shutdown {
    /// How long shutdown may take in all (the drain period included), after which the
    /// connections still open are closed.
    #[arg(long, env = "SSEOR_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = values::duration)]
    pub(crate) shutdown_timeout: Duration,

    /// Over how long shutdown ends the open streams, in 20 paced batches [default: 5s, or
    /// the shutdown timeout when shorter]. Must not exceed the shutdown timeout.
    #[arg(long, env = "SSEOR_DRAIN_PERIOD", value_parser = values::duration)]
    pub(crate) drain_period: Option<Duration>,
}

/// Who may open streams and publish. Tokens are checked with a secret or with a public
/// key, never both (the group `jwt`); the issuer and audience need one of them. Streams
/// are authorized either by tokens or by the application's own login (`--auth-url`),
/// never both; the latter needs the publish token, since a login never publishes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Authentication")]
#[command(group = ArgGroup::new("jwt").args(["jwt_secret", "jwt_public_key"]))]
pub(crate) struct Auth {
    /// URL of the application's endpoint that checks a stream's login: sseor POSTs it
    /// `{"user_id", "topics"}` with the request's Cookie and Authorization headers, and
    /// it answers 200 `{"user", "topics", "expires_in"}`, 401 or 403 (see the README,
    /// "Using your existing login"). Not with the JWT settings; needs the publish token.
    #[arg(
        long,
        env = "SSEOR_AUTH_URL",
        conflicts_with_all = ["jwt_secret", "jwt_public_key"],
        value_parser = values::auth_url
    )]
    pub(crate) auth_url: Option<String>,

    /// How long the application may take to answer (connecting included); beyond, the
    /// stream is refused with 503 and Retry-After.
    #[arg(long, env = "SSEOR_AUTH_TIMEOUT", default_value = "2s", value_parser = values::positive_duration)]
    pub(crate) auth_timeout: Duration,

    /// How long the application's answer for one login and stream is reused (0s: ask for
    /// every stream); a refusal is reused at most 2s.
    #[arg(long, env = "SSEOR_AUTH_CACHE_TTL", default_value = "5s", value_parser = values::duration)]
    pub(crate) auth_cache_ttl: Duration,

    /// Request headers forwarded to the application besides Cookie and Authorization:
    /// comma-separated names such as `X-Forwarded-For,X-Request-Id`.
    #[arg(
        long,
        env = "SSEOR_AUTH_FORWARD_HEADERS",
        value_delimiter = ',',
        requires = "auth_url",
        value_parser = values::header_name
    )]
    pub(crate) auth_forward_headers: Vec<http::HeaderName>,

    /// PEM file of the certificate authority of an `https://` authorization URL with a
    /// private CA (default: the system's roots).
    #[arg(long, env = "SSEOR_AUTH_CA_FILE", requires = "auth_url")]
    pub(crate) auth_ca_file: Option<PathBuf>,

    /// Shared secret of HS256 subscriber and publisher tokens (at least 32 bytes). Prefer
    /// the environment variable: a flag shows in the process list.
    #[arg(long, env = "SSEOR_JWT_SECRET", hide_env_values = true, value_parser = Secret::parse)]
    pub(crate) jwt_secret: Option<Secret>,

    /// PEM file of the public key of RS256 (RSA) or ES256 (P-256 EC) tokens; the
    /// algorithm follows the key. Not with `--jwt-secret`.
    #[arg(long, env = "SSEOR_JWT_PUBLIC_KEY")]
    pub(crate) jwt_public_key: Option<PathBuf>,

    /// Required `iss` of tokens (needs `--jwt-secret` or `--jwt-public-key`).
    #[arg(long, env = "SSEOR_JWT_ISSUER", requires = "jwt")]
    pub(crate) jwt_issuer: Option<String>,

    /// Required `aud` of tokens (without it, a token that has an `aud` is refused; needs
    /// `--jwt-secret` or `--jwt-public-key`).
    #[arg(long, env = "SSEOR_JWT_AUDIENCE", requires = "jwt")]
    pub(crate) jwt_audience: Option<String>,

    /// Claim that lists the topics a token may join: an array of strings, `"*"` for every
    /// topic.
    #[arg(long, env = "SSEOR_JWT_TOPICS_CLAIM", default_value = "topics")]
    pub(crate) jwt_topics_claim: String,

    /// How far the clocks of token issuers and this server may disagree (whole seconds).
    #[arg(long, env = "SSEOR_JWT_LEEWAY", default_value = "5s", value_parser = values::duration)]
    pub(crate) jwt_leeway: Duration,

    /// Cookie a subscriber's token may come in (besides `Authorization: Bearer` and
    /// `?token=`).
    #[arg(long, env = "SSEOR_AUTH_COOKIE", default_value = "sseor_token")]
    pub(crate) auth_cookie: String,

    /// Static secret of publishers, sent as `Authorization: Bearer` (at least 16
    /// characters); tokens with `"publish": true` publish too.
    #[arg(long, env = "SSEOR_PUBLISH_TOKEN", hide_env_values = true, value_parser = Secret::publish_token)]
    pub(crate) publish_token: Option<Secret>,

    /// How long a stream ticket (`POST /api/v1/tickets`) may be redeemed (1s to 10m).
    #[arg(long, env = "SSEOR_TICKET_TTL", default_value = "30s", value_parser = values::ticket_ttl)]
    pub(crate) ticket_ttl: Duration,

    /// Allow listening beyond loopback without authentication: anyone who reaches the
    /// server reads every user's events and publishes.
    #[arg(
        long,
        env = "SSEOR_INSECURE",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) insecure: bool,
}

/// HTTPS, and which other sites' pages may call the server.
#[derive(Debug, Args)]
#[command(next_help_heading = "TLS & CORS")]
pub(crate) struct TlsCors {
    /// PEM file of the TLS certificate chain, the server's certificate first. With
    /// `--tls-key`, the server speaks HTTPS, and HTTP/2 to clients that offer it (browsers
    /// open at most 6 HTTP/1.1 connections per origin).
    #[arg(long, env = "SSEOR_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<OsString>,

    /// PEM file of the private key of the TLS certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SSEOR_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<OsString>,

    /// Browser origins allowed to open streams and call the API from another site, with
    /// credentials: comma-separated exact origins such as
    /// `https://app.example.com,http://localhost:3000`. Unset: no CORS headers at all.
    #[arg(long, env = "SSEOR_CORS_ORIGINS", value_parser = crate::transport::Origins::parse)]
    pub(crate) cors_origins: Option<crate::transport::Origins>,
}

/// Where the application is told who comes and goes: lifecycle changes POSTed in signed
/// batches. The URL and the secret go together.
#[derive(Debug, Args)]
#[command(next_help_heading = "Lifecycle webhook")]
pub(crate) struct Webhook {
    /// URL (http or https) that lifecycle changes are POSTed to, in signed batches: users
    /// online and offline, topics occupied and vacated, across every instance. Unset: none
    /// are sent.
    #[arg(
        long,
        env = "SSEOR_WEBHOOK_URL",
        hide_env_values = true,
        requires = "webhook_secret"
    )]
    pub(crate) webhook_url: Option<String>,

    /// Secret that signs each webhook request (`Sseor-Signature`, HMAC-SHA256), at least
    /// 32 bytes. Prefer the environment variable: a flag shows in the process list.
    #[arg(long, env = "SSEOR_WEBHOOK_SECRET", hide_env_values = true, requires = "webhook_url", value_parser = Secret::webhook_secret)]
    pub(crate) webhook_secret: Option<Secret>,

    /// How long one webhook request may take; longer, it is retried.
    #[arg(long, env = "SSEOR_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = values::positive_duration)]
    pub(crate) webhook_timeout: Duration,
}
