//! The pace an attempt keeps: pauses the gateway announced, and the rate budget's slot,
//! given back if the attempt is never sent.

use std::time::Duration;

use http::HeaderMap;
use tokio::time::Instant;

use super::Transport;
use crate::error::{CallStats, ErrorKind};
use crate::rate_budget::RateBudget;

impl Transport {
    /// Waits out a pause announced by `inin-ratelimit-*` headers, if it ends before the deadline.
    pub(super) async fn pace(
        &self,
        deadline: Instant,
        stats: &mut CallStats,
    ) -> Result<(), ErrorKind> {
        let Some(until) = self.inner.pacing.until() else {
            return Ok(());
        };
        if until >= deadline {
            return Err(ErrorKind::Paced {
                wait: until.saturating_duration_since(Instant::now()),
            });
        }
        stats.backoff += until.saturating_duration_since(Instant::now());
        tokio::time::sleep_until(until).await;
        Ok(())
    }

    /// Waits for a slot of the rate budget, if one is set and the slot comes before the
    /// deadline; `None` when the deadline passes first (a budget kept elsewhere, such as
    /// Redis, may take a while to answer).
    pub(super) async fn keep_rate(
        &self,
        deadline: Instant,
        stats: &mut CallStats,
    ) -> Result<Option<RateSlot<'_>>, ErrorKind> {
        let Some(rate) = &self.inner.rate else {
            return Ok(Some(RateSlot::none()));
        };
        let max_wait = deadline.saturating_duration_since(Instant::now());
        let Ok(reserved) = tokio::time::timeout_at(deadline, rate.reserve(max_wait)).await else {
            return Ok(None);
        };
        match reserved {
            Ok(wait) if wait.is_zero() => Ok(Some(RateSlot::of(&**rate, Instant::now()))),
            Ok(wait) => {
                // The budget promises no more than `max_wait`; one kept elsewhere is held
                // to the time left now.
                let now = Instant::now();
                let due = crate::clock::later(now, wait);
                let until = due.min(deadline);
                let slot = RateSlot::of(&**rate, due);
                stats.backoff += until.saturating_duration_since(now);
                tokio::time::sleep_until(until).await;
                Ok((Instant::now() < deadline).then_some(slot))
            }
            Err(wait) => Err(ErrorKind::Paced { wait }),
        }
    }

    /// Tells the rate budget that the gateway asked for a pause.
    pub(super) fn pause_rate(&self, wait: Duration) {
        if let Some(rate) = &self.inner.rate {
            rate.pause(wait);
        }
    }

    /// Remembers a spent rate limit (`count >= allowed`) so that no request is sent
    /// before it resets.
    pub(super) fn observe_rate_limit(&self, headers: &HeaderMap) {
        let cap = self.inner.config.retry.max_retry_after;
        if let Some(wait) = self.inner.pacing.observe(headers, cap) {
            self.pause_rate(wait);
        }
    }
}

/// A slot the rate budget granted an attempt, if a budget is set: given back
/// ([`RateBudget::release`]) when dropped before [`spent`](Self::spent) and before its
/// time, as when the call is cancelled while it waits. Past its time the pace has moved
/// on: giving it back then would let one request more through than the rate allows.
pub(super) struct RateSlot<'a> {
    rate: Option<&'a dyn RateBudget>,
    due: Instant,
}

impl<'a> RateSlot<'a> {
    /// No budget: nothing to give back.
    fn none() -> Self {
        Self {
            rate: None,
            due: Instant::now(),
        }
    }

    /// `rate`'s slot, due at `due`.
    fn of(rate: &'a dyn RateBudget, due: Instant) -> Self {
        Self {
            rate: Some(rate),
            due,
        }
    }

    /// The request is going out: the slot is used.
    pub(super) fn spent(mut self) {
        self.rate = None;
    }
}

impl Drop for RateSlot<'_> {
    fn drop(&mut self) {
        if let Some(rate) = self.rate.take()
            && Instant::now() < self.due
        {
            rate.release(self.due);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::RateSlot;
    use crate::rate_budget::LocalRateBudget;

    /// A slot dropped before its time is given back; one dropped after it is not: the
    /// pace has moved past it, and giving it back would let one request more through
    /// than the rate allows (a late give-back once did).
    #[tokio::test(start_paused = true)]
    async fn only_a_slot_whose_time_has_not_come_is_given_back() {
        let budget = LocalRateBudget::new(60, 0); // one a second
        let second = Duration::from_secs(1);
        assert_eq!(budget.try_reserve(second), Ok(Duration::ZERO));
        assert_eq!(budget.try_reserve(second), Ok(second));
        // Its time is a second away: dropped now, it is given back.
        drop(RateSlot::of(&budget, Instant::now() + second));
        assert_eq!(budget.try_reserve(second * 5), Ok(second));
        // That one's time passes unused: dropped then, it is kept.
        let due = Instant::now() + second;
        tokio::time::advance(second * 2).await;
        drop(RateSlot::of(&budget, due));
        assert_eq!(budget.try_reserve(second * 5), Ok(Duration::ZERO));
        assert_eq!(budget.try_reserve(second * 5), Ok(second));
    }
}
