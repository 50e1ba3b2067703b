//! What a delivery counts: changes taken, delivered, given up and dropped, in its own
//! [`Stats`] and in the manager's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// Drops are logged at most this often, with how many were dropped meanwhile.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The counts of a [`Delivery`](super::Delivery), since it started.
///
/// Every change taken is, in the end, delivered or failed: `queued = delivered + failed +
/// pending`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Changes taken into the buffer.
    pub queued: u64,
    /// Changes whose request was answered with a 2xx.
    pub delivered: u64,
    /// Changes given up: their batch failed until the retry limit, or was still undelivered
    /// when the delivery's close timeout ran out.
    pub failed: u64,
    /// Changes refused because the buffer was full or the delivery closed (never queued).
    pub dropped: u64,
    /// Requests that failed (no answer, or one that was not 2xx), each followed by a retry
    /// or by giving up.
    pub failed_requests: u64,
}

impl Stats {
    /// Changes taken and not yet delivered or given up.
    pub fn pending(&self) -> u64 {
        self.queued
            .saturating_sub(self.delivered)
            .saturating_sub(self.failed)
    }
}

/// The counters shared by a delivery's handles and its task.
pub(super) struct Counters {
    queued: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    failed_requests: AtomicU64,
    metrics: Arc<Metrics>,
    drops_unlogged: Mutex<DropLog>,
}

#[derive(Default)]
struct DropLog {
    logged_at: Option<Instant>,
    since: u64,
}

impl Counters {
    pub(super) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            queued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed_requests: AtomicU64::new(0),
            metrics,
            drops_unlogged: Mutex::default(),
        }
    }

    pub(super) fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes back a [`queued`](Self::queued) change that the buffer refused.
    pub(super) fn unqueued(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn delivered(&self, changes: usize) {
        self.delivered.fetch_add(changes as u64, Ordering::Relaxed);
        self.metrics.webhook_delivered(changes);
    }

    pub(super) fn failed(&self, changes: usize) {
        self.failed.fetch_add(changes as u64, Ordering::Relaxed);
        self.metrics.webhook_failed(changes);
    }

    pub(super) fn request_failed(&self) {
        self.failed_requests.fetch_add(1, Ordering::Relaxed);
        self.metrics.webhook_request_failed();
    }

    /// A change refused for `why`: counted at once, logged at most once per
    /// [`DROP_LOG_INTERVAL`] so that a flood of drops does not flood the log.
    pub(super) fn dropped(&self, why: &'static str) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.metrics.webhook_dropped();
        let mut log = self
            .drops_unlogged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        log.since += 1;
        if log
            .logged_at
            .is_none_or(|at| at.elapsed() >= DROP_LOG_INTERVAL)
        {
            tracing::warn!(
                dropped = log.since,
                reason = why,
                "webhook: lifecycle changes dropped (sseor_webhook_changes_dropped_total counts them)"
            );
            log.logged_at = Some(Instant::now());
            log.since = 0;
        }
    }

    pub(super) fn stats(&self) -> Stats {
        Stats {
            queued: self.queued.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed_requests: self.failed_requests.load(Ordering::Relaxed),
        }
    }
}
