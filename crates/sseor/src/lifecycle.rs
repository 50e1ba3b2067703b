//! Comings and goings across every instance: a user's first stream opened and last
//! closed, a topic's first subscriber and last, for the application to be told of
//! (see [`Builder::on_lifecycle`](crate::Builder::on_lifecycle)).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::Target;

/// A change in who is connected, counted across every instance that shares the broker,
/// not per instance: a user is online while any instance holds one of their streams.
///
/// Serialized as the item of a lifecycle webhook:
///
/// ```
/// use sseor::Lifecycle;
/// let online = Lifecycle::UserOnline { user_id: "user123".into() };
/// assert_eq!(
///     serde_json::to_string(&online).unwrap(),
///     r#"{"type":"user.online","user_id":"user123"}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum Lifecycle {
    /// The user's first stream opened, on any instance, after none for longer than the
    /// grace period.
    #[serde(rename = "user.online")]
    UserOnline {
        /// The user.
        user_id: String,
    },
    /// The user's last stream closed on every instance and none opened again within the
    /// grace period (or the instance holding it stopped answering).
    #[serde(rename = "user.offline")]
    UserOffline {
        /// The user.
        user_id: String,
    },
    /// The topic's first subscriber joined, on any instance.
    #[serde(rename = "topic.occupied")]
    TopicOccupied {
        /// The topic.
        topic: String,
    },
    /// The topic's last subscriber left every instance, and none joined again within the
    /// grace period.
    #[serde(rename = "topic.vacated")]
    TopicVacated {
        /// The topic.
        topic: String,
    },
}

/// What hears [`Lifecycle`] changes: called once per change, on the instance that saw
/// it, without blocking (hand the change to a task or a channel to do any I/O).
pub type LifecycleHook = Arc<dyn Fn(Lifecycle) + Send + Sync>;

/// The grace period before a departure is reported, unless
/// [`Builder::lifecycle_grace`](crate::Builder::lifecycle_grace) says otherwise.
pub const DEFAULT_LIFECYCLE_GRACE: Duration = Duration::from_secs(5);

impl Lifecycle {
    /// The change `occupancy` makes when it is the first arrival or the last departure
    /// across every instance; `None` for the broadcasts, which have no lifecycle.
    pub fn of(occupancy: &Occupancy) -> Option<Self> {
        Some(match (&occupancy.target, occupancy.occupied) {
            (Target::User(user), true) => Self::UserOnline {
                user_id: user.to_string(),
            },
            (Target::User(user), false) => Self::UserOffline {
                user_id: user.to_string(),
            },
            (Target::Topic(topic), true) => Self::TopicOccupied {
                topic: topic.to_string(),
            },
            (Target::Topic(topic), false) => Self::TopicVacated {
                topic: topic.to_string(),
            },
            (Target::All, _) => return None,
        })
    }
}

/// A change in whether this instance holds streams of a user or a topic, once the grace
/// period has passed for a departure: what a broker that spans instances adds up into
/// [`Lifecycle`] changes (see [`Broker::occupancy`](crate::Broker::occupancy)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Occupancy {
    /// The user or topic.
    pub target: Target,
    /// `true`: this instance holds streams of it now; `false`: it holds none any more.
    pub occupied: bool,
}

impl Occupancy {
    /// This instance holds streams of `target` (`true`) or none any more (`false`).
    pub fn new(target: Target, occupied: bool) -> Self {
        Self { target, occupied }
    }
}

/// The [`Lifecycle`] hooks set on the [`Builder`](crate::Builder), and the grace period
/// before a departure counts: what a broker reports the changes it finds by itself
/// through (an instance that died, found by a survivor).
#[derive(Clone)]
pub struct LifecycleHooks {
    hooks: Vec<LifecycleHook>,
    grace: Duration,
}

impl Default for LifecycleHooks {
    fn default() -> Self {
        Self {
            hooks: Vec::new(),
            grace: DEFAULT_LIFECYCLE_GRACE,
        }
    }
}

impl LifecycleHooks {
    /// Adds a hook that hears every change.
    pub(crate) fn push(&mut self, hook: LifecycleHook) {
        self.hooks.push(hook);
    }

    /// Sets the grace period.
    pub(crate) fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// Whether any hook listens: without one, nothing about lifecycles is kept.
    pub fn is_heard(&self) -> bool {
        !self.hooks.is_empty()
    }

    /// How long a departure waits before it counts: a stream of the same user or topic
    /// that opens within it, on any instance, makes it no departure at all.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Tells every hook of `change`.
    pub fn report(&self, change: &Lifecycle) {
        tracing::debug!(?change, "lifecycle");
        for hook in &self.hooks {
            hook(change.clone());
        }
    }
}

impl std::fmt::Debug for LifecycleHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifecycleHooks")
            .field("hooks", &self.hooks.len())
            .field("grace", &self.grace)
            .finish()
    }
}
