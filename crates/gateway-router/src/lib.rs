//! The router facade: everything a caller needs to send a prompt to the Genesys Cloud AI
//! Gateway the way a contact centre wants it sent.
//!
//! - **Deterministic model selection**: named routes; weighted splits that are sticky on a
//!   key such as the conversation id ([`StickySelector`], weighted rendezvous hashing with
//!   XXH3: the same key picks the same model in every process, and changing one weight
//!   moves only that model's share).
//! - **Temperature tuning**: each route's `low` / `default` / `high` matrix, picked by the
//!   request's tuning level; per-route `maxTokens`, `topP`, safety filters, metadata.
//! - **Fallback chains**: on 5xx or 429 after retries, a 3xx or a status outside HTTP's
//!   classes, a timeout, 404 or 410, a 4xx that does not blame the request (409, 421,
//!   425, 451...), a 422 policy violation, a model-restricted 403, or an open circuit,
//!   the next model is tried with the same correlation id and a new request id; never on
//!   400 or another refusal of the request itself (405, 413, 415...), 401, or a 403 about
//!   the OAuth client. The rest of the chain is sent as `fallbackModels` too.
//! - **Circuit breakers** per model ([`CircuitBreaker`]); a long `Retry-After` cools the
//!   model down so other calls skip it at once.
//! - **Validation first**: every payload meets its JSON Schema before it is sent
//!   (`GatewayPayload::to_json_bytes`: the Rust validator, which a property test proves
//!   refuses exactly what the schema refuses, and the compiled schema for untyped extras).
//! - **Metrics and audit**: every call records metrics and writes one audit entry (all
//!   models tried, the prompt's SHA-256, never the prompt) before it returns.
//!
//! ```
//! use gateway_model::{EnvironmentConfig, RouteConfig, RouteRequest, RouterConfig, SplitEntry};
//! use gateway_router::Router;
//! use gateway_sim::Sim;
//! use gateway_transport::StaticToken;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let sim = Sim::builder().start().await?;
//! let split = vec![
//!     SplitEntry { model: "model-gen-4".into(), weight: 90 },
//!     SplitEntry { model: "model-gen-5".into(), weight: 10 },
//! ];
//! let config = RouterConfig::new(EnvironmentConfig::at(sim.base_url()))
//!     .with_route("reply", RouteConfig { model: None, split, fallbacks: vec!["model-fallback-3".into()], ..RouteConfig::default() });
//! let router = Router::builder(config)
//!     .credentials(gateway_auth::Credentials::new("sim-client", "sim-secret"))
//!     .without_audit()
//!     .build()
//!     .await?;
//! let outcome = router.route(RouteRequest::new("reply", "Where is my parcel?").sticky_key("conv-1")).await?;
//! assert_eq!(Some(&outcome.requested_model), router.select("reply", "conv-1"));
//! assert_eq!(outcome.attempts, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod attempt;
mod breaker;
mod builder;
mod call;
mod call_state;
mod catalogue;
mod compiled_route;
mod config_file;
mod error;
mod fleet_probe;
mod ids;
mod router;
mod sampling;
mod selection;
mod trace_context;

pub use breaker::{Admission, BreakerState, CircuitBreaker, CoolDownRule, ProbeGuard};
pub use builder::{BuildError, RouterBuilder};
pub use catalogue::CatalogueCheck;
pub use config_file::{ConfigError, MAX_CONFIG_BYTES, apply_env_overrides, load_config};
pub use error::{
    CallTrace, MAX_LISTED_ROUTES, MAX_UNKNOWN_ROUTE_CHARS, RouteError, RouteErrorKind, route_list,
};
/// What [`Router::flush`] and [`Router::shutdown`] fail with: the audit trail's error.
pub use gateway_audit::AuditError;
pub use router::Router;
pub use selection::StickySelector;
