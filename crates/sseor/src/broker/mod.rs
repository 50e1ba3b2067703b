//! How events cross instances.
//!
//! A [`Broker`] takes every published event, gives it its id, and hands it to the
//! [`Fanout`](crate::Fanout) of every instance that has connections for its target. The
//! embedded [`MemoryBroker`] serves a single instance. A broker that spans instances also
//! receives the registry's [`Interest`](crate::Interest) changes, so that it subscribes to
//! a target only while this instance has connections for it.

mod context;
mod memory;
#[cfg(feature = "redis")]
pub mod redis;
mod resume;

pub use context::BrokerContext;
pub use memory::MemoryBroker;

use futures_util::future::BoxFuture;
use serde::Serialize;

use std::time::Duration;

use crate::{Disconnect, Disconnected, Event, Occupancy, Position, Result, Target};
use crate::{PresencePage, TopicPresence, UserPresence};

/// What a successful publish reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Published {
    /// The event's position in its target's sequence (`EPOCH-SEQ`); `None` for a
    /// transient event, which has none. Each stream writes, as the `id:` of the event,
    /// its [`Cursor`](crate::Cursor), which holds this position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// How many streams of this instance the event was queued for, when the broker
    /// delivers before it returns (the embedded broker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_locally: Option<usize>,
    /// How many instances received the event, when the broker spans instances (Redis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<usize>,
    /// The event repeated an earlier publish to the same target with the same
    /// publisher-given id, still in the history: it was not delivered again, and `id` is
    /// the earlier event's position.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// How much history a broker keeps per target, for clients that resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// The most events kept per target (default 1,000).
    pub max_events: usize,
    /// How long events are kept (default 1 hour). The embedded broker drops each event
    /// this old; Redis drops a target's whole history once it had no event for this long.
    pub max_age: Duration,
    /// The most bytes of history kept across every target, oldest events evicted first
    /// (default 64 MiB). Honoured by the embedded broker, whose history lives in this
    /// process's memory; Redis's history is bounded by `max_events` and `max_age` per
    /// target.
    pub max_bytes: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_events: 1000,
            max_age: Duration::from_secs(3600),
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Retention {
    /// How long a target's sequence (its epoch and number) outlives its last event: a
    /// day, or 24 times `max_age` when that is longer. A client that reconnects later
    /// than that to a target that had no event since gets a reset.
    pub fn sequence_lifetime(&self) -> Duration {
        (self.max_age * 24).max(Duration::from_secs(86_400))
    }
}

/// One event of a replay: its target, its position there, and the event.
pub type Replayed = (Target, Position, Event);

/// What a stream that starts needs: the events its client missed, or a reset.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum History {
    /// Every event the client missed, in the order they were published, and where each
    /// target stood when the history was read; later events come live.
    Events {
        /// The missed events.
        events: Vec<Replayed>,
        /// Each target's position as the history was read.
        positions: Vec<(Target, Position)>,
    },
    /// What the client missed cannot be told (a position of a history that is gone,
    /// trimmed, or not reached): the client must reload its state, and continues from
    /// `positions`.
    Reset {
        /// Why, for the client and the logs.
        reason: String,
        /// Each target's position now.
        positions: Vec<(Target, Position)>,
    },
}

/// Carries published events to the streams of every instance.
pub trait Broker: Send + Sync + 'static {
    /// Sends `event` to every connection of `target`, across instances, and returns once
    /// the broker has taken it.
    ///
    /// The event has been validated. Unless it is
    /// [`transient`](crate::Event::transient), the broker gives it the next [`Position`]
    /// of its target's sequence, keeps it in the target's history, and treats an id the
    /// publisher gave as an idempotency key (a repeat within the history is reported
    /// `duplicate` and not sent again).
    ///
    /// # Errors
    /// [`Error::Broker`](crate::Error::Broker) when the event could not be carried; then
    /// it reached no one.
    fn publish(&self, target: Target, event: Event) -> BoxFuture<'_, Result<Published>>;

    /// What a stream needs that starts in each target at the position given: the events
    /// after it, or a reset. A target given `None` starts live, where it stands now (a new
    /// stream, or a target its client's cursor does not hold).
    fn resume(&self, from: Vec<(Target, Option<Position>)>) -> BoxFuture<'_, History> {
        Box::pin(async move { resume::without_history(from) })
    }

    /// What `target`'s history holds after `after` (everything it holds when `None`), in
    /// the order published, with the target's position now; or a reset when `after` is no
    /// longer in it (trimmed, expired, or of an epoch that ended). Serves
    /// [`Manager::history`](crate::Manager::history). The default, for a broker that keeps
    /// no history, is what [`resume`](Self::resume) tells.
    ///
    /// # Errors
    /// [`Error::Broker`](crate::Error::Broker) when the history cannot be read now.
    fn history(&self, target: Target, after: Option<Position>) -> BoxFuture<'_, Result<History>> {
        Box::pin(async move { Ok(self.resume(vec![(target, after)]).await) })
    }

    /// Whether events published now would reach this instance's connections; the error
    /// says why not. Serves `/readyz`.
    ///
    /// # Errors
    /// A sentence naming what is wrong, for operators.
    fn readiness(&self) -> std::result::Result<(), String> {
        Ok(())
    }

    /// Why this instance cannot carry events to new streams now, when the broker knows it
    /// cannot (its link to other instances is down, not merely unconfirmed): such streams
    /// are refused with 503 and `Retry-After`, rather than answered with a stream that
    /// stays silent, without even its heartbeats, until the link is back.
    fn outage(&self) -> Option<String> {
        None
    }

    /// Connections across every instance: of `user_id`, or in all when `None`. `None`
    /// when the broker spans no other instance (then the local counts are the answer).
    ///
    /// # Errors
    /// [`Error::Broker`](crate::Error::Broker) when the shared state cannot be read.
    fn cluster_connections(&self, user_id: Option<String>) -> BoxFuture<'_, Result<Option<usize>>> {
        let _ = user_id;
        Box::pin(async { Ok(None) })
    }

    /// Ends the streams `disconnect` names on every instance: on each, what
    /// [`Fanout::disconnect`](crate::Fanout::disconnect) does, after every event published
    /// to the user before it. Returns the streams this instance ended and how many
    /// instances received it; `None` (the default) when the broker spans no other
    /// instance: the manager then ends this instance's streams itself.
    ///
    /// # Errors
    /// [`Error::Broker`](crate::Error::Broker) when it could not be carried; then no
    /// stream was ended here.
    fn disconnect(&self, disconnect: Disconnect) -> BoxFuture<'_, Result<Option<Disconnected>>> {
        let _ = disconnect;
        Box::pin(async { Ok(None) })
    }

    /// Keeps `value` under `key` for `ttl`, for one [`take_ticket`](Self::take_ticket) on
    /// any instance: how stream tickets work behind a load balancer.
    ///
    /// # Errors
    /// [`Error::Broker`](crate::Error::Broker) when it cannot be stored (the default: this
    /// broker keeps no tickets).
    fn put_ticket(&self, key: String, value: String, ttl: Duration) -> BoxFuture<'_, Result<()>> {
        let _ = (key, value, ttl);
        Box::pin(async {
            Err(crate::Error::Broker(
                "this broker cannot keep stream tickets".into(),
            ))
        })
    }

    /// Removes and returns the value kept under `key`; `None` when there is none (never
    /// stored, expired, or taken already). Two concurrent calls never both get it.
    ///
    /// # Errors
    /// [`Error::Broker`](crate::Error::Broker) when the store cannot be reached.
    fn take_ticket(&self, key: String) -> BoxFuture<'_, Result<Option<String>>> {
        let _ = key;
        Box::pin(async { Ok(None) })
    }

    /// The users of `topic`'s streams on every instance, by user id after `after`, at most
    /// `limit`, each with its streams there; `None` when the broker spans no other
    /// instance (then this instance's streams are the answer).
    ///
    /// # Errors
    /// [`Error::Broker`](crate::Error::Broker) when the shared state cannot be read.
    fn topic_presence(
        &self,
        topic: String,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Option<PresencePage<UserPresence>>>> {
        let _ = (topic, after, limit);
        Box::pin(async { Ok(None) })
    }

    /// The topics with streams on every instance, by name after `after`, at most `limit`,
    /// each with its streams; `None` when the broker spans no other instance.
    ///
    /// # Errors
    /// [`Error::Broker`](crate::Error::Broker) when the shared state cannot be read.
    fn topics(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Option<PresencePage<TopicPresence>>>> {
        let _ = (after, limit);
        Box::pin(async { Ok(None) })
    }

    /// Records, in order, that this instance now holds streams of each target of
    /// `changes`, or none any more (after the grace period), and tells for each whether
    /// it was the first arrival (or the last departure) across every instance: exactly
    /// one instance is told so for each change. `None` when the broker spans no other
    /// instance (then every change is one). Called with the same change again after an
    /// error: recording must be idempotent.
    ///
    /// # Errors
    /// [`Error::Broker`](crate::Error::Broker) when the changes could not be recorded.
    fn occupancy(&self, changes: Vec<Occupancy>) -> BoxFuture<'_, Result<Option<Vec<bool>>>> {
        let _ = changes;
        Box::pin(async { Ok(None) })
    }

    /// Stops the broker; called once by [`Manager::close`](crate::Manager::close).
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
