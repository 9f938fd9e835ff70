//! Recording through the `metrics` facade: cached per-model handles, free functions for
//! the rarer events, and [`describe`] for help texts and units.

use std::fmt;
use std::time::Duration;

use gateway_model::{Outcome, RetryReason};
use metrics::{Counter, Gauge, Histogram, KeyName, SharedString, Unit};

use crate::metric_names::{
    ATTEMPTS_TOTAL, AUDIT_ENTRIES_TOTAL, BUILD_INFO, FALLBACKS_TOTAL, FLEET_DEGRADED,
    HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL, IN_FLIGHT_REQUESTS, LABEL_EVENT,
    LABEL_FROM, LABEL_KIND, LABEL_MODEL, LABEL_OUTCOME, LABEL_PATH, LABEL_REASON, LABEL_RESULT,
    LABEL_STATUS, LABEL_TO, LABEL_VERSION, LIMITER_WAIT_SECONDS, OVERHEAD_SECONDS,
    REQUEST_DURATION_SECONDS, REQUESTS_TOTAL, RETRIES_TOTAL, TOKEN_REFRESHES_TOTAL, TOKENS_TOTAL,
    WEBHOOK_SPOOL_BYTES,
};

/// What happened to an audit entry (the `event` label of the audit counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditEvent {
    /// Appended to the JSONL file.
    Written,
    /// Acknowledged (2xx) by the webhook receiver.
    Delivered,
    /// Written to the webhook spool directory.
    Spooled,
    /// Delivered out of the spool.
    Replayed,
    /// Lost: the spool (or `rejected/`, for an entry refused as too large) was full or
    /// failing, or a spooled line was corrupt.
    Dropped,
    /// Sent again after a failed delivery attempt.
    Retried,
    /// A sink refused the entry (a JSONL write, a webhook spool write); the router logged
    /// it.
    Failed,
    /// Refused by the webhook receiver as too large (413) on its own, and set aside in
    /// the spool's `rejected/` directory instead of blocking the entries behind it.
    Rejected,
}

impl AuditEvent {
    /// Every event, in label order.
    pub const ALL: [AuditEvent; 8] = [
        AuditEvent::Written,
        AuditEvent::Delivered,
        AuditEvent::Spooled,
        AuditEvent::Replayed,
        AuditEvent::Dropped,
        AuditEvent::Retried,
        AuditEvent::Failed,
        AuditEvent::Rejected,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Written => "written",
            AuditEvent::Delivered => "delivered",
            AuditEvent::Spooled => "spooled",
            AuditEvent::Replayed => "replayed",
            AuditEvent::Dropped => "dropped",
            AuditEvent::Retried => "retried",
            AuditEvent::Failed => "failed",
            AuditEvent::Rejected => "rejected",
        }
    }
}

impl AuditEvent {
    fn index(self) -> usize {
        match self {
            AuditEvent::Written => 0,
            AuditEvent::Delivered => 1,
            AuditEvent::Spooled => 2,
            AuditEvent::Replayed => 3,
            AuditEvent::Dropped => 4,
            AuditEvent::Retried => 5,
            AuditEvent::Failed => 6,
            AuditEvent::Rejected => 7,
        }
    }
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The position of `outcome` in [`Outcome::ALL`].
pub(crate) fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Success => 0,
        Outcome::ClientError => 1,
        Outcome::RateLimited => 2,
        Outcome::UpstreamError => 3,
        Outcome::PolicyViolation => 4,
        Outcome::Timeout => 5,
        Outcome::CircuitOpen => 6,
        Outcome::Cancelled => 7,
    }
}

/// Registers help texts and units for every metric with the current recorder.
///
/// Call it once after installing a recorder ([`install`](crate::install) and
/// [`LocalMetrics::new`](crate::LocalMetrics::new) already do).
pub fn describe() {
    metrics::with_recorder(|recorder| {
        for (name, kind, unit, help) in DESCRIPTIONS {
            let (key, help) = (KeyName::from_const_str(name), SharedString::const_str(help));
            match kind {
                Kind::Counter => recorder.describe_counter(key, unit, help),
                Kind::Gauge => recorder.describe_gauge(key, unit, help),
                Kind::Histogram => recorder.describe_histogram(key, unit, help),
            }
        }
    });
}

/// The kind of a metric, for its description.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric's name, kind, unit and help text.
const DESCRIPTIONS: [(&str, Kind, Option<Unit>, &str); 16] = [
    (
        REQUESTS_TOTAL,
        Kind::Counter,
        Some(Unit::Count),
        "Finished calls per model, by outcome.",
    ),
    (
        REQUEST_DURATION_SECONDS,
        Kind::Histogram,
        Some(Unit::Seconds),
        "Duration of a model's part of a call, retries included.",
    ),
    (
        OVERHEAD_SECONDS,
        Kind::Histogram,
        Some(Unit::Seconds),
        "Time the router spent outside the upstream HTTP call.",
    ),
    (
        ATTEMPTS_TOTAL,
        Kind::Counter,
        Some(Unit::Count),
        "HTTP attempts sent per model.",
    ),
    (
        RETRIES_TOTAL,
        Kind::Counter,
        Some(Unit::Count),
        "Retried HTTP attempts per model, by reason.",
    ),
    (
        FALLBACKS_TOTAL,
        Kind::Counter,
        Some(Unit::Count),
        "Fallbacks from one model to the next, by the reason the first failed.",
    ),
    (
        LIMITER_WAIT_SECONDS,
        Kind::Histogram,
        Some(Unit::Seconds),
        "Time spent waiting for a concurrency-limiter slot.",
    ),
    (
        IN_FLIGHT_REQUESTS,
        Kind::Gauge,
        Some(Unit::Count),
        "Calls in flight per model.",
    ),
    (
        TOKEN_REFRESHES_TOTAL,
        Kind::Counter,
        Some(Unit::Count),
        "OAuth token refreshes, by result.",
    ),
    (
        TOKENS_TOTAL,
        Kind::Counter,
        Some(Unit::Count),
        "Tokens the gateway reported per model, by kind (prompt, completion).",
    ),
    (
        HTTP_REQUESTS_TOTAL,
        Kind::Counter,
        Some(Unit::Count),
        "HTTP requests the service answered, by path and status.",
    ),
    (
        HTTP_REQUEST_DURATION_SECONDS,
        Kind::Histogram,
        Some(Unit::Seconds),
        "Time the HTTP service took to answer, by path.",
    ),
    (
        BUILD_INFO,
        Kind::Gauge,
        None,
        "Always 1; labels name the version and the service.",
    ),
    (
        FLEET_DEGRADED,
        Kind::Gauge,
        None,
        "1 while this fleet replica runs on local state (Redis unreachable), else 0.",
    ),
    (
        AUDIT_ENTRIES_TOTAL,
        Kind::Counter,
        Some(Unit::Count),
        "Audit entries, by what happened to them.",
    ),
    (
        WEBHOOK_SPOOL_BYTES,
        Kind::Gauge,
        Some(Unit::Bytes),
        "Bytes waiting in the audit webhook's spool for the receiver to take them.",
    ),
];

/// Cached metric handles for one model, created once per model id from config.
///
/// The handles are bound to the recorder that is current when `new` runs, so create
/// these after installing the recorder. Every method is a few atomic operations: no
/// allocation, no label lookup.
pub struct ModelMetrics {
    model: String,
    requests: [Counter; Outcome::ALL.len()],
    duration: Histogram,
    overhead: Histogram,
    attempts: Counter,
    retries: [Counter; RetryReason::ALL.len()],
    in_flight: Gauge,
    prompt_tokens: Counter,
    completion_tokens: Counter,
    limiter_wait: Histogram,
}

impl ModelMetrics {
    /// Registers every series of `model` (all outcomes and retry reasons start at zero).
    pub fn new(model: impl Into<String>) -> Self {
        let model = model.into();
        let requests = Outcome::ALL.map(|outcome| {
            metrics::counter!(REQUESTS_TOTAL, LABEL_MODEL => model.clone(), LABEL_OUTCOME => outcome.as_str())
        });
        let retries = RetryReason::ALL.map(|reason| {
            metrics::counter!(RETRIES_TOTAL, LABEL_MODEL => model.clone(), LABEL_REASON => reason.as_str())
        });
        Self {
            requests,
            duration: metrics::histogram!(REQUEST_DURATION_SECONDS, LABEL_MODEL => model.clone()),
            overhead: metrics::histogram!(OVERHEAD_SECONDS, LABEL_MODEL => model.clone()),
            attempts: metrics::counter!(ATTEMPTS_TOTAL, LABEL_MODEL => model.clone()),
            retries,
            in_flight: metrics::gauge!(IN_FLIGHT_REQUESTS, LABEL_MODEL => model.clone()),
            prompt_tokens: metrics::counter!(TOKENS_TOTAL, LABEL_MODEL => model.clone(), LABEL_KIND => "prompt"),
            completion_tokens: metrics::counter!(TOKENS_TOTAL, LABEL_MODEL => model.clone(), LABEL_KIND => "completion"),
            limiter_wait: metrics::histogram!(LIMITER_WAIT_SECONDS),
            model,
        }
    }

    /// Records how long a call to this model waited for a concurrency-limiter slot (the
    /// histogram has no model label: [`limiter_wait`] records into the same one).
    pub fn limiter_wait(&self, duration: Duration) {
        self.limiter_wait.record(duration.as_secs_f64());
    }

    /// The model these handles record for.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Records one finished call to this model: its outcome and duration.
    pub fn request(&self, outcome: Outcome, duration: Duration) {
        self.requests[outcome_index(outcome)].increment(1);
        self.duration.record(duration.as_secs_f64());
    }

    /// Records one call that skipped this model because its circuit was open: outcome
    /// `circuit_open`, with no duration (nothing was sent).
    pub fn skipped(&self) {
        self.requests[outcome_index(Outcome::CircuitOpen)].increment(1);
    }

    /// Records the router's own time around one call: everything but the waits (upstream,
    /// backoff, limiter, token).
    pub fn overhead(&self, duration: Duration) {
        self.overhead.record(duration.as_secs_f64());
    }

    /// Records the tokens the gateway reported for one answer of this model.
    pub fn tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.increment(prompt);
        self.completion_tokens.increment(completion);
    }

    /// Records one HTTP attempt sent to this model.
    pub fn attempt(&self) {
        self.attempts.increment(1);
    }

    /// Records one retry of this model, and why.
    pub fn retry(&self, reason: RetryReason) {
        self.retries[reason.index()].increment(1);
    }

    /// Counts a call in flight until the returned guard is dropped (also on cancellation).
    pub fn in_flight(&self) -> InFlightGuard {
        self.in_flight.increment(1.0);
        InFlightGuard {
            gauge: self.in_flight.clone(),
        }
    }
}

impl fmt::Debug for ModelMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelMetrics")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// Keeps a model's in-flight gauge raised; lowers it when dropped.
#[must_use = "the call counts as in flight only while the guard is held"]
pub struct InFlightGuard {
    gauge: Gauge,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

impl fmt::Debug for InFlightGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightGuard").finish_non_exhaustive()
    }
}

/// Records a fallback from model `from` to model `to`, after `from` ended with `reason`.
pub fn fallback(from: &str, to: &str, reason: Outcome) {
    metrics::counter!(
        FALLBACKS_TOTAL,
        LABEL_FROM => from.to_owned(),
        LABEL_TO => to.to_owned(),
        LABEL_REASON => reason.as_str()
    )
    .increment(1);
}

/// Registers the fallback series of each `(from, to)` pair at zero, one per reason, so an
/// `increase()` over them sees a process's first fallback (a series born at 1 shows no
/// increase).
pub fn register_fallbacks<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
    // Every outcome after which a call may move on: all but a success and a cancel.
    let reasons = Outcome::ALL
        .into_iter()
        .filter(|o| !matches!(o, Outcome::Success | Outcome::Cancelled));
    for (from, to) in pairs {
        for reason in reasons.clone() {
            metrics::counter!(
                FALLBACKS_TOTAL,
                LABEL_FROM => from.to_owned(),
                LABEL_TO => to.to_owned(),
                LABEL_REASON => reason.as_str()
            )
            .absolute(0);
        }
    }
}

/// Records how long a call waited for a concurrency-limiter slot.
pub fn limiter_wait(duration: Duration) {
    metrics::histogram!(LIMITER_WAIT_SECONDS).record(duration.as_secs_f64());
}

/// Registers both token refresh series with the current recorder at zero, so a rate or
/// `increase()` over them sees the first failure (a series born at 1 shows no increase).
pub fn register_token_refreshes() {
    for result in ["success", "failure"] {
        metrics::counter!(TOKEN_REFRESHES_TOTAL, LABEL_RESULT => result).absolute(0);
    }
}

/// Records one OAuth token refresh and whether it succeeded.
pub fn token_refresh(success: bool) {
    if success {
        metrics::counter!(TOKEN_REFRESHES_TOTAL, LABEL_RESULT => "success").increment(1);
    } else {
        metrics::counter!(TOKEN_REFRESHES_TOTAL, LABEL_RESULT => "failure").increment(1);
    }
}

/// Records one audit event (the sinks in `gateway-audit` count theirs through
/// [`AuditCounters`]).
pub fn audit_event(event: AuditEvent) {
    audit_counter(event).increment(1);
}

fn audit_counter(event: AuditEvent) -> Counter {
    match event {
        AuditEvent::Written => metrics::counter!(AUDIT_ENTRIES_TOTAL, LABEL_EVENT => "written"),
        AuditEvent::Delivered => metrics::counter!(AUDIT_ENTRIES_TOTAL, LABEL_EVENT => "delivered"),
        AuditEvent::Spooled => metrics::counter!(AUDIT_ENTRIES_TOTAL, LABEL_EVENT => "spooled"),
        AuditEvent::Replayed => metrics::counter!(AUDIT_ENTRIES_TOTAL, LABEL_EVENT => "replayed"),
        AuditEvent::Dropped => metrics::counter!(AUDIT_ENTRIES_TOTAL, LABEL_EVENT => "dropped"),
        AuditEvent::Retried => metrics::counter!(AUDIT_ENTRIES_TOTAL, LABEL_EVENT => "retried"),
        AuditEvent::Failed => metrics::counter!(AUDIT_ENTRIES_TOTAL, LABEL_EVENT => "failed"),
        AuditEvent::Rejected => metrics::counter!(AUDIT_ENTRIES_TOTAL, LABEL_EVENT => "rejected"),
    }
}

/// The audit counter's handles for every event, cached once per sink.
///
/// Bound to the recorder that is current when `new` runs (as [`ModelMetrics`] are), so an
/// audit sink creates its counters when it is built. Adding is a few atomic operations:
/// no allocation, no label lookup.
#[derive(Clone)]
pub struct AuditCounters {
    by_event: [Counter; AuditEvent::ALL.len()],
}

impl AuditCounters {
    /// Registers every `event` series with the current recorder (all start at zero).
    pub fn new() -> Self {
        Self {
            by_event: AuditEvent::ALL.map(audit_counter),
        }
    }

    /// Counts `n` entries to which `event` happened (nothing when `n` is zero).
    pub fn add(&self, event: AuditEvent, n: u64) {
        if n > 0 {
            self.by_event[event.index()].increment(n);
        }
    }
}

impl Default for AuditCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for AuditCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditCounters").finish_non_exhaustive()
    }
}

/// Records one request the HTTP service answered: its path label (a known path or
/// `other`, so the label set stays bounded), status and duration.
pub fn http_request(path: &str, status: u16, duration: Duration) {
    metrics::counter!(HTTP_REQUESTS_TOTAL, LABEL_PATH => path.to_owned(), LABEL_STATUS => status.to_string())
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, LABEL_PATH => path.to_owned())
        .record(duration.as_secs_f64());
}

/// The HTTP service's metric handles, kept so that recording an answer neither builds a
/// labelled key nor allocates: a duration histogram per path label, and a counter per
/// path and status made on first use (the label sets stay bounded: the paths given, and
/// statuses 100 to 599).
///
/// ```
/// use std::time::Duration;
/// use gateway_telemetry::{HttpMetrics, LocalMetrics};
///
/// let local = LocalMetrics::new();
/// let http = local.scope(|| HttpMetrics::new(&["/v1/route", "other"]));
/// local.scope(|| http.record("/v1/route", 200, Duration::from_millis(3)));
/// assert!(local.render().contains(
///     r#"genesys_router_http_requests_total{path="/v1/route",status="200"} 1"#
/// ));
/// ```
pub struct HttpMetrics {
    paths: &'static [&'static str],
    durations: Vec<Histogram>,
    counters: std::sync::RwLock<std::collections::HashMap<(usize, u16), Counter>>,
}

impl HttpMetrics {
    /// Handles for `paths` (the label values a path can take), bound to the recorder
    /// current now; the counters made later bind to the one current then.
    pub fn new(paths: &'static [&'static str]) -> Self {
        Self {
            paths,
            durations: paths
                .iter()
                .map(|path| metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, LABEL_PATH => *path))
                .collect(),
            counters: std::sync::RwLock::default(),
        }
    }

    /// Records one answered request; a `path` not given to [`HttpMetrics::new`] is
    /// recorded as [`http_request`] would.
    pub fn record(&self, path: &str, status: u16, duration: Duration) {
        let Some(i) = self.paths.iter().position(|p| *p == path) else {
            http_request(path, status, duration);
            return;
        };
        self.durations[i].record(duration.as_secs_f64());
        let cached = self
            .counters
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(i, status))
            .cloned();
        let counter = cached.unwrap_or_else(|| {
            let counter = metrics::counter!(HTTP_REQUESTS_TOTAL, LABEL_PATH => self.paths[i], LABEL_STATUS => status.to_string());
            if (100..600).contains(&status) {
                self.counters
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert((i, status), counter.clone());
            }
            counter
        });
        counter.increment(1);
    }
}

impl fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpMetrics")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// The fleet-degraded gauge (1 while Redis cannot be reached), bound to the recorder
/// current now; it starts at 0.
pub fn fleet_degraded_gauge() -> Gauge {
    let gauge = metrics::gauge!(FLEET_DEGRADED);
    gauge.set(0.0);
    gauge
}

/// The webhook spool's size gauge, bound to the recorder current now; it starts at
/// `bytes` (what an earlier run left).
pub fn webhook_spool_bytes_gauge(bytes: u64) -> Gauge {
    let gauge = metrics::gauge!(WEBHOOK_SPOOL_BYTES);
    gauge.set(bytes as f64);
    gauge
}

/// Sets the `build_info` gauge for `service` at `version` (once, at start).
pub fn build_info(service: &'static str, version: &'static str) {
    metrics::gauge!(BUILD_INFO, LABEL_VERSION => version, "service" => service).set(1.0);
}
