//! Wire and config types for the Genesys Cloud AI Gateway router.
//!
//! This crate holds the data every other crate exchanges, with no network I/O and no
//! async (it reads only env vars and size-bounded files):
//!
//! - the prompt payload ([`GatewayPayload`], built and checked by [`PayloadBuilder`]),
//!   its sampling [`Parameters`], [`TemperatureMatrix`] and [`Tuning`], [`SafetyFilter`]s
//!   and [`Metadata`];
//! - what the gateway answers: [`GatewayResponse`], the Genesys [`ErrorBody`], the model
//!   catalogue ([`ModelEntity`], [`ModelEntityListing`]);
//! - the governance record [`AuditEntry`] and the [`RouterConfig`];
//! - the Genesys Cloud [`Region`] table and the URL rules in [`endpoint`];
//! - validation ([`Validate`]) that reports *every* violation with its JSON Pointer, and
//!   the JSON Schemas ([`schema::SCHEMAS`]) that state the same bounds; the payload's
//!   is also compiled once into a format check ([`payload_format`]), and
//!   [`GatewayPayload::to_json_bytes`] is the one encoder that holds a payload to it.
//!
//! Wire types are camelCase; unknown response fields are kept, never rejected.
//!
//! ```
//! use gateway_model::{GatewayPayload, Tuning, TemperatureMatrix, Validate};
//!
//! let matrix = TemperatureMatrix { low: 0.1, default: 0.4, high: 0.9 };
//! let payload = GatewayPayload::builder("model-gen-4", "Summarize this transcript")
//!     .tuned(&matrix, Tuning::High)
//!     .fallbacks(["model-fallback-3"])
//!     .build()
//!     .expect("valid");
//! assert_eq!(payload.parameters.temperature, 0.9);
//!
//! // Every problem is reported at once, each with its JSON path.
//! let err = GatewayPayload::builder("model gen 4", "")
//!     .temperature(2.5)
//!     .build()
//!     .unwrap_err();
//! let paths: Vec<_> = err.violations().iter().map(|v| v.path.as_str()).collect();
//! assert_eq!(paths, ["/modelId", "/prompt", "/parameters/temperature"]);
//! ```

mod audit;
mod bounded_file;
mod bounded_text;
mod bounds;
mod config;
pub mod endpoint;
mod env_var;
mod error_body;
mod found;
mod location;
mod lone_surrogates;
mod model_id;
mod models;
mod open_enum;
mod payload;
pub mod redact;
mod region;
mod response;
mod retry;
mod route;
mod safety;
pub mod schema;
mod trace;
mod tuning;
mod unknown_fields;
mod validation;
mod value_bound;
pub mod whole;
mod wire;

pub use audit::{
    AuditEntry, MAX_UPSTREAM_TEXT_CHARS, MAX_USAGE_EXTRA_BYTES, ModelAttempt, Outcome,
};
pub use bounded_file::read_bounded;
pub use bounded_text::OneLine;
pub use config::{
    AuditConfig, CLIENT_ID_PATTERN, CircuitBreakerConfig, CredentialsConfig,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MODELS_PATH, DEFAULT_PROMPTS_PATH,
    DEFAULT_WEBHOOK_MAX_SPOOL_BYTES, DEFAULT_WEBHOOK_REQUEST_TIMEOUT_MS, ENDPOINT_PATH_PATTERN,
    ENV_VAR_PATTERN, EVERY_ENTRY_SYNC_WAIT, Endpoints, EnvironmentConfig, FILE_PATH_PATTERN,
    FleetConfig, FsyncPolicy, KEY_PREFIX_PATTERN, LimitsConfig, MAX_CLIENT_ID_CHARS,
    MAX_KEY_PREFIX_CHARS, MAX_ROUTE_NAME_CHARS, MAX_SPLIT_ENTRIES, MAX_SPLIT_WEIGHT, MetricsConfig,
    ROUTE_NAME_PATTERN, RetryConfig, RouteConfig, RouterConfig, ServerConfig, SplitEntry,
    TlsConfig, TrustRoots, WebhookConfig, is_client_id,
};
pub use env_var::{EnvVarError, env_var};
pub use error_body::{
    CODE_AUTHENTICATION_REQUIRED, CODE_BAD_CREDENTIALS, CODE_BAD_REQUEST, CODE_MISSING_PERMISSIONS,
    CODE_MODEL_RESTRICTED, CODE_NOT_FOUND, CODE_POLICY_VIOLATION, CODE_REQUEST_TOO_LARGE,
    CODE_TOO_MANY_REQUESTS, ErrorBody, MAX_ERROR_BODY_VALUES, MAX_SHOWN_MESSAGE_CHARS,
    RateLimitInfo,
};
pub use lone_surrogates::replace_lone_surrogates;
pub use model_id::{MAX_FALLBACKS, MODEL_ID_MAX_LEN, MODEL_ID_PATTERN, ModelId};
pub use models::{MAX_PAGE_ENTITIES, ModelEntity, ModelEntityListing};
pub use payload::{
    DEFAULT_MAX_TOKENS, DEFAULT_TOP_P, DISPATCH_SOURCE, GatewayPayload, MAX_METADATA_ENTRIES,
    MAX_METADATA_KEY_CHARS, MAX_METADATA_READ, MAX_METADATA_VALUE_CHARS, MAX_PROMPT_CHARS,
    MAX_REQUEST_BYTES, MAX_TOKENS_CAP, METADATA_KEY_PATTERN, Metadata, PROMPT_PATTERN, Parameters,
    PayloadBuilder, ROUTING_VERSION, WHITE_SPACE_CLASS,
};
pub use region::{REGIONS, Region};
pub use response::{FinishReason, GatewayResponse, Usage};
pub use retry::{Backoff, Jitter, RetryReason};
pub use route::{MAX_STICKY_KEY_CHARS, RouteOutcome, RouteRequest};
pub use safety::{SafetyFilter, SafetyReport, SafetyVerdict};
pub use schema::FormatCheck;
pub use trace::{
    MAX_CALLER_REQUEST_ID_CHARS, MAX_TRACEPARENT_CHARS, MAX_TRACESTATE_CHARS,
    PRINTABLE_ASCII_PATTERN, TRACEPARENT_PATTERN, TraceParent,
};
pub use tuning::{TEMPERATURE_MAX, TEMPERATURE_MIN, TEMPERATURE_RANGE, TemperatureMatrix, Tuning};
pub use unknown_fields::MAX_UNKNOWN_VALUES;
pub use validation::{
    Found, Location, MAX_MALFORMED_CHARS, MAX_UNKNOWN_NAME_CHARS, MAX_VIOLATIONS, Rule, Validate,
    ValidationErrors, Violation, Violations, cut_to, from_json_slice, from_json_value,
    parse_json_slice,
};
pub use value_bound::json_value_bound;
pub use wire::payload_format;
