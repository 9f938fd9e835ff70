//! The HTTP transport: one pooled hyper-util client over rustls, a bounded concurrency limiter, and a retry policy.
//!
//! This crate is a placeholder until its issue lands; it re-exports nothing yet.
//!
//! ```
//! // The model types it will build on are available today:
//! let _ = gateway_model::Tuning::Default;
//! ```
