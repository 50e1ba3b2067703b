//! Latency histogram and the counts of what the streams received.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

/// Sub-buckets per power of two: values are kept within 1/64 (1.6 %).
const SUB: usize = 64;
/// Values below this are exact.
const EXACT: usize = 2 * SUB;
const BUCKETS: usize = EXACT + 58 * SUB;

/// A log-linear histogram of microseconds, shared by every stream of a process without a
/// lock.
pub(crate) struct Histogram {
    counts: Vec<AtomicU64>,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

fn bucket(micros: u64) -> usize {
    if micros < EXACT as u64 {
        return micros as usize;
    }
    let shift = 63 - micros.leading_zeros() as usize - 6;
    (EXACT + (shift - 1) * SUB + ((micros >> shift) as usize - SUB)).min(BUCKETS - 1)
}

/// The middle of a bucket's range.
fn value(bucket: usize) -> u64 {
    if bucket < EXACT {
        return bucket as u64;
    }
    let shift = (bucket - EXACT) / SUB + 1;
    let low = (((bucket - EXACT) % SUB + SUB) as u64) << shift;
    low + (1u64 << shift) / 2
}

impl Histogram {
    pub(crate) fn record(&self, nanos: u64) {
        let micros = nanos / 1000;
        self.counts[bucket(micros)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(micros, Ordering::Relaxed);
    }

    pub(crate) fn reset(&self) {
        for count in &self.counts {
            count.store(0, Ordering::Relaxed);
        }
        self.max.store(0, Ordering::Relaxed);
    }

    /// The non-empty buckets and the maximum, to hand to another process.
    pub(crate) fn to_json(&self) -> Value {
        let buckets: Vec<(usize, u64)> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.load(Ordering::Relaxed)))
            .filter(|(_, c)| *c > 0)
            .collect();
        json!({"buckets": buckets, "max_us": self.max.load(Ordering::Relaxed)})
    }

    /// Adds a histogram made by [`Histogram::to_json`].
    pub(crate) fn add_json(&self, other: &Value) {
        for pair in other["buckets"].as_array().into_iter().flatten() {
            if let (Some(i), Some(c)) = (pair[0].as_u64(), pair[1].as_u64()) {
                self.counts[(i as usize).min(BUCKETS - 1)].fetch_add(c, Ordering::Relaxed);
            }
        }
        self.max
            .fetch_max(other["max_us"].as_u64().unwrap_or(0), Ordering::Relaxed);
    }

    /// How many values are below `micros` (to the histogram's resolution).
    pub(crate) fn count_below(&self, micros: u64) -> u64 {
        self.counts[..bucket(micros)]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// p50, p90, p99, p99.9 and max, in milliseconds.
    pub(crate) fn percentiles_ms(&self) -> Value {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let at = |p: f64| {
            if total == 0 {
                return Value::Null;
            }
            let rank = ((total as f64 * p).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return json!(round(value(i) as f64 / 1000.0));
                }
            }
            Value::Null
        };
        let max = (total > 0).then(|| round(self.max.load(Ordering::Relaxed) as f64 / 1000.0));
        json!({"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p999": at(0.999), "max": max})
    }
}

/// Unique and repeated sequence numbers of the events one stream received.
#[derive(Default, Clone, Copy)]
pub(crate) struct Received {
    pub(crate) unique: u64,
    pub(crate) duplicated: u64,
}

impl Received {
    /// Counts `seen` (sorted in place).
    pub(crate) fn of(seen: &mut [u32]) -> Self {
        seen.sort_unstable();
        let unique =
            seen.windows(2).filter(|w| w[0] != w[1]).count() + usize::from(!seen.is_empty());
        Self {
            unique: unique as u64,
            duplicated: (seen.len() - unique) as u64,
        }
    }

    pub(crate) fn add(self, other: Self) -> Self {
        Self {
            unique: self.unique + other.unique,
            duplicated: self.duplicated + other.duplicated,
        }
    }
}

pub(crate) fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub(crate) fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_values_within_two_percent() {
        for micros in [0u64, 1, 127, 128, 129, 1000, 49_999, 1 << 20, 3_000_000_000] {
            let v = value(bucket(micros));
            let error = (v as f64 - micros as f64).abs() / (micros.max(1) as f64);
            assert!(error <= 0.02, "{micros} -> {v}");
        }
        assert!((1..100_000u64).all(|m| bucket(m) >= bucket(m - 1)));
    }

    #[test]
    fn percentiles() {
        let h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(ms * 1_000_000);
        }
        let p = h.percentiles_ms();
        let p50 = p["p50"].as_f64().unwrap();
        assert!((49.0..=51.0).contains(&p50), "{p}");
        assert_eq!(p["max"], json!(100.0));
        assert_eq!(h.count_below(50_000), 49);
        let copy = Histogram::default();
        copy.add_json(&h.to_json());
        assert_eq!(copy.percentiles_ms(), p);
    }

    #[test]
    fn duplicates() {
        let r = Received::of(&mut [3, 1, 2, 2, 3, 3]);
        assert_eq!((r.unique, r.duplicated), (3, 3));
        assert_eq!(Received::of(&mut []).unique, 0);
    }
}
