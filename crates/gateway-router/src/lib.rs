//! The router facade: deterministic model selection, temperature matrices, fallback chains and circuit breakers.
//!
//! This crate is a placeholder until its issue lands; it re-exports nothing yet.
//!
//! ```
//! // The model types it will build on are available today:
//! let _ = gateway_model::Tuning::Default;
//! ```
