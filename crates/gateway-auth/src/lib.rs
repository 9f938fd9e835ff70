//! OAuth 2.0 client credentials for Genesys Cloud: a `TokenSource` trait and a cached, single-flight provider.
//!
//! This crate is a placeholder until its issue lands; it re-exports nothing yet.
//!
//! ```
//! // The model types it will build on are available today:
//! let _ = gateway_model::Tuning::Default;
//! ```
