//! Why a fleet could not be set up. Never carries the Redis URL (it may hold a password).

/// A fleet set-up failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The env var that should hold the Redis URL is not set, or not UTF-8.
    #[error("[fleet] redis_url_env: the env var `{env}` {reason}")]
    UrlEnvUnset {
        /// The env var's name.
        env: String,
        /// Why it gave no text.
        reason: gateway_model::EnvVarError,
    },
    /// The Redis URL cannot be used (the URL itself is not repeated: it may hold a password).
    #[error(
        "[fleet] the Redis URL is not usable ({kind}); it must be redis://host:port or rediss://host:port"
    )]
    Url {
        /// What was wrong, without the URL.
        kind: String,
    },
    /// The Redis URL an env var holds cannot be used (the URL is not repeated).
    #[error(
        "[fleet] redis_url_env: the Redis URL in `{env}` is not usable ({kind}); it must be redis://host:port or rediss://host:port"
    )]
    UrlInEnv {
        /// The env var's name.
        env: String,
        /// What was wrong, without the URL.
        kind: String,
    },
}
