//! The Redis broker: events cross instances through Redis pub/sub.
//!
//! Each instance holds two connections whatever its number of clients: a multiplexed one
//! for commands (publish, probes) and one for subscriptions. It subscribes to a target's
//! channel only while it has local streams for that target, and resubscribes to all of
//! them after any reconnection. A probe it publishes to itself through Redis proves that
//! the whole path works; readiness follows the probe.
//!
//! Each target (a user, a topic, the broadcasts) has its own sequence and history under
//! one hash tag (`keys`); a publish runs one Redis Function on that target's keys alone.
//! The subscriber knows where each target it follows stands: an event whose number skips
//! ahead, or a subscription that comes back after a loss, makes it read what was missed
//! from the history and deliver it in order on the open streams; only what the history no
//! longer holds becomes a reset of the streams of that target.
//!
//! The parts: `RedisPublisher` numbers and publishes events (`publisher`, the publishes
//! that wait together sent as one call by `batch`) and reads
//! sequences and histories back (`history`); the subscriber task delivers what arrives to
//! this instance's connections (`subscriber`, `envelope`, with what it knows of each
//! target in `tracked`) and keeps the state readiness is told from (`health`); the
//! presence task keeps this instance's connection counts in Redis (`presence`, read in
//! pages by `pages`) and, with `holders`, which instances hold each user's and topic's
//! streams, for lifecycles. They
//! share the command connection (`commands`), the names of keys and channels (`keys`) and
//! the Redis Functions that keep the sequences (`scripts`).

mod batch;
mod commands;
mod control;
mod endpoint;
mod envelope;
mod health;
mod history;
mod holders;
mod keys;
mod options;
mod pages;
mod presence;
mod probes;
mod publisher;
mod pubsub;
mod scripts;
mod subscriber;
mod tracked;

pub use options::RedisOptions;
pub use publisher::RedisPublisher;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::resume;
use super::{Broker, BrokerContext, History, Published};
use crate::{Disconnect, Disconnected, Event, Fanout, Occupancy, Position, Result, Target};
use crate::{PresencePage, TopicPresence, UserPresence};
use health::Health;
use holders::Holders;
use keys::Names;
use presence::Presence;
use subscriber::Subscriber;

/// What the broker shares with its tasks.
#[derive(Debug)]
struct Shared {
    names: Names,
    options: RedisOptions,
    health: Mutex<Health>,
    instance: String,
    /// The disconnects this instance sent, waiting for its subscriber to carry them out.
    disconnects: control::Waiting,
}

impl Shared {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long a probe may take to come back before the path is held broken.
    fn probe_limit(&self) -> Duration {
        self.options.probe_interval * 3
    }

    fn readiness(&self) -> std::result::Result<(), String> {
        self.health().readiness(self.probe_limit())
    }

    fn probe_overdue(&self) -> bool {
        self.health().probe_overdue(self.probe_limit())
    }
}

/// Carries events between instances through Redis.
pub struct RedisBroker {
    publisher: RedisPublisher,
    shared: Arc<Shared>,
    fanout: Fanout,
    stop: CancellationToken,
    presence: Mutex<Option<tokio::task::JoinHandle<()>>>,
    holders: Arc<Holders>,
    /// How long a departure waits to count: at shutdown, what this instance holds is
    /// handed to the survivors for that long.
    lifecycle_grace: Duration,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("prefix", &self.shared.names.prefix())
            .field("instance", &self.shared.instance)
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Connects to Redis at `url` and starts the subscription task, which delivers to the
    /// context's fan-out and follows its interest.
    ///
    /// A Redis that cannot be reached yet is not an error: the broker keeps trying, and is
    /// not ready until it succeeds.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`](crate::Error::InvalidUrl) for a URL that does not parse, [`Error::Broker`](crate::Error::Broker) when Redis
    /// answers but refuses the credentials or the database.
    pub async fn connect(url: &str, context: BrokerContext, options: RedisOptions) -> Result<Self> {
        let fanout = context.fanout();
        let (endpoint, publisher) = RedisPublisher::open(url, &options).await?;
        let shared = Arc::new(Shared {
            names: publisher.names.clone(),
            options,
            health: Mutex::default(),
            instance: instance_id(),
            disconnects: control::Waiting::default(),
        });
        let stop = CancellationToken::new();
        let hooks = context.lifecycle();
        let lifecycle_grace = hooks.grace();
        let holders = Arc::new(Holders::new(publisher.clone(), shared.clone(), hooks));
        let presence = Presence::new(
            publisher.commands.clone(),
            shared.clone(),
            fanout.clone(),
            holders.clone(),
        );
        let presence = tokio::spawn(presence.run(stop.clone()));
        let subscriber = Subscriber::new(
            endpoint,
            publisher.clone(),
            shared.clone(),
            &context,
            stop.clone(),
        );
        tokio::spawn(subscriber.run());
        Ok(Self {
            publisher,
            shared,
            fanout,
            stop,
            presence: Mutex::new(Some(presence)),
            holders,
            lifecycle_grace,
        })
    }

    /// Stops publishing presence and removes it, so that the cluster-wide counts drop this
    /// instance at once rather than when its presence expires. What it holds for
    /// lifecycles is handed over: it stays listed as live, without counts, for the grace
    /// period, after which a survivor releases what did not come back elsewhere.
    async fn say_goodbye(&self) {
        let task = self
            .presence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(task) = task else { return };
        let _ = task.await;
        let instance = &self.shared.instance;
        let names = &self.shared.names;
        let mut goodbye = redis::pipe();
        goodbye.del(&names.presence_keys(instance)[..]).ignore();
        if self.holders.holds_anything().await {
            let grace_ms = u64::try_from(self.lifecycle_grace.as_millis()).unwrap_or(u64::MAX);
            let until = crate::position::unix_millis().saturating_add(grace_ms);
            goodbye.zadd(names.instances(), instance, until).ignore();
        } else {
            goodbye
                .zrem(names.instances(), instance)
                .ignore()
                .del(names.held(instance))
                .ignore();
        }
        let sent = tokio::time::timeout(
            self.shared.options.timeout,
            self.publisher.commands.pipeline::<()>(&goodbye),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!("presence not removed; it expires by itself");
        }
    }
}

impl Broker for RedisBroker {
    fn publish(&self, target: Target, event: Event) -> BoxFuture<'_, Result<Published>> {
        Box::pin(async move { self.publisher.publish(&target, &event).await })
    }

    fn readiness(&self) -> std::result::Result<(), String> {
        self.shared.readiness()
    }

    fn outage(&self) -> Option<String> {
        let lost = self.shared.health().is_lost();
        lost.then(|| "the subscription to Redis is down; try again shortly".to_owned())
    }

    fn resume(&self, from: Vec<(Target, Option<Position>)>) -> BoxFuture<'_, History> {
        Box::pin(async move {
            // The command connection may have just lost Redis and be reconnecting: a reset
            // would make every resuming client reload for nothing, so try again first.
            let mut attempt = 0;
            loop {
                match self.publisher.resume(&from).await {
                    Ok(history) => return history,
                    Err(e) if attempt >= 3 => {
                        let targets: Vec<Target> = from.into_iter().map(|(t, _)| t).collect();
                        return resume::unreadable_now(&e, &targets);
                    }
                    Err(_) => {
                        attempt += 1;
                        tokio::time::sleep(self.shared.options.probe_interval / 2).await;
                    }
                }
            }
        })
    }

    fn history(&self, target: Target, after: Option<Position>) -> BoxFuture<'_, Result<History>> {
        Box::pin(async move { self.publisher.history(target, after).await })
    }

    fn cluster_connections(&self, user_id: Option<String>) -> BoxFuture<'_, Result<Option<usize>>> {
        Box::pin(async move {
            // This instance's presence in Redis lags behind its connections (refreshed
            // every few seconds): its own part is counted live instead.
            let others = self
                .publisher
                .stored_connections(user_id.as_deref(), Some(&self.shared.instance))
                .await?;
            let local = match user_id.as_deref() {
                Some(user) => Target::user(user).map_or(0, |user| self.fanout.count(&user)),
                None => self.fanout.total(),
            };
            Ok(Some(others + local))
        })
    }

    fn disconnect(&self, disconnect: Disconnect) -> BoxFuture<'_, Result<Option<Disconnected>>> {
        Box::pin(async move {
            let user = disconnect.user_target();
            // Only an instance with streams of the user follows its channel.
            let followed = self.fanout.count(user) > 0;
            let mut awaited = control::Waiting::expect(&self.shared);
            let from = format!("{}:{}", self.shared.instance, awaited.number);
            let instances = self
                .publisher
                .send_disconnect(&disconnect, Some(from))
                .await?;
            // This instance's streams end as every other's, by its subscriber, in the
            // channel's order: after the events published to the user before.
            let ended = if followed {
                let answer = &mut awaited.answer;
                match tokio::time::timeout(self.shared.options.timeout, answer).await {
                    Ok(Ok(ended)) => ended,
                    // The subscription broke meanwhile: ended here, so that none is left.
                    _ => self.fanout.disconnect(&disconnect),
                }
            } else {
                awaited.answer.try_recv().unwrap_or(0)
            };
            Ok(Some(Disconnected::new(ended, Some(instances))))
        })
    }

    fn topic_presence(
        &self,
        topic: String,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Option<PresencePage<UserPresence>>>> {
        Box::pin(async move {
            let page = self.topic_page(&topic, after.as_deref(), limit).await?;
            Ok(Some(page))
        })
    }

    fn topics(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Option<PresencePage<TopicPresence>>>> {
        Box::pin(async move { Ok(Some(self.topics_page(after.as_deref(), limit).await?)) })
    }

    fn occupancy(&self, changes: Vec<Occupancy>) -> BoxFuture<'_, Result<Option<Vec<bool>>>> {
        Box::pin(async move { Ok(Some(self.holders.record(&changes).await?)) })
    }

    fn put_ticket(&self, key: String, value: String, ttl: Duration) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.publisher.put_ticket(&key, &value, ttl).await })
    }

    fn take_ticket(&self, key: String) -> BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async move { self.publisher.take_ticket(&key).await })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.stop.cancel();
        Box::pin(self.say_goodbye())
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A random name for this instance, for its probe channel and its presence.
fn instance_id() -> String {
    format!("{:016x}", crate::random::u64())
}
