//! What one attempt's answer (or failure) means for the call: done, retry, refresh the
//! token, or fail.

use std::time::SystemTime;

use gateway_model::redact::redact_secrets;
use gateway_model::{ErrorBody, RetryReason};
use http::header::RETRY_AFTER;

use super::Transport;
use crate::bearer::AccessToken;
use crate::call::ININ_CORRELATION_ID;
use crate::client::Exchange;
use crate::error::{CallStats, ErrorKind};
use crate::retry::{Disposition, RetryPolicy, parse_retry_after};

/// What one attempt's result means for the call.
pub(super) enum Step {
    /// A success.
    Done(Exchange),
    /// A 401: refresh the token once, or fail.
    Refresh(Option<Box<ErrorBody>>),
    /// A retryable failure.
    Retry {
        reason: RetryReason,
        retry_after: Option<std::time::Duration>,
        failure: ErrorKind,
    },
    /// A final failure.
    Fail(ErrorKind),
}

impl Transport {
    /// What one attempt's result, sent with `token`, means for the call. An attempt
    /// without an answer clears the status and correlation id an earlier one left.
    pub(super) fn judge(
        &self,
        result: Result<Exchange, ErrorKind>,
        token: Option<&AccessToken>,
        stats: &mut CallStats,
    ) -> Step {
        let exchange = match result {
            Ok(exchange) => exchange,
            Err(kind) => {
                (stats.last_status, stats.upstream_correlation_id) = (None, None);
                return match kind.retry_reason() {
                    Some(reason) => Step::Retry {
                        reason,
                        retry_after: None,
                        failure: kind,
                    },
                    None => Step::Fail(kind),
                };
            }
        };
        stats.last_status = Some(exchange.status);
        // An error body, or a header, may repeat the request's `Authorization` header:
        // its token (and any known secret) is taken out before it reaches an error, a log
        // line, the audit trail or a caller.
        let secrets = self
            .inner
            .config
            .known_secrets
            .and(token.map(AccessToken::expose));
        stats.upstream_correlation_id = correlation_id(&exchange.headers, secrets.as_slice());
        self.observe_rate_limit(&exchange.headers);
        let body = || ErrorBody::parse_redacting(&exchange.body, secrets.as_slice()).map(Box::new);
        match RetryPolicy::classify(exchange.status) {
            Disposition::Success => Step::Done(exchange),
            Disposition::RefreshToken => Step::Refresh(body()),
            Disposition::Fail => Step::Fail(ErrorKind::Status {
                status: exchange.status,
                retry_after: None,
                body: body(),
            }),
            Disposition::Retry(reason) => {
                let retry_after = exchange
                    .headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let failure = if reason == RetryReason::RateLimited {
                    if let Some(after) = retry_after {
                        self.pause_rate(after.min(self.inner.config.retry.max_retry_after));
                    }
                    ErrorKind::RateLimited {
                        retry_after,
                        over_cap: false,
                        body: body(),
                    }
                } else {
                    ErrorKind::Status {
                        status: exchange.status,
                        retry_after,
                        body: body(),
                    }
                };
                Step::Retry {
                    reason,
                    retry_after,
                    failure,
                }
            }
        }
    }
}

/// The answer's `ININ-Correlation-Id`, without `secrets` should it repeat one.
fn correlation_id(headers: &http::HeaderMap, secrets: &[&str]) -> Option<String> {
    headers
        .get(ININ_CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .map(|id| redact_secrets(id, secrets).into_owned())
}
