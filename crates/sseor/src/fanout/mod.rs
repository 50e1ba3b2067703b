//! This instance's fan-out: the registry of its open streams indexed by target, each
//! stream's bounded queue, the limits on open streams, and the [`Fanout`] handle through
//! which a broker hands events to them.
//!
//! An event reaches this side once, from the broker; it is encoded once and the same bytes
//! are queued for every stream of its target. What a queue holds is written to the socket
//! by the [`server`](crate::server) side or by the response body under any other server.

mod disconnect;
mod limits;
pub(crate) mod queue;
pub(crate) mod registry;

use std::sync::Arc;

use crate::{Position, Target, encode};
use queue::{Frame, Stamp};
use registry::Registry;

pub(crate) use limits::{Limits, Refused};
pub use queue::SlowConsumer;

/// A change in local interest in a target, which a broker that carries events between
/// instances turns into a subscription or an unsubscription.
#[derive(Debug)]
#[non_exhaustive]
pub enum Interest {
    /// The first local connection for this target arrived.
    Subscribe(Target),
    /// The last local connection for this target left.
    Unsubscribe(Target),
    /// To be passed once every change reported before it is in effect: a resuming stream
    /// reads history only after its subscriptions are live, so that nothing published in
    /// between is lost.
    Barrier(Barrier),
}

/// See [`Interest::Barrier`].
#[derive(Debug)]
pub struct Barrier(tokio::sync::oneshot::Sender<()>);

impl Barrier {
    /// Tells the waiting stream that the changes before this barrier are in effect.
    pub fn pass(self) {
        let _ = self.0.send(());
    }
}

/// Why a stream ended: a stable label for logs and metrics.
///
/// Every stream's end is logged once, at `info` (`warn` for a slow consumer), with its
/// connection id, user, duration and this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed the connection (or the connection failed).
    ClientLeft,
    /// The client read too slowly: its queue filled up under
    /// [`SlowConsumer::Disconnect`](crate::SlowConsumer::Disconnect).
    SlowConsumer,
    /// The server is shutting down: the stream was ended in one of the paced batches of
    /// the drain, so that its client reconnects to another instance.
    Drained,
    /// The broker may have missed events (its subscription was down): the stream was
    /// ended so that its client resumes from history.
    Resync,
    /// The credential the stream was opened with expired: its client reconnects with a
    /// fresh one.
    Expired,
    /// The application ended it with [`Manager::disconnect`](crate::Manager::disconnect)
    /// (a ban, a revoked session), after a last [`DISCONNECT_EVENT`](crate::DISCONNECT_EVENT).
    Disconnected,
}

impl CloseReason {
    /// The reason as a short `snake_case` label: `client_left`, `slow_consumer`,
    /// `drained`, `resync`, `expired`, `disconnected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientLeft => "client_left",
            Self::SlowConsumer => "slow_consumer",
            Self::Drained => "drained",
            Self::Resync => "resync",
            Self::Expired => "expired",
            Self::Disconnected => "disconnected",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event's bytes on the wire (without `id:`, which each stream writes), and its type.
pub(crate) struct Encoded {
    bytes: bytes::Bytes,
    kind: Box<str>,
}

impl Encoded {
    /// # Errors
    /// [`Error::InvalidEvent`](crate::Error::InvalidEvent) when the event cannot be encoded.
    pub(crate) fn new(event: &crate::Event) -> crate::Result<Self> {
        Ok(Self {
            bytes: encode::event_without_id(event)?,
            kind: event.event_type.as_str().into(),
        })
    }
}

/// The handle through which a broker hands events to this instance's connections.
///
/// Each event is encoded once; every recipient gets the same bytes.
#[derive(Clone)]
pub struct Fanout {
    registry: Arc<Registry>,
}

impl Fanout {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// A fan-out of its own, with no limits, for a broker's tests.
    #[cfg(test)]
    pub(crate) fn standalone() -> Self {
        Self::new(Arc::new(Registry::new(Limits::default(), Arc::default())))
    }

    /// Encodes `event` once and queues it for every local stream of `target`; returns
    /// how many streams it was queued for. `position` is the event's place in the
    /// target's sequence, from which each stream writes its `id:`; `None` for an event
    /// that has none (transient, or published by another Redis client), sent without
    /// `id:`.
    ///
    /// # Errors
    /// [`Error::InvalidEvent`](crate::Error::InvalidEvent) when the event cannot be encoded;
    /// nothing is delivered then.
    pub fn deliver(
        &self,
        target: &Target,
        position: Option<Position>,
        event: &crate::Event,
    ) -> crate::Result<usize> {
        Ok(self.deliver_encoded(target, position, Encoded::new(event)?))
    }

    /// [`deliver`](Self::deliver) for an event encoded beforehand, so that a broker that
    /// numbers and delivers its events under a lock (to keep their order) does not encode
    /// them under it.
    pub(crate) fn deliver_encoded(
        &self,
        target: &Target,
        position: Option<Position>,
        encoded: Encoded,
    ) -> usize {
        let frame = Arc::new(Frame {
            stamp: position.map(|position| Stamp::Event(target.clone(), position)),
            bytes: encoded.bytes,
            kind: Some(encoded.kind),
        });
        let recipients = self.registry.deliver(target, &frame);
        self.registry.metrics().delivered(recipients);
        recipients
    }

    /// Sends every local stream of `target` a [`RESET_EVENT`](crate::RESET_EVENT) saying
    /// `reason`, and moves them to `position` in it: the history they stood in is gone
    /// (the broker lost it, or could not read what they missed), and their clients must
    /// reload what they show. The streams stay open. Returns how many got it.
    pub fn reset(&self, target: &Target, position: Position, reason: &str) -> usize {
        let reset = crate::Event::new(crate::RESET_EVENT)
            .with_data(serde_json::json!({ "reason": reason }));
        let Ok(bytes) = encode::event_without_id(&reset) else {
            return 0;
        };
        let frame = Arc::new(Frame {
            stamp: Some(Stamp::Reset(target.clone(), position)),
            bytes,
            kind: None,
        });
        let recipients = self.registry.deliver(target, &frame);
        self.registry.metrics().delivered(recipients);
        recipients
    }

    /// Local streams of `target`.
    pub fn count(&self, target: &Target) -> usize {
        self.registry.count(target)
    }

    /// All local streams.
    pub fn total(&self) -> usize {
        self.registry.total()
    }

    /// Ends every local stream once its queue is drained, so that its client reconnects
    /// and resumes from history; returns how many there were. For a broker that cannot
    /// tell what its streams missed; logged as [`CloseReason::Resync`].
    pub fn release_all(&self) -> usize {
        self.registry.release_all(CloseReason::Resync)
    }

    /// Users whose local connection counts changed since the last call, with their counts
    /// now (0 for users who left); with `everyone`, every connected user instead. Tracked
    /// only for brokers that receive [`Interest`].
    pub fn user_counts(&self, everyone: bool) -> Vec<(Arc<str>, usize)> {
        self.registry.user_counts(everyone)
    }

    /// The registry of this instance's streams, for the presence the brokers of this
    /// crate keep.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("connections", &self.registry.total())
            .finish()
    }
}
