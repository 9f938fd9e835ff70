//! `[retry]`: which failures are retried, how often, and how long to wait.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bounds::{self, Bound, Bounded};
use crate::validation::{Location, Rule, Validate, Violations};

/// The retry policy: which failures are retried, how often, how long to wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(transform = bounds::state::<Self>)]
pub struct RetryConfig {
    /// Most HTTP attempts per model, the first included.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub max_attempts: u32,
    /// First backoff cap; each retry doubles it (full jitter picks a wait below it).
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub base_delay_ms: u64,
    /// Largest backoff cap.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub max_delay_ms: u64,
    /// A `Retry-After` longer than this is not waited out: the call fails at once.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub max_retry_after_s: u64,
    /// Retries allowed as a fraction of recent requests (the retry budget).
    pub budget_ratio: f64,
    /// Retries per second always allowed, whatever the ratio.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub budget_min_per_s: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay_ms: 100,
            max_delay_ms: 10_000,
            max_retry_after_s: 180,
            budget_ratio: 0.2,
            budget_min_per_s: 10,
        }
    }
}

impl Bounded for RetryConfig {
    const BOUNDS: &'static [Bound<Self>] = &[
        bounds::int!(max_attempts, 1, 10),
        bounds::int!(base_delay_ms, 1, 60_000),
        bounds::int!(max_delay_ms, 1, 600_000),
        bounds::int!(max_retry_after_s, 0, 3600),
        bounds::float!(budget_ratio, 0.0, 1.0),
        bounds::int!(budget_min_per_s, 0, 10_000),
    ];
}

impl Validate for RetryConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        bounds::check(self, at, out);
        if self.max_delay_ms < self.base_delay_ms {
            out.push(
                &at.key("max_delay_ms"),
                Rule::Order {
                    expected: "base_delay_ms <= max_delay_ms",
                },
            );
        }
    }
}
