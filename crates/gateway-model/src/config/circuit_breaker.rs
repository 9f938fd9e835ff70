//! `[circuit_breaker]`: when a model's circuit opens and how long it stays open.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bounds::{self, Bound, Bounded};
use crate::validation::{Location, Validate, Violations};

/// The per-model circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(transform = bounds::state::<Self>)]
pub struct CircuitBreakerConfig {
    /// Consecutive failed calls that open a model's circuit.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub failure_threshold: u32,
    /// How long an open circuit stays open before one probe is let through.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub cooldown_ms: u64,
    /// A 429 whose `Retry-After` is at least this long cools the model down for that long.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub cool_down_on_retry_after_s: u64,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown_ms: 30_000,
            cool_down_on_retry_after_s: 5,
        }
    }
}

impl Bounded for CircuitBreakerConfig {
    const BOUNDS: &'static [Bound<Self>] = &[
        bounds::int!(failure_threshold, 1, 1000),
        bounds::int!(cooldown_ms, 1, 3_600_000),
        bounds::int!(cool_down_on_retry_after_s, 1, 3600),
    ];
}

impl Validate for CircuitBreakerConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        bounds::check(self, at, out);
    }
}
