//! Properties of the `Retry-After` parser and the backoff schedule.

use std::time::{Duration, SystemTime};

use gateway_transport::{RETRY_AFTER_CEILING, RetryPolicy, Wait, parse_retry_after};
use proptest::prelude::*;

fn policy() -> impl Strategy<Value = RetryPolicy> {
    (
        1u32..12,
        1u64..5_000,
        1u64..120_000,
        0u64..400,
        any::<bool>(),
    )
        .prop_map(|(attempts, base, max, cap, jitter)| RetryPolicy {
            max_attempts: attempts,
            base_delay: Duration::from_millis(base),
            max_delay: Duration::from_millis(max.max(base)),
            max_retry_after: Duration::from_secs(cap),
            jitter,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any header text parses or is refused without panicking.
    #[test]
    fn retry_after_never_panics(text in "\\PC{0,40}", now_secs in 0u64..4_000_000_000) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now_secs);
        if let Some(wait) = parse_retry_after(&text, now) {
            prop_assert!(wait <= RETRY_AFTER_CEILING);
        }
    }

    /// Any number of digits, however long, parses to a wait within the ceiling.
    #[test]
    fn long_numbers_saturate_at_the_ceiling(digits in "[0-9]{1,40}") {
        let wait = parse_retry_after(&digits, SystemTime::now()).unwrap();
        prop_assert!(wait <= RETRY_AFTER_CEILING);
        // Adding the wait to the clock never overflows.
        prop_assert!(tokio::time::Instant::now().checked_add(wait).is_some());
    }

    /// Delta seconds parse exactly.
    #[test]
    fn delta_seconds_parse_exactly(secs in 0u64..10_000_000, pad in "[ ]{0,2}") {
        let now = SystemTime::now();
        let expected = Duration::from_secs(secs).min(RETRY_AFTER_CEILING);
        prop_assert_eq!(parse_retry_after(&format!("{pad}{secs}{pad}"), now), Some(expected));
    }

    /// An HTTP date `n` seconds ahead waits `n` seconds; a past date waits nothing.
    #[test]
    fn http_dates_become_the_remaining_wait(base in 1_000_000_000u64..2_000_000_000, ahead in -100_000i64..100_000) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(base);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(base.saturating_add_signed(ahead));
        let parsed = parse_retry_after(&httpdate::fmt_http_date(at), now).unwrap();
        prop_assert_eq!(parsed, Duration::from_secs(ahead.max(0).unsigned_abs()).min(RETRY_AFTER_CEILING));
    }

    /// A backoff is never past its cap, never past `max_delay`, and the cap never shrinks.
    #[test]
    fn backoff_stays_under_its_cap(p in policy(), retry in 1u32..64, unit in 0.0f64..1.0) {
        let wait = p.backoff(retry, unit);
        prop_assert!(wait <= p.backoff_cap(retry));
        prop_assert!(wait <= p.max_delay);
        prop_assert!(p.backoff_cap(retry) <= p.backoff_cap(retry + 1));
        prop_assert!(p.backoff_cap(retry) >= p.base_delay.min(p.max_delay));
    }

    /// A planned sleep always ends before the deadline, respects `Retry-After` (at least
    /// the backoff) and its cap, and never happens after the last attempt.
    #[test]
    fn planned_waits_respect_deadline_and_caps(
        p in policy(),
        attempt in 1u32..14,
        retry_after in proptest::option::of(0u64..600_000),
        remaining in 0u64..300_000,
        unit in 0.0f64..1.0,
    ) {
        let retry_after = retry_after.map(Duration::from_millis);
        let remaining = Duration::from_millis(remaining);
        match p.wait(attempt, retry_after, remaining, unit) {
            Wait::Sleep(d) => {
                prop_assert!(d < remaining, "sleep {:?} passes the deadline {:?}", d, remaining);
                prop_assert!(attempt < p.max_attempts);
                // `Retry-After` is honoured, but never waited out faster than the backoff;
                // without one, the wait is within the backoff's cap.
                prop_assert!(d >= p.backoff(attempt, unit));
                match retry_after {
                    Some(after) => prop_assert!(d >= after && (d == after || d <= p.backoff_cap(attempt))),
                    None => prop_assert!(d <= p.backoff_cap(attempt)),
                }
            }
            Wait::RetryAfterTooLong(after) => {
                prop_assert!(after > p.max_retry_after);
                prop_assert_eq!(Some(after), retry_after);
            }
            Wait::PastDeadline => prop_assert!(attempt < p.max_attempts),
            Wait::AttemptsExhausted => prop_assert!(attempt >= p.max_attempts),
        }
    }
}
