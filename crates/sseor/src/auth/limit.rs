//! The publish rate limit: so many publishes per second per credential, with a burst.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use super::Publisher;
use crate::{Error, Result};

/// Every this many checks, credentials idle long enough to be back at a full burst are
/// forgotten, so that the table holds only credentials in use.
const SWEEP_EVERY: u32 = 4096;

/// A token bucket per credential (GCRA, from `governor`).
pub(crate) struct PublishLimiter {
    limiter: DefaultKeyedRateLimiter<Publisher>,
    checks: AtomicU32,
}

impl PublishLimiter {
    /// `per_second` publishes per second per credential, up to `burst` at once.
    pub(crate) fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            ),
            checks: AtomicU32::new(0),
        }
    }

    /// Counts one publish of `who`.
    ///
    /// # Errors
    /// [`Error::RateLimited`] with the time until the next publish is allowed.
    pub(crate) fn check(&self, who: &Publisher) -> Result<()> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(who)
            .map_err(|not_until| Error::RateLimited {
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            })
    }
}

impl std::fmt::Debug for PublishLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishLimiter").finish_non_exhaustive()
    }
}
