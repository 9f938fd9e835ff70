//! What one call keeps while it runs (the models tried, the time spent waiting) and what
//! it leaves behind: its audit entry and the caller's answer.

use std::time::Duration;

use gateway_audit::PromptDigest;
use gateway_model::{
    AuditEntry, GatewayResponse, Metadata, ModelAttempt, ModelId, Outcome, RouteOutcome, Tuning,
};
use gateway_transport::CallStats;
use tokio::time::Instant;

use crate::error::{CallTrace, RouteError, RouteErrorKind};
use crate::ids;
use crate::trace_context::TraceContext;

/// The wait a skipped model suggests when another call's probe of it is already out: the
/// probe's answer decides, and it is usually a round trip away.
const PROBE_OUT_WAIT: Duration = Duration::from_secs(1);

/// What the model in flight when a call was cancelled had done.
pub(crate) struct CutShort {
    pub(crate) model: ModelId,
    pub(crate) stats: CallStats,
    pub(crate) elapsed: Duration,
}

/// Per-call bookkeeping of the loop.
#[derive(Debug)]
pub(crate) struct CallState {
    pub(crate) deadline: Instant,
    /// The models of the route's chain.
    models: usize,
    pub(crate) correlation_id: String,
    pub(crate) trace: TraceContext,
    /// Every model tried or skipped; the last one's entry is filled in when it ends.
    pub(crate) tried: Vec<ModelAttempt>,
    /// Time not spent by the router itself: upstream exchanges, backoff, limiter waits.
    pub(crate) waited: Duration,
    pub(crate) attempts: u32,
    pub(crate) last_failure: Option<String>,
    pub(crate) retry_after: Option<Duration>,
    /// The soonest a skipped model's circuit lets a call through.
    reopens_in: Option<Duration>,
    /// When the model being tried was sent to; `None` once its end is noted.
    sent_at: Option<Instant>,
    /// What the transport has done for the model being tried, kept up to date while
    /// it runs (emptied when it ends), so a cancelled call still knows.
    pub(crate) progress: CallStats,
}

impl CallState {
    pub(crate) fn new(deadline: Instant, models: usize, trace: TraceContext) -> Self {
        Self {
            deadline,
            models,
            correlation_id: ids::random().to_string(),
            trace,
            tried: Vec::with_capacity(models),
            waited: Duration::ZERO,
            attempts: 0,
            last_failure: None,
            retry_after: None,
            reopens_in: None,
            sent_at: None,
            progress: CallStats::default(),
        }
    }

    /// Notes `model` as skipped because its circuit is open, for `retry_in` (unknown
    /// while another call's probe of it is out).
    pub(crate) fn skipped(&mut self, model: &ModelId, retry_in: Option<Duration>) {
        let wait = retry_in.unwrap_or(PROBE_OUT_WAIT);
        self.reopens_in = Some(self.reopens_in.map_or(wait, |soonest| soonest.min(wait)));
        self.tried.push(ModelAttempt {
            request_id: String::new(),
            outcome: Outcome::CircuitOpen,
            ..pending(model)
        });
    }

    /// Notes `model` as reached only once the deadline had passed (asking the fleet
    /// about it took the time left): not sent, and timed out.
    pub(crate) fn out_of_time(&mut self, model: &ModelId) {
        self.tried.push(ModelAttempt {
            request_id: String::new(),
            outcome: Outcome::Timeout,
            ..pending(model)
        });
    }

    /// Notes `model` as sent with `request_id`, now (returned); until its end is noted
    /// it reads as cancelled, so a call dropped mid-flight still shows the model.
    pub(crate) fn sending(&mut self, model: &ModelId, request_id: &str) -> Instant {
        self.tried.push(ModelAttempt {
            request_id: request_id.to_owned(),
            ..pending(model)
        });
        let now = Instant::now();
        self.sent_at = Some(now);
        now
    }

    /// The entry of the model just tried, to fill in now that it has ended.
    pub(crate) fn ended(&mut self) -> Option<&mut ModelAttempt> {
        self.sent_at = None;
        self.tried.last_mut()
    }

    /// Notes what the model being tried when the call was cancelled had done: its
    /// attempts started, its last answer and its time so far. Returns it, for the
    /// metrics; `None` when no model was in flight.
    pub(crate) fn cut_short(&mut self) -> Option<CutShort> {
        let sent_at = self.sent_at.take()?;
        let stats = std::mem::take(&mut self.progress);
        let elapsed = sent_at.elapsed();
        self.attempts = self.attempts.saturating_add(stats.attempts);
        self.waited += elapsed;
        let entry = self.tried.last_mut()?;
        entry.attempts = stats.attempts;
        entry.status = stats.last_status.map(|s| s.as_u16());
        entry
            .upstream_correlation_id
            .clone_from(&stats.upstream_correlation_id);
        entry.latency_us = duration_us(elapsed);
        Some(CutShort {
            model: entry.model_id.clone(),
            stats,
            elapsed,
        })
    }

    /// The last model a request was sent to, if any.
    fn last_sent(&self) -> Option<&ModelAttempt> {
        self.tried
            .iter()
            .rev()
            .find(|a| a.attempts > 0 || a.outcome == Outcome::Cancelled)
    }

    /// The error for a call whose every model failed or was skipped.
    pub(crate) fn exhausted(&self, route: &str, deadline: Duration) -> RouteErrorKind {
        RouteErrorKind::Exhausted {
            route: route.to_owned(),
            tried: self
                .tried
                .iter()
                .map(|a| (a.model_id.clone(), a.outcome))
                .collect(),
            last: self.last_failure.clone().unwrap_or_else(|| {
                if Instant::now() >= self.deadline {
                    format!("the deadline of {deadline:?} passed")
                } else {
                    "every model's circuit is open".to_owned()
                }
            }),
            retry_after: if self.every_model(|a| a.outcome == Outcome::CircuitOpen) {
                self.reopens_in
            } else {
                self.retry_after
            },
            refused: self.refused_by_all(),
        }
    }

    /// Whether every model of the chain was reached (the deadline left none untried) and
    /// ended as `ended` says.
    fn every_model(&self, ended: impl Fn(&ModelAttempt) -> bool) -> bool {
        !self.tried.is_empty() && self.tried.len() >= self.models && self.tried.iter().all(ended)
    }

    /// When every model of the chain refused the request itself (a 403 restricting the
    /// model, a 422 policy violation): the status they shared, or 422 when they differed.
    /// `None` when one failed on its side (a 404 included: it counts against the model's
    /// health) or was skipped, or the deadline left one untried.
    fn refused_by_all(&self) -> Option<u16> {
        let refusal = |a: &ModelAttempt| match a.outcome {
            Outcome::PolicyViolation => true,
            Outcome::ClientError => a.status == Some(403),
            _ => false,
        };
        if !self.every_model(refusal) {
            return None;
        }
        let first = self.tried.first().and_then(|a| a.status);
        let shared = first.filter(|s| self.tried.iter().all(|a| a.status == Some(*s)));
        Some(shared.unwrap_or(422))
    }
}

/// A model's entry before anything is known of its end.
fn pending(model: &ModelId) -> ModelAttempt {
    ModelAttempt {
        model_id: model.clone(),
        request_id: String::new(),
        attempts: 0,
        outcome: Outcome::Cancelled,
        status: None,
        error_code: None,
        upstream_correlation_id: None,
        latency_us: 0,
    }
}

/// What the caller asked for, as the audit entry records it.
pub(crate) struct Asked {
    pub(crate) route: String,
    pub(crate) primary: ModelId,
    pub(crate) tuning: Tuning,
    pub(crate) temperature: f64,
    pub(crate) digest: PromptDigest,
    pub(crate) metadata: Metadata,
    pub(crate) trace_id: String,
    pub(crate) caller_request_id: Option<String>,
}

/// How the walk down the chain ended.
// Unboxed on purpose: a box would cost an allocation per call, and this lives briefly.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Ended {
    /// The caller dropped the future, or the call's stop signal came first; why.
    Cancelled(String),
    /// A model answered (the last model sent to: its request id is the audit entry's).
    Answered(GatewayResponse),
    /// A failure another model would not fix.
    Stopped(RouteErrorKind),
    /// Every model failed or was skipped, or the deadline passed.
    Exhausted,
}

/// How a call ended, as the caller will get it: the answer, or the failure.
pub(crate) type Settled = Result<GatewayResponse, RouteErrorKind>;

impl Ended {
    /// The call's end as the caller gets it; `deadline` is the call's, for an exhausted one.
    pub(crate) fn settle(self, asked: &Asked, call: &CallState, deadline: Duration) -> Settled {
        match self {
            Ended::Answered(response) => Ok(response),
            Ended::Stopped(kind) => Err(kind),
            Ended::Cancelled(reason) => Err(RouteErrorKind::Cancelled { reason }),
            Ended::Exhausted => Err(call.exhausted(&asked.route, deadline)),
        }
    }
}

impl Asked {
    /// The audit entry of a call that ended as `settled` after `latency`.
    pub(crate) fn audit_entry(
        self,
        call: CallState,
        settled: &Settled,
        latency: Duration,
    ) -> AuditEntry {
        let answered = settled.as_ref().ok();
        let outcome = match settled {
            Err(RouteErrorKind::Cancelled { .. }) => Outcome::Cancelled,
            Err(RouteErrorKind::Invalid(_)) => Outcome::ClientError,
            _ => call
                .tried
                .last()
                .map_or(Outcome::ClientError, |a| a.outcome),
        };
        let last = call.last_sent();
        let request_id = last.map(|a| a.request_id.clone()).unwrap_or_default();
        let upstream_correlation_id = last.and_then(|a| a.upstream_correlation_id.clone());
        let status = last.and_then(|a| a.status);
        let error_code = if answered.is_some() {
            None
        } else {
            last.and_then(|a| a.error_code.clone())
        };
        let mut entry = AuditEntry {
            id: ids::time_ordered(),
            timestamp: chrono::Utc::now(),
            route: self.route,
            request_id,
            correlation_id: call.correlation_id,
            upstream_correlation_id,
            trace_id: Some(self.trace_id),
            caller_request_id: self.caller_request_id,
            requested_model: self.primary,
            served_model: answered.map(|r| r.model_id.clone()),
            attempts: call.attempts,
            fallbacks_used: u32::try_from(call.tried.len().saturating_sub(1)).unwrap_or(u32::MAX),
            models_tried: call.tried,
            outcome,
            status,
            error_code,
            reason: match settled {
                Err(RouteErrorKind::Cancelled { reason }) => Some(reason.clone()),
                _ => None,
            },
            latency_us: duration_us(latency),
            tuning: self.tuning,
            temperature: self.temperature,
            safety_verdict: answered
                .and_then(|r| r.safety.as_ref())
                .map(|s| s.verdict.clone()),
            usage: answered.and_then(|r| r.usage.clone()),
            prompt_sha256: self.digest.sha256,
            prompt_chars: self.digest.chars,
            metadata: self.metadata,
        };
        entry.bound_upstream_fields();
        entry.bound_caller_fields();
        entry
    }
}

/// The caller's answer for a call that ended as `settled` and was audited as `entry`.
pub(crate) fn answer(
    entry: AuditEntry,
    settled: Settled,
    latency: Duration,
    audit_id: Option<uuid::Uuid>,
) -> Result<RouteOutcome, RouteError> {
    match settled {
        Ok(response) => Ok(RouteOutcome {
            route: entry.route,
            // As the entry has it: the gateway's id, cut to `MAX_UPSTREAM_TEXT_CHARS` (the
            // sidecar echoes it in a header; the full text stays in `response`).
            served_model: entry
                .served_model
                .unwrap_or_else(|| response.model_id.clone()),
            response,
            requested_model: entry.requested_model,
            attempts: entry.attempts,
            fallbacks_used: entry.fallbacks_used,
            models_tried: entry.models_tried,
            latency_us: entry.latency_us,
            correlation_id: entry.correlation_id,
            // The answering model was the last one sent to, whose id the entry holds.
            request_id: entry.request_id,
            audit_id,
        }),
        Err(kind) => {
            let trace = CallTrace {
                route: entry.route,
                correlation_id: entry.correlation_id,
                requested_model: entry.requested_model,
                models_tried: entry.models_tried,
                latency,
                audit_id,
            };
            Err(RouteError::traced(kind, trace))
        }
    }
}

/// Microseconds, saturating.
pub(crate) fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16) -> ModelAttempt {
        ModelAttempt {
            attempts: 1,
            outcome: if status == 422 {
                Outcome::PolicyViolation
            } else {
                Outcome::ClientError
            },
            status: Some(status),
            ..pending(&ModelId::new("m"))
        }
    }

    /// A call state for a chain of `models`.
    fn call(models: usize) -> CallState {
        CallState::new(
            Instant::now(),
            models,
            TraceContext::continue_or_start(None, None),
        )
    }

    fn exhausted_after(models: usize, tried: Vec<ModelAttempt>) -> Option<u16> {
        let mut call = call(models);
        call.tried = tried;
        match call.exhausted("r", Duration::ZERO) {
            RouteErrorKind::Exhausted { refused, .. } => refused,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_call_whose_every_circuit_is_open_says_when_the_first_lets_a_call_through() {
        let retry_after = |models: usize, waits: &[Option<u64>], failed: bool| {
            let mut call = call(models);
            call.retry_after = Some(Duration::from_secs(7));
            for wait in waits {
                call.skipped(&ModelId::new("m"), wait.map(Duration::from_secs));
            }
            if failed {
                call.tried.push(refused(403));
            }
            match call.exhausted("r", Duration::ZERO) {
                RouteErrorKind::Exhausted { retry_after, .. } => retry_after,
                other => panic!("{other:?}"),
            }
        };
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(retry_after(2, &[Some(30), Some(5)], false), secs(5));
        assert_eq!(
            retry_after(2, &[Some(30), None], false),
            Some(PROBE_OUT_WAIT),
            "a probe is out"
        );
        assert_eq!(
            retry_after(2, &[Some(30)], true),
            secs(7),
            "a model was tried: the rate limits' wait, as before"
        );
        assert_eq!(
            retry_after(2, &[Some(30)], false),
            secs(7),
            "the deadline left one untried"
        );
    }

    #[test]
    fn a_call_is_refused_by_all_only_when_every_model_of_the_chain_refused_it() {
        assert_eq!(
            exhausted_after(2, vec![refused(403), refused(403)]),
            Some(403)
        );
        assert_eq!(
            exhausted_after(2, vec![refused(403), refused(422)]),
            Some(422)
        );
        assert_eq!(
            exhausted_after(2, vec![refused(403)]),
            None,
            "the deadline left the fallback untried"
        );
        let failed = ModelAttempt {
            outcome: Outcome::UpstreamError,
            ..refused(503)
        };
        assert_eq!(exhausted_after(2, vec![refused(403), failed]), None);
        assert_eq!(
            exhausted_after(2, vec![refused(403), refused(404)]),
            None,
            "a 404 is the model's failure, not a refusal of the request"
        );
        assert_eq!(exhausted_after(0, Vec::new()), None);
    }
}
