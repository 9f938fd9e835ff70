//! One model's part of a call: the request sent (the transport retries it), what its
//! end means for the call and for the model's health, and what it records.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use gateway_model::{
    ErrorBody, FinishReason, GatewayResponse, ModelId, Outcome, RetryReason, SafetyVerdict,
};
use gateway_transport::{Answer, Call, CallStats, ErrorKind, TokenError, TransportError};
use tokio::time::Instant;

use crate::breaker::{CoolDownRule, Health};
use crate::call_state::{CallState, CutShort, duration_us};
use crate::error::RouteErrorKind;
use crate::ids;
use crate::router::{ModelState, Router};

/// How one model's attempt ended.
pub(crate) struct Attempt {
    /// The outcome its metrics and audit entry record.
    pub(crate) outcome: Outcome,
    /// What the call does next.
    pub(crate) next: Next,
    /// What it says about the model, for its breaker.
    pub(crate) health: Health,
}

/// What the call does after one model's attempt.
// Unboxed on purpose: a box would cost an allocation per call, and this lives briefly.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Next {
    /// Return the model's answer.
    Answered(GatewayResponse),
    /// Try the next model.
    Fallback,
    /// Stop: another model would not help.
    Stop(RouteErrorKind),
}

/// How the transport's result ends the attempt, before it is recorded.
struct Verdict {
    outcome: Outcome,
    next: Next,
    health: Health,
    stats: CallStats,
    /// Genesys' error `code`, if the failure had one.
    code: Option<String>,
}

/// Where and how one model is called.
pub(crate) struct Target<'a> {
    pub(crate) state: &'a ModelState,
    pub(crate) model: &'a ModelId,
    /// Whether another model follows it in the chain that will not be skipped (its
    /// circuit is not known to stay open past the call's deadline).
    pub(crate) has_fallback: bool,
    /// When its share of the call's time ends.
    pub(crate) deadline: Instant,
}

impl Router {
    /// Sends `body` to one model and records what happened: metrics, statistics, and the
    /// model's entry in the call's trace.
    pub(crate) async fn try_model(
        &self,
        target: &Target<'_>,
        body: Bytes,
        call: &mut CallState,
    ) -> Attempt {
        // Recorded before sending: a call cancelled mid-flight still shows this model.
        let request_id = ids::random().to_string();
        let started = call.sending(target.model, &request_id);
        let result = {
            let _in_flight = target.state.metrics.in_flight();
            self.send(target, body, request_id, call).await
        };
        let elapsed = started.elapsed();
        let verdict = judge(result, target, self.inner.cool_down, call);
        self.record_attempt(
            target.state,
            target.model,
            verdict.outcome,
            elapsed,
            &verdict.stats,
        );
        let stats = &verdict.stats;
        call.waited += stats.upstream + stats.backoff + stats.limiter_wait + stats.token_wait;
        call.attempts += verdict.stats.attempts;
        if let Some(entry) = call.ended() {
            entry.attempts = verdict.stats.attempts;
            entry.outcome = verdict.outcome;
            entry.status = verdict.stats.last_status.map(|s| s.as_u16());
            entry.error_code = verdict.code;
            entry.upstream_correlation_id = verdict.stats.upstream_correlation_id;
            entry.latency_us = duration_us(elapsed);
        }
        Attempt {
            outcome: verdict.outcome,
            next: verdict.next,
            health: verdict.health,
        }
    }

    /// The exchange itself, with the call's ids and trace context: the transport's own
    /// future, with no wrapper around it to hold its arguments a second time.
    fn send<'a>(
        &'a self,
        target: &Target<'_>,
        body: Bytes,
        request_id: String,
        call: &'a mut CallState,
    ) -> impl Future<Output = Result<Answer, TransportError>> + 'a {
        let inner = &*self.inner;
        let mut spec = call.trace.apply(
            Call::post(inner.prompts_uri.clone(), body, request_id)
                .correlation_id(call.correlation_id.clone())
                .deadline(target.deadline)
                .token_deadline(call.deadline),
        );
        if target.has_fallback {
            // With a fallback at hand, a long Retry-After fails over instead of waiting.
            spec = spec.max_retry_after(inner.cool_down.longest_wait_with_a_fallback());
        }
        // Tracked, so that a call cancelled mid-flight still records what was sent.
        inner.transport.execute_tracked(spec, &mut call.progress)
    }

    /// Records what the model in flight when a call was cancelled had done, as an
    /// attempt that ended `cancelled`.
    pub(crate) fn record_cut_short(&self, cut: Option<CutShort>) {
        if let Some(cut) = cut
            && let Some(state) = self.inner.models.get(&cut.model)
        {
            let cancelled = Outcome::Cancelled;
            self.record_attempt(state, &cut.model, cancelled, cut.elapsed, &cut.stats);
        }
    }

    /// Records one model's attempt in the metrics and the statistics.
    fn record_attempt(
        &self,
        state: &ModelState,
        model: &ModelId,
        outcome: Outcome,
        elapsed: Duration,
        stats: &CallStats,
    ) {
        let (metrics, model) = (&state.metrics, model.as_str());
        for _ in 0..stats.attempts {
            metrics.attempt();
        }
        for reason in RetryReason::ALL {
            for _ in 0..stats.retries_for(reason) {
                metrics.retry(reason);
                // The routing stats count retries the upstream caused; a token refresh
                // is the router's own, and is counted only in the metric.
                if reason != RetryReason::Unauthorized {
                    self.inner.stats.record_retry(model);
                }
            }
        }
        if stats.attempts > 0 {
            metrics.limiter_wait(stats.limiter_wait);
        }
        metrics.request(outcome, elapsed);
        self.inner.stats.record(model, outcome, elapsed);
    }
}

/// What the transport's `result` means for the call and the model; notes the failure
/// (and any `Retry-After`) in `call`.
fn judge(
    result: Result<Answer, TransportError>,
    target: &Target<'_>,
    cool_down: CoolDownRule,
    call: &mut CallState,
) -> Verdict {
    let model = target.model;
    let answer = match result {
        Ok(answer) => answer,
        Err(err) => {
            let (outcome, next, health) = classify(&err, model, cool_down);
            call.last_failure = Some(format!("{model}: {err}"));
            if let Some(after) = err.retry_after() {
                call.retry_after = Some(call.retry_after.map_or(after, |r| r.max(after)));
            }
            let code = err.code().map(str::to_owned);
            let stats = err.stats().clone();
            return Verdict {
                outcome,
                next,
                health,
                stats,
                code,
            };
        }
    };
    match answer.json::<GatewayResponse>() {
        Ok(mut response) => {
            without_secrets(&mut response, &answer);
            if let Some(usage) = &response.usage {
                target.state.metrics.tokens(
                    u64::from(usage.prompt_tokens),
                    u64::from(usage.completion_tokens),
                );
            }
            Verdict {
                outcome: Outcome::Success,
                next: Next::Answered(response),
                health: Health::Healthy,
                stats: answer.stats,
                code: None,
            }
        }
        Err(e) => {
            call.last_failure = Some(format!("{model}: {e}"));
            Verdict {
                outcome: Outcome::UpstreamError,
                next: Next::Fallback,
                health: Health::Unhealthy,
                stats: answer.stats,
                code: None,
            }
        }
    }
}

/// Takes the request's token and the known secrets out of what the audit entry and the
/// outcome keep of an answer (its served model, finish reason, safety report, unknown
/// fields at any level), as they are taken out of a failure's: a proxy that repeats the
/// request's `Authorization` there must not put it in the trail or hand it to the
/// sidecar's caller. The answer's own text (`output`, `id`) is passed on as it came.
fn without_secrets(response: &mut GatewayResponse, answer: &Answer) {
    let redact = |text: &mut String| {
        if let Cow::Owned(clean) = answer.redact(text) {
            *text = clean;
        }
    };
    if let Cow::Owned(model) = answer.redact(response.model_id.as_str()) {
        response.model_id = ModelId::new(model);
    }
    if let Some(FinishReason::Other(reason)) = &mut response.finish_reason {
        redact(reason);
    }
    if let Some(safety) = &mut response.safety {
        if let SafetyVerdict::Other(verdict) = &mut safety.verdict {
            redact(verdict);
        }
        safety.triggered.iter_mut().for_each(redact);
        redact_fields(&mut safety.extra, answer);
    }
    if let Some(usage) = &mut response.usage {
        redact_fields(&mut usage.extra, answer);
    }
    redact_fields(&mut response.extra, answer);
}

/// [`without_secrets`] for an answer's unknown fields, names and values.
fn redact_fields(fields: &mut serde_json::Map<String, serde_json::Value>, answer: &Answer) {
    if fields.is_empty() {
        return;
    }
    let mut all = serde_json::Value::Object(std::mem::take(fields));
    answer.redact_json(&mut all);
    if let serde_json::Value::Object(all) = all {
        *fields = all;
    }
}

/// Genesys' `code: message (contextId …)` of a failure, or its description.
fn detail(err: &TransportError) -> String {
    err.error_body()
        .map_or_else(|| err.to_string(), ErrorBody::to_string)
}

/// A failed token's outcome: the login host's trouble (transient), or the client's
/// credentials (not).
fn token_outcome(token: &TokenError) -> Outcome {
    if token.retryable {
        Outcome::UpstreamError
    } else {
        Outcome::ClientError
    }
}

/// What a model's part cut by the call's (or its share of the) deadline says of its
/// health: nothing, since that is not the model's own slowness, unless an attempt before
/// `err` was retried for a failure of the model's own (a 5xx, a broken connection, its own
/// attempt timeout; not a 408 or 425, which the model did not fail): then the deadline
/// only cut short a failing model, whose breaker must hear of it.
fn cut_short(err: &TransportError) -> Health {
    let stats = err.stats();
    let failed_before = [
        RetryReason::ServerError,
        RetryReason::Connection,
        RetryReason::Timeout,
    ]
    .into_iter()
    .any(|reason| stats.retries_for(reason) > 0);
    if failed_before {
        Health::Unhealthy
    } else {
        Health::Neutral
    }
}

/// The model's part ended on an answer with `status` (and `body`, if it could be read).
/// (A 408 is a request the gateway or a proxy did not take in time: not the model's
/// doing, so it falls back without counting against it.)
fn classify_status(
    status: u16,
    body: Option<&ErrorBody>,
    err: &TransportError,
    model: &ModelId,
) -> (Outcome, Next, Health) {
    match status {
        403 if body.is_some_and(ErrorBody::is_model_restricted) => {
            (Outcome::ClientError, Next::Fallback, Health::Neutral)
        }
        403 => (
            Outcome::ClientError,
            Next::Stop(RouteErrorKind::Forbidden {
                detail: detail(err),
            }),
            Health::Neutral,
        ),
        // Unknown or gone.
        404 | 410 => (Outcome::ClientError, Next::Fallback, Health::Unhealthy),
        422 if body.is_some_and(ErrorBody::is_policy_violation) => {
            (Outcome::PolicyViolation, Next::Fallback, Health::Neutral)
        }
        408 => (Outcome::Timeout, Next::Fallback, Health::Neutral),
        // Not processed, through no fault of the request or the model (a connection that
        // reached the wrong server; an early-data replay risk, sent again first).
        421 | 425 => (Outcome::UpstreamError, Next::Fallback, Health::Neutral),
        s if request_at_fault(s) => (
            Outcome::ClientError,
            refused(model, s, err),
            Health::Neutral,
        ),
        // Another 4xx (a conflict, a payment, a legal block, a proxy's authentication, a
        // status no gateway should answer): not the request's shape, so another model may
        // serve it, but not the model's health either; a prompt that draws a 451 must not
        // open the model's circuit for every caller.
        400..=499 => (Outcome::UpstreamError, Next::Fallback, Health::Neutral),
        // 5xx, a redirect, one outside HTTP's classes: the model's side failed.
        _ => (Outcome::UpstreamError, Next::Fallback, Health::Unhealthy),
    }
}

/// The call stops: `model` refused the request itself with `status`.
fn refused(model: &ModelId, status: u16, err: &TransportError) -> Next {
    Next::Stop(RouteErrorKind::Refused {
        model: model.clone(),
        status,
        detail: detail(err),
    })
}

/// Whether a 4xx `status` says the request itself is wrong, so every model would refuse
/// it too: its syntax or shape (400, 422 outside a policy violation), its method, media
/// type, size or headers.
fn request_at_fault(status: u16) -> bool {
    matches!(status, 400 | 405 | 406 | 411 | 413..=415 | 417 | 422 | 431)
}

/// How a transport failure ends a model's part: outcome, what the loop does next, and
/// what it says about the model's health.
fn classify(
    err: &TransportError,
    model: &ModelId,
    cool_down: CoolDownRule,
) -> (Outcome, Next, Health) {
    match err.kind() {
        ErrorKind::Status { status, body, .. } => {
            classify_status(status.as_u16(), body.as_deref(), err, model)
        }
        ErrorKind::RateLimited { retry_after, .. } => {
            let health = retry_after
                .and_then(|wait| cool_down.cool_down(wait))
                .map_or(Health::Neutral, Health::CoolDown);
            (Outcome::RateLimited, Next::Fallback, health)
        }
        ErrorKind::Unauthorized { .. } => (
            Outcome::ClientError,
            Next::Stop(RouteErrorKind::Unauthorized {
                detail: detail(err),
            }),
            Health::Neutral,
        ),
        ErrorKind::Timeout(_) => (Outcome::Timeout, Next::Fallback, Health::Unhealthy),
        ErrorKind::DeadlineExceeded { .. } => (Outcome::Timeout, Next::Fallback, cut_short(err)),
        // Not sent: the spent rate limit is this client's, not the model's.
        ErrorKind::Paced { .. } => (Outcome::RateLimited, Next::Fallback, Health::Neutral),
        ErrorKind::LimiterTimeout(t) => (
            Outcome::Timeout,
            Next::Stop(RouteErrorKind::Overloaded(*t)),
            Health::Neutral,
        ),
        ErrorKind::Token(t) => (
            token_outcome(t),
            Next::Stop(RouteErrorKind::Token(t.clone())),
            Health::Neutral,
        ),
        ErrorKind::RequestTooLarge { .. } => (
            Outcome::ClientError,
            refused(model, 413, err),
            Health::Neutral,
        ),
        ErrorKind::Tls { .. } => (Outcome::UpstreamError, Next::Fallback, Health::Neutral),
        _ => (Outcome::UpstreamError, Next::Fallback, Health::Unhealthy),
    }
}
