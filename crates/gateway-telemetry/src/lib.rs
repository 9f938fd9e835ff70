//! Metrics for the router: Prometheus metrics through the `metrics` facade and in-process
//! routing statistics in fixed memory. (The audit trail is the `gateway-audit` crate; its
//! sinks count their entries here, through [`AuditCounters`].)
//!
//! # Metrics
//!
//! Recorded with the `metrics` macros, so any recorder works; [`install`] sets up the
//! Prometheus recorder with the bucket layouts below (it renders in-process and serves
//! nothing: `gateway-server` serves the text, with its connection limits and timeouts),
//! [`LocalMetrics`] builds one without installing it globally.
//!
//! | Name | Type | Unit | Labels |
//! |---|---|---|---|
//! | `genesys_router_requests_total` | counter | calls | `model`, `outcome` (`success`, `client_error`, `rate_limited`, `upstream_error`, `policy_violation`, `timeout`, `circuit_open`, `cancelled`); a call that skips the model on an open circuit counts as `circuit_open` here and nowhere else |
//! | `genesys_router_request_duration_seconds` | histogram | seconds; buckets 0.01 … 120 | `model` |
//! | `genesys_router_overhead_seconds` | histogram | seconds; buckets 1 µs … 25 ms | `model` |
//! | `genesys_router_attempts_total` | counter | HTTP attempts | `model` |
//! | `genesys_router_retries_total` | counter | retries | `model`, `reason` (`rate_limited`, `status_5xx`, `connect`, `timeout`, `unauthorized`, `not_processed`) |
//! | `genesys_router_fallbacks_total` | counter | fallbacks | `from`, `to`, `reason` (the outcome of `from`) |
//! | `genesys_router_limiter_wait_seconds` | histogram | seconds; buckets 100 µs … 30 | none |
//! | `genesys_router_in_flight_requests` | gauge | calls | `model` |
//! | `genesys_router_token_refreshes_total` | counter | refreshes | `result` (`success`, `failure`) |
//! | `genesys_router_audit_entries_total` | counter | entries | `event` (`written`, `delivered`, `spooled`, `replayed`, `dropped`, `retried`, `failed`, `rejected`) |
//! | `genesys_router_tokens_total` | counter | tokens the gateway reported | `model`, `kind` (`prompt`, `completion`) |
//! | `genesys_router_http_requests_total` | counter | requests the sidecar answered (`499`: the caller hung up first) | `path` (a known path or `other`), `status` |
//! | `genesys_router_http_request_duration_seconds` | histogram | seconds; buckets 0.01 … 120 | `path` |
//! | `genesys_router_build_info` | gauge | always 1 | `version`, `service` |
//! | `genesys_router_fleet_degraded` | gauge | 1 while a fleet replica runs on local state | none |
//! | `genesys_router_webhook_spool_bytes` | gauge | bytes waiting in the audit webhook's spool | none |
//!
//! Bucket bounds are in [`metric_names`]. Label values come from config (model ids) or
//! fixed sets, so the number of series is bounded.
//!
//! # How the router uses it
//!
//! - Once per model id from config, after installing the recorder: [`ModelMetrics::new`];
//!   per call [`request`](ModelMetrics::request), [`overhead`](ModelMetrics::overhead),
//!   [`attempt`](ModelMetrics::attempt), [`retry`](ModelMetrics::retry) and
//!   [`in_flight`](ModelMetrics::in_flight) (a guard, released on drop and cancellation).
//!   These use cached handles: no allocation and no label lookup per call.
//! - Free functions for the rest: [`fallback`], [`limiter_wait`], [`token_refresh`],
//!   [`audit_event`]; once at build, [`register_fallbacks`] for each pair of models a
//!   fallback may join and [`register_token_refreshes`], so those series start at zero.
//! - [`Stats`] for the router's own view (hit rate, p50/p90/p99/max, retries,
//!   fallbacks per model) in fixed memory.
//! - [`AuditCounters`], held by each audit sink, counts [`AuditEvent`]s with cached
//!   handles.
//!
//! ```
//! use std::time::Duration;
//! use gateway_model::{Outcome, RetryReason};
//! use gateway_telemetry::{LocalMetrics, ModelMetrics, Stats};
//!
//! let metrics = LocalMetrics::new();
//! let gen4 = metrics.scope(|| ModelMetrics::new("model-gen-4"));
//! {
//!     let _in_flight = gen4.in_flight();
//!     gen4.attempt();
//!     gen4.retry(RetryReason::RateLimited);
//!     gen4.attempt();
//!     gen4.request(Outcome::Success, Duration::from_millis(300));
//! }
//! let text = metrics.render();
//! assert!(text.contains(
//!     r#"genesys_router_requests_total{model="model-gen-4",outcome="success"} 1"#
//! ));
//! assert!(text.contains(r#"genesys_router_attempts_total{model="model-gen-4"} 2"#));
//!
//! let stats = Stats::new(["model-gen-4"]);
//! stats.record("model-gen-4", Outcome::Success, Duration::from_millis(300));
//! assert_eq!(stats.snapshot()[0].hit_rate, Some(1.0));
//! ```

mod exporter;
pub mod exposition;
mod latency_histogram;
pub mod metric_names;
mod recording;
mod stats;

pub use exporter::{
    ExporterError, LocalMetrics, MetricsHandle, UPKEEP_INTERVAL, install, prometheus_builder,
    recorder_installed,
};
pub use latency_histogram::{BUCKETS, LatencyHistogram, MAX_RELATIVE_ERROR, MAX_TRACKED};
pub use recording::{
    AuditCounters, AuditEvent, HttpMetrics, InFlightGuard, ModelMetrics, audit_event, build_info,
    describe, fallback, fleet_degraded_gauge, http_request, limiter_wait, register_fallbacks,
    register_token_refreshes, token_refresh, webhook_spool_bytes_gauge,
};
pub use stats::{ModelSnapshot, OTHER_MODEL, Stats};
