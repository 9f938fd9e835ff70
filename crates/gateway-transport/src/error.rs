//! Transport errors: what failed, with the Genesys error fields and the call's statistics.

use std::fmt;
use std::time::Duration;

use gateway_model::endpoint::UrlError;
use gateway_model::{ErrorBody, RetryReason};
use http::StatusCode;

use crate::bearer::TokenError;
use crate::limiter::LimiterTimeout;

/// Counts and timings of one call, on success and on failure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallStats {
    /// HTTP attempts sent.
    pub attempts: u32,
    /// Retries by reason, indexed like [`RetryReason::ALL`] (a retry after a token
    /// refresh counts as [`RetryReason::Unauthorized`]).
    pub retries: [u32; RetryReason::COUNT],
    /// Time spent waiting for a limiter slot.
    pub limiter_wait: Duration,
    /// Time spent inside HTTP exchanges (sending, waiting, reading bodies).
    pub upstream: Duration,
    /// Time spent sleeping between attempts.
    pub backoff: Duration,
    /// Time spent waiting for a bearer token (none was cached, or it was being renewed).
    pub token_wait: Duration,
    /// Whether the token was refreshed after a 401.
    pub token_refreshed: bool,
    /// Whether a retry was refused because the retry budget was spent.
    pub budget_exhausted: bool,
    /// The status of the last attempt's answer (none when it had none: a timeout, a
    /// broken connection).
    pub last_status: Option<StatusCode>,
    /// The `ININ-Correlation-Id` of the last attempt's answer, if it had one.
    pub upstream_correlation_id: Option<String>,
}

impl CallStats {
    /// Retries for `reason`.
    pub fn retries_for(&self, reason: RetryReason) -> u32 {
        self.retries[reason.index()]
    }

    /// Retries for every reason.
    pub fn total_retries(&self) -> u32 {
        self.retries.iter().sum()
    }
}

/// What went wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No limiter slot became free in time.
    #[error(transparent)]
    LimiterTimeout(#[from] LimiterTimeout),
    /// The call's overall deadline passed during an attempt.
    #[error("deadline of {deadline:?} exceeded{}", last.as_deref().map(|l| format!(" (last failure: {l})")).unwrap_or_default())]
    DeadlineExceeded {
        /// The deadline.
        deadline: Duration,
        /// The failure before the deadline, if there was one.
        last: Option<String>,
    },
    /// The last attempt timed out (its own timeout, before the call's deadline).
    #[error("no answer within the attempt timeout of {0:?}")]
    Timeout(Duration),
    /// Nothing was sent: `inin-ratelimit-*` headers said the rate limit is spent, and it
    /// resets only after the call's deadline.
    #[error("not sent: the rate limit is spent for another {wait:?}, past the call's deadline")]
    Paced {
        /// Time until the limit resets.
        wait: Duration,
    },
    /// 429 Too Many Requests, after retries or with a `Retry-After` beyond the cap.
    #[error("rate limited (429{}){}", body_suffix(.body.as_deref()), retry_after.map(retry_after_suffix).unwrap_or_default())]
    RateLimited {
        /// The last `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// Whether the call failed at once because `Retry-After` exceeded the cap.
        over_cap: bool,
        /// The Genesys error body.
        body: Option<Box<ErrorBody>>,
    },
    /// 401 Unauthorized, after one token refresh (or with no way to refresh).
    #[error("unauthorized (401{}): the access token was refused", body_suffix(.body.as_deref()))]
    Unauthorized {
        /// The Genesys error body.
        body: Option<Box<ErrorBody>>,
    },
    /// Any other failed status (400, 403, 404, 422, 5xx after retries or with a
    /// `Retry-After` beyond the cap, ...).
    #[error("HTTP {status}{}{}", body_suffix(.body.as_deref()), retry_after.map(retry_after_suffix).unwrap_or_default())]
    Status {
        /// The status.
        status: StatusCode,
        /// The answer's `Retry-After`, if a status that is retried (5xx) carried one.
        retry_after: Option<Duration>,
        /// The Genesys error body, if the answer had one.
        body: Option<Box<ErrorBody>>,
    },
    /// The TCP connection could not be made.
    #[error("cannot connect to {host}: {reason}")]
    Connect {
        /// `host:port`.
        host: String,
        /// The OS or resolver error.
        reason: String,
    },
    /// The TLS handshake failed (an untrusted certificate, say).
    #[error("TLS handshake with {host} failed: {reason}")]
    Tls {
        /// `host:port`.
        host: String,
        /// rustls' error.
        reason: String,
    },
    /// The connection broke before a complete answer.
    #[error("connection to {host} failed: {reason}")]
    Connection {
        /// `host:port`.
        host: String,
        /// What happened.
        reason: String,
    },
    /// The answer's body exceeded the size cap.
    #[error("response body exceeds the {limit}-byte limit")]
    BodyTooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The request body exceeds Genesys' 512,000-byte limit.
    #[error("request body of {size} bytes exceeds the {limit}-byte limit")]
    RequestTooLarge {
        /// The body size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The URL is malformed or not allowed (plain http to a remote host).
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The call carries more header values of its own than [`MAX_CALL_HEADERS`](crate::MAX_CALL_HEADERS).
    #[error("the call carries {count} header values of its own, more than the {limit} allowed")]
    TooManyHeaders {
        /// The values it carries.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A header value cannot be sent (a request id with a newline, say).
    #[error("`{name}` is not a valid header value")]
    InvalidHeader {
        /// The header's name.
        name: &'static str,
    },
    /// No bearer token could be had.
    #[error("no access token: {0}")]
    Token(#[from] TokenError),
    /// A 2xx answer whose body is not the expected JSON.
    #[error("unexpected answer body: {0}")]
    Decode(String),
    /// The client could not be set up (trust roots, CA file).
    #[error("transport setup failed: {0}")]
    Setup(String),
}

impl ErrorKind {
    /// Why this failure may be retried, if it may.
    pub fn retry_reason(&self) -> Option<RetryReason> {
        match self {
            ErrorKind::Connect { .. } | ErrorKind::Connection { .. } => {
                Some(RetryReason::Connection)
            }
            ErrorKind::Timeout(_) => Some(RetryReason::Timeout),
            _ => None,
        }
    }
}

fn body_suffix(body: Option<&ErrorBody>) -> String {
    body.map(|b| format!(" {b}")).unwrap_or_default()
}

/// `; retry after 2s`, `at once` for no wait (`Retry-After: 0`, or a date past, is not
/// "0ns"), or `a day or more` for a wait read at the ceiling (a `Retry-After` of 10^20
/// seconds or a date in the year 9999 is not "86400s").
fn retry_after_suffix(wait: Duration) -> String {
    if wait >= crate::retry::RETRY_AFTER_CEILING {
        "; retry after a day or more".to_owned()
    } else if wait.is_zero() {
        "; retry at once".to_owned()
    } else {
        format!("; retry after {wait:?}")
    }
}

/// A failed call: the kind of failure and the call's statistics (boxed, so a `Result`
/// carrying it stays small).
#[derive(Debug, Clone, thiserror::Error)]
pub struct TransportError(Box<Failure>);

#[derive(Debug, Clone)]
struct Failure {
    kind: ErrorKind,
    stats: CallStats,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.kind)?;
        if self.0.stats.attempts > 1 {
            write!(f, " after {} attempts", self.0.stats.attempts)?;
        }
        Ok(())
    }
}

impl From<ErrorKind> for TransportError {
    /// A failure before any attempt (setup, URL, headers).
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind, CallStats::default())
    }
}

impl TransportError {
    pub(crate) fn new(kind: ErrorKind, stats: CallStats) -> Self {
        Self(Box::new(Failure { kind, stats }))
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// Consumes the error, giving the kind.
    pub fn into_kind(self) -> ErrorKind {
        self.0.kind
    }

    /// The call's statistics.
    pub fn stats(&self) -> &CallStats {
        &self.0.stats
    }

    /// HTTP attempts sent.
    pub fn attempts(&self) -> u32 {
        self.0.stats.attempts
    }

    /// The HTTP status of the final answer, if the failure was an answer.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.0.kind {
            ErrorKind::Status { status, .. } => Some(*status),
            ErrorKind::RateLimited { .. } => Some(StatusCode::TOO_MANY_REQUESTS),
            ErrorKind::Unauthorized { .. } => Some(StatusCode::UNAUTHORIZED),
            _ => None,
        }
    }

    /// The Genesys error body of the final answer, if any.
    pub fn error_body(&self) -> Option<&ErrorBody> {
        match &self.0.kind {
            ErrorKind::Status { body, .. }
            | ErrorKind::RateLimited { body, .. }
            | ErrorKind::Unauthorized { body } => body.as_deref(),
            _ => None,
        }
    }

    /// Genesys' error `code`, if any.
    pub fn code(&self) -> Option<&str> {
        self.error_body()?.code.as_deref()
    }

    /// Genesys' `contextId`, if any.
    pub fn context_id(&self) -> Option<&str> {
        self.error_body()?.context_id.as_deref()
    }

    /// The last answer's `Retry-After` (a 429, or a 5xx that carried one), or the local
    /// pause of a paced call.
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.0.kind {
            ErrorKind::RateLimited { retry_after, .. } | ErrorKind::Status { retry_after, .. } => {
                *retry_after
            }
            ErrorKind::Paced { wait } => Some(*wait),
            _ => None,
        }
    }

    /// Whether the failure is a timeout (attempt, deadline or limiter).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.0.kind,
            ErrorKind::Timeout(_)
                | ErrorKind::DeadlineExceeded { .. }
                | ErrorKind::LimiterTimeout(_)
        )
    }
}
