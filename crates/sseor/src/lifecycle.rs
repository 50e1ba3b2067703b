//! Comings and goings across every instance: a user's first stream opened and last
//! closed, a topic's first subscriber and last, for the application to be told of
//! (see [`Builder::on_lifecycle`](crate::Builder::on_lifecycle)).

use std::sync::Arc;

use serde::Serialize;

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
