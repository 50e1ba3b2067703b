//! How long to wait before trying a batch again: exponential backoff with jitter, within
//! a time limit counted from the first attempt.

use std::time::Duration;

/// The longest wait between two attempts, however many failed before.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// When a failed batch is tried again, and when it is given up.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    /// The wait after the first failure; each further one doubles it, up to [`MAX_DELAY`].
    pub(super) first_delay: Duration,
    /// No attempt starts later than this after the first.
    pub(super) give_up_after: Duration,
}

impl Backoff {
    /// The wait before attempt `failed + 1`, after `failed` attempts that began `elapsed`
    /// ago; `None` when that attempt would start beyond the limit: give up.
    ///
    /// The wait is drawn between half and all of the doubled delay ("equal jitter"), so
    /// that instances that failed together do not come back together, and never falls to
    /// nothing.
    pub(super) fn delay(&self, failed: u32, elapsed: Duration) -> Option<Duration> {
        let doubled = self
            .first_delay
            .saturating_mul(
                1u32.checked_shl(failed.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(MAX_DELAY.max(self.first_delay));
        let delay = doubled.mul_f64(0.5 + 0.5 * crate::random::unit());
        (elapsed + delay <= self.give_up_after).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_cap_and_stop_at_the_limit() {
        let backoff = Backoff {
            first_delay: Duration::from_millis(100),
            give_up_after: Duration::from_secs(60),
        };
        for (failed, full) in [(1, 100), (2, 200), (3, 400), (10, 10_000), (40, 10_000)] {
            let delay = backoff.delay(failed, Duration::ZERO).unwrap();
            let full = Duration::from_millis(full);
            assert!(delay >= full / 2 && delay <= full, "{failed}: {delay:?}");
        }
        assert_eq!(backoff.delay(1, Duration::from_secs(60)), None);
        let once = Backoff {
            give_up_after: Duration::ZERO,
            ..backoff
        };
        assert_eq!(once.delay(1, Duration::ZERO), None);
    }
}
