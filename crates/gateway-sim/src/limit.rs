//! Fixed-window rate limits: the windows per key (a bearer token or an OAuth client), the
//! verdict for one call and the `inin-ratelimit-*` headers it adds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use tokio::time::Instant;

use crate::behaviour::{RateLimit, RetryAfter, RetryAfterStyle};
use crate::check::MAX_WINDOW_SECS;
use crate::locks::lock;

const RATELIMIT_COUNT: HeaderName = HeaderName::from_static("inin-ratelimit-count");
const RATELIMIT_ALLOWED: HeaderName = HeaderName::from_static("inin-ratelimit-allowed");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("inin-ratelimit-reset");

/// The limits that span every token of an OAuth client, set for the whole simulator.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ClientLimits {
    /// Prompt calls per client, across all of its tokens.
    pub(crate) requests: Option<RateLimit>,
    /// Tokens granted per client.
    pub(crate) tokens: Option<RateLimit>,
}

/// One fixed window.
struct Window {
    started: Instant,
    length: Duration,
    count: u32,
}

/// The most windows kept: one per bearer token ever used would grow without end in a
/// long-running simulator, since tokens come and go.
const MAX_WINDOWS: usize = crate::check::MAX_LIVE_TOKENS;

/// Fixed windows by key, each starting at the first call after the previous one ended.
#[derive(Default)]
pub(crate) struct Windows(Mutex<HashMap<String, Window>>);

impl Windows {
    /// Counts one call for `key` under `limit` and says where the window stands. A
    /// window ends after its own length (a later call under a shorter limit does not end
    /// it). The window is clamped to 1 s to [`MAX_WINDOW_SECS`], since the Rust API sets
    /// limits unchecked.
    pub(crate) fn hit(&self, key: &str, limit: &RateLimit) -> Verdict {
        let window_secs = limit.window_secs.clamp(1, MAX_WINDOW_SECS);
        let window = Duration::from_secs(window_secs);
        let now = Instant::now();
        let mut windows = lock(&self.0);
        if windows.len() >= MAX_WINDOWS && !windows.contains_key(key) {
            prune(&mut windows, now);
        }
        let w = windows.entry(key.to_owned()).or_insert(Window {
            started: now,
            length: window,
            count: 0,
        });
        // A window ends after its own length, not the caller's: a model with a shorter
        // window must not end a longer one another model's limit started on the token.
        if now.saturating_duration_since(w.started) >= w.length {
            *w = Window {
                started: now,
                length: window,
                count: 0,
            };
        }
        w.count = w.count.saturating_add(1);
        let remaining = w
            .length
            .saturating_sub(now.saturating_duration_since(w.started));
        Verdict {
            count: w.count,
            allowed: limit.allowed,
            reset_secs: remaining
                .as_secs()
                .saturating_add(u64::from(remaining.subsec_nanos() > 0)),
            style: limit.retry_after,
            window_secs,
        }
    }

    /// Forgets every window.
    pub(crate) fn clear(&self) {
        lock(&self.0).clear();
    }
}

/// Makes room in a full map: drops the windows that have ended (a key coming back starts
/// a new one anyway), then, if more than three quarters are left, running ones down to
/// that (those keys start afresh), so a scan of the whole map stays rare.
fn prune(windows: &mut HashMap<String, Window>, now: Instant) {
    windows.retain(|_, w| now.saturating_duration_since(w.started) < w.length);
    if windows.len() > MAX_WINDOWS * 3 / 4 {
        let excess = windows.len() - MAX_WINDOWS * 3 / 4;
        let dropped: Vec<String> = windows.keys().take(excess).cloned().collect();
        for key in dropped {
            windows.remove(&key);
        }
    }
}

/// Where one call stands in its window.
pub(crate) struct Verdict {
    pub(crate) count: u32,
    pub(crate) allowed: u32,
    /// Whole seconds until the window ends, rounded up.
    pub(crate) reset_secs: u64,
    pub(crate) style: RetryAfterStyle,
    pub(crate) window_secs: u64,
}

impl Verdict {
    /// Whether the call is beyond the limit.
    pub(crate) fn exceeded(&self) -> bool {
        self.count > self.allowed
    }

    /// The `Retry-After` for a refused call: the end of the window.
    pub(crate) fn retry_after(&self) -> RetryAfter {
        match self.style {
            RetryAfterStyle::Seconds => RetryAfter::Seconds(self.reset_secs),
            RetryAfterStyle::HttpDate => RetryAfter::HttpDate(self.reset_secs),
        }
    }

    /// Adds `inin-ratelimit-count`, `-allowed` and `-reset`.
    pub(crate) fn add_headers(&self, headers: &mut http::HeaderMap) {
        let h = headers;
        h.insert(RATELIMIT_COUNT, HeaderValue::from(self.count));
        h.insert(RATELIMIT_ALLOWED, HeaderValue::from(self.allowed));
        h.insert(RATELIMIT_RESET, HeaderValue::from(self.reset_secs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(allowed: u32, window_secs: u64) -> RateLimit {
        RateLimit {
            allowed,
            window_secs,
            retry_after: RetryAfterStyle::Seconds,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn windows_count_per_key_and_start_again_when_they_end() {
        let windows = Windows::default();
        let first = windows.hit("a", &limit(1, 10));
        assert!(!first.exceeded());
        assert_eq!(first.reset_secs, 10);
        tokio::time::advance(Duration::from_millis(2500)).await;
        let second = windows.hit("a", &limit(1, 10));
        assert!(second.exceeded());
        assert_eq!((second.count, second.reset_secs), (2, 8));
        assert!(
            !windows.hit("b", &limit(1, 10)).exceeded(),
            "keys are apart"
        );
        tokio::time::advance(Duration::from_millis(7500)).await;
        assert_eq!(windows.hit("a", &limit(1, 10)).count, 1, "a new window");
    }

    /// Regression: a window per bearer token was kept for good, so a long-running
    /// simulator grew by one per token ever used.
    #[tokio::test(start_paused = true)]
    async fn the_windows_kept_are_bounded_and_ended_ones_go_first() {
        let windows = Windows::default();
        for key in 0..MAX_WINDOWS - 1 {
            windows.hit(&format!("old-{key}"), &limit(5, 10));
        }
        windows.hit("live", &limit(1, 3_600));
        tokio::time::advance(Duration::from_secs(10)).await;
        windows.hit("new", &limit(5, 10));
        assert_eq!(lock(&windows.0).len(), 2, "the ended windows were dropped");
        assert!(
            windows.hit("live", &limit(1, 3_600)).exceeded(),
            "a running one is kept"
        );
        // All running: a quarter goes, and the map stays within its bound.
        for key in 0..MAX_WINDOWS + 10 {
            windows.hit(&format!("run-{key}"), &limit(5, 3_600));
        }
        let kept = lock(&windows.0).len();
        assert!(
            kept < MAX_WINDOWS * 3 / 4 + 100,
            "pruned to three quarters: {kept}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unchecked_windows_are_clamped() {
        let windows = Windows::default();
        assert_eq!(windows.hit("a", &limit(0, 0)).window_secs, 1);
        let far = windows.hit("b", &limit(0, u64::MAX));
        assert_eq!(
            (far.window_secs, far.reset_secs),
            (MAX_WINDOW_SECS, MAX_WINDOW_SECS)
        );
        assert!(far.exceeded(), "allowed 0 refuses every call");
    }
}
