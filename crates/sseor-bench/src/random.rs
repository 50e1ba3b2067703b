//! The one source of randomness of the bench: SplitMix64. Seeded by a number it gives a
//! fixed spread (which channel event `n` goes to, recomputed when counting what should
//! have arrived); seeded by the operating system it gives secrets that live one run.
//!
//! SplitMix64 passes BigCrush and needs no dependency. None of its uses is cryptographic:
//! a JWT secret here signs tokens for a server that lives a few seconds on loopback.

use std::hash::{BuildHasher, Hasher};

/// A SplitMix64 generator.
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// The generator whose sequence `seed` fixes.
    pub(crate) fn seeded(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator seeded from the operating system's randomness (the keys the standard
    /// library draws for its hash maps) and the clock.
    pub(crate) fn from_entropy() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(crate::stats::unix_nanos());
        Self(hasher.finish())
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The pick of item `n` among `count` (0 when `count` is 0): the same for the same `n`
/// in every run, spread evenly over `0..count`.
pub(crate) fn pick(n: u64, count: usize) -> usize {
    (SplitMix64::seeded(n).next_u64() % count.max(1) as u64) as usize
}

/// `bits` random bits (rounded up to a multiple of 64), in hex.
pub(crate) fn hex(bits: usize) -> String {
    let mut random = SplitMix64::from_entropy();
    (0..bits.div_ceil(64))
        .map(|_| format!("{:016x}", random.next_u64()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_spread_evenly_and_stay_put() {
        let mut hits = [0usize; 10];
        for n in 0..10_000 {
            hits[pick(n, 10)] += 1;
        }
        assert!(hits.iter().all(|&h| (900..1100).contains(&h)), "{hits:?}");
        assert_eq!(pick(12_345, 1000), pick(12_345, 1000));
        assert_eq!(pick(7, 0), 0);
    }

    #[test]
    fn the_reference_sequence() {
        // The first outputs for seed 1234567 in the reference implementation.
        let mut random = SplitMix64::seeded(1_234_567);
        assert_eq!(random.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(random.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn secrets_differ() {
        let (a, b) = (hex(256), hex(256));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
