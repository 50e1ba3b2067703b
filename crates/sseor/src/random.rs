//! Random numbers, from one source: the operating system's generator (`getrandom`).

use crate::{Error, Result};

/// Fills `bytes` with random bytes, for secrets (stream tickets).
///
/// # Errors
/// [`Error::Io`] when the operating system has no random numbers to give.
pub(crate) fn fill(bytes: &mut [u8]) -> Result<()> {
    getrandom::fill(bytes)
        .map_err(|e| Error::Io(std::io::Error::other(format!("no random numbers: {e}"))))
}

/// A random number, for what needs to differ rather than to stay secret: epochs, instance
/// ids, jitter. Never fails: without the operating system's generator, the standard
/// library's hasher keys (themselves random per process) mixed with the time stand in.
pub(crate) fn u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.finish()
    })
}

/// A random number in `[0, 1)`, uniformly spread.
pub(crate) fn unit() -> f64 {
    // The top 53 bits: every value an f64 in [0, 1) can hold at that spacing.
    (u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_stay_below_one_and_spread() {
        let draws: Vec<f64> = (0..1000).map(|_| unit()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(draws.iter().any(|x| *x < 0.25) && draws.iter().any(|x| *x > 0.75));
    }
}
