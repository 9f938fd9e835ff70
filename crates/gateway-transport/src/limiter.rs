//! A concurrency limiter with a bounded wait: a caller that cannot get a slot in time
//! gets [`LimiterTimeout`], never an unbounded wait. How many may wait at once is the
//! callers' to bound (the sidecar's `max_calls`): each waiter holds only its own call.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most `max` holders at once; waiting for a slot is bounded.
///
/// A slot is a [`Permit`]: dropping it (including when the future holding it is
/// cancelled or times out) gives the slot back.
///
/// ```
/// use std::time::Duration;
/// use gateway_transport::Limiter;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let limiter = Limiter::new(1, Duration::from_millis(10));
/// let held = limiter.acquire(Duration::from_millis(10)).await.unwrap();
/// assert_eq!(limiter.available(), 0);
/// // The only slot is taken: a second caller gives up after its wait.
/// assert!(limiter.acquire(Duration::from_millis(10)).await.is_err());
/// drop(held);
/// assert_eq!(limiter.available(), 1);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Limiter {
    semaphore: Arc<Semaphore>,
    max: usize,
    max_wait: Duration,
}

/// A held slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
}

/// No slot became free within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "no concurrency slot free{} (limit {max} calls in flight)",
    if waited.is_zero() { String::new() } else { format!(" within {waited:?}") }
)]
pub struct LimiterTimeout {
    /// How long the caller waited.
    pub waited: Duration,
    /// The limit.
    pub max: usize,
}

impl Limiter {
    /// A limiter with `max` slots (at least 1, at most tokio's
    /// [`Semaphore::MAX_PERMITS`]) whose waits default to `max_wait`.
    pub fn new(max: usize, max_wait: Duration) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
            max_wait,
        }
    }

    /// The configured wait.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// The number of slots.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Waits at most `wait` for a slot.
    pub async fn acquire(&self, wait: Duration) -> Result<Permit, LimiterTimeout> {
        if let Ok(permit) = Arc::clone(&self.semaphore).try_acquire_owned() {
            return Ok(Permit { _permit: permit });
        }
        match tokio::time::timeout(wait, Arc::clone(&self.semaphore).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Permit { _permit: permit }),
            // The semaphore is never closed; treat it like a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(LimiterTimeout {
                waited: wait,
                max: self.max,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_without_a_wait_does_not_claim_one() {
        let waited = |ms| {
            LimiterTimeout {
                waited: Duration::from_millis(ms),
                max: 2,
            }
            .to_string()
        };
        assert_eq!(
            waited(0),
            "no concurrency slot free (limit 2 calls in flight)"
        );
        assert_eq!(
            waited(1500),
            "no concurrency slot free within 1.5s (limit 2 calls in flight)"
        );
    }

    /// tokio's semaphore panics past its permit limit; the limiter holds it there.
    #[test]
    fn a_limit_past_what_a_semaphore_holds_is_clamped_not_a_panic() {
        let limiter = Limiter::new(usize::MAX, Duration::from_secs(1));
        assert_eq!(limiter.max(), Semaphore::MAX_PERMITS);
        assert_eq!(Limiter::new(0, Duration::from_secs(1)).max(), 1);
    }
}
