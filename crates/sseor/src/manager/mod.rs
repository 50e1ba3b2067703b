//! The [`Manager`]: this instance's streams, its broker and its server, behind one handle.
//!
//! * [`builder`]: the options; [`start`]: starting the broker and the background tasks.
//! * [`open`]: opening a stream on a request (resume from `Last-Event-ID` included).
//! * [`cursor`]: where a stream would start now, for a page rendered now.
//! * [`disconnect`]: ending a user's streams on every instance.
//! * [`authorize`]: who may open which stream and who may publish.
//! * [`routes`]: the Go-style route table and the server loop ([`Manager::route`],
//!   [`Manager::listen_and_serve`]).
//! * [`shutdown`]: closing gracefully, under sseor's server loop or an application's own.
//! * [`tasks`]: heartbeats and credential expiry.
//! * [`input`]: the limits on what the HTTP API reads.
//! * `webhook`: the lifecycle webhooks set on the builder, started and closed with the
//!   manager (feature `webhook`).
//! * [`presence`]: who is connected across every instance; [`lifecycle`] and
//!   [`transitions`]: the hooks told when users and topics come and go, and the task
//!   that tells them.

mod authorize;
mod builder;
mod cursor;
mod disconnect;
mod input;
mod lifecycle;
mod open;
mod presence;
mod routes;
mod shutdown;
mod start;
mod tasks;
mod transitions;
#[cfg(feature = "webhook")]
mod webhook;

use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use builder::Builder;
pub(crate) use input::InputLimits;
pub(crate) use open::Asked;

use crate::auth::PublishLimiter;
use crate::broker::{Broker, Published};
use crate::fanout::registry::Registry;
use crate::metrics::Metrics;
use crate::{BatchResults, Error, Event, Result, Target};
use routes::RouteHandler;

/// Holds the event streams of this instance and publishes events to them and, through
/// the broker, to every other instance.
///
/// Cheap to clone: clones share the same streams. In an axum application it is the state
/// (or part of it) of the handlers that open streams and publish:
///
/// ```
/// use axum::Router;
/// use axum::extract::{Request, State};
/// use axum::http::StatusCode;
/// use axum::response::{IntoResponse, Response};
/// use axum::routing::get;
/// use sseor::Manager;
///
/// async fn events(State(sse): State<Manager>, request: Request) -> Response {
///     // The application's own authentication decides the user.
///     let user = request.headers().get("x-session-user").and_then(|v| v.to_str().ok());
///     match user {
///         Some(user) => sse.handle_sse(&request, user).into_response(),
///         None => StatusCode::UNAUTHORIZED.into_response(),
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
/// let sse = Manager::new("").await?;
/// let app: Router = Router::new()
///     .route("/events", get(events))
///     .with_state(sse.clone());
/// # drop(app); sse.close().await; Ok(()) }
/// ```
///
/// The Go-style façade ([`route`](Self::route), [`listen_and_serve`](Self::listen_and_serve))
/// does the same with sseor's own server loop.
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
    /// What this instance counts, for `/metrics`; shared with the registry and the broker.
    metrics: Arc<Metrics>,
    /// The running lifecycle webhooks, which [`Manager::close`] closes last.
    #[cfg(feature = "webhook")]
    webhooks: Vec<crate::webhook::Delivery>,
    /// The lifecycle task, when hooks listen.
    transitions: Option<Arc<transitions::Transitions>>,
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
            .metrics
            .published(&kind, started.elapsed().as_secs_f64());
        Ok(published)
    }

    /// Sends each event of `items` to its target, in one call.
    ///
    /// Every item is checked first, as [`publish_to`](Self::publish_to) checks one: a bad
    /// item refuses the whole batch and nothing is sent. Then the items are published at
    /// once, those of one target in their order (its streams receive them in that order,
    /// with increasing positions); on Redis, publishes made together go in shared calls,
    /// so a batch costs far less than as many single publishes.
    ///
    /// The answer holds one result per item, in the order of the items. An item fails
    /// alone, with [`Error::Broker`] when the broker could not take it (Redis down
    /// midway): the items published before stay published, so retry only the failed ones.
    ///
    /// # Errors
    /// [`Error::InvalidBatch`] for an empty batch, [`Error::BatchTooLarge`] beyond
    /// [`Builder::max_batch_events`], [`Error::InvalidBatchItem`] naming the first bad
    /// item, [`Error::Closed`] once closed; nothing is sent then.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// use sseor::{Event, Target};
    /// let manager = sseor::Manager::new("").await?;
    /// let results = manager
    ///     .publish_batch(vec![
    ///         (Target::user("alice")?, Event::new("order.shipped")),
    ///         (Target::topic("orders")?, Event::new("order.shipped")),
    ///     ])
    ///     .await?;
    /// assert!(results.iter().all(Result::is_ok));
    ///
    /// let refused = manager.publish_batch(vec![(Target::All, Event::new(""))]).await;
    /// assert!(matches!(refused, Err(sseor::Error::InvalidBatchItem { index: 0, .. })));
    /// # Ok(()) }
    /// ```
    pub async fn publish_batch(&self, items: Vec<(Target, Event)>) -> Result<BatchResults> {
        crate::batch::validate(&items, self.input_limits().max_batch_events)?;
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let published =
            crate::batch::publish_in_order(items, |target, event| self.publish_to(target, event));
        Ok(published.await)
    }

    /// Open streams of `user_id` on this instance.
    pub fn connection_count(&self, user_id: &str) -> usize {
        Target::user(user_id).map_or(0, |user| self.inner.registry.count(&user))
    }

    /// Open streams on this instance that joined `topic`.
    pub fn topic_connection_count(&self, topic: &str) -> usize {
        Target::topic(topic).map_or(0, |topic| self.inner.registry.count(&topic))
    }

    /// Open streams on this instance.
    pub fn total_connections(&self) -> usize {
        self.inner.registry.total()
    }

    /// Open streams of `user_id` on every instance (with Redis: from the presence each
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

    /// Open streams on every instance; see
    /// [`cluster_connection_count`](Self::cluster_connection_count).
    ///
    /// # Errors
    /// [`Error::Broker`] when Redis cannot be reached.
    pub async fn cluster_total_connections(&self) -> Result<usize> {
        let cluster = self.inner.broker.cluster_connections(None).await?;
        Ok(cluster.unwrap_or_else(|| self.total_connections()))
    }

    /// What `target`'s history holds after `after` (everything it holds when `None`), in
    /// the order published and with each event's position, and where the target stands
    /// now: for a backend that wants to know what a user missed. A position the history
    /// no longer reaches (trimmed, expired, or of an epoch that ended) answers
    /// [`History::Reset`](crate::History::Reset).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// use sseor::{Event, History, Position, Target};
    /// let manager = sseor::Manager::new("").await?;
    /// let first = manager.publish("user123", Event::new("note")).await?;
    /// manager.publish("user123", Event::new("note")).await?;
    /// // The position a publish answered, as an application would have kept it.
    /// let after: Option<Position> = first.id.as_deref().map(|id| id.parse().expect("a position"));
    /// let History::Events { events, .. } = manager.history(Target::user("user123")?, after).await?
    /// else {
    ///     panic!("the history holds both events");
    /// };
    /// assert_eq!(events.len(), 1, "the one after the first");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Broker`] when the history cannot be read now (Redis unreachable).
    pub async fn history(
        &self,
        target: Target,
        after: Option<crate::Position>,
    ) -> Result<crate::History> {
        self.inner.broker.history(target, after).await
    }

    /// The largest request body the HTTP API accepts.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.config.max_body_bytes
    }

    /// The limits the HTTP API puts on what it reads.
    pub(crate) fn input_limits(&self) -> &InputLimits {
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
    /// reason), Redis reconnects, publish latency, and the lifecycle webhooks' changes
    /// delivered, given up and dropped. Labels never hold user ids, topics or credentials.
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
    #[cfg(feature = "prometheus")]
    pub fn render_metrics(&self) -> String {
        let registry = &self.inner.registry;
        self.inner.metrics.render(
            registry.total(),
            registry.distinct_users(),
            self.readiness().is_ok(),
        )
    }

    /// Whether [`close`](Self::close) has begun.
    pub fn is_closed(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }
}
