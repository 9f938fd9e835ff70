//! The webhook's redelivery waits: the shared [`gateway_model::Backoff`] schedule with
//! equal jitter, and the count of failures in a row that it is read at.

use std::time::Duration;

use gateway_model::Jitter;
use tokio::time::Instant;

/// Failures in a row and the schedule they are read at: the n-th wait is uniformly drawn
/// from `[d/2, d]` where `d = min(base · 2ⁿ⁻¹, max)`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    schedule: gateway_model::Backoff,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self {
            schedule: gateway_model::Backoff::new(base, max.max(base), Jitter::Equal),
            failures: 0,
        }
    }

    /// The wait before the next attempt, growing with each call until [`reset`](Self::reset).
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.schedule.delay(self.failures, fastrand::f64())
    }

    /// When the next attempt may start: [`next_delay`](Self::next_delay) from now, or now
    /// when that lies past the clock's range (a `retry_max` set absurdly high).
    pub(crate) fn next_attempt(&mut self) -> Instant {
        let now = Instant::now();
        now.checked_add(self.next_delay()).unwrap_or(now)
    }

    /// Back to the first delay, after a success.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_jitter_bounds_and_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let mut b = Backoff::new(base, max);
        for n in 0..10u32 {
            let ceiling = (base * 2u32.pow(n)).min(max);
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {n}: {d:?}");
        }
        b.reset();
        assert!(b.next_delay() <= base);
    }
}
