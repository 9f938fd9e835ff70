//! Waiting for a bearer token: a source that failed for now is asked again after its
//! own backoff, as long as that comes before the call's deadline.

use std::time::Duration;

use tokio::time::Instant;

use crate::bearer::{AccessToken, TokenError, TokenSource};
use crate::call::Call;
use crate::error::ErrorKind;
use crate::retry::RetryPolicy;

/// The shortest wait before a token source that failed is asked again.
const TOKEN_RETRY_FLOOR: Duration = Duration::from_millis(10);

/// Why a call whose token came after its own deadline sent nothing.
const TOKEN_CAME_TOO_LATE: &str = "the access token came after this call's deadline";

/// Why [`wait_for_token`] has no token.
enum TokenWait {
    /// The source failed for good, or will not try again before the deadline.
    Failed(TokenError),
    /// The deadline passed while waiting; says on what.
    PastDeadline(String),
}

/// A token for one attempt of `call`, waited for until the call's token deadline (at
/// least `deadline`, the attempt's). `None`, with the reason in `last_failure`, when
/// `deadline` passed first.
pub(crate) async fn await_token(
    source: &dyn TokenSource,
    call: &Call,
    deadline: Instant,
    policy: &RetryPolicy,
    last_failure: &mut Option<String>,
) -> Result<Option<AccessToken>, ErrorKind> {
    let until = call.token_deadline.map_or(deadline, |t| t.max(deadline));
    match wait_for_token(source, until, policy).await {
        Ok(_) if Instant::now() >= deadline => {
            *last_failure = Some(TOKEN_CAME_TOO_LATE.into());
            Ok(None)
        }
        Ok(token) => Ok(Some(token)),
        Err(TokenWait::Failed(err)) => Err(ErrorKind::Token(err)),
        Err(TokenWait::PastDeadline(waited)) => {
            *last_failure = Some(waited);
            Ok(None)
        }
    }
}

/// A token from `source`. A transient failure is asked again after the source's
/// `retry_in` (else `policy`'s backoff), as long as that comes before `deadline`.
async fn wait_for_token(
    source: &dyn TokenSource,
    deadline: Instant,
    policy: &RetryPolicy,
) -> Result<AccessToken, TokenWait> {
    let mut failures = 0_u32;
    let mut last: Option<TokenError> = None;
    loop {
        let failure = match tokio::time::timeout_at(deadline, source.token()).await {
            Ok(Ok(token)) => return Ok(token),
            Ok(Err(err)) if err.retryable => err,
            Ok(Err(err)) => return Err(TokenWait::Failed(err)),
            Err(_) => {
                return Err(TokenWait::PastDeadline(match last {
                    Some(err) => format!("no access token: {err}"),
                    None => "no access token: the login host has not answered".into(),
                }));
            }
        };
        failures = failures.saturating_add(1);
        let wait = failure
            .retry_in
            .unwrap_or_else(|| policy.backoff(failures, fastrand::f64()))
            .max(TOKEN_RETRY_FLOOR);
        if wait >= deadline.saturating_duration_since(Instant::now()) {
            return Err(TokenWait::Failed(failure));
        }
        tokio::time::sleep(wait).await;
        last = Some(failure);
    }
}
