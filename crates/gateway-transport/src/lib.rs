//! The HTTP transport: pooled hyper-util clients over rustls, a concurrency limiter
//! with a bounded wait, a retry policy with a retry budget, and an overall deadline.
//!
//! - [`HttpClient`]: hyper-util's pooled client over rustls (ring provider), HTTP/1.1 and
//!   HTTP/2 by ALPN (or HTTP/1.1 only, `[tls] http1_only`), in lanes: past 100 calls on one
//!   HTTP/2 connection another lane opens one more; webpki or native roots plus an optional extra CA; plain `http://`
//!   only to loopback unless explicitly allowed; response bodies capped.
//! - [`Limiter`]: at most N calls in flight; a caller that cannot get a slot in time gets
//!   [`LimiterTimeout`]. Cancelled calls always give their slot back.
//! - [`RetryPolicy`]: retries 429 after `Retry-After` (seconds or HTTP date, capped),
//!   408/425 (not processed), 500/502/503/504, connection failures and timeouts with
//!   full-jitter exponential backoff; never 400/401/403/404/422. [`RetryBudget`] keeps an
//!   outage from multiplying load.
//! - [`Transport::execute`]: the whole loop, with the same `X-Genesys-Request-Id` on
//!   every attempt, error bodies read (up to 64 KiB, within 2 s) before retrying, a 401
//!   answered by refreshing the
//!   token once through the [`TokenSource`] hook, and `inin-ratelimit-*` headers honoured
//!   (no request is sent into a spent rate limit).
//! - [`RateBudget`]: the pace an OAuth client may send at (`[limits]
//!   requests_per_minute`), shared by every call; [`LocalRateBudget`] is one process's,
//!   `gateway-fleet` shares one through Redis.
//!
//! ```
//! use std::time::Duration;
//! use gateway_transport::{RetryPolicy, Wait, parse_retry_after};
//!
//! let policy = RetryPolicy::default();
//! // A 429 asking for 2 s, with 10 s left before the deadline: wait 2 s.
//! let wait = policy.wait(1, Some(Duration::from_secs(2)), Duration::from_secs(10), 0.5);
//! assert_eq!(wait, Wait::Sleep(Duration::from_secs(2)));
//! // A Retry-After beyond the 180 s cap is not waited out.
//! let after = parse_retry_after("600", std::time::SystemTime::now());
//! assert_eq!(policy.wait(1, after, Duration::from_secs(900), 0.5), Wait::RetryAfterTooLong(Duration::from_secs(600)));
//! ```

mod bearer;
mod budget;
mod call;
mod circuits;
mod client;
pub mod clock;
mod config;
mod connect_timeout;
mod error;
mod known_secrets;
mod lanes;
mod limiter;
mod pacing;
mod rate_budget;
mod retry;
mod tcp;
mod token_wait;
mod transport;

pub use bearer::{
    AccessToken, BoxFuture, MAX_ACCESS_TOKEN_BYTES, StaticToken, TokenError, TokenSource,
};
pub use budget::RetryBudget;
pub use call::{
    Answer, CORRELATION_ID, Call, ININ_CORRELATION_ID, MAX_CALL_HEADERS, REQUEST_ID,
    shared_header_value,
};
pub use circuits::SharedCircuits;
pub use client::{
    ClientOptions, Exchange, HttpClient, MAX_CA_FILE_BYTES, MAX_ERROR_BODY_BYTES,
    MAX_ERROR_BODY_WAIT, MAX_RESENDS,
};
pub use config::TransportConfig;
pub use error::{CallStats, ErrorKind, TransportError};
pub use known_secrets::KnownSecrets;
pub use lanes::{MAX_LANES, STREAMS_PER_CONNECTION};
pub use limiter::{Limiter, LimiterTimeout, Permit};
pub use rate_budget::{Gcra, LocalRateBudget, RateBudget};
pub use retry::{Disposition, RETRY_AFTER_CEILING, RetryPolicy, Wait, parse_retry_after};
pub use transport::Transport;
