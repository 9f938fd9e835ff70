//! A retry budget (as Finagle and Envoy have): retries are allowed only as a fraction of
//! recent requests, plus a small floor, so an outage does not multiply the load on the
//! gateway by the number of attempts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Length of the sliding window, in one-second slots.
const SLOTS: usize = 10;

/// Requests and retries counted over the last ten seconds.
///
/// A retry is allowed while `retries < min_per_sec · 10 + ratio · requests` over the
/// window. Counting requests is lock-free (two calls racing at a slot boundary may each
/// lose a count, which only makes the budget marginally more generous); taking a retry
/// checks and counts it under a lock, so callers at the same moment never overdraw it.
///
/// ```
/// use gateway_transport::RetryBudget;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let budget = RetryBudget::new(0.2, 0);
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// assert!(budget.try_withdraw());  // 1 retry of 10 requests: within 20 %
/// assert!(budget.try_withdraw());  // 2 of 10
/// assert!(!budget.try_withdraw()); // a third would exceed 20 %
/// # });
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: u32,
    origin: Instant,
    slots: [Slot; SLOTS],
    /// Held while a retry is checked and counted.
    withdrawing: Mutex<()>,
}

#[derive(Debug, Default)]
struct Slot {
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl RetryBudget {
    /// Allows `ratio` retries per request (0.0 to 1.0) plus `min_per_sec` retries per second.
    pub fn new(ratio: f64, min_per_sec: u32) -> Self {
        Self {
            ratio: ratio.clamp(0.0, 1.0),
            min_per_sec,
            origin: Instant::now(),
            slots: Default::default(),
            withdrawing: Mutex::new(()),
        }
    }

    /// The configured window.
    pub fn window() -> Duration {
        Duration::from_secs(SLOTS as u64)
    }

    /// Seconds since creation, plus one so that 0 marks a slot never used.
    fn now_second(&self) -> u64 {
        self.origin.elapsed().as_secs() + 1
    }

    /// The slot for `second`, cleared first if it last held an older second.
    fn slot(&self, second: u64) -> &Slot {
        let slot = &self.slots[(second % SLOTS as u64) as usize];
        let seen = slot.second.load(Ordering::Acquire);
        if seen != second
            && slot
                .second
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.requests.store(0, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
        }
        slot
    }

    /// Counts one request (one logical call, not one attempt).
    pub fn deposit(&self) {
        self.slot(self.now_second())
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; `false` if the budget is spent.
    pub fn try_withdraw(&self) -> bool {
        let _one_at_a_time = self
            .withdrawing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = self.now_second();
        let (mut requests, mut retries) = (0u64, 0u64);
        for slot in &self.slots {
            let second = slot.second.load(Ordering::Acquire);
            if second != 0 && second + (SLOTS as u64) > now {
                requests += slot.requests.load(Ordering::Relaxed);
                retries += slot.retries.load(Ordering::Relaxed);
            }
        }
        let allowed = f64::from(self.min_per_sec) * SLOTS as f64 + self.ratio * requests as f64;
        if (retries as f64) < allowed {
            self.slot(now).retries.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn budget_refills_as_the_window_slides() {
        let budget = RetryBudget::new(0.5, 0);
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw(), "2 of 4 is the 50 % limit");

        // Ten seconds later the old requests and retries have left the window.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            !budget.try_withdraw(),
            "no recent requests, no floor: no retries"
        );
        budget.deposit();
        budget.deposit();
        assert!(budget.try_withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_allows_retries_without_traffic() {
        let budget = RetryBudget::new(0.0, 1);
        let allowed = (0..20).filter(|_| budget.try_withdraw()).count();
        assert_eq!(allowed, 10, "1 per second over a 10 s window");
    }
}
