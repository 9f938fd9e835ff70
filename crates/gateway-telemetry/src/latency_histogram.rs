//! A fixed-size, lock-free latency histogram with bounded relative error.
//!
//! Log-linear buckets over nanoseconds: values below 32 ns are exact; above, each power
//! of two is split into 32 equal buckets, so a bucket is at most 1/32 of its lower bound
//! wide and the reported midpoint is within [`MAX_RELATIVE_ERROR`] (1/64 ≈ 1.6 %) of any
//! value in it. The range ends at 2^40 ns (about 18.3 minutes); longer values land in the
//! last bucket, and the exact maximum is tracked separately. Memory is fixed at
//! construction whatever the number of recorded values. [`LatencyHistogram::precise`]
//! splits each power of two into 1,024 buckets instead (1/2,048 error, 254 KiB), for a
//! load generator that compares latencies to a fraction of a millisecond at 50 ms.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
const MAX_BITS: u32 = 40;
/// The sub-bucket bits of [`LatencyHistogram::precise`].
const PRECISE_SUB_BITS: u32 = 10;

/// Number of buckets in every histogram.
pub const BUCKETS: usize = SUB + (MAX_BITS - SUB_BITS) as usize * SUB;

/// Largest relative error of a reported quantile, for values below [`MAX_TRACKED`].
pub const MAX_RELATIVE_ERROR: f64 = 1.0 / 64.0;

/// Values up to this are reported within [`MAX_RELATIVE_ERROR`]; longer ones saturate.
pub const MAX_TRACKED: Duration = Duration::from_nanos((1 << MAX_BITS) - 1);

/// Lock-free latency histogram: every method takes `&self`, recording is a few relaxed
/// atomic operations, and memory never grows.
pub struct LatencyHistogram {
    /// Each power of two is split into `2^sub_bits` buckets.
    sub_bits: u32,
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
    min_ns: AtomicU64,
    max_ns: AtomicU64,
}

/// How many buckets split powers of two into `2^sub_bits` each.
fn bucket_count(sub_bits: u32) -> usize {
    (1 << sub_bits) + (MAX_BITS - sub_bits) as usize * (1 << sub_bits)
}

fn bucket_index(ns: u64, sub_bits: u32) -> usize {
    let sub_count = 1usize << sub_bits;
    if ns < sub_count as u64 {
        return ns as usize;
    }
    let ns = ns.min((1 << MAX_BITS) - 1);
    let msb = ns.ilog2();
    let shift = msb - sub_bits;
    let sub = (ns >> shift) as usize - sub_count;
    sub_count + shift as usize * sub_count + sub
}

/// The inclusive range of nanosecond values bucket `index` holds.
fn bucket_range(index: usize, sub_bits: u32) -> (u64, u64) {
    let sub_count = 1usize << sub_bits;
    if index < sub_count {
        return (index as u64, index as u64);
    }
    let shift = (index - sub_count) / sub_count;
    let sub = (index - sub_count) % sub_count;
    let low = ((sub_count + sub) as u64) << shift;
    (low, low + (1u64 << shift) - 1)
}

fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::with_sub_bits(SUB_BITS)
    }

    /// An empty histogram with 1,024 buckets per power of two: quantiles within 1/2,048
    /// (0.05 %), 254 KiB of buckets.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gateway_telemetry::LatencyHistogram;
    ///
    /// let h = LatencyHistogram::precise();
    /// h.record(Duration::from_micros(50_000));
    /// h.record(Duration::from_micros(50_300));
    /// let p50 = h.quantile(0.5).unwrap().as_micros();
    /// assert!(p50.abs_diff(50_000) <= 25, "{p50}");
    /// ```
    pub fn precise() -> Self {
        Self::with_sub_bits(PRECISE_SUB_BITS)
    }

    fn with_sub_bits(sub_bits: u32) -> Self {
        Self {
            sub_bits,
            buckets: (0..bucket_count(sub_bits))
                .map(|_| AtomicU64::new(0))
                .collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
        }
    }

    /// Records one latency.
    pub fn record(&self, latency: Duration) {
        let ns = saturating_nanos(latency);
        self.buckets[bucket_index(ns, self.sub_bits)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        // The sum sticks at `u64::MAX` once it passes it (584 years of summed latency:
        // 107 days of 2,000 calls always in flight), rather than wrapping to a small,
        // wrong mean.
        let before = self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        if before.checked_add(ns).is_none() {
            self.sum_ns.store(u64::MAX, Ordering::Relaxed);
        }
        self.min_ns.fetch_min(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The largest latency recorded (exact), if any.
    pub fn max(&self) -> Option<Duration> {
        (self.count() > 0).then(|| Duration::from_nanos(self.max_ns.load(Ordering::Relaxed)))
    }

    /// The smallest latency recorded (exact), if any.
    pub fn min(&self) -> Option<Duration> {
        (self.count() > 0).then(|| Duration::from_nanos(self.min_ns.load(Ordering::Relaxed)))
    }

    /// The mean latency, if any was recorded and their sum fits in `u64` nanoseconds.
    pub fn mean(&self) -> Option<Duration> {
        let count = self.count();
        let sum = self.sum_ns.load(Ordering::Relaxed);
        (count > 0 && sum != u64::MAX).then(|| Duration::from_nanos(sum / count))
    }

    /// The `q`-quantile (`0.0..=1.0`, nearest rank), within [`MAX_RELATIVE_ERROR`]; `None`
    /// when empty or `q` is not a number in range.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.quantiles(&[q]).pop().flatten()
    }

    /// Several quantiles from one pass over the buckets, in the order asked.
    pub fn quantiles(&self, qs: &[f64]) -> Vec<Option<Duration>> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let min = self.min_ns.load(Ordering::Relaxed);
        let max = self.max_ns.load(Ordering::Relaxed);
        qs.iter()
            .map(|&q| {
                if total == 0 || !(0.0..=1.0).contains(&q) {
                    return None;
                }
                let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
                let mut seen = 0u64;
                let index = counts.iter().position(|&c| {
                    seen += c;
                    seen >= rank
                })?;
                let (low, high) = bucket_range(index, self.sub_bits);
                let mid = low + (high - low) / 2;
                Some(Duration::from_nanos(mid.clamp(min.min(max), max)))
            })
            .collect()
    }

    /// Bytes this histogram occupies, inline and on the heap; fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + std::mem::size_of_val::<[AtomicU64]>(&self.buckets)
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .field("max", &self.max())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the sum wrapped past `u64::MAX` nanoseconds, and the mean with it.
    #[test]
    fn a_sum_past_u64_nanoseconds_gives_no_mean_rather_than_a_wrong_one() {
        let h = LatencyHistogram::new();
        h.record(Duration::from_secs(3));
        assert_eq!(h.mean(), Some(Duration::from_secs(3)));
        h.record(Duration::MAX);
        h.record(Duration::from_secs(1));
        assert_eq!(h.mean(), None);
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn buckets_tile_the_range_without_gaps() {
        assert_eq!(bucket_count(SUB_BITS), BUCKETS);
        for sub_bits in [SUB_BITS, PRECISE_SUB_BITS] {
            let buckets = bucket_count(sub_bits);
            let mut next = 0u64;
            for index in 0..buckets {
                let (low, high) = bucket_range(index, sub_bits);
                assert_eq!(low, next, "bucket {index}");
                assert!(high >= low);
                assert_eq!(bucket_index(low, sub_bits), index);
                assert_eq!(bucket_index(high, sub_bits), index);
                next = high + 1;
            }
            assert_eq!(next, 1 << MAX_BITS);
            assert_eq!(bucket_index(u64::MAX, sub_bits), buckets - 1);
        }
    }

    #[test]
    fn every_bucket_midpoint_is_within_the_stated_error() {
        for (sub_bits, error) in [
            (SUB_BITS, MAX_RELATIVE_ERROR),
            (PRECISE_SUB_BITS, 1.0 / 2048.0),
        ] {
            for index in (1 << sub_bits)..bucket_count(sub_bits) {
                let (low, high) = bucket_range(index, sub_bits);
                let mid = low + (high - low) / 2;
                for v in [low, high] {
                    let err = (mid as f64 - v as f64).abs() / v as f64;
                    assert!(err <= error, "bucket {index}: {err}");
                }
            }
        }
    }

    #[test]
    fn empty_and_bad_quantiles_are_none() {
        let h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.max(), None);
        h.record(Duration::from_millis(3));
        assert_eq!(h.quantile(f64::NAN), None);
        assert_eq!(h.quantile(1.5), None);
        assert_eq!(h.quantile(1.0), Some(Duration::from_millis(3)));
        assert_eq!(h.quantile(0.0), Some(Duration::from_millis(3)));
    }

    #[test]
    fn huge_values_saturate_without_panicking() {
        let h = LatencyHistogram::new();
        h.record(Duration::MAX);
        h.record(Duration::from_secs(3600));
        assert_eq!(h.count(), 2);
        assert_eq!(h.max(), Some(Duration::from_nanos(u64::MAX)));
    }
}
