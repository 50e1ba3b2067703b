//! The options of a [`Manager`]; starting it from them is in `start`.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::net::TcpListener;

use super::InputLimits;
// For the links of the docs.
#[cfg(doc)]
use super::Manager;
#[cfg(doc)]
use crate::Error;
use crate::auth::{self, Authorizer};
use crate::broker::{Broker, BrokerContext, Retention};
use crate::fanout::Limits;
use crate::server::{ConnectionRules, Transport};
use crate::{Result, SlowConsumer};

/// How a broker of the application's own is started; see [`Builder::broker`].
type StartBroker =
    Arc<dyn Fn(BrokerContext) -> BoxFuture<'static, Result<Arc<dyn Broker>>> + Send + Sync>;

/// Options of a [`Manager`]; start from [`Manager::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
/// use std::time::Duration;
/// let manager = sseor::Manager::builder()
///     .broker_url("memory://")
///     .heartbeat(Duration::from_secs(30))
///     .queue_capacity(512)
///     .build()
///     .await?;
/// manager.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct Builder {
    pub(super) broker_url: String,
    pub(super) start_broker: Option<StartBroker>,
    pub(super) heartbeat: Duration,
    pub(super) retry: Option<Duration>,
    pub(super) retry_jitter: f64,
    pub(super) queue_capacity: usize,
    pub(super) queue_bytes: usize,
    pub(super) slow_consumer: SlowConsumer,
    pub(super) limits: Limits,
    pub(super) client_ip_header: Option<http::HeaderName>,
    pub(super) drain_period: Duration,
    pub(super) shutdown_timeout: Duration,
    pub(super) max_body_bytes: usize,
    pub(super) input: InputLimits,
    pub(super) handle_signals: bool,
    pub(super) retention: Retention,
    pub(super) auth: auth::Settings,
    #[cfg(feature = "redis")]
    pub(super) redis: crate::broker::redis::RedisOptions,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<crate::TlsConfig>,
    pub(super) header_timeout: Duration,
    pub(super) loopback_hosts_only: bool,
    pub(super) lifecycle: crate::LifecycleHooks,
    #[cfg(feature = "webhook")]
    pub(super) webhooks: Vec<crate::webhook::Webhook>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("broker_url", &redact(&self.broker_url))
            .field("own_broker", &self.start_broker.is_some())
            .field("heartbeat", &self.heartbeat)
            .field("retry", &self.retry)
            .field("retry_jitter", &self.retry_jitter)
            .field("queue_capacity", &self.queue_capacity)
            .field("queue_bytes", &self.queue_bytes)
            .field("slow_consumer", &self.slow_consumer)
            .field("limits", &self.limits)
            .field("client_ip_header", &self.client_ip_header)
            .field("drain_period", &self.drain_period)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("input", &self.input)
            .field("tls", &!matches!(self.transport(), Transport::Plain))
            .field("header_timeout", &self.header_timeout)
            .field("loopback_hosts_only", &self.loopback_hosts_only)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// The URL with any password replaced by `***`, for logs and debug output.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials
                .split_once(':')
                .map_or(credentials, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            broker_url: String::new(),
            start_broker: None,
            heartbeat: Duration::from_secs(15),
            retry: Some(Duration::from_secs(3)),
            retry_jitter: 0.5,
            queue_capacity: 256,
            queue_bytes: 1024 * 1024,
            slow_consumer: SlowConsumer::Disconnect,
            limits: Limits::default(),
            client_ip_header: None,
            drain_period: Duration::from_secs(5),
            shutdown_timeout: crate::DEFAULT_SHUTDOWN_TIMEOUT,
            max_body_bytes: 64 * 1024,
            input: InputLimits::default(),
            handle_signals: true,
            retention: Retention::default(),
            auth: auth::Settings::default(),
            #[cfg(feature = "redis")]
            redis: crate::broker::redis::RedisOptions::default(),
            #[cfg(feature = "tls")]
            tls: None,
            header_timeout: crate::DEFAULT_HEADER_TIMEOUT,
            loopback_hosts_only: true,
            lifecycle: crate::LifecycleHooks::default(),
            #[cfg(feature = "webhook")]
            webhooks: Vec::new(),
        }
    }
}

impl Builder {
    /// Where events cross instances: empty or `memory://` (the default) for the embedded
    /// broker; `redis://`, `rediss://` or `redis+unix://` for Redis (with the `redis`
    /// feature, on by default).
    pub fn broker_url(mut self, url: impl Into<String>) -> Self {
        self.broker_url = url.into();
        self
    }

    /// Carries events between instances with a broker of the application's own (NATS,
    /// Kafka, a database...) instead of the one [`broker_url`](Self::broker_url) names.
    /// `start` gets the [`BrokerContext`]: the [`Fanout`](crate::Fanout) the broker hands
    /// every event to, the history to keep, and, for a broker that subscribes per target,
    /// the changes in this instance's interest.
    ///
    /// ```
    /// use sseor::broker::BrokerContext;
    /// use sseor::{Event, Manager, MemoryBroker};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// // Any `Broker` works; here, the embedded one, started by hand.
    /// let manager = Manager::builder()
    ///     .broker(|context: BrokerContext| async move {
    ///         Ok(MemoryBroker::new(context.fanout(), context.retention()))
    ///     })
    ///     .build()
    ///     .await?;
    /// manager.publish_to_all(Event::new("hello")).await?;
    /// manager.close().await;
    /// # Ok(()) }
    /// ```
    pub fn broker<F, Started, B>(mut self, start: F) -> Self
    where
        F: Fn(BrokerContext) -> Started + Send + Sync + 'static,
        Started: Future<Output = Result<B>> + Send + 'static,
        B: Broker,
    {
        self.start_broker = Some(Arc::new(move |context| {
            let started = start(context);
            Box::pin(async move { Ok(Arc::new(started.await?) as Arc<dyn Broker>) })
        }));
        self
    }

    /// The longest a stream stays silent: one that carried nothing for this long receives
    /// a comment line, to keep it alive through proxies and to notice clients that left
    /// (default 15 s; at least 10 ms). A stream that carries events needs none and gets
    /// none.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval.max(Duration::from_millis(10));
        self
    }

    /// The reconnection delay announced to clients with `retry:` when a stream opens
    /// (default 3 s); `None` announces nothing. Each stream announces its own value,
    /// spread around this one by [`retry_jitter`](Self::retry_jitter).
    pub fn retry(mut self, delay: Option<Duration>) -> Self {
        self.retry = delay;
        self
    }

    /// How far the `retry:` of each stream (and the `Retry-After` of a refused one) is
    /// spread around [`retry`](Self::retry): uniformly between `(1 - jitter)` and
    /// `(1 + jitter)` times it (default 0.5: 1.5 s to 4.5 s for 3 s; clamped to 0..=1;
    /// 0 announces the value as is). Clients that lost their streams at the same moment
    /// then do not all come back in the same second.
    pub fn retry_jitter(mut self, jitter: f64) -> Self {
        self.retry_jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// How many events may wait for one connection (default 256, at least 2); see
    /// [`slow_consumer`](Self::slow_consumer) for what happens beyond.
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.queue_capacity = events.max(2);
        self
    }

    /// How many bytes of encoded events may wait for one connection (default 1 MiB, at
    /// least 1), counted per connection although every recipient shares the same bytes.
    /// A single event larger than this still goes to a connection with nothing waiting.
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.queue_bytes = bytes.max(1);
        self
    }

    /// What happens to a client that reads more slowly than events arrive, once its queue
    /// is full (default [`SlowConsumer::Disconnect`]); a route can choose otherwise with
    /// [`Subscription::slow_consumer`](crate::Subscription::slow_consumer). Whatever the policy, other clients are not slowed
    /// and memory stays bounded by [`queue_capacity`](Self::queue_capacity) and
    /// [`queue_bytes`](Self::queue_bytes) per connection.
    pub fn slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.slow_consumer = policy;
        self
    }

    /// The most streams this instance holds open at once (default 0: no limit). One more
    /// is refused with [`Error::TooManyConnections`] (HTTP 503 with `Retry-After`: another
    /// instance may have room). Checked atomically when the stream registers.
    pub fn max_connections(mut self, streams: usize) -> Self {
        self.limits.total = streams;
        self
    }

    /// The most streams one user holds open on this instance (default 0: no limit); one
    /// more gets HTTP 429 with `Retry-After`.
    pub fn max_connections_per_user(mut self, streams: usize) -> Self {
        self.limits.per_user = streams;
        self
    }

    /// The most streams one client IP address holds open on this instance (default 0: no
    /// limit); one more gets HTTP 429 with `Retry-After`. The address is the socket's
    /// peer (from [`ConnectInfo`](axum::extract::ConnectInfo)), or the one a trusted proxy names, see
    /// [`client_ip_header`](Self::client_ip_header). A stream whose address is unknown
    /// cannot be counted, so it is refused with [`Error::Misconfigured`] (HTTP 500, logged
    /// once): under `axum::serve`, serve
    /// `app.into_make_service_with_connect_info::<SocketAddr>()`; [`Manager::serve`]
    /// records the address by itself.
    pub fn max_connections_per_ip(mut self, streams: usize) -> Self {
        self.limits.per_ip = streams;
        self
    }

    /// The request header in which the proxy in front of this server names the client's
    /// address, such as `X-Forwarded-For` (default none: the socket's peer). The right-most
    /// address of the header's last line is used, the one that proxy wrote; addresses left
    /// of it come from the client and can be forged. Set it only when every request comes
    /// through one trusted proxy that sets the header; a request without a valid address
    /// there counts under its socket's peer.
    ///
    /// ```
    /// let builder = sseor::Manager::builder()
    ///     .client_ip_header(Some(axum::http::HeaderName::from_static("x-forwarded-for")))
    ///     .max_connections_per_ip(20);
    /// # drop(builder);
    /// ```
    pub fn client_ip_header(mut self, header: Option<http::HeaderName>) -> Self {
        self.client_ip_header = header;
        self
    }

    /// Over how long shutdown ends the open streams (default 5 s): in 20 batches spread
    /// evenly over this period, each stream ended cleanly, so that thousands of clients do
    /// not reconnect to the other instances in the same second. New streams and publishes
    /// are refused and `/healthz` and `/readyz` answer 503 from the start. The period is
    /// part of the [`shutdown_timeout`](Self::shutdown_timeout) and cut to it when longer;
    /// `Duration::ZERO` ends every stream at once.
    pub fn drain_period(mut self, period: Duration) -> Self {
        self.drain_period = period;
        self
    }

    /// How long shutdown may take in all, from its start (default 10 s): the
    /// [`drain_period`](Self::drain_period), then the time streams get to send what they
    /// have queued, after which the connections still open are closed.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The largest request body the HTTP API accepts (default 64 KiB); larger ones get 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How long the HTTP API waits for a request body to arrive once its headers are in
    /// (default 10 s); a slower one gets 408. Credentials are checked before any body is
    /// read, so an anonymous client never holds a body open.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.input.body_timeout = timeout;
        self
    }

    /// How many bytes of request bodies the HTTP API receives at once, all requests
    /// together (default 64 MiB; counted in KiB, at least 1 KiB). A request whose body
    /// (its `Content-Length`, else [`max_body_bytes`](Self::max_body_bytes)) does not fit
    /// gets 503 with `Retry-After: 1` at once, rather than holding its socket while it
    /// waits. The budget is shared by every manager built from this builder.
    pub fn body_bytes_in_flight(mut self, bytes: usize) -> Self {
        self.input.set_body_bytes_in_flight(bytes);
        self
    }

    /// The most topics one stream may join (default 64); a stream that asks for more is
    /// refused with [`Error::InvalidTarget`] (HTTP 400) naming the limit.
    pub fn max_topics(mut self, topics: usize) -> Self {
        self.input.max_topics = topics;
        self
    }

    /// How many events per target are kept for clients that resume with `Last-Event-ID`
    /// (default 1,000), and for how long (default 1 hour).
    pub fn history(mut self, max_events: usize, max_age: Duration) -> Self {
        self.retention.max_events = max_events;
        self.retention.max_age = max_age;
        self
    }

    /// The most bytes of history the embedded broker keeps across every target (default
    /// 64 MiB), counted as the events' JSON plus about 200 bytes each: beyond, the oldest
    /// events go first, whatever their target, and a client resuming from before them gets
    /// a [`RESET_EVENT`](crate::RESET_EVENT). Without it, history could grow with every target ever published
    /// to. Redis's history is bounded per target by [`history`](Self::history) alone.
    pub fn history_max_bytes(mut self, bytes: usize) -> Self {
        self.retention.max_bytes = bytes;
        self
    }

    /// Whether [`Manager::listen_and_serve`] and [`Manager::serve`] shut down on SIGTERM
    /// and Ctrl-C (default on).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Who may open which stream and who may publish: with an authorizer, the standard
    /// [`api`](crate::api) requires a credential on every stream, publish, ticket and
    /// count (see [`auth`](crate::auth)). Without one (the default) everything is open,
    /// for development.
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.auth.authorizer = Some(Arc::new(authorizer));
        self
    }

    /// A static secret that publishers send as `Authorization: Bearer SECRET` (compared in
    /// constant time). With it and no authorizer, publishing needs it and streams stay
    /// open; with an authorizer too, a grant with the publish right also publishes.
    pub fn publish_token(mut self, secret: impl AsRef<str>) -> Self {
        self.auth.publish_token = Some(auth::PublishToken::new(secret.as_ref()));
        self
    }

    /// How long a stream ticket may be redeemed (default 30 s, at least 1 s).
    pub fn ticket_ttl(mut self, ttl: Duration) -> Self {
        self.auth.ticket_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// At most `per_second` publishes per second per credential, `burst` at once (0: the
    /// same as `per_second`); beyond, [`Error::RateLimited`]. `per_second` 0 (the
    /// default) is no limit.
    pub fn publish_rate(mut self, per_second: u32, burst: u32) -> Self {
        self.auth.publish_rate =
            NonZeroU32::new(per_second).map(|rate| (rate, NonZeroU32::new(burst).unwrap_or(rate)));
        self
    }

    /// The prefix of every Redis key and channel (default `sseor`), so that several
    /// applications can share one Redis.
    #[cfg(feature = "redis")]
    pub fn redis_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.redis.prefix = prefix.into();
        self
    }

    /// How often the instance checks its Redis subscription with a probe (default 1 s);
    /// it is not ready after three intervals without an answer, and resubscribes.
    #[cfg(feature = "redis")]
    pub fn redis_probe_interval(mut self, interval: Duration) -> Self {
        self.redis.probe_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How long one Redis command or connection attempt may take (default 2 s).
    #[cfg(feature = "redis")]
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        self.redis.timeout = timeout;
        self
    }

    /// The certificate authority (a PEM file) that signed the Redis server's certificate,
    /// for `rediss://` URLs with a private CA.
    #[cfg(feature = "redis")]
    pub fn redis_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.redis.ca_file = Some(path.into());
        self
    }

    /// How long an instance's presence in Redis outlives its last refresh (default 15 s):
    /// how long a crashed instance still counts in the cluster-wide counts.
    #[cfg(feature = "redis")]
    pub fn redis_presence_ttl(mut self, ttl: Duration) -> Self {
        self.redis.presence_ttl = ttl;
        self
    }

    /// Replicas that must confirm each publish with `WAIT` before it is acknowledged
    /// (default 0): an acknowledged event then survives the loss of its Redis master (see
    /// [`RedisOptions::wait_replicas`](crate::broker::redis::RedisOptions::wait_replicas)).
    #[cfg(feature = "redis")]
    pub fn redis_wait_replicas(mut self, replicas: usize) -> Self {
        self.redis.wait_replicas = replicas;
        self
    }

    /// Serves HTTPS: [`Manager::serve`] and [`Manager::listen_and_serve`] terminate TLS on
    /// every connection and speak HTTP/2 or HTTP/1.1, as the client chooses by ALPN
    /// (with the `tls` feature, on by default).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: crate::TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// How long a connection of [`Manager::serve`] may go without a request (default
    /// 30 s): a new connection must send its first request head within it (HTTPS: counted
    /// from the end of the TLS handshake), a kept-alive HTTP/1.1 connection its next one,
    /// and an HTTP/2 connection must have a stream open; otherwise it is closed. Open
    /// event streams are requests: a connection that carries one is never idle.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Whether [`Manager::serve`] answers only loopback host names when it could be read
    /// by anyone who reaches it (default on). When it listens on a loopback address and
    /// no [`authorizer`](Self::authorizer) is set, a request whose `Host` (or HTTP/2
    /// `:authority`) is not `localhost`, `*.localhost`, `127.x.x.x` or `[::1]` (any port)
    /// gets 403 with a JSON error: otherwise a web page the user visits could rebind its
    /// own name to 127.0.0.1 and read the streams (DNS rebinding). Turn it off behind a
    /// reverse proxy on the same machine that forwards the public `Host`. Routers served
    /// by other means (`axum::serve`) are not checked.
    pub fn loopback_hosts_only(mut self, on: bool) -> Self {
        self.loopback_hosts_only = on;
        self
    }

    /// The rules [`Manager::serve`] applies to the connections of `listener`.
    pub(super) fn connection_rules(&self, listener: &TcpListener) -> ConnectionRules {
        let on_loopback = listener
            .local_addr()
            .is_ok_and(|address| address.ip().is_loopback());
        ConnectionRules {
            header_timeout: self.header_timeout,
            loopback_hosts_only: self.loopback_hosts_only
                && on_loopback
                && self.auth.authorizer.is_none(),
        }
    }

    pub(super) fn transport(&self) -> Transport {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return Transport::Tls(tls.acceptor());
        }
        Transport::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Manager;

    #[test]
    fn debug_output_hides_passwords() {
        let builder = Manager::builder().broker_url("redis://alice:s3cret@host:6379/0");
        let shown = format!("{builder:?}");
        assert!(shown.contains("redis://alice:***@host:6379/0"), "{shown}");
        assert!(!shown.contains("s3cret"));
        assert_eq!(redact("redis://:pw@h/0"), "redis://:***@h/0");
        assert_eq!(redact("redis://h/0"), "redis://h/0");
        assert_eq!(redact(""), "");
    }
}
