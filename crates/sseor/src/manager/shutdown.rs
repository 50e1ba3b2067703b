//! Shutting down gracefully: refusing new work, draining the open streams in paced
//! batches, stopping the broker, and bounding the wait for the servers.

use std::future::Future;
use std::time::Duration;

use super::Manager;
use crate::fanout::CloseReason;
use crate::fanout::registry::Registry;

impl Manager {
    pub(super) async fn stopped(&self, on_signal: bool) {
        let cancelled = self.inner.shutdown.cancelled();
        if !on_signal {
            return cancelled.await;
        }
        tokio::select! {
            () = cancelled => {},
            () = termination_signal() => tracing::info!("shutting down on signal"),
        }
    }
    /// Shuts down gracefully: refuses new streams and publishes (and `/healthz` and
    /// `/readyz` answer 503), ends the open streams in paced batches over the
    /// [drain period](crate::Builder::drain_period) so that clients reconnect elsewhere a few at a
    /// time, stops the broker, and waits for running servers to finish, closing
    /// connections that are still open at the shutdown timeout. Meanwhile the
    /// [webhooks](crate::Builder::webhook) get a last try at what they hold, within the
    /// same bound and their own close timeout.
    ///
    /// Under [`sseor::serve`](crate::serve) or the application's own `axum::serve`, whose
    /// graceful shutdown waits for the open streams, hand it the signal through
    /// [`shutdown_signal`](Self::shutdown_signal) and call this once it returns.
    pub async fn close(&self) {
        self.begin_close();
        self.inner.drained.cancelled().await;
        let deadline = self.remaining_shutdown_time() + Duration::from_secs(1);
        let servers = async {
            if tokio::time::timeout(deadline, self.inner.servers.wait())
                .await
                .is_err()
            {
                tracing::warn!("a server did not stop within the shutdown timeout");
            }
        };
        // After the drain, so that the changes it caused are in: the webhooks' last try.
        #[cfg(feature = "webhook")]
        tokio::join!(servers, self.close_webhooks(deadline));
        #[cfg(not(feature = "webhook"))]
        servers.await;
    }

    /// The application's own shutdown `signal`, for the graceful shutdown of
    /// [`sseor::serve`](crate::serve) (see its example) or `axum::serve`: completes once
    /// `signal` has (or [`close`](Self::close) has begun) and the open streams have been
    /// ended, shutdown having begun as with `close`.
    ///
    /// axum's graceful shutdown waits for every open response, and an event stream only
    /// ends when this manager ends it: given the bare signal, `axum::serve` would wait for
    /// ever and `close` after it would never run. With this, axum stops once the streams
    /// are drained; `close` then finishes what is left.
    ///
    /// A client that stops reading can still hold axum's connection open: bound the
    /// wait, as below (the manager's own [`serve`](Self::serve) closes such connections at
    /// the [shutdown timeout](crate::Builder::shutdown_timeout) by itself).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use axum::Router;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sse = sseor::Manager::new("").await?;
    /// let app = Router::new().merge(sse.router());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// let ctrl_c = async { tokio::signal::ctrl_c().await.ok(); };
    /// let server = axum::serve(listener, app)
    ///     .with_graceful_shutdown(sse.shutdown_signal(ctrl_c))
    ///     .into_future();
    /// // The shutdown timeout (10 s by default) plus a second, counted from the signal.
    /// let bounded = async {
    ///     sse.closed().await;
    ///     tokio::time::sleep(Duration::from_secs(11)).await;
    /// };
    /// tokio::select! { served = server => served?, () = bounded => {} }
    /// sse.close().await;
    /// # Ok(()) }
    /// ```
    pub fn shutdown_signal<F>(&self, signal: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future + Send + 'static,
    {
        let manager = self.clone();
        async move {
            tokio::select! {
                _ = signal => {},
                () = manager.inner.shutdown.cancelled() => {},
            }
            manager.begin_close();
            manager.inner.drained.cancelled().await;
        }
    }

    /// Completes once shutdown has begun, by [`close`](Self::close), a signal that
    /// [`serve`](Self::serve) handles, or [`shutdown_signal`](Self::shutdown_signal).
    pub async fn closed(&self) {
        self.inner.shutdown.cancelled().await;
    }

    /// Starts shutting down, once: refuses new streams at once, and drains the open ones
    /// in a task of its own, so that the drain completes whoever stops waiting for it.
    pub(super) fn begin_close(&self) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        let _ = self.inner.closing_since.set(tokio::time::Instant::now());
        self.inner.shutdown.cancel();
        self.inner.servers.close();
        self.inner.registry.close();
        let registry = self.inner.registry.clone();
        let broker = self.inner.broker.clone();
        let drained = self.inner.drained.clone();
        let period = self.inner.config.drain_period;
        let transitions = self.inner.transitions.clone();
        tokio::spawn(async move {
            drain(&registry, period).await;
            if let Some(transitions) = transitions {
                transitions.finish().await;
            }
            broker.close().await;
            drained.cancel();
        });
    }

    /// What is left of the shutdown timeout since shutdown began.
    pub(super) fn remaining_shutdown_time(&self) -> Duration {
        let elapsed = self
            .inner
            .closing_since
            .get()
            .map_or(Duration::ZERO, |since| since.elapsed());
        self.inner.config.shutdown_timeout.saturating_sub(elapsed)
    }
}

/// Shutdown ends the open streams in this many batches, spread evenly over the drain
/// period.
const DRAIN_BATCHES: u32 = 20;

/// Ends the open streams of `registry` in [`DRAIN_BATCHES`] batches, one at the start of
/// each slice of `period`; the batch size follows what is still open, so that clients that
/// leave by themselves meanwhile do not leave the last batches empty.
async fn drain(registry: &Registry, period: Duration) {
    let open = registry.total();
    if open > 0 {
        tracing::info!(
            streams = open,
            period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            "draining: ending the open streams in batches"
        );
    }
    let start = tokio::time::Instant::now();
    for batch in 0..DRAIN_BATCHES {
        let open = registry.total();
        if open == 0 {
            break;
        }
        let batches_left = (DRAIN_BATCHES - batch) as usize;
        registry.release_some(open.div_ceil(batches_left), CloseReason::Drained);
        if batch + 1 < DRAIN_BATCHES {
            tokio::time::sleep_until(start + period * (batch + 1) / DRAIN_BATCHES).await;
        }
    }
}
async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => tokio::select! {
                _ = sigterm.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
