//! The hang guard: every wait in a test ends, with a failure if it lasts too long.

use std::time::Duration;

/// How long any wait may last before the test is declared hung: a guard, not a measure.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(20);

/// Awaits `future`, panicking if it lasts longer than `HANG_GUARD` (20 s).
pub async fn guard<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .expect("the test hung")
}
