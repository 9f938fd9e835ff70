//! The call loop: a request checked and turned into a payload, the fallback chain
//! walked model by model, and the one audit entry every call leaves, even a cancelled one.

use std::sync::Arc;

use bytes::Bytes;
use gateway_audit::{EncodedEntry, PromptDigest};
use gateway_model::{
    AuditEntry, GatewayPayload, MAX_METADATA_ENTRIES, Metadata, ModelId, Outcome, RouteOutcome,
    RouteRequest, Rule, Validate, ValidationErrors, Violation,
};
use gateway_transport::clock::later;
use tokio::time::Instant;

use crate::attempt::{Next, Target};
use crate::breaker::{Admission, Transition};
use crate::call_state::{Asked, CallState, Ended, answer};
use crate::compiled_route::CompiledRoute;
use crate::error::{RouteError, RouteErrorKind};
use crate::fleet_probe::FleetProbe;
use crate::router::{ModelState, Router};
use crate::trace_context::TraceContext;

/// A request made ready to send: the payload of its first model, what the audit entry
/// records of it, the call's state, and the rules it breaks, if any.
struct Prepared {
    payload: GatewayPayload,
    asked: Asked,
    call: CallState,
    /// Boxed: the call's future keeps this room for the whole call, and it is rare.
    invalid: Option<Box<RouteErrorKind>>,
}

impl Router {
    /// Routes one prompt: selects the model, walks the fallback chain, and returns the
    /// answer with the model that gave it, the attempts and the models tried.
    ///
    /// Exactly one audit entry is written before this returns (an unknown route name is
    /// the only exception: there is nothing to audit). If the returned future is dropped
    /// before it completes, the call in flight is abandoned (its limiter slot and
    /// connection are released) and an entry with outcome `cancelled` is written in the
    /// background with whatever was tried so far.
    pub fn route(
        &self,
        request: RouteRequest,
    ) -> impl Future<Output = Result<RouteOutcome, RouteError>> {
        // The future of `route_until` itself: a wrapper would store its own copy.
        self.route_until(request, std::future::pending())
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
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` stores each argument twice (rust-lang/rust#62958)"
    )]
    pub fn route_until(
        &self,
        request: RouteRequest,
        stop: impl Future<Output = String>,
    ) -> impl Future<Output = Result<RouteOutcome, RouteError>> {
        async move {
            let started = Instant::now();
            let Some(route) = self.inner.routes.get(&request.route) else {
                return Err(RouteErrorKind::unknown_route(request.route, &self.routes()).into());
            };
            let chain = route.chain(request.sticky_key.as_deref().unwrap_or(&request.prompt));
            // A route has at least one model (config validation); so does its chain.
            let primary = chain.first().cloned().unwrap_or_else(|| ModelId::new(""));
            let Prepared {
                mut payload,
                asked,
                call,
                invalid,
            } = self.prepare(route, &primary, chain.len(), request, started);
            let mut guard = CallGuard {
                router: self,
                started,
                asked: Some(asked),
                call: Some(call),
            };
            let ended = if let Some(kind) = invalid {
                Ended::Stopped(*kind)
            } else {
                let call = guard
                    .call
                    .as_mut()
                    .expect("the guard holds the call until disarmed");
                tokio::select! {
                    biased;
                    ended = self.walk(chain, &mut payload, call) => ended,
                    reason = stop => Ended::Cancelled(reason),
                }
            };
            let (asked, call) = guard.disarm();
            self.finish(asked, call, ended, started).await
        }
    }

    /// The payload for `primary`, the audit entry's record of `request`, the call's
    /// state for a chain of `models`, and the rules `request` breaks.
    fn prepare(
        &self,
        route: &CompiledRoute,
        primary: &ModelId,
        models: usize,
        request: RouteRequest,
        started: Instant,
    ) -> Prepared {
        let (parameters, mut outside_route) = route.sampling.parameters(&request);
        let metadata = route.labels(&request.metadata);
        outside_route.extend(labels_outside_route(&metadata, &request.metadata));
        // An invalid request (a sticky key too long, an override outside the route's
        // bounds) is refused before any model.
        let invalid =
            refused(&request, outside_route).map(|e| Box::new(RouteErrorKind::Invalid(e)));
        let temperature = parameters.temperature;
        let trace = TraceContext::continue_or_start(
            request.traceparent.as_deref(),
            request.tracestate.as_deref(),
        );
        let payload = GatewayPayload {
            model_id: primary.clone(),
            prompt: request.prompt,
            parameters,
            fallback_models: Vec::new(),
            safety_filters: route.safety_filters.clone(),
            metadata,
        };
        let asked = Asked {
            route: request.route,
            primary: primary.clone(),
            tuning: request.tuning,
            temperature,
            digest: PromptDigest::of(&payload.prompt),
            metadata: request.metadata,
            trace_id: trace.trace_id(),
            caller_request_id: request.caller_request_id,
        };
        let call = CallState::new(later(started, self.inner.deadline), models, trace);
        Prepared {
            payload,
            asked,
            call,
            invalid,
        }
    }

    /// Records the router's own time, writes the audit entry, and answers the caller.
    ///
    /// The entry is made before the future is, so the future holds only what the write
    /// and the answer need: it is part of every call's, for the whole call.
    fn finish(
        &self,
        asked: Asked,
        mut call: CallState,
        ended: Ended,
        started: Instant,
    ) -> impl Future<Output = Result<RouteOutcome, RouteError>> {
        let inner = &*self.inner;
        // The model cut short is timed first, so its time is never more than the call's
        // (the order the dropped-call path keeps too).
        let cut_short = call.cut_short();
        let latency = started.elapsed();
        self.record_cut_short(cut_short);
        if let Some(state) = inner.models.get(&asked.primary) {
            state.metrics.overhead(latency.saturating_sub(call.waited));
        }
        let settled = ended.settle(&asked, &call, inner.deadline);
        let entry = asked.audit_entry(call, &settled, latency);
        async move {
            let audit_id = self.write_audit(&entry).await;
            answer(entry, settled, latency, audit_id)
        }
    }

    /// Tries each model of the chain in turn until one answers or one failure stops the
    /// call.
    ///
    /// Each model but the last gets an equal share of the time left, so a model that hangs
    /// cannot use up the fallbacks' time; the last gets all that remains. Later models whose
    /// circuit stays open past the deadline take no share.
    async fn walk(
        &self,
        chain: &[ModelId],
        payload: &mut GatewayPayload,
        call: &mut CallState,
    ) -> Ended {
        for (i, model) in chain.iter().enumerate() {
            let now = Instant::now();
            if now >= call.deadline {
                return Ended::Exhausted;
            }
            let next_model = chain.get(i + 1);
            let state = &self.inner.models[model];
            let Some((admission, fleet_probe)) = self.admit(state, model, call.deadline).await
            else {
                call.out_of_time(model);
                return Ended::Exhausted;
            };
            let probe = match admission {
                Admission::Rejected { retry_in } => {
                    call.skipped(model, retry_in);
                    state.metrics.skipped();
                    self.inner.stats.record_skipped(model.as_str());
                    self.count_fallback(model, next_model, Outcome::CircuitOpen);
                    continue;
                }
                Admission::Probe(probe) => Some(probe),
                Admission::Allowed => None,
            };
            // A fallback changes only `modelId` and `fallbackModels`: the payload is
            // encoded (validated, checked) again for each model sent to.
            let sent = match encode_for(payload, chain, i) {
                Ok(bytes) => bytes,
                Err(errors) => return Ended::Stopped(RouteErrorKind::Invalid(errors)),
            };
            let contenders = self.contenders(chain, i, call.deadline);
            let target = Target {
                state,
                model,
                // A fallback that will be skipped is none: a 429 is waited out instead.
                has_fallback: contenders > 1,
                // Measured after `admit`, which may have asked the fleet's Redis.
                deadline: share_of(Instant::now(), call.deadline, contenders),
            };
            let attempt = self.try_model(&target, sent, call).await;
            let transition = state.breaker.report(attempt.health, probe);
            self.tell_fleet(model, transition, fleet_probe, call.deadline)
                .await;
            match attempt.next {
                Next::Answered(response) => return Ended::Answered(response),
                Next::Stop(kind) => return Ended::Stopped(kind),
                Next::Fallback => self.count_fallback(model, next_model, attempt.outcome),
            }
        }
        Ended::Exhausted
    }

    /// How many models of `chain` from `i` on may still take a share of the time up to
    /// `deadline`: the model at `i`, and each after it whose circuit is not known to stay
    /// open past `deadline` (such a model will be skipped, so its share goes to the others).
    fn contenders(&self, chain: &[ModelId], i: usize, deadline: Instant) -> usize {
        let later = chain.get(i + 1..).unwrap_or_default();
        1 + later
            .iter()
            .filter(|m| {
                self.inner
                    .models
                    .get(*m)
                    .is_none_or(|state| !state.breaker.open_past(deadline))
            })
            .count()
    }

    /// Counts a move from `model` to the next one, if there is one.
    fn count_fallback(&self, model: &ModelId, next: Option<&ModelId>, outcome: Outcome) {
        if let Some(next) = next {
            self.inner.stats.record_fallback(model.as_str());
            gateway_telemetry::fallback(model.as_str(), next.as_str(), outcome);
        }
    }

    /// Whether `model` may be called now: its breaker, which first takes in the fleet's
    /// open circuit, and the fleet's one probe (with the claim on it, for a probe).
    /// `None` if `deadline` passed while the fleet was asked (each Redis command has a
    /// bound of its own, which may be longer than the call has left).
    async fn admit<'s>(
        &self,
        state: &'s ModelState,
        model: &ModelId,
        deadline: Instant,
    ) -> Option<(Admission<'s>, Option<FleetProbe>)> {
        let Some(shared) = &self.inner.circuits else {
            return Some((state.breaker.admit(), None));
        };
        let asked = async {
            if let Some(wait) = shared.open_for(model.as_str()).await {
                // Never longer than this replica would open it: an answer from outside
                // the process is not trusted further.
                state
                    .breaker
                    .cool_down(wait.min(self.inner.config.longest_circuit_opening()));
            }
            match state.breaker.admit() {
                Admission::Probe(probe) => {
                    // A claim's lease is the call's deadline: past it, or past the
                    // longest opening, a release says nothing.
                    let config = &self.inner.config;
                    let bound = config
                        .longest_circuit_opening()
                        .max(std::time::Duration::from_millis(config.limits.deadline_ms));
                    if let Some(claim) = FleetProbe::claim(shared, model, bound).await {
                        (Admission::Probe(probe), Some(claim))
                    } else {
                        probe.neutral();
                        (Admission::Rejected { retry_in: None }, None)
                    }
                }
                other => (other, None),
            }
        };
        // Cut short, a probe's slot and its claim are freed by their guards.
        tokio::time::timeout_at(deadline, asked).await.ok()
    }

    /// Tells the fleet, if any, that `model`'s circuit opened or closed here, and ends
    /// the probe's `claim`: waited for until `deadline`, then left to finish in the
    /// background (each Redis command has a bound of its own, which may be longer than
    /// the call has left), but given up after the longest opening, past which the notice
    /// says nothing (another `SharedCircuits` may have no bound of its own).
    async fn tell_fleet(
        &self,
        model: &ModelId,
        transition: Transition,
        claim: Option<FleetProbe>,
        deadline: Instant,
    ) {
        let Some(shared) = &self.inner.circuits else {
            return;
        };
        if transition == Transition::None && claim.is_none() {
            return;
        }
        let (shared, model) = (Arc::clone(shared), model.clone());
        let longest = self.inner.config.longest_circuit_opening();
        let told = tokio::spawn(tokio::time::timeout(longest, async move {
            match transition {
                Transition::Opened(wait) => shared.opened(model.as_str(), wait).await,
                Transition::Closed => shared.closed(model.as_str()).await,
                Transition::None => {}
            }
            if let Some(claim) = claim {
                claim.settle(transition).await;
            }
        }));
        let _ = tokio::time::timeout_at(deadline, told).await;
    }

    /// Writes the audit entry; a failure is logged and counted (`event="failed"`), never silent.
    async fn write_audit(&self, entry: &AuditEntry) -> Option<uuid::Uuid> {
        let audit = self.inner.audit.as_ref()?;
        let recorded = match EncodedEntry::encode(entry) {
            Ok(encoded) => audit.record_encoded(&encoded).await,
            Err(e) => Err(e),
        };
        match recorded {
            Ok(()) => Some(entry.id),
            Err(e) => {
                gateway_telemetry::audit_event(gateway_telemetry::AuditEvent::Failed);
                tracing::error!(audit_id = %entry.id, correlation_id = %entry.correlation_id, error = %e, "audit entry not written");
                None
            }
        }
    }
}

/// `payload` addressed to `chain[i]` with the rest of the chain as its fallbacks, as the
/// bytes to send.
fn encode_for(
    payload: &mut GatewayPayload,
    chain: &[ModelId],
    i: usize,
) -> Result<Bytes, ValidationErrors> {
    payload.model_id = chain[i].clone();
    payload.fallback_models = chain[i + 1..].to_vec();
    payload.to_json_bytes().map(Bytes::from)
}

/// The end of one model's share of the time from `now` to `deadline`, when `models`
/// (at least one) are left to try: an equal share, or all of it for the last.
fn share_of(now: Instant, deadline: Instant, models: usize) -> Instant {
    if models <= 1 || now >= deadline {
        return deadline;
    }
    now + (deadline - now) / u32::try_from(models).unwrap_or(u32::MAX)
}

/// Every rule `request` breaks: its own bounds, then the route's (`outside_route`), each
/// place reported once.
/// The caller's labels (`asked`) when, with the route's (`sent` holds both), they come
/// to more than a payload may carry: the caller is told the room the route leaves, not
/// a count of labels it never sent. Past the cap on their own, validation says so.
fn labels_outside_route(sent: &Metadata, asked: &Metadata) -> Option<Violation> {
    if sent.len() <= MAX_METADATA_ENTRIES || asked.len() > MAX_METADATA_ENTRIES {
        return None;
    }
    // The labels only the route adds: the caller's own override the route's.
    let routes_own = sent.len() - asked.len();
    let room = MAX_METADATA_ENTRIES.saturating_sub(routes_own);
    Some(Violation {
        path: "/metadata".into(),
        rule: Rule::OutsideRoute {
            bound: format!("room of {room} labels beside its own {routes_own}"),
            actual: u64::try_from(asked.len()).unwrap_or(u64::MAX).into(),
        },
    })
}

fn refused(request: &RouteRequest, outside_route: Vec<Violation>) -> Option<ValidationErrors> {
    match request.validate() {
        Ok(()) => ValidationErrors::from_violations(outside_route),
        Err(mut broken) => {
            broken.extend(outside_route);
            Some(broken)
        }
    }
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
        let (Some(asked), Some(mut call)) = (self.asked.take(), self.call.take()) else {
            return;
        };
        self.router.record_cut_short(call.cut_short());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let reason = "the caller stopped waiting before the call ended";
        let settled =
            Ended::Cancelled(reason.into()).settle(&asked, &call, self.router.inner.deadline);
        let entry = asked.audit_entry(call, &settled, self.started.elapsed());
        let router = self.router.clone();
        runtime.spawn(async move {
            router.write_audit(&entry).await;
        });
    }
}
