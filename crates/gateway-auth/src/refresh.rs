//! When to refresh a token, and how fast refreshes may follow one another.

use std::time::Duration;

use tokio::time::Instant;

/// When a cached token is refreshed: ahead of expiry, in the last `fraction` of its life
/// but at least `min_margin` before it ends (never more than half its life, never less
/// than twice [`RefreshPolicy::safety`], so the refresh starts while the token is still
/// handed out), plus up to `jitter` of that margin again so many routers started
/// together do not refresh together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefreshPolicy {
    /// Share of the lifetime before expiry when refreshing starts (default 0.1).
    pub fraction: f64,
    /// Smallest margin before expiry (default 60 s).
    pub min_margin: Duration,
    /// Extra margin drawn from `0..=jitter·margin` (default 0.1).
    pub jitter: f64,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            fraction: 0.1,
            min_margin: Duration::from_secs(60),
            jitter: 0.1,
        }
    }
}

impl RefreshPolicy {
    /// The time before expiry at which a token of `lifetime` is refreshed; `unit` is a
    /// uniform draw in `[0, 1)`. Never more than half the lifetime, nor less than twice
    /// the safety margin; fractions outside `0..=1` (NaN included) count as the nearest
    /// bound or 0, so nothing here panics.
    pub fn margin(&self, lifetime: Duration, unit: f64) -> Duration {
        let half = lifetime / 2;
        let base = scale(lifetime, self.fraction)
            .max(self.min_margin)
            .max(Self::safety(lifetime).saturating_mul(2))
            .min(half);
        let jitter = scale(base, fraction(self.jitter) * fraction(unit));
        base.saturating_add(jitter).min(half)
    }

    /// How long before expiry a token stops being handed out (so it does not expire in
    /// flight): 5 s, or a twentieth of a shorter lifetime.
    pub fn safety(lifetime: Duration) -> Duration {
        Duration::from_secs(5).min(lifetime / 20)
    }
}

/// `f` within `0..=1`, NaN as 0.
fn fraction(f: f64) -> f64 {
    if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) }
}

/// `d` times a fraction (at most `d`), without `Duration::mul_f64`'s overflow panic.
fn scale(d: Duration, f: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * fraction(f)).map_or(d, |scaled| scaled.min(d))
}

/// A token bucket limiting refreshes forced by 401s: `burst` at once, then one per
/// `every`. With the defaults (3, 10 s) a flood of 401s causes at most 3 token requests
/// at once and 6 a minute after that, far below Genesys' 300 per minute.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    burst: f64,
    every: Duration,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(burst: u32, every: Duration) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            every,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long from `now` until a token can be taken; `None` if never (a burst of 0).
    pub(crate) fn wait(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        if self.burst < 1.0 {
            return None;
        }
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::try_from_secs_f64(self.every.as_secs_f64() * missing).ok()
    }

    /// Adds the tokens earned since the last look, up to `burst`.
    fn refill(&mut self, now: Instant) {
        let refill = now.saturating_duration_since(self.last).as_secs_f64()
            / self.every.as_secs_f64().max(1e-9);
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_follow_the_documented_rule() {
        let p = RefreshPolicy {
            jitter: 0.0,
            ..RefreshPolicy::default()
        };
        // A day-long token: 10 % is 2.4 h.
        assert_eq!(
            p.margin(Duration::from_secs(86_400), 0.0),
            Duration::from_secs(8_640)
        );
        // A 5-minute token: 10 % is 30 s, so the 60 s floor applies.
        assert_eq!(
            p.margin(Duration::from_secs(300), 0.0),
            Duration::from_secs(60)
        );
        // A 20 s test token: never more than half its life.
        assert_eq!(
            p.margin(Duration::from_secs(20), 0.0),
            Duration::from_secs(10)
        );
        // A policy asking for no margin still refreshes before the token stops being
        // handed out (the safety margin: 5 s, or a twentieth of a short life).
        let none = RefreshPolicy {
            fraction: 0.0,
            min_margin: Duration::ZERO,
            jitter: 0.0,
        };
        for (life, margin) in [(86_400, 10_000), (20, 2_000), (1, 100)] {
            assert_eq!(
                none.margin(Duration::from_secs(life), 0.5),
                Duration::from_millis(margin),
                "{life} s"
            );
        }
        let jittered = RefreshPolicy::default().margin(Duration::from_secs(86_400), 0.99);
        assert!(jittered > Duration::from_secs(8_640) && jittered < Duration::from_secs(9_505));
    }

    #[test]
    fn odd_policies_and_lifetimes_give_a_margin_without_panicking() {
        let odd = RefreshPolicy {
            fraction: f64::NAN,
            min_margin: Duration::MAX,
            jitter: f64::INFINITY,
        };
        assert_eq!(odd.margin(Duration::MAX, f64::NAN), Duration::MAX / 2);
        assert_eq!(
            odd.margin(Duration::from_secs(20), 1.0),
            Duration::from_secs(10)
        );
        let p = RefreshPolicy::default();
        let longest = p.margin(Duration::MAX, 0.5);
        assert!(
            longest > Duration::ZERO && longest <= Duration::MAX / 2,
            "{longest:?}"
        );
        assert_eq!(p.margin(Duration::ZERO, 0.5), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_a_trickle() {
        let mut b = Bucket::new(3, Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!((0..10).filter(|_| b.try_take(now)).count(), 3);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.try_take(Instant::now()));
        assert!(!b.try_take(Instant::now()));
    }
}
