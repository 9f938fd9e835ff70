//! `[fleet]`: several replicas acting as one Genesys client, through Redis.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bounds::{self, Bound, Bounded, Pattern, Text};
use crate::config::credentials::ENV_VAR;
use crate::validation::{Location, Validate, Violations};

/// Longest Redis key prefix, in characters.
pub const MAX_KEY_PREFIX_CHARS: usize = 64;

/// The pattern a key prefix matches.
pub const KEY_PREFIX_PATTERN: &str = "^[A-Za-z0-9_.:-]+$";

const KEY_PREFIX: Text = Text::chars(1, MAX_KEY_PREFIX_CHARS).matching(&KEY_PREFIX_CHARS);

const KEY_PREFIX_CHARS: Pattern = Pattern::new(KEY_PREFIX_PATTERN, |prefix| {
    prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
});

/// Shared state for a fleet of replicas: one token, one rate budget, shared circuits.
/// Whoever can read the keys under `key_prefix` can use the fleet's access token: use
/// Redis ACLs and TLS (`rediss://`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(transform = bounds::state::<Self>)]
pub struct FleetConfig {
    /// Env var holding the `redis://` or `rediss://` URL (it may carry a password, so it
    /// is never written in the config).
    pub redis_url_env: String,
    /// Prefix of every key the fleet uses; replicas with the same prefix share state.
    pub key_prefix: String,
    /// Longest wait for one Redis command; beyond it the replica uses its local state.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub command_timeout_ms: u64,
    /// How many replicas share the OAuth client: with Redis down, each paces at
    /// `requests_per_minute / replicas`.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub replicas: u32,
    /// Longest a replica holds the token-fetch lock (a crashed fetcher blocks no longer);
    /// at least `[limits] login_timeout_ms` plus two `command_timeout_ms`, so one login
    /// and the Redis commands around it fit in it.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub token_lock_ms: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            redis_url_env: "GENESYS_ROUTER_REDIS_URL".to_owned(),
            key_prefix: "genesys-router".to_owned(),
            command_timeout_ms: 250,
            replicas: 1,
            token_lock_ms: 15_000,
        }
    }
}

impl FleetConfig {
    /// [`Self::command_timeout_ms`] as a duration.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    /// [`Self::token_lock_ms`] as a duration.
    pub fn token_lock(&self) -> Duration {
        Duration::from_millis(self.token_lock_ms)
    }
}

impl Bounded for FleetConfig {
    const BOUNDS: &'static [Bound<Self>] = &[
        bounds::text!(redis_url_env, ENV_VAR),
        bounds::text!(key_prefix, KEY_PREFIX),
        bounds::int!(command_timeout_ms, 1, 10_000),
        bounds::int!(replicas, 1, 10_000),
        bounds::int!(token_lock_ms, 100, 120_000),
    ];
}

impl Validate for FleetConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        bounds::check(self, at, out);
    }
}
