//! The limits the HTTP API puts on what it reads, set with the [`Builder`](crate::Builder)
//! and kept by the manager (the budget of body bytes is shared by all its requests).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Builder;
use crate::{Error, Target};

/// The limits the HTTP API puts on what it reads, set with the [`Builder`](crate::Builder).
#[derive(Debug, Clone)]
pub(crate) struct InputLimits {
    /// How long a request body may take to arrive.
    pub(crate) body_timeout: Duration,
    /// The most topics one stream may join.
    pub(crate) max_topics: usize,
    /// The most events one batch publish holds.
    pub(crate) max_batch_events: usize,
    /// The largest body of a batch publish.
    pub(crate) max_batch_body_bytes: usize,
    /// Bytes of request bodies that may be received at once, in the whole process.
    body_bytes_in_flight: usize,
    /// The budget of those bytes, in KiB: one permit per KiB.
    bodies: Arc<Semaphore>,
}

/// Request bodies are reserved in units of this many bytes (a permit count is a `u32`).
const BODY_UNIT: usize = 1024;

impl Default for InputLimits {
    fn default() -> Self {
        let mut limits = Self {
            body_timeout: Duration::from_secs(10),
            max_topics: 64,
            max_batch_events: crate::MAX_BATCH_EVENTS,
            max_batch_body_bytes: 1024 * 1024,
            body_bytes_in_flight: 0,
            bodies: Arc::new(Semaphore::new(0)),
        };
        limits.set_body_bytes_in_flight(64 * 1024 * 1024);
        limits
    }
}

impl Builder {
    /// The most events one batch publish holds (default
    /// [`MAX_BATCH_EVENTS`](crate::MAX_BATCH_EVENTS), 1,000): a larger batch is refused
    /// whole with [`Error::BatchTooLarge`] (HTTP 413), by
    /// [`Manager::publish_batch`](crate::Manager::publish_batch) and
    /// `POST /api/v1/publish/batch`.
    pub fn max_batch_events(mut self, events: usize) -> Self {
        self.input.max_batch_events = events;
        self
    }

    /// The largest body `POST /api/v1/publish/batch` accepts (default 1 MiB); larger ones
    /// get 413. Each item of a batch is also held to
    /// [`max_body_bytes`](Self::max_body_bytes), as a single publish is.
    pub fn max_batch_body_bytes(mut self, bytes: usize) -> Self {
        self.input.max_batch_body_bytes = bytes;
        self
    }
}

impl InputLimits {
    /// Sets the budget of body bytes in flight (at least one unit).
    pub(crate) fn set_body_bytes_in_flight(&mut self, bytes: usize) {
        let units = bytes.div_ceil(BODY_UNIT).clamp(1, u32::MAX as usize);
        self.body_bytes_in_flight = units * BODY_UNIT;
        self.bodies = Arc::new(Semaphore::new(units));
    }

    /// Reserves `bytes` of the budget until the permit is dropped; `None` when it is spent.
    pub(crate) fn reserve_body(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let units = bytes
            .div_ceil(BODY_UNIT)
            .clamp(1, self.body_bytes_in_flight / BODY_UNIT);
        let units = u32::try_from(units).unwrap_or(u32::MAX);
        self.bodies.clone().try_acquire_many_owned(units).ok()
    }

    /// Checks the number of topics of a stream.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] naming the limit when there are more.
    pub(crate) fn check_topics(&self, targets: &[Target]) -> crate::Result<()> {
        let topics = targets
            .iter()
            .filter(|target| matches!(target, Target::Topic(_)))
            .count();
        if topics > self.max_topics {
            return Err(Error::InvalidTarget(format!(
                "a stream may join at most {} topics; this one asks for {topics}",
                self.max_topics
            )));
        }
        Ok(())
    }
}
