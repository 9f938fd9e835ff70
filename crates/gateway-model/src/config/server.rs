//! `[server]`: the HTTP sidecar's connection timeouts, connection and call caps, drain and
//! body size.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bounds::{self, Bound, Bounded};
use crate::validation::{Location, Validate, Violations};

/// Most connections the sidecar holds open by default: room for 2,000 concurrent
/// callers with keep-alive, plus headroom for probes and reconnects.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4_096;

/// The HTTP sidecar (`genesys-router serve`): how long a connection may take to send its
/// request, how long it may sit idle, how many may be open, how long shutdown drains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(transform = bounds::state::<Self>)]
pub struct ServerConfig {
    /// Longest wait for a request's complete headers, from its first byte.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub header_read_timeout_ms: u64,
    /// Longest wait for a request's complete body, once its headers are in.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub body_read_timeout_ms: u64,
    /// How long a keep-alive connection may wait for its next request before it is closed.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub idle_timeout_ms: u64,
    /// Most connections open at once; beyond it new connections are refused at once.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub max_connections: u32,
    /// Most routed calls in flight at once, counting those whose caller has hung up
    /// (they run on to their end, so they are audited as they really ended); beyond it
    /// a call is refused at once with 503 `router.overloaded`, before its body is read,
    /// so it also bounds the request bodies held. Unset: `max_connections`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option"
    )]
    pub max_calls: Option<u32>,
    /// On shutdown, how long calls in flight may run before they are cancelled.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub drain_timeout_ms: u64,
    /// Largest request body accepted; a larger one is refused.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub request_body_max_bytes: u64,
    /// Env var holding the API keys callers must present as `Authorization: Bearer
    /// <key>` (comma-separated). Unset: no keys, and `serve` listens only on loopback
    /// unless `--allow-unauthenticated` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys_env: Option<String>,
    /// Whether `/metrics` asks for a key too when keys are configured (default: open, for
    /// scrapers that cannot send one).
    pub metrics_require_key: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_calls: None,
            drain_timeout_ms: 30_000,
            request_body_max_bytes: 1_048_576,
            api_keys_env: None,
            metrics_require_key: false,
        }
    }
}

impl ServerConfig {
    /// [`Self::header_read_timeout_ms`] as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// [`Self::body_read_timeout_ms`] as a duration.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// [`Self::idle_timeout_ms`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// [`Self::max_calls`], or [`Self::max_connections`] when it is unset.
    pub fn call_limit(&self) -> u32 {
        self.max_calls.unwrap_or(self.max_connections)
    }

    /// [`Self::drain_timeout_ms`] as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

impl Bounded for ServerConfig {
    const BOUNDS: &'static [Bound<Self>] = &[
        bounds::int!(header_read_timeout_ms, 100, 300_000),
        bounds::int!(body_read_timeout_ms, 100, 600_000),
        bounds::int!(idle_timeout_ms, 100, 3_600_000),
        bounds::int!(max_connections, 1, 1_000_000),
        bounds::int!(max_calls, 1, 1_000_000),
        bounds::int!(drain_timeout_ms, 0, 3_600_000),
        bounds::int!(request_body_max_bytes, 1_024, 67_108_864),
        bounds::text!(api_keys_env, super::credentials::ENV_VAR),
    ];
}

impl Validate for ServerConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        bounds::check(self, at, out);
    }
}
