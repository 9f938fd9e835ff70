//! Authentication errors. None of them ever holds the client secret or a token.

use std::time::Duration;

use gateway_transport::TokenError;

use crate::lifetime::LifetimeError;

/// Why a token could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A credentials env var is missing or empty.
    #[error("environment variable {name} {reason}")]
    MissingEnv {
        /// The variable's name.
        name: String,
        /// `is not set`, `is not valid UTF-8`, `is empty`, (for the client id) not a
        /// client id ([`is_client_id`](gateway_model::is_client_id)), or (for the secret)
        /// named for the id too, or holding the id's value.
        reason: &'static str,
    },
    /// The login service refused the client (wrong id or secret, disabled client).
    #[error(
        "OAuth client `{client_id}` was rejected by {host} (HTTP {status}: {error}{}); check the client id and secret",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    Rejected {
        /// The client id (never the secret).
        client_id: String,
        /// The login host.
        host: String,
        /// The HTTP status (400 or 401).
        status: u16,
        /// The OAuth `error`, such as `invalid_client`.
        error: String,
        /// Genesys' `description` or `error_description`.
        description: Option<String>,
    },
    /// The login host could not be reached, did not answer in time, or failed (a 5xx, a
    /// 408 or 425, a status outside HTTP's classes, an answer too large).
    #[error("no token from the login host {host}: {reason}")]
    Unreachable {
        /// The login host.
        host: String,
        /// What failed.
        reason: String,
    },
    /// The login host answered the token request with a status that says the request
    /// went to the wrong place or is not allowed there (a redirect, 403, 404, 405, ...):
    /// the region, the login URL or a network policy needs a change.
    #[error(
        "the login host {host} answered the token request with HTTP {status}; check the region or login URL (and any proxy or network policy in between)"
    )]
    Misdirected {
        /// The login host.
        host: String,
        /// The HTTP status: a 3xx, or a 4xx other than 400, 401, 408, 425 and 429.
        status: u16,
    },
    /// The login service is rate-limiting this client's token requests (HTTP 429).
    #[error("the login host {host} is rate-limiting token requests (HTTP 429){}", retry_after.map(|d| format!("; it asks to wait {d:?}")).unwrap_or_default())]
    RateLimited {
        /// The login host.
        host: String,
        /// The wait its `Retry-After` asked for, if it sent one that could be read.
        retry_after: Option<Duration>,
    },
    /// The login service answered something that is not a usable token.
    #[error("unexpected answer from the login host {host}: {reason}")]
    BadAnswer {
        /// The login host.
        host: String,
        /// What was wrong.
        reason: String,
    },
    /// The login service granted a token with a lifetime that cannot be used (`expires_in`
    /// missing, not a whole number, or below 1 s).
    #[error("the login host {host} granted an unusable token: {reason}")]
    InvalidLifetime {
        /// The login host.
        host: String,
        /// What is wrong with `expires_in`.
        reason: LifetimeError,
    },
    /// An earlier attempt failed and the provider is backing off before the next one.
    #[error("no valid token: the last attempt failed ({last}); next attempt in {retry_in:?}")]
    BackingOff {
        /// The last failure.
        last: String,
        /// Time until the next attempt.
        retry_in: Duration,
    },
    /// The login URL is malformed or not allowed.
    #[error("invalid login URL: {0}")]
    Url(String),
}

impl AuthError {
    /// Whether a later attempt may succeed without a configuration change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AuthError::Unreachable { .. }
                | AuthError::RateLimited { .. }
                | AuthError::BadAnswer { .. }
                | AuthError::InvalidLifetime { .. }
                | AuthError::BackingOff { .. }
        )
    }
}

impl From<AuthError> for TokenError {
    fn from(err: AuthError) -> Self {
        if err.is_transient() {
            TokenError::transient(err.to_string())
        } else {
            TokenError::permanent(err.to_string())
        }
    }
}
