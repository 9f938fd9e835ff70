//! A faithful local Genesys Cloud simulator: OAuth, the AI Gateway prompt endpoint and the model catalogue.
//!
//! This crate is a placeholder until its issue lands; it re-exports nothing yet.
//!
//! ```
//! // The model types it will build on are available today:
//! let _ = gateway_model::Tuning::Default;
//! ```
