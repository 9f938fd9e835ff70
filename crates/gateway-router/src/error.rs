//! Why a routed call failed, with the trace of what was tried.

use std::fmt;
use std::time::Duration;

use gateway_model::{ModelAttempt, ModelId, Outcome, ValidationErrors};
use gateway_transport::{LimiterTimeout, TokenError};
use uuid::Uuid;

/// What a failed call tried before giving up.
#[derive(Debug, Clone, PartialEq)]
pub struct CallTrace {
    /// The route.
    pub route: String,
    /// The `X-Correlation-Id` every model was called with.
    pub correlation_id: String,
    /// The model selection chose first.
    pub requested_model: ModelId,
    /// Every model tried (or skipped), in order.
    pub models_tried: Vec<ModelAttempt>,
    /// Time from the call's start to its failure.
    pub latency: Duration,
    /// The audit entry written for the call, if one was written.
    pub audit_id: Option<Uuid>,
}

/// The most characters of an unknown route's name an error repeats (no route's name is
/// longer than `MAX_ROUTE_NAME_CHARS`).
pub const MAX_UNKNOWN_ROUTE_CHARS: usize = 2 * gateway_model::MAX_ROUTE_NAME_CHARS;

/// The most configured routes an unknown route's error lists.
pub const MAX_LISTED_ROUTES: usize = 20;

/// The configured routes as an unknown route's error lists them: `known`, then how
/// many more there are.
///
/// ```
/// let names = ["reply".to_owned(), "summarize".to_owned()];
/// assert_eq!(gateway_router::route_list(&names, 0), "reply, summarize");
/// assert_eq!(gateway_router::route_list(&names, 3), "reply, summarize and 3 more");
/// ```
pub fn route_list(known: &[String], unlisted: usize) -> String {
    let list = known.join(", ");
    if unlisted == 0 {
        list
    } else {
        format!("{list} and {unlisted} more")
    }
}

impl RouteErrorKind {
    /// The error for a call to `route`, which no route of `known` (every configured
    /// name, in order) has: the name cut, and the list too.
    pub(crate) fn unknown_route(mut route: String, known: &[&str]) -> Self {
        gateway_model::cut_to(&mut route, MAX_UNKNOWN_ROUTE_CHARS);
        let listed = known.len().min(MAX_LISTED_ROUTES);
        Self::UnknownRoute {
            route,
            known: known[..listed]
                .iter()
                .map(|&name| name.to_owned())
                .collect(),
            unlisted: known.len() - listed,
        }
    }
}

/// The kind of failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteErrorKind {
    /// No route has that name.
    #[error("unknown route `{route}`; configured routes: {}", route_list(known, *unlisted))]
    UnknownRoute {
        /// The name asked for, cut to [`MAX_UNKNOWN_ROUTE_CHARS`] characters.
        route: String,
        /// The configured names, the first [`MAX_LISTED_ROUTES`] in order.
        known: Vec<String>,
        /// How many configured names `known` leaves out.
        unlisted: usize,
    },
    /// The request (or the payload built from it) breaks a rule; nothing was sent.
    #[error("invalid request: {0}")]
    Invalid(#[source] ValidationErrors),
    /// The gateway refused the request as malformed or not processable (400, 405, 406,
    /// 411, 413 to 415, 417, 431, a 422 that is not a policy violation); another model
    /// would not help.
    #[error("the gateway refused the request for `{model}` (HTTP {status}): {detail}")]
    Refused {
        /// The model called.
        model: ModelId,
        /// The HTTP status.
        status: u16,
        /// Genesys' `code: message (contextId …)`.
        detail: String,
    },
    /// The access token was refused even after a refresh.
    #[error("the access token was refused (HTTP 401) even after one refresh: {detail}")]
    Unauthorized {
        /// Genesys' `code: message (contextId …)`.
        detail: String,
    },
    /// The OAuth client's roles do not allow the operation (403 that is not about the model).
    #[error("the OAuth client's roles do not allow this operation (HTTP 403): {detail}")]
    Forbidden {
        /// Genesys' `code: message (contextId …)`.
        detail: String,
    },
    /// No access token could be had; [`TokenError::retryable`] tells an unreachable login
    /// host (a later try may work) from refused credentials (it will not).
    #[error("no access token: {0}")]
    Token(#[source] TokenError),
    /// No concurrency slot became free in time.
    #[error("overloaded: {0}")]
    Overloaded(#[source] LimiterTimeout),
    /// The caller's own limit on calls in flight was reached (a sidecar's
    /// `server.max_calls`), so the call was refused before it was read.
    #[error("overloaded: the limit of {limit} calls in flight, set by `{setting}`, is reached")]
    AtCapacity {
        /// The limit.
        limit: usize,
        /// The setting that sets it, such as `server.max_calls`.
        setting: &'static str,
    },
    /// The call was stopped before it ended (see [`crate::Router::route_until`]).
    #[error("the call was cancelled: {reason}")]
    Cancelled {
        /// Why, as the audit entry records it.
        reason: String,
    },
    /// Every model of the chain failed or was skipped.
    #[error("every model of route `{route}` failed ({}); last failure: {last}", summary(.tried))]
    Exhausted {
        /// The route.
        route: String,
        /// Each model and how it ended.
        tried: Vec<(ModelId, Outcome)>,
        /// The last failure, described.
        last: String,
        /// The longest `Retry-After` seen, if models were rate limited or unavailable
        /// (a 5xx that said when to come back); when every model's circuit was open, the
        /// time until the first lets a call through.
        retry_after: Option<Duration>,
        /// When every model refused the request itself (restricted for the organisation,
        /// a policy violation), so the same request would meet the same refusals again:
        /// the status they shared (403 or 422), or 422 when they differed.
        refused: Option<u16>,
    },
}

fn summary(tried: &[(ModelId, Outcome)]) -> String {
    tried
        .iter()
        .map(|(m, o)| format!("{m}: {o}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A failed call: what went wrong and what was tried.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteError {
    kind: RouteErrorKind,
    trace: Option<Box<CallTrace>>,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(trace) = &self.trace {
            write!(f, " (correlation id {})", trace.correlation_id)?;
        }
        Ok(())
    }
}

impl std::error::Error for RouteError {
    /// The cause behind the kind: the violations of an invalid request, the token or
    /// limiter failure.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

impl From<RouteErrorKind> for RouteError {
    fn from(kind: RouteErrorKind) -> Self {
        Self { kind, trace: None }
    }
}

impl RouteError {
    pub(crate) fn traced(kind: RouteErrorKind, trace: CallTrace) -> Self {
        Self {
            kind,
            trace: Some(Box::new(trace)),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &RouteErrorKind {
        &self.kind
    }

    /// What was tried, if anything was.
    pub fn trace(&self) -> Option<&CallTrace> {
        self.trace.as_deref()
    }

    /// The correlation id of the call, if it got that far.
    pub fn correlation_id(&self) -> Option<&str> {
        self.trace.as_ref().map(|t| t.correlation_id.as_str())
    }

    /// Whether no route has the name asked for.
    pub fn is_unknown_route(&self) -> bool {
        matches!(self.kind, RouteErrorKind::UnknownRoute { .. })
    }

    /// Whether the request broke a rule and nothing was sent.
    pub fn is_invalid(&self) -> bool {
        matches!(self.kind, RouteErrorKind::Invalid(_))
    }

    /// Whether the gateway refused the request itself (400, 413, an unprocessable 422 and
    /// the other 4xx that blame the request),
    /// or every model of the route refused it (restricted, a policy violation):
    /// sending it again unchanged would not help.
    pub fn is_refused(&self) -> bool {
        matches!(
            self.kind,
            RouteErrorKind::Refused { .. }
                | RouteErrorKind::Exhausted {
                    refused: Some(_),
                    ..
                }
        )
    }

    /// Whether the credentials are at fault: a token refused after a refresh (401), a
    /// 403 about the OAuth client's roles, or a token the login host would not grant.
    pub fn is_auth(&self) -> bool {
        match &self.kind {
            RouteErrorKind::Unauthorized { .. } | RouteErrorKind::Forbidden { .. } => true,
            RouteErrorKind::Token(token) => !token.retryable,
            _ => false,
        }
    }

    /// Whether every model sent to failed on rate limits (429, or a spent rate budget),
    /// the others skipped on an open circuit.
    pub fn is_rate_limited(&self) -> bool {
        self.http_status() == 429
    }

    /// Whether the call ran out of time: a model timed out, the deadline passed, no
    /// concurrency slot came free in time, or the caller's limit on calls in flight was
    /// reached.
    pub fn is_timeout(&self) -> bool {
        match &self.kind {
            RouteErrorKind::Overloaded(_) | RouteErrorKind::AtCapacity { .. } => true,
            RouteErrorKind::Exhausted { tried, .. } => {
                tried.iter().any(|(_, o)| *o == Outcome::Timeout)
            }
            _ => false,
        }
    }

    /// Whether the call was stopped before it ended (a shutdown, a dropped caller).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, RouteErrorKind::Cancelled { .. })
    }

    /// Whether the same request may succeed later, unchanged: every model failed or was
    /// busy (and not because each refused it), the call was cancelled, or the login host
    /// could not be reached.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            RouteErrorKind::Exhausted { refused, .. } => refused.is_none(),
            RouteErrorKind::Overloaded(_)
            | RouteErrorKind::AtCapacity { .. }
            | RouteErrorKind::Cancelled { .. } => true,
            RouteErrorKind::Token(token) => token.retryable,
            _ => false,
        }
    }

    /// The validation errors, for an invalid request.
    pub fn violations(&self) -> Option<&ValidationErrors> {
        match &self.kind {
            RouteErrorKind::Invalid(v) => Some(v),
            _ => None,
        }
    }

    /// The HTTP status a sidecar answers with for this failure: 403 when every model of
    /// the route is restricted, 422 when every model refused the request otherwise (a
    /// policy violation), 503 when every model was skipped on an open circuit, 502 (429
    /// or 504 by the outcomes of the models sent to) when they failed.
    pub fn http_status(&self) -> u16 {
        match &self.kind {
            RouteErrorKind::UnknownRoute { .. } => 404,
            RouteErrorKind::Invalid(_) => 400,
            RouteErrorKind::Refused { status, .. } if *status == 413 => 413,
            // Restricted by every model is the organisation's permission, like the OAuth
            // client's roles; any other refusal by every model, a request the gateway
            // will not process.
            RouteErrorKind::Forbidden { .. }
            | RouteErrorKind::Exhausted {
                refused: Some(403), ..
            } => 403,
            RouteErrorKind::Refused { .. }
            | RouteErrorKind::Exhausted {
                refused: Some(_), ..
            } => 422,
            RouteErrorKind::Unauthorized { .. } | RouteErrorKind::Token(_) => 502,
            RouteErrorKind::Overloaded(_)
            | RouteErrorKind::AtCapacity { .. }
            | RouteErrorKind::Cancelled { .. } => 503,
            RouteErrorKind::Exhausted { tried, .. } => {
                // A model skipped on an open circuit says nothing of this call: the
                // status is that of the models sent to, or 503 when none was.
                let sent = || {
                    tried
                        .iter()
                        .map(|(_, o)| *o)
                        .filter(|o| *o != Outcome::CircuitOpen)
                };
                if tried.is_empty() {
                    502
                } else if sent().next().is_none() {
                    503
                } else if sent().all(|o| o == Outcome::RateLimited) {
                    429
                } else if sent().any(|o| o == Outcome::Timeout) {
                    504
                } else {
                    502
                }
            }
        }
    }

    /// A stable machine-readable code for this failure.
    pub fn code(&self) -> &'static str {
        match &self.kind {
            RouteErrorKind::UnknownRoute { .. } => "router.unknown.route",
            RouteErrorKind::Invalid(_) => "router.invalid.request",
            RouteErrorKind::Refused { .. } => "router.request.refused",
            RouteErrorKind::Unauthorized { .. } => "router.unauthorized",
            RouteErrorKind::Forbidden { .. } => "router.forbidden",
            RouteErrorKind::Token(_) => "router.no.token",
            RouteErrorKind::Overloaded(_) | RouteErrorKind::AtCapacity { .. } => {
                "router.overloaded"
            }
            RouteErrorKind::Cancelled { .. } => "router.cancelled",
            RouteErrorKind::Exhausted { .. } => "router.all.models.failed",
        }
    }

    /// When to try again: the longest `Retry-After` seen for a call that failed on rate
    /// limits or on 5xx answers that carried one; for a call that found every model's
    /// circuit open, the time until the first lets a call through; for a call that got no
    /// token, when the login host is asked again; a second for a call cancelled by a
    /// shutdown (another replica can take it).
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.kind {
            RouteErrorKind::Exhausted { retry_after, .. } => *retry_after,
            RouteErrorKind::Token(token) if token.retryable => token.retry_in,
            RouteErrorKind::Cancelled { .. } => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use gateway_model::{Rule, ValidationErrors};
    use gateway_transport::{LimiterTimeout, TokenError};

    use super::*;

    #[test]
    fn an_unknown_route_error_repeats_a_bounded_name_and_list() {
        let names: Vec<String> = (0..25).map(|n| format!("route-{n:02}")).collect();
        let known: Vec<&str> = names.iter().map(String::as_str).collect();
        let err = RouteErrorKind::unknown_route("x".repeat(900_000), &known);
        let text = err.to_string();
        assert!(text.chars().count() < 600, "{} characters", text.len());
        assert!(text.ends_with("route-19 and 5 more"), "{text}");
        let RouteErrorKind::UnknownRoute { route, known, .. } = err else {
            unreachable!()
        };
        assert_eq!(route.chars().count(), MAX_UNKNOWN_ROUTE_CHARS);
        assert_eq!(known.len(), MAX_LISTED_ROUTES);
        let few = RouteErrorKind::unknown_route("nope".into(), &["a", "b"]);
        assert_eq!(
            few.to_string(),
            "unknown route `nope`; configured routes: a, b"
        );
    }

    #[test]
    fn the_cause_is_the_source_and_the_helpers_say_what_to_do() {
        let refused = TokenError::permanent("the login host refused client-1");
        let err = RouteError::from(RouteErrorKind::Token(refused.clone()));
        let source = err.source().expect("a token failure has a cause");
        assert_eq!(source.downcast_ref::<TokenError>(), Some(&refused));
        assert!(err.is_auth() && !err.is_retryable() && !err.is_timeout());

        let unreachable = TokenError::transient("the login host did not answer");
        let err = RouteError::from(RouteErrorKind::Token(unreachable.clone()));
        assert!(!err.is_auth() && err.is_retryable());
        assert_eq!(err.retry_after(), None);
        let backing_off = unreachable.with_retry_in(Duration::from_millis(800));
        let err = RouteError::from(RouteErrorKind::Token(backing_off));
        assert_eq!(err.retry_after(), Some(Duration::from_millis(800)));
        let refused_later = refused.clone().with_retry_in(Duration::from_secs(1));
        let err = RouteError::from(RouteErrorKind::Token(refused_later));
        assert_eq!(
            err.retry_after(),
            None,
            "refused credentials: no point coming back"
        );

        let invalid = ValidationErrors::single("/prompt", Rule::Required);
        let err = RouteError::from(RouteErrorKind::Invalid(invalid.clone()));
        let source = err.source().expect("an invalid request has its violations");
        assert_eq!(source.downcast_ref::<ValidationErrors>(), Some(&invalid));
        assert!(err.is_invalid() && !err.is_retryable());

        let busy = LimiterTimeout {
            waited: Duration::from_secs(5),
            max: 64,
        };
        let err = RouteError::from(RouteErrorKind::Overloaded(busy));
        let source = err
            .source()
            .expect("an overloaded call has its limiter timeout");
        assert!(source.is::<LimiterTimeout>());
        assert!(err.is_timeout() && err.is_retryable());
        assert!(
            err.to_string()
                .contains("no concurrency slot free within 5s"),
            "{err}"
        );

        let full = RouteError::from(RouteErrorKind::AtCapacity {
            limit: 8,
            setting: "server.max_calls",
        });
        assert_eq!(
            (full.http_status(), full.code()),
            (503, "router.overloaded")
        );
        assert!(full.is_timeout() && full.is_retryable() && full.source().is_none());
        assert_eq!(
            full.to_string(),
            "overloaded: the limit of 8 calls in flight, set by `server.max_calls`, is reached"
        );

        let exhausted = RouteError::from(RouteErrorKind::Exhausted {
            route: "r".into(),
            tried: vec![(ModelId::new("m"), Outcome::RateLimited)],
            last: "429".into(),
            retry_after: Some(Duration::from_secs(3)),
            refused: None,
        });
        assert!(exhausted.is_rate_limited() && exhausted.is_retryable());
        assert!(!exhausted.is_refused());
        assert!(exhausted.source().is_none());
    }

    #[test]
    fn a_model_skipped_on_an_open_circuit_does_not_decide_the_status() {
        use Outcome::{CircuitOpen, RateLimited, Timeout, UpstreamError};
        let status = |outcomes: &[Outcome]| {
            RouteError::from(RouteErrorKind::Exhausted {
                route: "r".into(),
                tried: outcomes
                    .iter()
                    .enumerate()
                    .map(|(n, o)| (ModelId::new(format!("m{n}")), *o))
                    .collect(),
                last: String::new(),
                retry_after: None,
                refused: None,
            })
            .http_status()
        };
        assert_eq!(status(&[CircuitOpen, CircuitOpen]), 503, "nothing sent");
        assert_eq!(status(&[CircuitOpen, RateLimited]), 429);
        assert_eq!(status(&[RateLimited, CircuitOpen]), 429);
        assert_eq!(status(&[RateLimited, RateLimited]), 429);
        assert_eq!(status(&[CircuitOpen, Timeout]), 504);
        assert_eq!(status(&[RateLimited, Timeout]), 504);
        assert_eq!(status(&[CircuitOpen, UpstreamError]), 502);
        assert_eq!(status(&[RateLimited, UpstreamError]), 502);
        assert_eq!(status(&[]), 502, "the deadline passed before any model");
    }
}
