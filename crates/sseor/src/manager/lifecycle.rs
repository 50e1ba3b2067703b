//! Hearing who comes and goes: the [`Lifecycle`] hooks set on the [`Builder`], and the
//! grace period before a departure counts.

use std::sync::Arc;
use std::time::Duration;

use super::Builder;
use crate::Lifecycle;

impl Builder {
    /// Calls `hook` with every [`Lifecycle`] change this instance sees: a user's first
    /// stream opened or last closed, a topic's first subscriber or last, across every
    /// instance that shares the broker. May be called several times: every hook hears
    /// every change. The hook must not block.
    ///
    /// Each change is reported once, by one instance: the one where the user's first
    /// stream opened (or last closed), or, for an instance that died, the survivor that
    /// found it out. Set the same hooks on every instance. A departure counts only once
    /// the [grace period](Self::lifecycle_grace) has passed without the user (or topic)
    /// coming back anywhere, so that a page reload is no change at all.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// let manager = sseor::Manager::builder()
    ///     .on_lifecycle(|change: sseor::Lifecycle| println!("{change:?}"))
    ///     .build()
    ///     .await?;
    /// # manager.close().await; Ok(()) }
    /// ```
    pub fn on_lifecycle(mut self, hook: impl Fn(Lifecycle) + Send + Sync + 'static) -> Self {
        self.lifecycle.push(Arc::new(hook));
        self
    }

    /// How long a user's last stream (or a topic's last subscriber) must stay gone, on
    /// every instance, before [`Lifecycle::UserOffline`] (or
    /// [`Lifecycle::TopicVacated`]) is reported (default 5 s). A stream that opens again
    /// within it, here or on another instance (a page reload), makes the departure and
    /// the arrival no change at all. `Duration::ZERO` reports every departure at once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// use std::time::Duration;
    /// let manager = sseor::Manager::builder()
    ///     .on_lifecycle(|change| println!("{change:?}"))
    ///     .lifecycle_grace(Duration::from_secs(10))
    ///     .build()
    ///     .await?;
    /// # manager.close().await; Ok(()) }
    /// ```
    pub fn lifecycle_grace(mut self, grace: Duration) -> Self {
        self.lifecycle.set_grace(grace);
        self
    }
}
