//! What a broker is started with.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Retention;
use crate::fanout::registry::Registry;
use crate::metrics::Metrics;
use crate::{Fanout, Interest, LifecycleHooks};

/// What a broker starts with, from [`Builder::broker`](crate::Builder::broker): this
/// instance's [`Fanout`], the history to keep, and, for a broker that subscribes per
/// target, the changes in local interest.
pub struct BrokerContext {
    pub(crate) registry: Arc<Registry>,
    pub(crate) retention: Retention,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) lifecycle: LifecycleHooks,
}

impl BrokerContext {
    /// The handle to deliver every event through, to this instance's streams.
    pub fn fanout(&self) -> Fanout {
        Fanout::new(self.registry.clone())
    }

    /// How much history to keep per target, as set on the builder.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Every change in this instance's interest from now on, in order: the first stream of
    /// a target arriving, the last leaving, and the barriers a resuming stream waits
    /// behind (pass each once the changes before it are in effect). For a broker that
    /// subscribes only to the targets this instance has streams for; one that does not
    /// never calls it (nothing is tracked then, and every stream starts at once). Ask once:
    /// a second receiver hears nothing.
    pub fn interest(&self) -> mpsc::UnboundedReceiver<Interest> {
        self.registry.follow_interest()
    }

    /// The [`Lifecycle`](crate::Lifecycle) hooks and the grace period set on the builder:
    /// what a broker that spans instances reports the changes it finds by itself through
    /// (the users and topics of an instance that died).
    pub fn lifecycle(&self) -> LifecycleHooks {
        self.lifecycle.clone()
    }

    /// The metrics of this instance, for the brokers of this crate.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }
}

impl std::fmt::Debug for BrokerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerContext")
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}
