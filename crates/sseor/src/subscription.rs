//! What one stream receives.

use std::time::SystemTime;

use crate::{Result, SlowConsumer, Target};

/// What one stream receives: a user's events, the topics it joined, and broadcasts.
///
/// ```
/// let subscription = sseor::Subscription::user("user123")?.topic("prices")?;
/// # Ok::<(), sseor::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Subscription {
    pub(crate) targets: Vec<Target>,
    pub(crate) slow_consumer: Option<SlowConsumer>,
    pub(crate) expires_at: Option<SystemTime>,
}

impl Subscription {
    /// The events of `user_id`, and broadcasts.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`](crate::Error::InvalidTarget) for an empty or malformed id.
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
    /// [`Error::InvalidTarget`](crate::Error::InvalidTarget) for an empty or malformed name.
    pub fn topic(mut self, topic: &str) -> Result<Self> {
        let topic = Target::topic(topic)?;
        if !self.targets.contains(&topic) {
            self.targets.push(topic);
        }
        Ok(self)
    }

    /// What happens to this stream when its client reads too slowly (default: the
    /// manager's [`Builder::slow_consumer`](crate::Builder::slow_consumer)), so that each route can choose: disconnect,
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
