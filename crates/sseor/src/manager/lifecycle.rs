//! Hearing who comes and goes: the [`Lifecycle`] hooks set on the [`Builder`].

use std::sync::Arc;

use super::Builder;
use crate::Lifecycle;

impl Builder {
    /// Calls `hook` with every [`Lifecycle`] change this instance sees: a user's first
    /// stream opened or last closed, a topic's first subscriber or last, across every
    /// instance that shares the broker. May be called several times: every hook hears
    /// every change. The hook must not block.
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
}
