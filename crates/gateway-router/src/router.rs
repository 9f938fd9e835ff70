//! The router: routes compiled from config, the call loop over the fallback chain, and
//! the metrics and audit entry every call leaves behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use gateway_audit::{AuditSink, PromptDigest};
use gateway_model::{
    AuditEntry, ErrorBody, GatewayPayload, GatewayResponse, Metadata, ModelAttempt, ModelId,
    Outcome, RetryReason, RouteConfig, RouteOutcome, RouteRequest, RouterConfig, SafetyFilter,
    Validate, ValidationErrors, Violation,
};
use gateway_telemetry::{ModelMetrics, Stats};
use gateway_transport::{Call, CallStats, ErrorKind, TokenSource, Transport, TransportError};
use http::Uri;
use tokio::time::Instant;

use crate::breaker::{Admission, BreakerState, CircuitBreaker, CoolDownRule};
use crate::catalogue::CatalogueCheck;
use crate::error::{CallTrace, RouteError, RouteErrorKind};
use crate::ids;
use crate::sampling::RouteSampling;
use crate::selection::StickySelector;
use crate::trace_context::TraceContext;

/// A route, compiled from its config.
#[derive(Debug)]
pub(crate) struct CompiledRoute {
    selector: StickySelector,
    fallbacks: Vec<ModelId>,
    sampling: RouteSampling,
    safety_filters: Vec<SafetyFilter>,
    /// The route's labels on top of `routingVersion` and `dispatchSource`.
    metadata: Metadata,
}

impl CompiledRoute {
    pub(crate) fn new(config: &RouteConfig) -> Self {
        let selector = match &config.model {
            Some(model) => StickySelector::single(model.clone()),
            None => StickySelector::new(&config.split),
        };
        Self {
            selector,
            fallbacks: config.fallbacks.clone(),
            sampling: RouteSampling {
                temperature: config.temperature,
                max_tokens: config.max_tokens,
                top_p: config.top_p,
            },
            safety_filters: config.safety_filters.clone(),
            metadata: {
                let mut base = Metadata::defaults();
                for (k, v) in &config.metadata.0 {
                    base.insert(k.clone(), v.clone());
                }
                base
            },
        }
    }

    /// The chain for a call: the selected model, then the fallbacks that differ from it.
    fn chain<'a>(&'a self, selected: &'a ModelId) -> Vec<&'a ModelId> {
        let mut chain = Vec::with_capacity(1 + self.fallbacks.len());
        chain.push(selected);
        chain.extend(self.fallbacks.iter().filter(|m| *m != selected));
        chain
    }
}

/// Per-model state: metric handles and the circuit breaker.
pub(crate) struct ModelState {
    pub(crate) metrics: ModelMetrics,
    pub(crate) breaker: CircuitBreaker,
}

pub(crate) struct Inner {
    pub(crate) config: RouterConfig,
    pub(crate) routes: HashMap<String, CompiledRoute>,
    pub(crate) models: HashMap<ModelId, ModelState>,
    pub(crate) transport: Transport,
    pub(crate) prompts_uri: Uri,
    pub(crate) models_uri: String,
    pub(crate) tokens: Arc<dyn TokenSource>,
    pub(crate) stats: Stats,
    pub(crate) audit: Option<Arc<dyn AuditSink>>,
    pub(crate) cool_down: CoolDownRule,
    pub(crate) deadline: Duration,
    pub(crate) catalogue: Mutex<Option<CatalogueCheck>>,
    /// Circuit state shared with a fleet's other replicas, if any.
    pub(crate) circuits: Option<Arc<dyn gateway_transport::SharedCircuits>>,
}

/// Routes prompts to the Genesys Cloud AI Gateway: picks a model (sticky on a key),
/// tunes the temperature, validates, sends with retries, walks the fallback chain, and
/// records metrics and one audit entry per call.
///
/// Cheap to clone; clones share everything.
///
/// ```no_run
/// use gateway_model::{RouteRequest, Tuning};
/// use gateway_router::{Router, load_config};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = load_config("router.toml".as_ref())?;
/// let router = Router::builder(config).build().await?; // credentials from GENESYS_CLIENT_ID/SECRET
/// let outcome = router
///     .route(RouteRequest::new("summarize", "Summarize this transcript").tuning(Tuning::Low).sticky_key("conv-7f3a"))
///     .await?;
/// println!("{} answered: {}", outcome.served_model, outcome.response.output);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Router {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut routes: Vec<&String> = self.inner.routes.keys().collect();
        routes.sort();
        f.debug_struct("Router")
            .field("routes", &routes)
            .field("transport", &self.inner.transport)
            .field("audit", &self.inner.audit.is_some())
            .finish_non_exhaustive()
    }
}

/// How one model's attempt ended, for the loop.
enum Next {
    /// The model answered.
    Answered(Box<GatewayResponse>),
    /// Try the next model.
    Fallback,
    /// Stop: another model would not help.
    Stop(RouteErrorKind),
}

/// What a failure says about the model's health.
#[derive(Clone, Copy, PartialEq)]
enum Health {
    Healthy,
    Unhealthy,
    Neutral,
    CoolDown(Duration),
}

/// Genesys' `code: message (contextId …)` of a failure, or its description.
fn detail(err: &TransportError) -> String {
    err.error_body()
        .map_or_else(|| err.to_string(), ErrorBody::to_string)
}

impl Router {
    /// The configuration the router runs with.
    pub fn config(&self) -> &RouterConfig {
        &self.inner.config
    }

    /// The route names, sorted.
    pub fn routes(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.inner.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The model a call to `route` with `key` starts with, or `None` for an unknown route.
    pub fn select(&self, route: &str, key: &str) -> Option<&ModelId> {
        self.inner.routes.get(route).map(|r| r.selector.select(key))
    }

    /// Per-model statistics: requests, hit rate, latency percentiles, retries, fallbacks.
    pub fn stats(&self) -> Vec<gateway_telemetry::ModelSnapshot> {
        self.inner.stats.snapshot()
    }

    /// The circuit breaker state of `model`.
    pub fn breaker_state(&self, model: &str) -> Option<crate::BreakerState> {
        self.inner.models.get(model).map(|m| m.breaker.state())
    }

    /// The transport (for diagnostics and tests).
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// Whether a token can be had now (a readiness check).
    pub async fn token_ready(&self) -> Result<(), String> {
        self.inner
            .tokens
            .token()
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Waits until every audit entry so far is written (and delivered or spooled).
    pub async fn flush(&self, deadline: Instant) -> Result<(), String> {
        match &self.inner.audit {
            Some(audit) => audit.flush(deadline).await.map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Flushes and closes the audit sinks; calls after this write no audit entries.
    pub async fn shutdown(&self, deadline: Instant) -> Result<(), String> {
        match &self.inner.audit {
            Some(audit) => audit.shutdown(deadline).await.map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Routes one prompt: selects the model, walks the fallback chain, and returns the
    /// answer with the model that gave it, the attempts and the models tried.
    ///
    /// Exactly one audit entry is written before this returns (an unknown route name is
    /// the only exception: there is nothing to audit). If the returned future is dropped
    /// before it completes, the call in flight is abandoned (its limiter slot and
    /// connection are released) and an entry with outcome `cancelled` is written in the
    /// background with whatever was tried so far.
    pub async fn route(&self, request: RouteRequest) -> Result<RouteOutcome, RouteError> {
        self.route_until(request, std::future::pending()).await
    }

    /// Routes one prompt like [`Router::route`], but stops the call when `stop`
    /// resolves first, with the reason it gives.
    ///
    /// A stopped call releases its limiter slot and connection, is audited as
    /// `cancelled` with the reason before this returns, and fails with
    /// [`RouteErrorKind::Cancelled`]. A sidecar uses it to end what a shutdown's drain
    /// timeout leaves running, so no call goes unaudited or unanswered.
    ///
    /// ```no_run
    /// # async fn run(router: gateway_router::Router) {
    /// use gateway_model::RouteRequest;
    /// let stop = async {
    ///     tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    ///     "gave up after 5 s".to_owned()
    /// };
    /// let result = router.route_until(RouteRequest::new("summarize", "hi"), stop).await;
    /// # }
    /// ```
    pub async fn route_until(
        &self,
        request: RouteRequest,
        stop: impl Future<Output = String>,
    ) -> Result<RouteOutcome, RouteError> {
        let started = Instant::now();
        let inner = &*self.inner;
        let Some(route) = inner.routes.get(&request.route) else {
            return Err(RouteErrorKind::UnknownRoute {
                route: request.route,
                known: self.routes().into_iter().map(str::to_owned).collect(),
            }
            .into());
        };
        let primary = route
            .selector
            .select(request.sticky_key.as_deref().unwrap_or(&request.prompt))
            .clone();
        let chain = route.chain(&primary);
        let (parameters, outside_route) = route.sampling.parameters(&request);
        // An invalid request (a sticky key too long, an override outside the route's
        // bounds) is refused before any model.
        let invalid = refused(&request, outside_route).map(RouteErrorKind::Invalid);
        let temperature = parameters.temperature;
        let trace = TraceContext::continue_or_start(
            request.traceparent.as_deref(),
            request.tracestate.as_deref(),
        );
        let mut payload = GatewayPayload {
            model_id: primary.clone(),
            prompt: request.prompt,
            parameters,
            fallback_models: Vec::new(),
            safety_filters: route.safety_filters.clone(),
            metadata: with_labels(&route.metadata, &request.metadata),
        };
        let mut guard = CallGuard {
            router: self,
            started,
            asked: Some(Asked {
                route: request.route,
                primary: primary.clone(),
                tuning: request.tuning,
                temperature,
                digest: PromptDigest::of(&payload.prompt),
                metadata: request.metadata,
                trace_id: trace.trace_id(),
                caller_request_id: request.caller_request_id,
            }),
            call: Some(CallState::new(
                gateway_transport::clock::later(started, inner.deadline),
                chain.len(),
                trace,
            )),
        };

        let ended = if let Some(kind) = invalid {
            Ended::Stopped(kind)
        } else {
            let call = guard.call.as_mut().expect("set above");
            tokio::select! {
                biased;
                ended = self.walk(&chain, &mut payload, call) => ended,
                reason = stop => Ended::Cancelled(reason),
            }
        };
        let (asked, call) = guard.disarm();

        let latency = started.elapsed();
        if let Some(state) = inner.models.get(&asked.primary) {
            state.metrics.overhead(latency.saturating_sub(call.waited));
        }
        let failure = match &ended {
            Ended::Answered(..) => None,
            Ended::Stopped(kind) => Some(kind.clone()),
            Ended::Cancelled(reason) => Some(RouteErrorKind::Cancelled {
                reason: reason.clone(),
            }),
            Ended::Exhausted => Some(call.exhausted(&asked.route, inner.deadline)),
        };
        let entry = asked.audit_entry(call, &ended, latency);
        let audit_id = self.write_audit(&entry).await;

        answer(entry, ended, failure, latency, audit_id)
    }

    /// Tries each model of the chain in turn until one answers or one failure stops the call.
    ///
    /// Each model but the last gets an equal share of the time left, so a model that hangs
    /// cannot use up the fallbacks' time; the last gets all that remains.
    /// Whether `model` may be called now: its breaker, which first takes in the fleet's
    /// open circuit, and the fleet's one probe.
    async fn admit<'s>(&self, state: &'s ModelState, model: &ModelId) -> Admission<'s> {
        let Some(shared) = &self.inner.circuits else {
            return state.breaker.admit();
        };
        if let Some(wait) = shared.open_for(model.as_str()).await {
            state.breaker.cool_down(wait);
        }
        match state.breaker.admit() {
            Admission::Probe(probe) if !shared.claim_probe(model.as_str()).await => {
                probe.neutral();
                Admission::Rejected { retry_in: None }
            }
            other => other,
        }
    }

    /// Tells the fleet that `model`'s circuit opened or closed here (it was `before`).
    async fn share_circuit(&self, state: &ModelState, model: &ModelId, before: BreakerState) {
        let Some(shared) = &self.inner.circuits else {
            return;
        };
        match state.breaker.state() {
            after if after == before => {}
            BreakerState::Open { until } => {
                let wait = until.saturating_duration_since(Instant::now());
                shared.opened(model.as_str(), wait).await;
            }
            BreakerState::Closed { failures: 0 }
                if !matches!(before, BreakerState::Closed { .. }) =>
            {
                shared.closed(model.as_str()).await;
            }
            _ => {}
        }
    }

    async fn walk(
        &self,
        chain: &[&ModelId],
        payload: &mut GatewayPayload,
        call: &mut CallState,
    ) -> Ended {
        let inner = &*self.inner;
        let mut body: Option<Bytes> = None;
        for (i, model) in chain.iter().enumerate() {
            let now = Instant::now();
            if now >= call.deadline {
                return Ended::Exhausted;
            }
            let state = &inner.models[*model];
            let next_model = chain.get(i + 1).copied();
            let probe = match self.admit(state, model).await {
                Admission::Rejected { .. } => {
                    call.tried.push(skipped(model));
                    if let Some(next) = next_model {
                        inner.stats.record_fallback(model.as_str());
                        gateway_telemetry::fallback(
                            model.as_str(),
                            next.as_str(),
                            Outcome::CircuitOpen,
                        );
                    }
                    continue;
                }
                Admission::Probe(probe) => Some(probe),
                Admission::Allowed => None,
            };
            // The payload is validated, format-checked and serialised once; a fallback
            // changes only `modelId` and `fallbackModels`, so it is encoded again then.
            if body.is_none() || i > 0 {
                payload.model_id = (*model).clone();
                payload.fallback_models = chain[i + 1..].iter().map(|m| (*m).clone()).collect();
                match payload.to_json_bytes().map(Bytes::from) {
                    Ok(bytes) => body = Some(bytes),
                    Err(errors) => return Ended::Stopped(RouteErrorKind::Invalid(errors)),
                }
            }
            let model_deadline = match next_model {
                Some(_) => {
                    now + (call.deadline - now) / u32::try_from(chain.len() - i).unwrap_or(u32::MAX)
                }
                None => call.deadline,
            };
            let sent = body.clone().unwrap_or_default();
            let (outcome, next, health, request_id) = self
                .try_model(
                    state,
                    model,
                    sent,
                    next_model.is_some(),
                    model_deadline,
                    call,
                )
                .await;
            let before = state.breaker.state();
            match (health, probe) {
                (Health::Healthy, Some(p)) => p.success(),
                (Health::Healthy, None) => state.breaker.record_success(),
                (Health::Unhealthy, Some(p)) => p.failure(),
                (Health::Unhealthy, None) => state.breaker.record_failure(),
                (Health::Neutral, Some(p)) => p.neutral(),
                (Health::Neutral, None) => {}
                (Health::CoolDown(wait), Some(p)) => p.cool_down(wait),
                (Health::CoolDown(wait), None) => state.breaker.cool_down(wait),
            }
            self.share_circuit(state, model, before).await;
            match next {
                Next::Answered(response) => return Ended::Answered(response, request_id),
                Next::Stop(kind) => return Ended::Stopped(kind),
                Next::Fallback => {
                    if let Some(next) = next_model {
                        inner.stats.record_fallback(model.as_str());
                        gateway_telemetry::fallback(model.as_str(), next.as_str(), outcome);
                    }
                }
            }
        }
        Ended::Exhausted
    }

    /// Sends `body` to one model and records what happened: metrics, statistics, and the
    /// model's entry in the call's trace.
    async fn try_model(
        &self,
        state: &ModelState,
        model: &ModelId,
        body: Bytes,
        has_fallback: bool,
        deadline: Instant,
        call: &mut CallState,
    ) -> (Outcome, Next, Health, String) {
        let inner = &*self.inner;
        let request_id = ids::random().to_string();
        // Recorded before sending: a call cancelled mid-flight still shows this model.
        call.tried.push(ModelAttempt {
            model_id: model.clone(),
            request_id: request_id.clone(),
            attempts: 0,
            outcome: Outcome::Cancelled,
            status: None,
            error_code: None,
            upstream_correlation_id: None,
            latency_us: 0,
        });
        let attempt_started = Instant::now();
        let result = {
            let _in_flight = state.metrics.in_flight();
            let mut spec = call.trace.apply(
                Call::post(inner.prompts_uri.clone(), body, request_id.clone())
                    .correlation_id(call.correlation_id.clone())
                    .deadline(deadline),
            );
            if has_fallback {
                // With a fallback at hand, a long Retry-After fails over instead of waiting.
                spec = spec.max_retry_after(inner.cool_down.after);
            }
            inner.transport.execute(spec).await
        };
        let elapsed = attempt_started.elapsed();

        let (outcome, next, health, stats, code) = match result {
            Ok(answer) => match answer.json::<GatewayResponse>() {
                Ok(response) => {
                    if let Some(usage) = &response.usage {
                        state.metrics.tokens(
                            u64::from(usage.prompt_tokens),
                            u64::from(usage.completion_tokens),
                        );
                    }
                    (
                        Outcome::Success,
                        Next::Answered(Box::new(response)),
                        Health::Healthy,
                        answer.stats,
                        None,
                    )
                }
                Err(e) => {
                    call.last_failure = Some(format!("{model}: {e}"));
                    (
                        Outcome::UpstreamError,
                        Next::Fallback,
                        Health::Unhealthy,
                        answer.stats,
                        None,
                    )
                }
            },
            Err(err) => {
                let (outcome, next, health) = classify(&err, model, inner.cool_down);
                call.last_failure = Some(format!("{model}: {err}"));
                if let Some(after) = err.retry_after() {
                    call.retry_after = Some(call.retry_after.map_or(after, |r| r.max(after)));
                }
                let code = err.code().map(str::to_owned);
                (outcome, next, health, err.stats().clone(), code)
            }
        };

        self.record_attempt(state, model, outcome, elapsed, &stats);
        call.waited += stats.upstream + stats.backoff + stats.limiter_wait;
        call.attempts += stats.attempts;
        let attempt = call.tried.last_mut().expect("pushed above");
        attempt.attempts = stats.attempts;
        attempt.outcome = outcome;
        attempt.status = stats.last_status.map(|s| s.as_u16());
        attempt.error_code = code;
        attempt.upstream_correlation_id = stats.upstream_correlation_id;
        attempt.latency_us = duration_us(elapsed);
        (outcome, next, health, request_id)
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
        for _ in 0..stats.attempts {
            state.metrics.attempt();
        }
        for reason in RetryReason::ALL {
            for _ in 0..stats.retries_for(reason) {
                state.metrics.retry(reason);
                // The routing stats count retries the upstream caused; a token refresh
                // is the router's own, and is counted only in the metric.
                if reason != RetryReason::Unauthorized {
                    self.inner.stats.record_retry(model.as_str());
                }
            }
        }
        if stats.attempts > 0 {
            gateway_telemetry::limiter_wait(stats.limiter_wait);
        }
        state.metrics.request(outcome, elapsed);
        self.inner.stats.record(model.as_str(), outcome, elapsed);
    }

    /// Writes the audit entry; a failure is logged and counted (`event="failed"`), never silent.
    async fn write_audit(&self, entry: &AuditEntry) -> Option<uuid::Uuid> {
        let audit = self.inner.audit.as_ref()?;
        match audit.record(entry).await {
            Ok(()) => Some(entry.id),
            Err(e) => {
                gateway_telemetry::audit_event(gateway_telemetry::AuditEvent::Failed);
                tracing::error!(audit_id = %entry.id, correlation_id = %entry.correlation_id, error = %e, "audit entry not written");
                None
            }
        }
    }
}

/// Per-call bookkeeping of the loop.
#[derive(Debug)]
struct CallState {
    deadline: Instant,
    correlation_id: String,
    trace: TraceContext,
    /// Every model tried or skipped; the last one's entry is filled in when it ends.
    tried: Vec<ModelAttempt>,
    /// Time not spent by the router itself: upstream exchanges, backoff, limiter waits.
    waited: Duration,
    attempts: u32,
    last_failure: Option<String>,
    retry_after: Option<Duration>,
}

/// Writes an audit entry with outcome `cancelled` if the call's future is dropped
/// before the call ends; disarmed when it ends normally.
struct CallGuard<'a> {
    router: &'a Router,
    started: Instant,
    asked: Option<Asked>,
    call: Option<CallState>,
}

impl CallGuard<'_> {
    /// The call ended normally: hand back what the entry needs.
    fn disarm(&mut self) -> (Asked, CallState) {
        let asked = self.asked.take().expect("disarmed once");
        let call = self.call.take().expect("disarmed once");
        (asked, call)
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        let (Some(asked), Some(call)) = (self.asked.take(), self.call.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let ended = Ended::Cancelled("the caller stopped waiting before the call ended".into());
        let entry = asked.audit_entry(call, &ended, self.started.elapsed());
        let router = self.router.clone();
        runtime.spawn(async move {
            router.write_audit(&entry).await;
        });
    }
}

impl CallState {
    fn new(deadline: Instant, models: usize, trace: TraceContext) -> Self {
        Self {
            deadline,
            correlation_id: ids::random().to_string(),
            trace,
            tried: Vec::with_capacity(models),
            waited: Duration::ZERO,
            attempts: 0,
            last_failure: None,
            retry_after: None,
        }
    }

    /// The last model a request was sent to, if any.
    fn last_sent(&self) -> Option<&ModelAttempt> {
        self.tried
            .iter()
            .rev()
            .find(|a| a.attempts > 0 || a.outcome == Outcome::Cancelled)
    }

    /// The error for a call whose every model failed or was skipped.
    fn exhausted(&self, route: &str, deadline: Duration) -> RouteErrorKind {
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
            retry_after: self.retry_after,
        }
    }
}

/// What the caller asked for, as the audit entry records it.
struct Asked {
    route: String,
    primary: ModelId,
    tuning: gateway_model::Tuning,
    temperature: f64,
    digest: PromptDigest,
    metadata: Metadata,
    trace_id: String,
    caller_request_id: Option<String>,
}

impl Asked {
    /// The audit entry of a call that ended as `ended` after `latency`.
    fn audit_entry(self, call: CallState, ended: &Ended, latency: Duration) -> AuditEntry {
        let answered = match ended {
            Ended::Answered(response, _) => Some(response.as_ref()),
            _ => None,
        };
        let outcome = match ended {
            Ended::Cancelled(_) => Outcome::Cancelled,
            Ended::Stopped(RouteErrorKind::Invalid(_)) => Outcome::ClientError,
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
        AuditEntry {
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
            reason: match ended {
                Ended::Cancelled(reason) => Some(reason.clone()),
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
        }
    }
}

/// How the walk down the chain ended.
enum Ended {
    /// The caller dropped the future, or the call's stop signal came first; why.
    Cancelled(String),
    /// A model answered (with the request id it was sent).
    Answered(Box<GatewayResponse>, String),
    /// A failure another model would not fix.
    Stopped(RouteErrorKind),
    /// Every model failed or was skipped, or the deadline passed.
    Exhausted,
}

/// The caller's answer for a call that ended as `ended` and was audited as `entry`.
fn answer(
    entry: AuditEntry,
    ended: Ended,
    failure: Option<RouteErrorKind>,
    latency: Duration,
    audit_id: Option<uuid::Uuid>,
) -> Result<RouteOutcome, RouteError> {
    match (ended, failure) {
        (Ended::Answered(response, request_id), _) => Ok(RouteOutcome {
            route: entry.route,
            served_model: response.model_id.clone(),
            response: *response,
            requested_model: entry.requested_model,
            attempts: entry.attempts,
            fallbacks_used: entry.fallbacks_used,
            models_tried: entry.models_tried,
            latency_us: entry.latency_us,
            correlation_id: entry.correlation_id,
            request_id,
            audit_id,
        }),
        (_, kind) => {
            let trace = CallTrace {
                route: entry.route,
                correlation_id: entry.correlation_id,
                requested_model: entry.requested_model,
                models_tried: entry.models_tried,
                latency,
                audit_id,
            };
            let kind = kind.expect("a call that was not answered has a failure");
            Err(RouteError::traced(kind, trace))
        }
    }
}

/// Every rule `request` breaks: its own bounds, then the route's (`outside_route`), each
/// place reported once.
fn refused(request: &RouteRequest, outside_route: Vec<Violation>) -> Option<ValidationErrors> {
    let mut broken = request
        .validate()
        .err()
        .map(|e| e.violations().to_vec())
        .unwrap_or_default();
    broken.extend(outside_route);
    ValidationErrors::from_violations(broken)
}

/// A model skipped because its circuit is open.
fn skipped(model: &ModelId) -> ModelAttempt {
    ModelAttempt {
        model_id: model.clone(),
        request_id: String::new(),
        attempts: 0,
        outcome: Outcome::CircuitOpen,
        status: None,
        error_code: None,
        upstream_correlation_id: None,
        latency_us: 0,
    }
}

/// The route's labels (with `routingVersion` and `dispatchSource`, merged at build), then
/// the caller's on top (a caller's label wins).
fn with_labels(route: &Metadata, request: &Metadata) -> Metadata {
    let mut merged = route.clone();
    for (k, v) in &request.0 {
        merged.insert(k.clone(), v.clone());
    }
    merged
}

/// How a transport failure ends a model's part: outcome, what the loop does next, and
/// what it says about the model's health.
fn classify(
    err: &TransportError,
    model: &ModelId,
    cool_down: CoolDownRule,
) -> (Outcome, Next, Health) {
    let refused = |status: u16| {
        Next::Stop(RouteErrorKind::Refused {
            model: model.clone(),
            status,
            detail: detail(err),
        })
    };
    match err.kind() {
        ErrorKind::Status { status, body } => match status.as_u16() {
            400 | 413 => (
                Outcome::ClientError,
                refused(status.as_u16()),
                Health::Neutral,
            ),
            403 if body.as_deref().is_some_and(ErrorBody::is_model_restricted) => {
                (Outcome::ClientError, Next::Fallback, Health::Neutral)
            }
            403 => (
                Outcome::ClientError,
                Next::Stop(RouteErrorKind::Forbidden {
                    detail: detail(err),
                }),
                Health::Neutral,
            ),
            404 => (Outcome::ClientError, Next::Fallback, Health::Unhealthy),
            422 if body.as_deref().is_some_and(ErrorBody::is_policy_violation) => {
                (Outcome::PolicyViolation, Next::Fallback, Health::Neutral)
            }
            500..=599 => (Outcome::UpstreamError, Next::Fallback, Health::Unhealthy),
            s => (Outcome::ClientError, refused(s), Health::Neutral),
        },
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
        // The call's (or the model's share of the) deadline, not the model's own slowness.
        ErrorKind::DeadlineExceeded { .. } => (Outcome::Timeout, Next::Fallback, Health::Neutral),
        // Not sent: the spent rate limit is this client's, not the model's.
        ErrorKind::Paced { .. } => (Outcome::RateLimited, Next::Fallback, Health::Neutral),
        ErrorKind::LimiterTimeout(t) => (
            Outcome::Timeout,
            Next::Stop(RouteErrorKind::Overloaded(t.to_string())),
            Health::Neutral,
        ),
        ErrorKind::Token(t) => (
            Outcome::ClientError,
            Next::Stop(RouteErrorKind::Token(t.clone())),
            Health::Neutral,
        ),
        ErrorKind::RequestTooLarge { .. } => (Outcome::ClientError, refused(413), Health::Neutral),
        ErrorKind::Tls { .. } => (Outcome::UpstreamError, Next::Fallback, Health::Neutral),
        _ => (Outcome::UpstreamError, Next::Fallback, Health::Unhealthy),
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A shared, lock-protected value (kept here so the catalogue module needs no locking code).
pub(crate) fn locked<T: Clone>(m: &Mutex<Option<T>>) -> Option<T> {
    m.lock().unwrap_or_else(PoisonError::into_inner).clone()
}
