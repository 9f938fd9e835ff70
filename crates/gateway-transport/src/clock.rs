//! Instants computed from waits that came from outside (headers, bodies, config).
//!
//! `Instant + Duration` panics on overflow, and a wait read from a `Retry-After` or a
//! token's `expires_in` can be anything. Every such sum goes through [`later`].

use std::time::Duration;

use tokio::time::Instant;

/// How far ahead "never" is: about 30 years, as tokio itself uses for a far-future timer.
pub const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `base + wait`, saturating at [`FAR_FUTURE`] from `base` instead of panicking.
///
/// ```
/// use std::time::Duration;
/// use gateway_transport::clock::{FAR_FUTURE, later};
/// use tokio::time::Instant;
///
/// let now = Instant::now();
/// assert_eq!(later(now, Duration::from_secs(5)), now + Duration::from_secs(5));
/// assert_eq!(later(now, Duration::MAX), now + FAR_FUTURE);
/// ```
pub fn later(base: Instant, wait: Duration) -> Instant {
    base.checked_add(wait.min(FAR_FUTURE)).unwrap_or(base)
}

/// `Instant::now() + wait`, saturating like [`later`].
pub fn from_now(wait: Duration) -> Instant {
    later(Instant::now(), wait)
}
