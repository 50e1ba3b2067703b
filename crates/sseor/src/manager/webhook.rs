//! Lifecycle webhooks set on the [`Builder`]: started with the manager, counted in its
//! metrics, closed by [`Manager::close`].

use std::sync::Arc;
use std::time::Duration;

use super::{Builder, Manager};
use crate::metrics::Metrics;
use crate::webhook::{Delivery, Webhook};

impl Builder {
    /// POSTs every [`Lifecycle`](crate::Lifecycle) change this instance sees to `webhook`,
    /// in signed batches, at least once (see [`webhook`](crate::webhook) for the format
    /// and the signature). The delivery starts with the manager, counts in its
    /// `/metrics`, and gets a last try when [`Manager::close`] has drained the streams.
    /// May be called several times: every webhook hears every change.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// use sseor::webhook::Webhook;
    /// let secret = "0123456789abcdef0123456789abcdef"; // at least 32 bytes, from your secrets
    /// let manager = sseor::Manager::builder()
    ///     .webhook(Webhook::new("http://127.0.0.1:8000/hooks/sseor", secret)?)
    ///     .build()
    ///     .await?;
    /// # manager.close().await; Ok(()) }
    /// ```
    pub fn webhook(mut self, webhook: Webhook) -> Self {
        self.webhooks.push(webhook);
        self
    }

    /// Starts the webhooks, counting in `metrics`, each heard as a lifecycle hook.
    pub(super) fn start_webhooks(&mut self, metrics: &Arc<Metrics>) -> Vec<Delivery> {
        let deliveries: Vec<Delivery> = self
            .webhooks
            .iter()
            .map(|webhook| webhook.clone().start_counting(metrics.clone()))
            .collect();
        for delivery in &deliveries {
            self.lifecycle.push(Arc::new(delivery.hook()));
        }
        deliveries
    }
}

impl Manager {
    /// Closes the webhooks together, each within its close timeout and `limit`.
    pub(super) async fn close_webhooks(&self, limit: Duration) {
        let closing = self
            .inner
            .webhooks
            .iter()
            .map(|delivery| delivery.close_within(delivery.close_timeout().min(limit)));
        futures_util::future::join_all(closing).await;
    }
}
