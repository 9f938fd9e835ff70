//! Whether Redis can be reached, with one warning per change and a gauge.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How long a degraded replica waits before trying Redis again.
pub(crate) const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The fleet's link health.
pub(crate) struct Health {
    degraded: AtomicBool,
    retry_at: Mutex<Option<Instant>>,
    gauge: metrics::Gauge,
}

impl Health {
    /// A healthy link, its gauge bound to the recorder current now.
    pub(crate) fn new() -> Self {
        Self {
            degraded: AtomicBool::new(false),
            retry_at: Mutex::new(None),
            gauge: gateway_telemetry::fleet_degraded_gauge(),
        }
    }

    /// Whether a Redis command may be tried now: always when healthy, once a second when not.
    pub(crate) fn may_try(&self) -> bool {
        if !self.degraded.load(Ordering::Relaxed) {
            return true;
        }
        let mut retry_at = self.retry_at.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if retry_at.is_none_or(|at| now >= at) {
            *retry_at = Some(gateway_transport::clock::later(now, RETRY_EVERY));
            return true;
        }
        false
    }

    /// A command failed: the replica is degraded (warned once per change).
    pub(crate) fn failed(&self, why: &str) {
        *self.retry_at.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(gateway_transport::clock::from_now(RETRY_EVERY));
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                reason = why,
                "fleet degraded: Redis cannot be reached; using local state"
            );
            self.gauge.set(1.0);
        }
    }

    /// A command succeeded: the replica is back in the fleet.
    pub(crate) fn succeeded(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("fleet rejoined: Redis answers again");
            self.gauge.set(0.0);
        }
    }

    /// Whether the replica is degraded.
    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }
}
