//! Telemetry: Prometheus metrics through the `metrics` facade, and audit sinks (JSONL file, signed webhook).
//!
//! This crate is a placeholder until its issue lands; it re-exports nothing yet.
//!
//! ```
//! // The model types it will build on are available today:
//! let _ = gateway_model::Tuning::Default;
//! ```
