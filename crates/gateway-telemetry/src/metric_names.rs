//! Metric names, label keys and histogram bucket layouts (all times in seconds).

/// Counter: finished calls per model, label `model` and `outcome`.
pub const REQUESTS_TOTAL: &str = "genesys_router_requests_total";
/// Histogram (seconds): a model's call duration, label `model`.
pub const REQUEST_DURATION_SECONDS: &str = "genesys_router_request_duration_seconds";
/// Histogram (seconds): time the router spent outside the upstream call, label `model`.
pub const OVERHEAD_SECONDS: &str = "genesys_router_overhead_seconds";
/// Counter: HTTP attempts sent per model, label `model`.
pub const ATTEMPTS_TOTAL: &str = "genesys_router_attempts_total";
/// Counter: retries per model and reason, labels `model` and `reason`.
pub const RETRIES_TOTAL: &str = "genesys_router_retries_total";
/// Counter: fallbacks from one model to the next, labels `from`, `to` and `reason`.
pub const FALLBACKS_TOTAL: &str = "genesys_router_fallbacks_total";
/// Histogram (seconds): time spent waiting for a concurrency-limiter slot.
pub const LIMITER_WAIT_SECONDS: &str = "genesys_router_limiter_wait_seconds";
/// Gauge: calls in flight per model, label `model`.
pub const IN_FLIGHT_REQUESTS: &str = "genesys_router_in_flight_requests";
/// Counter: OAuth token refreshes by result, label `result` (`success`, `failure`).
pub const TOKEN_REFRESHES_TOTAL: &str = "genesys_router_token_refreshes_total";
/// Counter: audit entries by event, label `event` (see [`AuditEvent`](crate::AuditEvent)).
pub const AUDIT_ENTRIES_TOTAL: &str = "genesys_router_audit_entries_total";

/// Counter: tokens the gateway reported per model, labels `model` and `kind`
/// (`prompt`, `completion`).
pub const TOKENS_TOTAL: &str = "genesys_router_tokens_total";
/// Counter: HTTP requests the service answered, labels `path` and `status`.
pub const HTTP_REQUESTS_TOTAL: &str = "genesys_router_http_requests_total";
/// Histogram (seconds): time the service took to answer, label `path`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "genesys_router_http_request_duration_seconds";
/// Gauge: always 1, labels `version` (the crate version) and `service`.
pub const BUILD_INFO: &str = "genesys_router_build_info";
/// Gauge: 1 while a fleet replica runs on local state because Redis cannot be reached.
pub const FLEET_DEGRADED: &str = "genesys_router_fleet_degraded";
/// Gauge (bytes): what waits in the audit webhook's spool; registered with the webhook.
pub const WEBHOOK_SPOOL_BYTES: &str = "genesys_router_webhook_spool_bytes";

/// Label key naming the model.
pub const LABEL_MODEL: &str = "model";
/// Label key naming a call's outcome.
pub const LABEL_OUTCOME: &str = "outcome";
/// Label key naming why a retry or fallback happened.
pub const LABEL_REASON: &str = "reason";
/// Label key naming the model a fallback left.
pub const LABEL_FROM: &str = "from";
/// Label key naming the model a fallback went to.
pub const LABEL_TO: &str = "to";
/// Label key naming a token refresh's result.
pub const LABEL_RESULT: &str = "result";
/// Label key naming an audit event.
pub const LABEL_EVENT: &str = "event";
/// Label key naming a token kind (`prompt`, `completion`).
pub const LABEL_KIND: &str = "kind";
/// Label key naming an HTTP path the service knows (or `other`).
pub const LABEL_PATH: &str = "path";
/// Label key naming an HTTP status code.
pub const LABEL_STATUS: &str = "status";
/// Label key naming a version.
pub const LABEL_VERSION: &str = "version";

/// Upper bounds of [`REQUEST_DURATION_SECONDS`]: 10 ms to 120 s, suited to LLM calls.
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// Upper bounds of [`OVERHEAD_SECONDS`]: 1 µs to 25 ms.
pub const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
];

/// Upper bounds of [`LIMITER_WAIT_SECONDS`]: 100 µs to 30 s.
pub const LIMITER_WAIT_BUCKETS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
