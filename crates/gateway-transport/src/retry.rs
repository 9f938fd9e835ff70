//! The retry policy, as a small piece of its own (in the spirit of tower's
//! `retry::Policy`): which answers are retried, and how long to wait before the next try.
//!
//! - 429 waits for `Retry-After` (delta seconds or an HTTP date), or backs off when absent;
//!   a `Retry-After` beyond [`RetryPolicy::max_retry_after`] (180 s by default, as the
//!   official Genesys SDKs use) is not waited out.
//! - 408, 425, 500, 502, 503, 504, connection failures and attempt timeouts back off
//!   exponentially with full jitter: a wait drawn uniformly from `0..=min(max, base·2ⁿ⁻¹)`.
//! - 401 is not retried here: the caller refreshes the token once.
//! - Everything else (400, 403, 404, 422, 501, ...) is final.
//!
//! No wait ever ends past the call's deadline.

use std::time::{Duration, SystemTime};

use gateway_model::{Backoff, Jitter, RetryConfig, RetryReason};
use http::StatusCode;

/// What to do with an answer's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A success: hand it to the caller.
    Success,
    /// Retry after a wait, for this reason.
    Retry(RetryReason),
    /// Refresh the bearer token once and try again at once (401).
    RefreshToken,
    /// Final: give the failure to the caller.
    Fail,
}

/// What to do after a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Sleep this long, then try again.
    Sleep(Duration),
    /// Do not retry: the `Retry-After` exceeds the cap.
    RetryAfterTooLong(Duration),
    /// Do not retry: the wait would end past the deadline.
    PastDeadline,
    /// Do not retry: attempts are used up.
    AttemptsExhausted,
}

/// Which failures are retried, how often, and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff cap before the first retry; doubled for each further retry.
    pub base_delay: Duration,
    /// Largest backoff cap.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this fails the call at once instead of being waited out.
    pub max_retry_after: Duration,
    /// Full jitter (the default): each backoff is drawn from `0..=cap`. Without it each
    /// backoff is exactly the cap (for tests that check the schedule).
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// Three attempts, 100 ms base, 10 s cap, 180 s `Retry-After` cap.
    fn default() -> Self {
        Self::from_config(&RetryConfig::default())
    }
}

impl RetryPolicy {
    /// The policy a [`RetryConfig`] describes.
    pub fn from_config(config: &RetryConfig) -> Self {
        Self {
            max_attempts: config.max_attempts.max(1),
            base_delay: Duration::from_millis(config.base_delay_ms),
            max_delay: Duration::from_millis(config.max_delay_ms),
            max_retry_after: Duration::from_secs(config.max_retry_after_s),
            jitter: true,
        }
    }

    /// How an answer with `status` is handled.
    pub fn classify(status: StatusCode) -> Disposition {
        match status.as_u16() {
            200..=299 => Disposition::Success,
            401 => Disposition::RefreshToken,
            429 => Disposition::Retry(RetryReason::RateLimited),
            // 408: the server (or a proxy) gave up waiting for the request; 425: the
            // server would not risk a replay of early data. Neither was processed, so
            // sending it again is safe. (A 421 is not sent again here: it asks for
            // another connection, and the pool would pick the same one.)
            408 | 425 => Disposition::Retry(RetryReason::NotProcessed),
            500 | 502 | 503 | 504 => Disposition::Retry(RetryReason::ServerError),
            _ => Disposition::Fail,
        }
    }

    /// The backoff cap before retry number `retry` (1 for the first retry):
    /// `min(max_delay, base_delay · 2^(retry-1))`.
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        self.schedule().ceiling(retry)
    }

    /// A full-jitter backoff: `unit` (uniform in `[0, 1)`) times the cap; the cap itself
    /// when jitter is off.
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        self.schedule().delay(retry, unit)
    }

    /// The backoff schedule, the one every retrying part of the router shares.
    fn schedule(&self) -> Backoff {
        let jitter = if self.jitter {
            Jitter::Full
        } else {
            Jitter::None
        };
        Backoff::new(self.base_delay, self.max_delay, jitter)
    }

    /// Decides the wait after failed attempt number `attempt` (1-based).
    ///
    /// `retry_after` is the server's `Retry-After`, if any: the wait is the longer of it
    /// and the backoff, and never shorter than `base_delay` (full jitter may draw a
    /// backoff near zero), so a `Retry-After: 0` (or a date in the past) is not a retry
    /// at once; `remaining` is the time left before the deadline; `unit` is a uniform draw
    /// in `[0, 1)`.
    pub fn wait(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        remaining: Duration,
        unit: f64,
    ) -> Wait {
        if let Some(after) = retry_after
            && after > self.max_retry_after
        {
            return Wait::RetryAfterTooLong(after);
        }
        if attempt >= self.max_attempts {
            return Wait::AttemptsExhausted;
        }
        let backoff = self.backoff(attempt, unit);
        let sleep = retry_after.map_or(backoff, |after| after.max(backoff).max(self.base_delay));
        if sleep >= remaining {
            Wait::PastDeadline
        } else {
            Wait::Sleep(sleep)
        }
    }
}

/// The longest wait a `Retry-After` is read as: one day, longer than any configurable
/// cap (`max_retry_after_s` is at most 3,600 s), so a longer or absurd value still fails
/// the call at once, while every later sum with an `Instant` stays far from overflow.
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(86_400);

/// Parses a `Retry-After` value: delta seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), as a wait from `now`, at most
/// [`RETRY_AFTER_CEILING`]. A date in the past is a zero wait; anything else unreadable
/// is `None` (the caller then backs off as usual).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long numbers saturate rather than fail: the cap check rejects them.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let date = httpdate::parse_http_date(value).ok()?;
        date.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(RETRY_AFTER_CEILING))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        let c = |s: u16| RetryPolicy::classify(StatusCode::from_u16(s).unwrap());
        assert_eq!(c(200), Disposition::Success);
        assert_eq!(c(401), Disposition::RefreshToken);
        assert_eq!(c(429), Disposition::Retry(RetryReason::RateLimited));
        for s in [408, 425] {
            assert_eq!(c(s), Disposition::Retry(RetryReason::NotProcessed), "{s}");
        }
        for s in [500, 502, 503, 504] {
            assert_eq!(c(s), Disposition::Retry(RetryReason::ServerError), "{s}");
        }
        for s in [400, 403, 404, 421, 422, 501, 505] {
            assert_eq!(c(s), Disposition::Fail, "{s}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(180),
            jitter: true,
        };
        let caps: Vec<u128> = (1..=6).map(|n| p.backoff_cap(n).as_millis()).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.backoff_cap(u32::MAX), Duration::from_millis(1000));
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(200));
    }

    /// Regression: with full jitter a backoff draw near zero made a `Retry-After: 0` a
    /// retry at once, though the docs promise it is not.
    #[test]
    fn a_retry_after_of_zero_waits_at_least_the_base_delay_under_jitter() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(180),
            jitter: true,
        };
        let remaining = Duration::from_secs(60);
        assert_eq!(
            p.wait(1, Some(Duration::ZERO), remaining, 0.0),
            Wait::Sleep(Duration::from_millis(100))
        );
        assert_eq!(
            p.wait(3, Some(Duration::from_secs(2)), remaining, 0.0),
            Wait::Sleep(Duration::from_secs(2))
        );
        // Without a `Retry-After`, full jitter stands.
        assert_eq!(p.wait(1, None, remaining, 0.0), Wait::Sleep(Duration::ZERO));
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:05 GMT", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-1", "1.5", "soon", "Wed, 99 Oct 2015 07:28:05 GMT"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn absurd_retry_afters_are_read_as_the_ceiling() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        for absurd in [
            "18446744073709551615",
            "9223372036854775807",
            "12345678901234567890123",
            "86401",
            "Fri, 31 Dec 2100 23:59:59 GMT",
        ] {
            assert_eq!(
                parse_retry_after(absurd, now),
                Some(RETRY_AFTER_CEILING),
                "{absurd}"
            );
        }
    }

    #[test]
    fn long_retry_after_is_not_waited_out() {
        let p = RetryPolicy::default();
        let w = p.wait(
            1,
            Some(Duration::from_secs(181)),
            Duration::from_secs(1000),
            0.5,
        );
        assert_eq!(w, Wait::RetryAfterTooLong(Duration::from_secs(181)));
        // Even on the last attempt, the caller learns the wait.
        let w = p.wait(
            p.max_attempts,
            Some(Duration::from_secs(500)),
            Duration::from_secs(1000),
            0.5,
        );
        assert_eq!(w, Wait::RetryAfterTooLong(Duration::from_secs(500)));
    }
}
