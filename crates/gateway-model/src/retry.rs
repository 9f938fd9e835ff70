//! What every retrying part of the router shares: why an attempt is retried
//! ([`RetryReason`]) and how long to wait before the next one ([`Backoff`]).
//!
//! Both are pure: the transport, the token provider and the audit webhook draw their own
//! random numbers and their own clocks, and pass them in.

use std::fmt;
use std::time::Duration;

/// Why an attempt is retried; its [`as_str`](Self::as_str) is the `reason` label of the
/// retries counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryReason {
    /// A 429 answer.
    RateLimited,
    /// A retryable server answer: 500, 502, 503 or 504.
    ServerError,
    /// The connection could not be made, or broke before a complete answer.
    Connection,
    /// The attempt timed out.
    Timeout,
    /// A 401 answer, retried once after a token refresh.
    Unauthorized,
    /// An answer that says the request was not processed, through no fault of the model:
    /// 408 (not taken in time) or 425 (early data not risked).
    NotProcessed,
}

impl RetryReason {
    /// How many reasons there are: the length of arrays indexed by [`index`](Self::index).
    pub const COUNT: usize = 6;

    /// Every reason, in index order.
    pub const ALL: [RetryReason; Self::COUNT] = [
        RetryReason::RateLimited,
        RetryReason::ServerError,
        RetryReason::Connection,
        RetryReason::Timeout,
        RetryReason::Unauthorized,
        RetryReason::NotProcessed,
    ];

    /// The metric label value (`rate_limited`, `status_5xx`, `connect`, `timeout`,
    /// `unauthorized`, `not_processed`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            RetryReason::RateLimited => "rate_limited",
            RetryReason::ServerError => "status_5xx",
            RetryReason::Connection => "connect",
            RetryReason::Timeout => "timeout",
            RetryReason::Unauthorized => "unauthorized",
            RetryReason::NotProcessed => "not_processed",
        }
    }

    /// The reason's position in [`ALL`](Self::ALL), below [`COUNT`](Self::COUNT).
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a wait is drawn below its exponential ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// The ceiling itself (tests and tools that want fixed waits).
    None,
    /// Uniform in `[0, ceiling]`: spreads a burst of clients furthest (calls).
    Full,
    /// Uniform in `[ceiling/2, ceiling]`: never retries at once (token and webhook
    /// redelivery, where an immediate retry only repeats the failure).
    Equal,
}

/// An exponential backoff schedule: the ceiling before retry `n` (1 for the first) is
/// `min(max, base · 2ⁿ⁻¹)`, and the wait is drawn under it by [`Jitter`].
///
/// ```
/// use std::time::Duration;
/// use gateway_model::{Backoff, Jitter};
///
/// let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), Jitter::Equal);
/// assert_eq!(b.ceiling(3), Duration::from_millis(400));
/// assert_eq!(b.ceiling(30), Duration::from_secs(1));
/// // `unit` is a uniform draw in [0, 1); equal jitter keeps at least half the ceiling.
/// assert_eq!(b.delay(3, 0.0), Duration::from_millis(200));
/// assert_eq!(b.delay(3, 0.5), Duration::from_millis(300));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// A schedule starting at `base` and never above `max` (`max` wins when lower).
    #[must_use]
    pub const fn new(base: Duration, max: Duration, jitter: Jitter) -> Self {
        Self { base, max, jitter }
    }

    /// The same schedule with another jitter.
    #[must_use]
    pub fn with_jitter(self, jitter: Jitter) -> Self {
        Self { jitter, ..self }
    }

    /// The ceiling before retry number `retry` (1 for the first; 0 counts as 1):
    /// `min(max, base · 2^(retry-1))`, saturating for any `retry`.
    #[must_use]
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry number `retry`, given `unit`, a uniform draw in `[0, 1)`
    /// (clamped into `[0, 1]`, a NaN read as 0).
    #[must_use]
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(retry);
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => scale(ceiling, unit),
            Jitter::Equal => {
                let half = ceiling / 2;
                half.saturating_add(scale(ceiling.saturating_sub(half), unit))
            }
        }
    }
}

/// `d · unit` for `unit` in `[0, 1]`, never above `d` (`Duration::mul_f64` panics when
/// float rounding lands past `Duration::MAX`).
fn scale(d: Duration, unit: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * unit)
        .unwrap_or(d)
        .min(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_own_position() {
        for (i, reason) in RetryReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }

    #[test]
    fn ceilings_double_up_to_the_max_and_saturate() {
        let b = Backoff::new(
            Duration::from_millis(10),
            Duration::from_secs(1),
            Jitter::None,
        );
        let ceilings: Vec<_> = (1..=8).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [10, 20, 40, 80, 160, 320, 640, 1000]);
        assert_eq!(b.ceiling(0), Duration::from_millis(10));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
        let low_max = Backoff::new(Duration::from_secs(2), Duration::from_secs(1), Jitter::None);
        assert_eq!(low_max.ceiling(1), Duration::from_secs(1), "max wins");
        for jitter in [Jitter::None, Jitter::Full, Jitter::Equal] {
            let huge = Backoff::new(Duration::MAX, Duration::MAX, jitter);
            for unit in [0.0, 0.5, 1.0] {
                // Float rounding near Duration::MAX must neither panic nor overshoot.
                let d = huge.delay(u32::MAX, unit);
                assert!(
                    d >= Duration::MAX / 2 || jitter == Jitter::Full,
                    "{jitter:?}"
                );
            }
        }
        let full = Backoff::new(Duration::MAX, Duration::MAX, Jitter::Full);
        assert_eq!(
            full.delay(1, 1.0),
            Duration::MAX,
            "no panic at the very top"
        );
    }

    #[test]
    fn each_jitter_stays_in_its_band() {
        let b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(2),
            Jitter::Full,
        );
        for n in 1..12 {
            let ceiling = b.ceiling(n);
            for unit in [0.0, 0.25, 0.999, 1.0, 7.0, -1.0, f64::NAN] {
                let full = b.delay(n, unit);
                let equal = b.with_jitter(Jitter::Equal).delay(n, unit);
                assert!(full <= ceiling, "full {n} {unit}: {full:?}");
                assert!(equal >= ceiling / 2 && equal <= ceiling, "equal {n} {unit}");
                assert_eq!(b.with_jitter(Jitter::None).delay(n, unit), ceiling);
            }
        }
    }
}
