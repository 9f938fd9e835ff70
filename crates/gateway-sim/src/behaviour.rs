//! What the simulator does on each call: standing behaviours and one-shot scripted answers.
//!
//! Every type here is JSON (camelCase) so the admin API (`/__admin/`) accepts exactly
//! what the Rust API takes.

use serde::{Deserialize, Serialize};

/// A standing behaviour for every prompt call to a model (or to every model).
///
/// Random choices (latency draws, error and drop rates) come from the simulator's seed,
/// so a sequential run repeats exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Behaviour {
    /// Time to wait before answering.
    pub latency: Latency,
    /// Answer with these 5xx (or other) statuses at these rates.
    pub errors: Vec<ErrorRate>,
    /// Fraction of calls dropped without an answer (over HTTP/1.1 the connection is
    /// closed; over HTTP/2 the call's stream is reset, the connection kept).
    pub drop_rate: f64,
    /// A rate limit per bearer token, answering 429 beyond it (at least 1 call allowed:
    /// leave it out to have none).
    pub rate_limit: Option<RateLimit>,
    /// Prompts containing these texts are refused with 422 (a policy violation).
    pub policy_rules: Vec<PolicyRule>,
    /// Refuse every call with 403 `ai.model.restricted`.
    pub restricted: bool,
    /// Send successful bodies slowly, in chunks (an hour of pauses at most, in all).
    pub slow_body: Option<SlowBody>,
    /// Report this model id as the one that answered (a gateway-side fallback).
    pub serve_as: Option<String>,
}

impl Behaviour {
    /// Every call answers `status`: a standing outage.
    ///
    /// ```
    /// let down = gateway_sim::Behaviour::failing(503);
    /// assert_eq!(down.errors[0].rate, 1.0);
    /// ```
    pub fn failing(status: u16) -> Self {
        Self {
            errors: vec![ErrorRate { status, rate: 1.0 }],
            ..Self::default()
        }
    }
}

/// How long the simulator waits before answering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum Latency {
    /// Answer at once.
    #[default]
    None,
    /// Always this long.
    Fixed {
        /// Milliseconds.
        ms: f64,
    },
    /// Uniformly between two bounds.
    #[serde(rename_all = "camelCase")]
    Uniform {
        /// Lower bound, milliseconds.
        min_ms: f64,
        /// Upper bound, milliseconds.
        max_ms: f64,
    },
    /// Exponentially distributed (a long tail, like real LLM calls).
    #[serde(rename_all = "camelCase")]
    Exponential {
        /// Mean, milliseconds.
        mean_ms: f64,
    },
}

/// Answer with `status` for a fraction `rate` of calls.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRate {
    /// The status, such as 503.
    pub status: u16,
    /// Fraction of calls, 0.0 to 1.0.
    pub rate: f64,
}

/// A fixed-window rate limit per bearer token, with Genesys' `inin-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimit {
    /// Calls allowed per window: at least 1 (remove the limit to turn it off).
    pub allowed: u32,
    /// Window length in seconds: 1 to [`MAX_WINDOW_SECS`](crate::MAX_WINDOW_SECS).
    pub window_secs: u64,
    /// How the 429's `Retry-After` is written.
    #[serde(default)]
    pub retry_after: RetryAfterStyle,
}

/// How a `Retry-After` header is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RetryAfterStyle {
    /// Delta seconds, such as `Retry-After: 3`.
    #[default]
    Seconds,
    /// An HTTP date, such as `Retry-After: Sun, 29 Nov 2026 10:00:03 GMT`.
    HttpDate,
}

/// Refuse prompts that contain `contains` with a 422 policy violation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// The text that triggers the rule.
    pub contains: String,
    /// The error code (default `ai.gateway.policy.violation`).
    #[serde(default)]
    pub code: Option<String>,
}

/// Send a successful body in `chunks` parts, `chunk_delay_ms` apart, pausing at most
/// [`MAX_WAIT_MS`](crate::MAX_WAIT_MS) in all (`chunks` × `chunk_delay_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SlowBody {
    /// Number of parts: at least 1.
    pub chunks: u32,
    /// Pause before each part, milliseconds: at most [`MAX_WAIT_MS`](crate::MAX_WAIT_MS)
    /// divided by `chunks`.
    pub chunk_delay_ms: u64,
}

/// A `Retry-After` for one scripted 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RetryAfter {
    /// `Retry-After: <n>` (delta seconds).
    Seconds(u64),
    /// `Retry-After: <HTTP date n seconds from now>`.
    HttpDate(u64),
    /// No `Retry-After` header.
    Absent,
}

/// One scripted answer, used once by the next matching call before any behaviour applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum Scripted {
    /// Answer normally (useful to end a sequence).
    Ok,
    /// Answer with this status and a Genesys error body.
    Status {
        /// The status.
        status: u16,
        /// The error code (a sensible default per status otherwise).
        #[serde(default)]
        code: Option<String>,
    },
    /// Answer 429 `too.many.requests.retry.after`.
    #[serde(rename_all = "camelCase")]
    TooManyRequests {
        /// The `Retry-After` to send.
        retry_after: RetryAfter,
    },
    /// Answer 422 with a policy-violation code.
    PolicyViolation,
    /// Drop the call without answering: over HTTP/1.1 the connection is closed, over
    /// HTTP/2 the call's stream is reset (`INTERNAL_ERROR`) and the connection kept.
    Drop,
    /// Never answer (until the simulator shuts down): for timeout tests.
    Stall,
    /// Answer normally after a pause.
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// Answer 200 with a body of this many bytes (for body-size limits).
    Oversized {
        /// Body size in bytes.
        bytes: usize,
    },
    /// Answer exactly this status, these headers and this body: nothing is added but the
    /// framing (`content-length`, `date`), so a test can send any header value or body
    /// (`Retry-After: 18446744073709551615`, a token answer with an absurd `expires_in`).
    Raw {
        /// The status, 200 to 999.
        status: u16,
        /// Header names and values, in order; a name may repeat.
        #[serde(default)]
        headers: Vec<(String, String)>,
        /// The body, sent as is.
        #[serde(default)]
        body: String,
    },
    /// Token endpoint only: grant a real token (valid for the simulator's token lifetime)
    /// but write this JSON number as `expires_in`, whatever it is.
    #[serde(rename_all = "camelCase")]
    Grant {
        /// The `expires_in` to send, such as `18446744073709551615`, `-5` or `0.5`.
        expires_in: serde_json::Number,
    },
}

/// Which calls a behaviour or a script applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Target {
    /// Prompt calls to any model without a script or behaviour of its own.
    Global,
    /// `POST /oauth/token`. A scripted status or 429 answers in the login service's
    /// error shape (`error`, `description`), not the API's.
    Token,
    /// Prompt calls to one model: a model id ([`gateway_model::MODEL_ID_PATTERN`], 1 to
    /// 128 characters).
    Model(String),
}

impl Target {
    /// Prompt calls to `model`.
    pub fn model(model: impl Into<String>) -> Self {
        Target::Model(model.into())
    }
}
