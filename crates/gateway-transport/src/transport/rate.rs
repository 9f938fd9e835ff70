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
            return Ok(Some(RateSlot(None)));
        };
        let max_wait = deadline.saturating_duration_since(Instant::now());
        let Ok(reserved) = tokio::time::timeout_at(deadline, rate.reserve(max_wait)).await else {
            return Ok(None);
        };
        match reserved {
            Ok(wait) if wait.is_zero() => Ok(Some(RateSlot(Some(&**rate)))),
            Ok(wait) => {
                let slot = RateSlot(Some(&**rate));
                // The budget promises no more than `max_wait`; one kept elsewhere is held
                // to the time left now.
                let now = Instant::now();
                let until = crate::clock::later(now, wait).min(deadline);
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
/// ([`RateBudget::release`]) when dropped before [`spent`](Self::spent), as when the call
/// is cancelled or ends waiting for a token or a limiter slot.
pub(super) struct RateSlot<'a>(Option<&'a dyn RateBudget>);

impl RateSlot<'_> {
    /// The request is going out: the slot is used.
    pub(super) fn spent(mut self) {
        self.0 = None;
    }
}

impl Drop for RateSlot<'_> {
    fn drop(&mut self) {
        if let Some(rate) = self.0.take() {
            rate.release();
        }
    }
}
