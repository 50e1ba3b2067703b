//! The [`Manager`]: the Go original's API over the registry, the broker and the HTTP server.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::request::Parts;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Authorizer, Grant, PublishLimiter, Ticket};
use crate::broker::{Broker, History, MemoryBroker, Published, Retention};
use crate::connection::ConnectionAbort;
use crate::queue;
use crate::registry::{CloseReason, Fanout, Limits, Opening, Refused, Registry, Sink};
use crate::serve::{Transport, bind, serve};
use crate::stream::{AcceptsHandoff, EventBody, Replay};
use crate::{Error, Event, Position, Result, SlowConsumer, Target, encode};

type RouteHandler = Arc<dyn Fn(Request, Manager) -> BoxFuture<'static, Response> + Send + Sync>;

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
    broker_url: String,
    heartbeat: Duration,
    retry: Option<Duration>,
    retry_jitter: f64,
    queue_capacity: usize,
    queue_bytes: usize,
    slow_consumer: SlowConsumer,
    limits: Limits,
    client_ip_header: Option<http::HeaderName>,
    drain_period: Duration,
    shutdown_timeout: Duration,
    max_body_bytes: usize,
    input: crate::api::InputLimits,
    handle_signals: bool,
    retention: Retention,
    auth: auth::Settings,
    #[cfg(feature = "redis")]
    redis: crate::broker::redis::RedisOptions,
    #[cfg(feature = "tls")]
    tls: Option<crate::TlsConfig>,
    header_timeout: Duration,
    loopback_hosts_only: bool,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("broker_url", &redact(&self.broker_url))
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
            heartbeat: Duration::from_secs(15),
            retry: Some(Duration::from_secs(3)),
            retry_jitter: 0.5,
            queue_capacity: 256,
            queue_bytes: 1024 * 1024,
            slow_consumer: SlowConsumer::Disconnect,
            limits: Limits::default(),
            client_ip_header: None,
            drain_period: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
            input: crate::api::InputLimits::default(),
            handle_signals: true,
            retention: Retention::default(),
            auth: auth::Settings::default(),
            #[cfg(feature = "redis")]
            redis: crate::broker::redis::RedisOptions::default(),
            #[cfg(feature = "tls")]
            tls: None,
            header_timeout: Duration::from_secs(30),
            loopback_hosts_only: true,
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

    /// How often every stream receives a comment line to keep it alive and to notice
    /// clients that left (default 15 s; at least 10 ms).
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
    /// [`Subscription::slow_consumer`]. Whatever the policy, other clients are not slowed
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
    /// peer (from [`ConnectInfo`]), or the one a trusted proxy names, see
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
    /// a [`RESET_EVENT`]. Without it, history could grow with every target ever published
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
    fn connection_rules(&self, listener: &TcpListener) -> crate::serve::ConnectionRules {
        let on_loopback = listener
            .local_addr()
            .is_ok_and(|address| address.ip().is_loopback());
        crate::serve::ConnectionRules {
            header_timeout: self.header_timeout,
            loopback_hosts_only: self.loopback_hosts_only
                && on_loopback
                && self.auth.authorizer.is_none(),
        }
    }

    fn transport(&self) -> Transport {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return Transport::Tls(tls.acceptor());
        }
        Transport::Plain
    }

    /// Starts the manager and its broker.
    ///
    /// A Redis that is not reachable yet does not stop the start: the manager reports it in
    /// [`Manager::readiness`] and connects as soon as it can.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] when the broker URL is not one this build supports or does not
    /// parse; [`Error::Broker`] when Redis refuses the credentials.
    pub async fn build(mut self) -> Result<Manager> {
        self.drain_period = self.drain_period.min(self.shutdown_timeout);
        let (broker, registry) = self.start_broker().await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(heartbeat(
            registry.clone(),
            self.heartbeat,
            shutdown.clone(),
        ));
        let (expiry, deadlines) = mpsc::unbounded_channel();
        tokio::spawn(expire_streams(
            registry.clone(),
            deadlines,
            shutdown.clone(),
        ));
        let limiter = self
            .auth
            .publish_rate
            .map(|(rate, burst)| PublishLimiter::new(rate, burst));
        Ok(Manager {
            inner: Arc::new(Inner {
                config: self,
                registry,
                broker,
                routes: Mutex::default(),
                shutdown,
                closing_since: OnceLock::new(),
                drained: CancellationToken::new(),
                servers: TaskTracker::new(),
                expiry,
                limiter,
            }),
        })
    }
}

impl Builder {
    async fn start_broker(&self) -> Result<(Arc<dyn Broker>, Arc<Registry>)> {
        let url = self.broker_url.as_str();
        let scheme = match url.split_once("://") {
            Some((scheme, _)) => scheme,
            None if url.is_empty() => "",
            // Never echo it: without a scheme, there is no telling where a password is.
            None => {
                return Err(Error::InvalidUrl(
                    "the broker URL has no scheme; expected `memory://`, `redis://`, \
                     `rediss://` or `redis+unix://`"
                        .into(),
                ));
            }
        };
        match scheme {
            "" | "memory" => {
                let registry = Arc::new(Registry::new(None, self.limits));
                let broker = MemoryBroker::new(Fanout::new(registry.clone()), self.retention);
                Ok((Arc::new(broker), registry))
            }
            #[cfg(feature = "redis")]
            "redis" | "rediss" | "redis+unix" | "unix" | "redis+sentinel" => {
                let (interest_tx, interest_rx) = mpsc::unbounded_channel();
                let registry = Arc::new(Registry::new(Some(interest_tx), self.limits));
                let mut options = self.redis.clone();
                options.retention = self.retention;
                options.foreign_message_limit = self.max_body_bytes;
                let broker = crate::broker::redis::RedisBroker::connect(
                    url,
                    Fanout::new(registry.clone()),
                    interest_rx,
                    options,
                )
                .await?;
                Ok((Arc::new(broker), registry))
            }
            _ => Err(Error::InvalidUrl(format!(
                "unsupported scheme `{scheme}`; expected `memory://`, `redis://`, `rediss://`, \
                 `redis+unix://` or `redis+sentinel://`"
            ))),
        }
    }
}

/// Heartbeats go out in this many slices, one slice of the connections at a time, spread
/// over the interval: a heartbeat to every connection at once is a burst of writes that
/// holds up the events behind it (100 ms and more at 10,000 streams).
const HEARTBEAT_SLICES: u64 = 16;

/// Ends each stream whose credential expires at its deadline, so that its client
/// reconnects with a fresh one. A stream that ended before keeps its entry until then:
/// removing a stream's connection twice is harmless.
async fn expire_streams(
    registry: Arc<Registry>,
    mut deadlines: mpsc::UnboundedReceiver<(Instant, u64)>,
    shutdown: CancellationToken,
) {
    let mut due = tokio_util::time::DelayQueue::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            next = deadlines.recv() => match next {
                Some((deadline, id)) => {
                    due.insert_at(id, deadline);
                }
                None => return,
            },
            Some(expired) = std::future::poll_fn(|cx| due.poll_expired(cx)), if !due.is_empty() => {
                registry.expire(expired.into_inner());
            }
        }
    }
}

async fn heartbeat(registry: Arc<Registry>, every: Duration, shutdown: CancellationToken) {
    let step = every / HEARTBEAT_SLICES as u32;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + step, step);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for slice in (0..HEARTBEAT_SLICES).cycle() {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {
                registry.deliver_to_slice(&Target::All, &encode::HEARTBEAT, slice, HEARTBEAT_SLICES);
            }
        }
    }
}

/// Holds the SSE connections of this instance and publishes events to them and, through
/// the broker, to every other instance.
///
/// Cheap to clone: clones share the same connections.
///
/// ```no_run
/// use axum::extract::{Query, Request};
/// use axum::response::IntoResponse;
/// use sseor::Manager;
///
/// #[derive(serde::Deserialize)]
/// struct Params {
///     user_id: String,
/// }
///
/// # #[tokio::main] async fn main() -> sseor::Result<()> {
/// let sse = Manager::new("memory://").await?;
/// sse.route("/api/v1/sse/transactions", |request: Request, manager: Manager| async move {
///     // Development only: in production the user comes from the application's
///     // authentication (see `auth`), never from the URL.
///     match Query::<Params>::try_from_uri(request.uri()) {
///         Ok(Query(params)) => manager.handle_sse(&request, &params.user_id).into_response(),
///         Err(rejection) => rejection.into_response(),
///     }
/// })?;
/// sse.listen_and_serve(":9090").await?;
/// sse.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    config: Builder,
    registry: Arc<Registry>,
    broker: Arc<dyn Broker>,
    routes: Mutex<Vec<(String, RouteHandler)>>,
    /// Cancelled when shutdown begins: new streams and publishes are refused.
    shutdown: CancellationToken,
    /// When shutdown began.
    closing_since: OnceLock<tokio::time::Instant>,
    /// Cancelled once the drain has ended every stream and the broker is closed.
    drained: CancellationToken,
    /// The running [`Manager::serve`] loops, which [`Manager::close`] waits for.
    servers: TaskTracker,
    /// Deadlines of streams whose credentials expire, for [`expire_streams`].
    expiry: mpsc::UnboundedSender<(Instant, u64)>,
    limiter: Option<PublishLimiter>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("config", &self.inner.config)
            .field("connections", &self.total_connections())
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager with default options on the broker at `url` (empty or `memory://`: the
    /// embedded broker).
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] when the URL's scheme is not supported.
    pub async fn new(url: &str) -> Result<Self> {
        Self::builder().broker_url(url).build().await
    }

    /// A [`Builder`] with every option at its default.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Registers `handler` for `path` (any method), in the syntax of axum's router (`/a/{id}`).
    /// The handler gets the request and this manager, and usually ends with
    /// [`handle_sse`](Self::handle_sse).
    ///
    /// # Errors
    /// [`Error::InvalidRoute`] when the path does not start with `/` or conflicts with a route
    /// already registered.
    pub fn route<H, F, R>(&self, path: &str, handler: H) -> Result<()>
    where
        H: Fn(Request, Manager) -> F + Send + Sync + 'static,
        F: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        let handler: RouteHandler = Arc::new(move |request, manager| {
            let response = handler(request, manager);
            Box::pin(async move { response.await.into_response() })
        });
        let mut routes = self
            .inner
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        routes.push((path.to_owned(), handler));
        // axum panics on a bad or conflicting path: find out now, while it can be refused.
        let check =
            std::panic::catch_unwind(AssertUnwindSafe(|| build_router::<()>(&routes, self)));
        if let Err(panic) = check {
            routes.pop();
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "rejected by the router".to_owned());
            return Err(Error::InvalidRoute(format!("`{path}`: {reason}")));
        }
        Ok(())
    }

    /// An axum router with every route registered through [`route`](Self::route), to serve
    /// or to merge into an application's own router, whatever its state type `S`.
    ///
    /// ```
    /// use axum::Router;
    /// use axum::extract::{Request, State};
    /// use axum::response::IntoResponse;
    /// use axum::routing::get;
    ///
    /// #[derive(Clone)]
    /// struct AppState {
    ///     greeting: &'static str,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// let sse = sseor::Manager::new("").await?;
    /// sse.route("/events", |request: Request, manager: sseor::Manager| async move {
    ///     manager.handle_sse(&request, "user123").into_response()
    /// })?;
    /// let app: Router = Router::new()
    ///     .route("/", get(|State(app): State<AppState>| async move { app.greeting }))
    ///     .merge(sse.router())
    ///     .with_state(AppState { greeting: "hello" });
    /// # drop(app); Ok(()) }
    /// ```
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let routes = self
            .inner
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        build_router(&routes, self)
    }

    /// Serves the registered routes on `addr` until [`close`](Self::close) (or SIGTERM or
    /// Ctrl-C, unless turned off in the builder). `addr` is `":9090"` (every interface, as
    /// in Go) or `"host:port"`.
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] for an address of another form, [`Error::Io`] when it
    /// cannot be bound.
    pub async fn listen_and_serve(&self, addr: &str) -> Result<()> {
        let listener = bind(addr).await?;
        tracing::info!(address = %listener.local_addr()?, "listening");
        self.serve(listener, self.router()).await
    }

    /// Binds `addr` (`":9090"` or `"host:port"`) with a deep accept queue, for
    /// [`serve`](Self::serve).
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] for an address of another form or a host that does not
    /// resolve, [`Error::Io`] when it cannot be bound.
    pub async fn bind(addr: &str) -> Result<TcpListener> {
        bind(addr).await
    }

    /// Serves `router` on `listener`, like [`listen_and_serve`](Self::listen_and_serve).
    /// Returns once every connection has ended, at most the shutdown timeout after
    /// shutdown began.
    ///
    /// # Errors
    /// [`Error::Closed`] when the manager is already closed.
    pub async fn serve(&self, listener: TcpListener, router: Router) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let _running = self.inner.servers.token();
        // The server goes on accepting during the drain, so that health checks see 503
        // and new streams are refused with a status rather than a closed port.
        let stop = {
            let manager = self.clone();
            async move {
                manager.stopped(manager.inner.config.handle_signals).await;
                manager.begin_close();
                manager.inner.drained.cancelled().await;
                manager.remaining_shutdown_time()
            }
        };
        let config = &self.inner.config;
        let rules = config.connection_rules(&listener);
        serve(listener, router, config.transport(), rules, stop).await;
        Ok(())
    }

    async fn stopped(&self, on_signal: bool) {
        let cancelled = self.inner.shutdown.cancelled();
        if !on_signal {
            return cancelled.await;
        }
        tokio::select! {
            () = cancelled => {},
            () = termination_signal() => tracing::info!("shutting down on signal"),
        }
    }

    /// Opens the event stream of `user_id` on this request: the user's events and
    /// broadcasts. The response streams until the client leaves or the manager closes.
    ///
    /// A request with `Last-Event-ID` (or `?last_event_id=`) resumes: the events the
    /// client missed come first, in order, then live ones, none twice; a position that
    /// cannot be resumed from gets one [`RESET_EVENT`] instead.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] for an empty or malformed user id, [`Error::Closed`] once
    /// the manager is closed. Both convert into an HTTP error response.
    pub fn handle_sse<B>(&self, request: &http::Request<B>, user_id: &str) -> Result<Response> {
        self.handle_sse_with(request, Subscription::user(user_id)?)
    }

    /// Opens an event stream for a [`Subscription`]: a user, its topics and broadcasts;
    /// with [`Subscription::expires_at`], until then.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// use sseor::auth::Grant;
    /// let manager = sseor::Manager::new("").await?;
    /// // What an authorizer granted: the stream of user123 with `prices`.
    /// let grant = Grant::user("user123")?.with_topics(["prices"]);
    /// let request = axum::http::Request::get("/events?topic=prices").body(()).unwrap();
    /// let response = manager.handle_sse_with(&request, grant.subscription(None, ["prices"])?)?;
    /// assert_eq!(response.headers()["content-type"], "text/event-stream");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`] once the manager is closed; [`Error::TooManyConnections`] when a
    /// limit on open streams is reached (see [`Builder::max_connections`]);
    /// [`Error::InvalidTarget`] when the subscription has more topics than
    /// [`Builder::max_topics`].
    pub fn handle_sse_with<B>(
        &self,
        request: &http::Request<B>,
        subscription: Subscription,
    ) -> Result<Response> {
        let config = &self.inner.config;
        config.input.check_topics(&subscription.targets)?;
        if let Some(reason) = self.inner.broker.outage() {
            return Err(Error::Broker(reason));
        }
        let Subscription {
            targets,
            slow_consumer,
            expires_at,
        } = subscription;
        let (tx, rx) = queue::bounded(queue::Bounds {
            events: config.queue_capacity,
            bytes: config.queue_bytes,
            policy: slow_consumer.unwrap_or(config.slow_consumer),
        });
        let opening = config.retry.map_or_else(
            || encode::comment("ok"),
            |delay| {
                let delay = jittered(delay, config.retry_jitter);
                encode::retry(delay.as_millis().try_into().unwrap_or(u64::MAX))
            },
        );
        let abort = request
            .extensions()
            .get::<ConnectionAbort>()
            .map(|abort| abort.0.clone());
        let client_ip = self.client_ip(request)?;
        let registry = &self.inner.registry;
        // Registered first, so that nothing published while the history is read is lost;
        // the stream drops what the replay already covered.
        let id = registry
            .register(Opening {
                sink: Sink::new(tx, abort),
                targets: targets.clone(),
                client_ip,
            })
            .map_err(|refused| self.refusal(refused))?;
        if let Some(at) = expires_at {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            // Past any date a token can hold: such a stream simply never expires.
            if let Some(deadline) = Instant::now().checked_add(left.min(MAX_STREAM_LIFETIME)) {
                let _ = self.inner.expiry.send((deadline, id));
            }
        }
        let subscribed = registry.barrier();
        let replay = match last_event_id(request) {
            Some(last) => Some(self.replay(targets, &last, subscribed)),
            None => subscribed.map(|subscribed| self.start_when_subscribed(subscribed)),
        };
        let handoff = request.extensions().get::<AcceptsHandoff>().is_some();
        Ok(EventBody::new(opening, replay, rx, registry.clone(), id).into_response(handoff))
    }

    /// The client's address: from the configured proxy header when it holds one, else the
    /// socket's peer.
    ///
    /// # Errors
    /// [`Error::Misconfigured`] when a limit per address is set and the address is unknown:
    /// a server that records no [`ConnectInfo`] would otherwise make the limit a silent
    /// no-op.
    fn client_ip<B>(&self, request: &http::Request<B>) -> Result<Option<IpAddr>> {
        let forwarded = self
            .inner
            .config
            .client_ip_header
            .as_ref()
            .and_then(|header| forwarded_ip(request.headers(), header));
        let ip = forwarded
            .or_else(|| {
                request
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|info| info.0.ip())
            })
            .map(|ip| ip.to_canonical());
        if ip.is_none() && self.inner.config.limits.per_ip > 0 {
            return Err(self.unknown_client_address());
        }
        Ok(ip)
    }

    /// The refusal of a stream whose address a limit per address needs, logged once.
    fn unknown_client_address(&self) -> Error {
        const FIX: &str = "max_connections_per_ip is set but the client's address is unknown: \
            serve with Manager::serve, or with axum::serve(listener, \
            app.into_make_service_with_connect_info::<std::net::SocketAddr>())";
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| tracing::error!("streams are refused: {FIX}"));
        Error::Misconfigured(FIX.to_owned())
    }

    fn refusal(&self, refused: Refused) -> Error {
        match refused {
            Refused::Closed => Error::Closed,
            Refused::Limit(limit, max) => Error::TooManyConnections {
                limit,
                max,
                retry_after: jittered(
                    self.inner.config.retry.unwrap_or(Duration::from_secs(1)),
                    self.inner.config.retry_jitter,
                ),
            },
        }
    }

    /// A new stream (no last id) on a broker whose subscriptions take effect later: it
    /// starts once all its targets are subscribed, at the position of that moment, so that
    /// it does not get some targets' events and miss others' published at the same time.
    fn start_when_subscribed(
        &self,
        subscribed: tokio::sync::oneshot::Receiver<()>,
    ) -> BoxFuture<'static, Replay> {
        let broker = self.inner.broker.clone();
        Box::pin(async move {
            let _ = subscribed.await;
            let through = broker.current().await.map_or(0, |position| position.seq());
            Replay {
                frames: Vec::new(),
                through,
            }
        })
    }

    /// What a client that last saw `last` missed, encoded: the events, or a reset.
    fn replay(
        &self,
        targets: Vec<Target>,
        last: &str,
        subscribed: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> BoxFuture<'static, Replay> {
        let broker = self.inner.broker.clone();
        let after = last.parse::<Position>().ok();
        Box::pin(async move {
            // History is read once the stream's subscriptions are live, so that what is
            // published in between arrives live; the overlap is dropped by position.
            if let Some(subscribed) = subscribed {
                let _ = subscribed.await;
            }
            match broker.history(targets, after).await {
                History::Events { events, through } => {
                    let frames = events
                        .iter()
                        .filter_map(|(_, event)| encode::event(event).ok())
                        .collect();
                    Replay { frames, through }
                }
                History::Reset { reason, current } => {
                    tracing::debug!(%reason, "a resuming client gets a reset");
                    let mut reset = Event::new(RESET_EVENT).with_data(serde_json::json!({
                        "reason": reason,
                    }));
                    reset.id = current.as_ref().map(ToString::to_string);
                    Replay {
                        frames: encode::event(&reset).into_iter().collect(),
                        through: current.map_or(0, |position| position.seq()),
                    }
                }
            }
        })
    }

    /// Sends `event` to every connection of `user_id`, on every instance.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] or [`Error::InvalidEvent`] for bad input (nothing is sent),
    /// [`Error::Closed`] once closed, [`Error::Broker`] when the broker cannot carry it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// use serde_json::json;
    /// let manager = sseor::Manager::new("").await?;
    /// let event = sseor::Event::new("transaction.updated")
    ///     .with_data(json!({"transaction_id": "txn_123", "status": "completed", "amount": 500.0}));
    /// let published = manager.publish("user123", event).await?;
    /// assert_eq!(published.delivered_locally, Some(0)); // nobody is connected yet
    /// # Ok(()) }
    /// ```
    pub async fn publish(&self, user_id: &str, event: Event) -> Result<Published> {
        self.publish_to(Target::user(user_id)?, event).await
    }

    /// Sends `event` to every connection that joined `topic`, on every instance.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn publish_to_topic(&self, topic: &str, event: Event) -> Result<Published> {
        self.publish_to(Target::topic(topic)?, event).await
    }

    /// Sends `event` to every connection on every instance.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn publish_to_all(&self, event: Event) -> Result<Published> {
        self.publish_to(Target::All, event).await
    }

    /// Sends `event` to `target`.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn publish_to(&self, target: Target, event: Event) -> Result<Published> {
        event.validate()?;
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let started = std::time::Instant::now();
        let kind = target.clone();
        let published = self.inner.broker.publish(target, event).await?;
        self.inner
            .registry
            .metrics()
            .published(&kind, started.elapsed().as_secs_f64());
        Ok(published)
    }

    /// Whether streams need a credential: an [`Authorizer`] is set.
    pub fn requires_auth(&self) -> bool {
        self.inner.config.auth.authorizer.is_some()
    }

    /// What a request that opens a stream may receive: the grant of its `?ticket=` (which
    /// is spent), else the [`Authorizer`]'s answer; `None` when no authorizer is set
    /// (development: the request names its user itself). Turn the grant into the stream
    /// with [`Grant::subscription`].
    ///
    /// # Errors
    /// [`Error::Auth`] when the request has no valid credential or ticket;
    /// [`Error::Broker`] when the ticket cannot be looked up.
    pub async fn authorize_stream(&self, request: &Parts) -> Result<Option<Grant>> {
        let grant = if let Some(ticket) = auth::query_value(request, "ticket") {
            self.redeem_ticket(&ticket).await
        } else if let Some(authorizer) = &self.inner.config.auth.authorizer {
            authorizer.authorize(request).await
        } else {
            return Ok(None);
        };
        auth::trace_outcome("stream", &grant, Grant::user_id);
        self.counted(grant).map(Some)
    }

    /// `result`, with an authentication refusal counted in the metrics by its reason.
    pub(crate) fn counted<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(Error::Auth { reason, .. }) = &result {
            self.inner.registry.metrics().auth_failed(reason.as_str());
        }
        result
    }

    /// Whether `request` may publish now: it carries the publish token or a grant with the
    /// publish right in its headers (cookies and `?token=` do not count: a cookie would let
    /// any page its user visits publish in their name), and its credential is within the
    /// publish rate. Anyone may when neither an authorizer nor a publish token is set.
    ///
    /// # Errors
    /// [`Error::Auth`] (401 without a valid credential, 403 for a subscriber's);
    /// [`Error::RateLimited`] over the rate.
    pub async fn authorize_publish(&self, request: &Parts) -> Result<()> {
        let publisher = self.inner.config.auth.publisher(request).await;
        auth::trace_outcome("publish", &publisher, auth::Publisher::name);
        let publisher = self.counted(publisher);
        match &self.inner.limiter {
            Some(limiter) => limiter.check(&publisher?),
            None => publisher.map(drop),
        }
    }

    /// Whether `request` carries a publisher's credential, as
    /// [`authorize_publish`](Self::authorize_publish) without counting a publish: for the
    /// endpoints that serve backends (connection counts).
    pub(crate) async fn authorize_backend(&self, request: &Parts) -> Result<()> {
        self.counted(self.inner.config.auth.publisher(request).await.map(drop))
    }

    /// The grant for which `request` asks a ticket, from its headers only (a ticket exists
    /// to keep tokens out of URLs); `None` when no authorizer is set.
    pub(crate) async fn authorize_ticket(&self, request: &Parts) -> Result<Option<Grant>> {
        match &self.inner.config.auth.authorizer {
            Some(authorizer) => {
                let grant = authorizer.authorize(&auth::headers_only(request)).await;
                self.counted(grant).map(Some)
            }
            None => Ok(None),
        }
    }

    /// A single-use ticket for `grant`, valid for the ticket TTL on any instance that
    /// shares this broker: a page puts it in its stream URL (`?ticket=`) instead of a
    /// long-lived token. A stream opened with it ends when `grant` expires.
    ///
    /// # Errors
    /// [`Error::Broker`] when the broker cannot keep it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// let manager = sseor::Manager::new("").await?;
    /// let ticket = manager.issue_ticket(&sseor::auth::Grant::user("user123")?).await?;
    /// let grant = manager.redeem_ticket(ticket.value()).await?;
    /// assert_eq!(grant.user_id(), "user123");
    /// assert!(manager.redeem_ticket(ticket.value()).await.is_err()); // used up
    /// # Ok(()) }
    /// ```
    pub async fn issue_ticket(&self, grant: &Grant) -> Result<Ticket> {
        let ttl = self.inner.config.auth.ticket_ttl;
        auth::issue(self.inner.broker.as_ref(), grant, ttl).await
    }

    /// The grant of `ticket`, which is spent: a second redemption fails.
    ///
    /// # Errors
    /// [`Error::Auth`] with [`AuthReason::InvalidTicket`](crate::auth::AuthReason) when it
    /// is unknown, expired or used; [`Error::Broker`] when the broker cannot be reached.
    pub async fn redeem_ticket(&self, ticket: &str) -> Result<Grant> {
        auth::redeem(self.inner.broker.as_ref(), ticket).await
    }

    /// Open connections of `user_id` on this instance.
    pub fn connection_count(&self, user_id: &str) -> usize {
        Target::user(user_id).map_or(0, |user| self.inner.registry.count(&user))
    }

    /// Open connections on this instance that joined `topic`.
    pub fn topic_connection_count(&self, topic: &str) -> usize {
        Target::topic(topic).map_or(0, |topic| self.inner.registry.count(&topic))
    }

    /// Open connections on this instance.
    pub fn total_connections(&self) -> usize {
        self.inner.registry.total()
    }

    /// Open connections of `user_id` on every instance (with Redis: from the presence each
    /// instance keeps there, which expires when an instance dies; on the embedded broker:
    /// this instance's count).
    ///
    /// # Errors
    /// [`Error::Broker`] when Redis cannot be reached.
    pub async fn cluster_connection_count(&self, user_id: &str) -> Result<usize> {
        let cluster = self
            .inner
            .broker
            .cluster_connections(Some(user_id.to_owned()))
            .await?;
        Ok(cluster.unwrap_or_else(|| self.connection_count(user_id)))
    }

    /// Open connections on every instance; see
    /// [`cluster_connection_count`](Self::cluster_connection_count).
    ///
    /// # Errors
    /// [`Error::Broker`] when Redis cannot be reached.
    pub async fn cluster_total_connections(&self) -> Result<usize> {
        let cluster = self.inner.broker.cluster_connections(None).await?;
        Ok(cluster.unwrap_or_else(|| self.total_connections()))
    }

    /// The largest request body the HTTP API accepts.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.config.max_body_bytes
    }

    /// The limits the HTTP API puts on what it reads.
    pub(crate) fn input_limits(&self) -> &crate::api::InputLimits {
        &self.inner.config.input
    }

    /// Whether this instance can deliver what is published now; the error says why not
    /// (Redis unreachable, subscription not confirmed by a probe, shutting down).
    ///
    /// # Errors
    /// A sentence naming the problem, for operators.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        if self.is_closed() {
            return Err("shutting down".into());
        }
        self.inner.broker.readiness()
    }

    /// This instance's metrics in the Prometheus text format (OpenMetrics): connections,
    /// connected users, readiness, events published (by target kind) and delivered,
    /// streams closed (by reason) and refused (by limit), authentication failures (by
    /// reason), Redis reconnects, and publish latency. Labels never hold user ids, topics
    /// or credentials.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// let manager = sseor::Manager::new("").await?;
    /// manager.publish_to_all(sseor::Event::new("tick")).await?;
    /// let text = manager.render_metrics();
    /// assert!(text.contains("sseor_events_published_total{target=\"all\"} 1"));
    /// assert!(text.contains("sseor_connections 0"));
    /// # Ok(()) }
    /// ```
    pub fn render_metrics(&self) -> String {
        let registry = &self.inner.registry;
        registry.metrics().render(
            registry.total(),
            registry.distinct_users(),
            self.readiness().is_ok(),
        )
    }

    /// Whether [`close`](Self::close) has begun.
    pub fn is_closed(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Shuts down gracefully: refuses new streams and publishes (and `/healthz` and
    /// `/readyz` answer 503), ends the open streams in paced batches over the
    /// [drain period](Builder::drain_period) so that clients reconnect elsewhere a few at a
    /// time, stops the broker, and waits for running servers to finish, closing
    /// connections that are still open at the shutdown timeout.
    ///
    /// Under the application's own `axum::serve`, whose graceful shutdown waits for the
    /// open streams, hand it the signal through [`shutdown_signal`](Self::shutdown_signal)
    /// and call this once it returns.
    pub async fn close(&self) {
        self.begin_close();
        self.inner.drained.cancelled().await;
        let deadline = self.remaining_shutdown_time() + Duration::from_secs(1);
        if tokio::time::timeout(deadline, self.inner.servers.wait())
            .await
            .is_err()
        {
            tracing::warn!("a server did not stop within the shutdown timeout");
        }
    }

    /// The application's own shutdown `signal`, for `axum::serve`'s graceful shutdown:
    /// completes once `signal` has (or [`close`](Self::close) has begun) and the open
    /// streams have been ended, shutdown having begun as with `close`.
    ///
    /// axum's graceful shutdown waits for every open response, and an event stream only
    /// ends when this manager ends it: given the bare signal, `axum::serve` would wait for
    /// ever and `close` after it would never run. With this, axum stops once the streams
    /// are drained; `close` then finishes what is left.
    ///
    /// A client that stops reading can still hold axum's connection open: bound the
    /// wait, as below (the manager's own [`serve`](Self::serve) closes such connections at
    /// the [shutdown timeout](Builder::shutdown_timeout) by itself).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use axum::Router;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sse = sseor::Manager::new("").await?;
    /// let app = Router::new().merge(sse.router());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// let ctrl_c = async { tokio::signal::ctrl_c().await.ok(); };
    /// let server = axum::serve(listener, app)
    ///     .with_graceful_shutdown(sse.shutdown_signal(ctrl_c))
    ///     .into_future();
    /// // The shutdown timeout (10 s by default) plus a second, counted from the signal.
    /// let bounded = async {
    ///     sse.closed().await;
    ///     tokio::time::sleep(Duration::from_secs(11)).await;
    /// };
    /// tokio::select! { served = server => served?, () = bounded => {} }
    /// sse.close().await;
    /// # Ok(()) }
    /// ```
    pub fn shutdown_signal<F>(&self, signal: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future + Send + 'static,
    {
        let manager = self.clone();
        async move {
            tokio::select! {
                _ = signal => {},
                () = manager.inner.shutdown.cancelled() => {},
            }
            manager.begin_close();
            manager.inner.drained.cancelled().await;
        }
    }

    /// Completes once shutdown has begun, by [`close`](Self::close), a signal that
    /// [`serve`](Self::serve) handles, or [`shutdown_signal`](Self::shutdown_signal).
    pub async fn closed(&self) {
        self.inner.shutdown.cancelled().await;
    }

    /// Starts shutting down, once: refuses new streams at once, and drains the open ones
    /// in a task of its own, so that the drain completes whoever stops waiting for it.
    fn begin_close(&self) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        let _ = self.inner.closing_since.set(tokio::time::Instant::now());
        self.inner.shutdown.cancel();
        self.inner.servers.close();
        self.inner.registry.close();
        let registry = self.inner.registry.clone();
        let broker = self.inner.broker.clone();
        let drained = self.inner.drained.clone();
        let period = self.inner.config.drain_period;
        tokio::spawn(async move {
            drain(&registry, period).await;
            broker.close().await;
            drained.cancel();
        });
    }

    /// What is left of the shutdown timeout since shutdown began.
    fn remaining_shutdown_time(&self) -> Duration {
        let elapsed = self
            .inner
            .closing_since
            .get()
            .map_or(Duration::ZERO, |since| since.elapsed());
        self.inner.config.shutdown_timeout.saturating_sub(elapsed)
    }
}

/// Shutdown ends the open streams in this many batches, spread evenly over the drain
/// period.
const DRAIN_BATCHES: u32 = 20;

/// Ends the open streams of `registry` in [`DRAIN_BATCHES`] batches, one at the start of
/// each slice of `period`; the batch size follows what is still open, so that clients that
/// leave by themselves meanwhile do not leave the last batches empty.
async fn drain(registry: &Registry, period: Duration) {
    let open = registry.total();
    if open > 0 {
        tracing::info!(
            streams = open,
            period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            "draining: ending the open streams in batches"
        );
    }
    let start = tokio::time::Instant::now();
    for batch in 0..DRAIN_BATCHES {
        let open = registry.total();
        if open == 0 {
            break;
        }
        let batches_left = (DRAIN_BATCHES - batch) as usize;
        registry.release_some(open.div_ceil(batches_left), CloseReason::Drained);
        if batch + 1 < DRAIN_BATCHES {
            tokio::time::sleep_until(start + period * (batch + 1) / DRAIN_BATCHES).await;
        }
    }
}

/// `base`, spread uniformly between `(1 - jitter)` and `(1 + jitter)` times it.
fn jittered(base: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return base;
    }
    base.mul_f64(rand::random_range(1.0 - jitter..=1.0 + jitter))
}

/// The right-most address in the last `header` line: the one the proxy in front of this
/// server wrote (those left of it come from the client). Accepts `ADDRESS` and
/// `ADDRESS:PORT` (IPv6 with a port in brackets).
fn forwarded_ip(headers: &http::HeaderMap, header: &http::HeaderName) -> Option<IpAddr> {
    let value = headers.get_all(header).iter().next_back()?.to_str().ok()?;
    let last = value.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|address| address.ip()))
}

/// The type of the event a resuming client receives when its position cannot be resumed
/// from: it must reload its state, then continues live.
pub const RESET_EVENT: &str = "sseor.reset";

/// The client's last event id: the `Last-Event-ID` header a browser sends when it
/// reconnects, or `?last_event_id=` for clients that cannot set headers.
fn last_event_id<B>(request: &http::Request<B>) -> Option<String> {
    if let Some(header) = request.headers().get("last-event-id") {
        return Some(String::from_utf8_lossy(header.as_bytes()).into_owned());
    }
    let query = request.uri().query()?;
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(request.uri())
        .ok()
        .filter(|_| !query.is_empty())?
        .0
        .into_iter()
        .find_map(|(key, value)| (key == "last_event_id").then_some(value))
}

fn build_router<S>(routes: &[(String, RouteHandler)], manager: &Manager) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes
        .iter()
        .fold(Router::new(), |router, (path, handler)| {
            let handler = handler.clone();
            let manager = manager.clone();
            router.route(
                path,
                axum::routing::any(move |request: Request| handler(request, manager.clone())),
            )
        })
}

async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => tokio::select! {
                _ = sigterm.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What one stream receives: a user's events, the topics it joined, and broadcasts.
///
/// ```
/// let subscription = sseor::Subscription::user("user123")?.topic("prices")?;
/// # Ok::<(), sseor::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Subscription {
    targets: Vec<Target>,
    slow_consumer: Option<SlowConsumer>,
    expires_at: Option<SystemTime>,
}

impl Subscription {
    /// The events of `user_id`, and broadcasts.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] for an empty or malformed id.
    pub fn user(user_id: &str) -> Result<Self> {
        Ok(Self {
            targets: vec![Target::user(user_id)?, Target::All],
            slow_consumer: None,
            expires_at: None,
        })
    }

    /// Also the events of `topic`.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] for an empty or malformed name.
    pub fn topic(mut self, topic: &str) -> Result<Self> {
        let topic = Target::topic(topic)?;
        if !self.targets.contains(&topic) {
            self.targets.push(topic);
        }
        Ok(self)
    }

    /// What happens to this stream when its client reads too slowly (default: the
    /// manager's [`Builder::slow_consumer`]), so that each route can choose: disconnect,
    /// drop the oldest events, or keep only the latest event of each type.
    ///
    /// ```
    /// use axum::extract::Request;
    /// use axum::response::IntoResponse;
    /// use sseor::{Manager, SlowConsumer, Subscription};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// let sse = Manager::new("").await?;
    /// sse.route("/dashboard", |request: Request, manager: Manager| async move {
    ///     let subscription = Subscription::user("screen-7")?
    ///         .topic("prices")?
    ///         .slow_consumer(SlowConsumer::LatestPerType);
    ///     manager.handle_sse_with(&request, subscription)
    /// })?;
    /// # sse.close().await; Ok(()) }
    /// ```
    pub fn slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.slow_consumer = Some(policy);
        self
    }

    /// Ends the stream at `at` (the expiry of the credential it was opened with), so that
    /// its client reconnects with a fresh one; a time already past ends it at once.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }
}

/// Streams whose credential lasts longer are not watched: DelayQueue's timer wheel holds
/// about two years.
const MAX_STREAM_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        crate::api::error_response(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_forwarded_address_is_the_right_most_one() {
        let name = http::HeaderName::from_static("x-forwarded-for");
        let mut headers = http::HeaderMap::new();
        assert_eq!(forwarded_ip(&headers, &name), None);
        headers.append(&name, "203.0.113.9, 198.51.100.7".parse().unwrap());
        assert_eq!(
            forwarded_ip(&headers, &name),
            Some("198.51.100.7".parse().unwrap())
        );
        headers.append(&name, "1.2.3.4, [2001:db8::1]:443".parse().unwrap());
        assert_eq!(
            forwarded_ip(&headers, &name),
            Some("2001:db8::1".parse().unwrap())
        );
        headers.insert(&name, "unknown".parse().unwrap());
        assert_eq!(forwarded_ip(&headers, &name), None);
    }

    #[test]
    fn jitter_spreads_within_its_range() {
        let base = Duration::from_secs(3);
        assert_eq!(jittered(base, 0.0), base);
        let spread: Vec<Duration> = (0..200).map(|_| jittered(base, 0.5)).collect();
        assert!(
            spread
                .iter()
                .all(|d| (Duration::from_millis(1500)..=Duration::from_millis(4500)).contains(d))
        );
        assert!(spread.iter().any(|d| *d != spread[0]));
    }
}
