//! The pause that `inin-ratelimit-*` headers ask for: once an answer says the rate
//! limit is spent, nothing is sent before it resets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderName;
use tokio::time::Instant;

const RATELIMIT_COUNT: HeaderName = HeaderName::from_static("inin-ratelimit-count");
const RATELIMIT_ALLOWED: HeaderName = HeaderName::from_static("inin-ratelimit-allowed");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("inin-ratelimit-reset");

/// When sending may resume, shared by every call of a transport.
#[derive(Debug, Default)]
pub(crate) struct Pacing {
    until: Mutex<Option<Instant>>,
    /// How many pauses were started or lengthened: a call that waited (for a limiter
    /// slot, a token) sees whether one began meanwhile with one load.
    pauses: AtomicU64,
}

impl Pacing {
    /// How many pauses have been started or lengthened so far.
    pub(crate) fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Acquire)
    }

    /// The end of the pause, if one is on.
    pub(crate) fn until(&self) -> Option<Instant> {
        self.until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .filter(|u| *u > Instant::now())
    }

    /// Takes in an answer's `inin-ratelimit-*` headers; a spent limit (`count >=
    /// allowed`) pauses sending until it resets, for at most `cap`. Returns the pause
    /// it started, if any.
    pub(crate) fn observe(&self, headers: &HeaderMap, cap: Duration) -> Option<Duration> {
        let number =
            |name: &HeaderName| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
        let (count, allowed, reset) = (
            number(&RATELIMIT_COUNT)?,
            number(&RATELIMIT_ALLOWED)?,
            number(&RATELIMIT_RESET)?,
        );
        if count < allowed || reset == 0 {
            return None;
        }
        // The header is hostile: its wait is capped before it meets the clock.
        let wait = Duration::from_secs(reset).min(cap);
        let until = crate::clock::from_now(wait);
        let mut pacing = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        if pacing.is_none_or(|u| u < until) {
            *pacing = Some(until);
            self.pauses.fetch_add(1, Ordering::AcqRel);
        }
        Some(wait)
    }
}
