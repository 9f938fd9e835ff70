//! `[limits]`: concurrency, timeouts and size limits of calls to the gateway.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bounds::{self, Bound, Bounded};
use crate::validation::{Location, Rule, Validate, Violations};

/// Concurrency, timeouts and size limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(transform = bounds::state::<Self>)]
pub struct LimitsConfig {
    /// Most requests in flight to the gateway at once.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub max_concurrency: u32,
    /// Longest wait for a concurrency slot before failing with a limiter timeout.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub limiter_timeout_ms: u64,
    /// Timeout of one HTTP attempt.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub attempt_timeout_ms: u64,
    /// Deadline of one whole call, retries and fallbacks included.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub deadline_ms: u64,
    /// TCP + TLS connect timeout.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub connect_timeout_ms: u64,
    /// Timeout of one OAuth token request to the login host.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub login_timeout_ms: u64,
    /// Largest response body accepted.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub max_response_bytes: u64,
    /// Requests per minute this OAuth client may send (Genesys limits each client);
    /// calls are paced within their deadline instead of being sent into 429s. Unset: no
    /// pacing beyond what the gateway's own `inin-ratelimit-*` headers ask for.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option"
    )]
    pub requests_per_minute: Option<u32>,
    /// How many requests beyond the steady pace may go at once (the pacer's burst).
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub rate_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 64,
            limiter_timeout_ms: 5_000,
            attempt_timeout_ms: 30_000,
            deadline_ms: 90_000,
            connect_timeout_ms: 5_000,
            login_timeout_ms: 10_000,
            max_response_bytes: 4 * 1024 * 1024,
            requests_per_minute: None,
            rate_burst: 5,
        }
    }
}

impl Bounded for LimitsConfig {
    const BOUNDS: &'static [Bound<Self>] = &[
        bounds::int!(max_concurrency, 1, 10_000),
        bounds::int!(limiter_timeout_ms, 1, 600_000),
        bounds::int!(attempt_timeout_ms, 1, 600_000),
        bounds::int!(deadline_ms, 1, 3_600_000),
        bounds::int!(connect_timeout_ms, 1, 600_000),
        bounds::int!(login_timeout_ms, 1, 600_000),
        bounds::int!(max_response_bytes, 1024, 67_108_864),
        bounds::int!(requests_per_minute, 1, 6_000_000),
        bounds::int!(rate_burst, 0, 100_000),
    ];
}

impl Validate for LimitsConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        bounds::check(self, at, out);
        if self.deadline_ms < self.attempt_timeout_ms {
            out.push(
                &at.key("deadline_ms"),
                Rule::Order {
                    expected: "attempt_timeout_ms <= deadline_ms",
                },
            );
        }
    }
}
