//! The audit entry written for every routed call, for AI governance and cost monitoring.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model_id::ModelId;
use crate::payload::{MAX_METADATA_ENTRIES, MAX_METADATA_VALUE_CHARS, METADATA_KEY, Metadata};
use crate::response::Usage;
use crate::safety::SafetyVerdict;
use crate::trace::MAX_CALLER_REQUEST_ID_CHARS;
use crate::tuning::Tuning;
use crate::validation::{Location, Rule, Validate, Violations, cut_to};

/// How a call (or one model's part of it) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The model answered.
    Success,
    /// The request was refused as bad or not allowed, or the model is unknown or gone
    /// (400, 401, 403, 404, 410, and the 4xx that blame the request: 405, 413, 415...).
    ClientError,
    /// Rate limited (429) until retries or the wait cap ran out.
    RateLimited,
    /// The gateway, the login host or the connection failed (5xx, a redirect, a 4xx that
    /// does not blame the request such as 409 or 451, reset, refused) until retries ran
    /// out.
    UpstreamError,
    /// The prompt or answer broke a content policy (422).
    PolicyViolation,
    /// A deadline, an attempt timeout or the limiter wait ran out.
    Timeout,
    /// The model's circuit was open, so no request was sent.
    CircuitOpen,
    /// The caller stopped waiting (its future was dropped) before the call ended.
    Cancelled,
}

impl Outcome {
    /// Every outcome, in documentation order.
    pub const ALL: [Outcome; 8] = [
        Outcome::Success,
        Outcome::ClientError,
        Outcome::RateLimited,
        Outcome::UpstreamError,
        Outcome::PolicyViolation,
        Outcome::Timeout,
        Outcome::CircuitOpen,
        Outcome::Cancelled,
    ];

    /// The wire name, also used as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::RateLimited => "rate_limited",
            Outcome::UpstreamError => "upstream_error",
            Outcome::PolicyViolation => "policy_violation",
            Outcome::Timeout => "timeout",
            Outcome::CircuitOpen => "circuit_open",
            Outcome::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One model's part of a routed call: the primary or a fallback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelAttempt {
    /// The model tried.
    pub model_id: ModelId,
    /// The `X-Genesys-Request-Id` sent to it (the same on each of its HTTP attempts);
    /// empty when its circuit was open, so nothing was sent.
    pub request_id: String,
    /// HTTP attempts made to this model (0 when its circuit was open). For a call
    /// cancelled while this model was being tried, the attempts started by then.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub attempts: u32,
    /// How this model's part ended.
    pub outcome: Outcome,
    /// The last HTTP status it answered with, if any.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option"
    )]
    pub status: Option<u16>,
    /// The Genesys error code of the last failure, if any (at most 256 characters: longer text from the gateway is cut, ending in `…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The `ININ-Correlation-Id` of the last answer, if any (at most 256 characters: longer text from the gateway is cut, ending in `…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_correlation_id: Option<String>,
    /// Time spent on this model, in microseconds.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub latency_us: u64,
}

/// The governance record of one routed call. It never holds the prompt: only its
/// SHA-256 and its length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Unique id of this entry (`UUIDv7`, time ordered); receivers deduplicate on it.
    pub id: Uuid,
    /// When the call finished.
    pub timestamp: DateTime<Utc>,
    /// The route the call went through.
    pub route: String,
    /// The `X-Genesys-Request-Id` of the last model tried (each model has its own; see `modelsTried`); empty when no model was tried: a request refused before routing, or every circuit open.
    pub request_id: String,
    /// The `X-Correlation-Id` shared by every model tried in this call.
    pub correlation_id: String,
    /// The `ININ-Correlation-Id` of the last answer, if any (at most 256 characters: longer text from the gateway is cut, ending in `…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_correlation_id: Option<String>,
    /// The W3C trace id sent to the gateway (32 hex digits): the caller's `traceparent`'s,
    /// or one the router started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{32}$"))]
    pub trace_id: Option<String>,
    /// The caller's own request id (the sidecar's `X-Request-Id`), if one was given (at
    /// most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_request_id: Option<String>,
    /// The model selection chose first.
    pub requested_model: ModelId,
    /// The model that answered, if one did (the gateway may report its own fallback;
    /// at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub served_model: Option<ModelId>,
    /// HTTP attempts across every model.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub attempts: u32,
    /// Fallback models tried after the first.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub fallbacks_used: u32,
    /// Every model tried, in order.
    pub models_tried: Vec<ModelAttempt>,
    /// How the call ended.
    pub outcome: Outcome,
    /// The final HTTP status, if a request was answered.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option"
    )]
    pub status: Option<u16>,
    /// The Genesys error code of the final failure, if any (at most 256 characters: longer text from the gateway is cut, ending in `…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Why a `cancelled` call was stopped (the caller went away, a shutdown's drain
    /// timeout ended), in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Time from the call's start to its end, in microseconds.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub latency_us: u64,
    /// The tuning level asked for.
    pub tuning: Tuning,
    /// The temperature sent.
    pub temperature: f64,
    /// The gateway's safety verdict, if it gave one (at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_verdict: Option<SafetyVerdict>,
    /// Token counts, if reported (unknown fields only up to 4,096 bytes of JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Lowercase hex SHA-256 of the prompt's UTF-8 bytes.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub prompt_sha256: String,
    /// Prompt length in characters (Unicode scalar values): above 8,000 only for a
    /// request refused for it.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub prompt_chars: u32,
    /// The caller's metadata labels (for a request refused for its labels, the first 32
    /// whose keys a valid request can carry, values cut to 512 characters).
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// Longest text an audit entry keeps from a gateway answer (a model id, an error code,
/// a correlation id, a safety verdict), in characters: a longer one is cut to this, its
/// last character a `…`.
pub const MAX_UPSTREAM_TEXT_CHARS: usize = 256;

/// Most bytes of JSON the unknown fields of an answer's `usage` may take in an audit
/// entry; larger ones are left out (the token counts are kept).
pub const MAX_USAGE_EXTRA_BYTES: usize = 4_096;

/// Cuts `text` to [`MAX_UPSTREAM_TEXT_CHARS`] characters, ending in `…` if it was longer.
fn cut(text: &mut String) {
    cut_to(text, MAX_UPSTREAM_TEXT_CHARS);
}

/// Bytes of `value` as compact JSON, counted without keeping them.
fn json_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

impl AuditEntry {
    /// Cuts what the entry took from the gateway's answers to [`MAX_UPSTREAM_TEXT_CHARS`]
    /// and [`MAX_USAGE_EXTRA_BYTES`], so that no answer can make an entry too large to
    /// store, read back or deliver.
    ///
    /// ```
    /// # use gateway_model::{AuditEntry, MAX_UPSTREAM_TEXT_CHARS};
    /// # fn entry() -> AuditEntry { serde_json::from_value(serde_json::json!({
    /// #     "id": "0190f0b8-3c4e-7a6b-8c3d-2e1f0a9b8c7d", "timestamp": "2026-12-05T10:00:00Z",
    /// #     "route": "r", "requestId": "q", "correlationId": "c", "requestedModel": "m",
    /// #     "attempts": 1, "fallbacksUsed": 0, "modelsTried": [], "outcome": "upstream_error",
    /// #     "latencyUs": 1, "tuning": "default", "temperature": 0.2,
    /// #     "promptSha256": "0".repeat(64), "promptChars": 1 })).unwrap() }
    /// let mut entry = entry();
    /// entry.error_code = Some("x".repeat(100_000));
    /// entry.bound_upstream_fields();
    /// assert_eq!(entry.error_code.unwrap().chars().count(), MAX_UPSTREAM_TEXT_CHARS);
    /// ```
    pub fn bound_upstream_fields(&mut self) {
        for text in [&mut self.upstream_correlation_id, &mut self.error_code]
            .into_iter()
            .flatten()
        {
            cut(text);
        }
        for attempt in &mut self.models_tried {
            for text in [
                &mut attempt.error_code,
                &mut attempt.upstream_correlation_id,
            ]
            .into_iter()
            .flatten()
            {
                cut(text);
            }
        }
        if let Some(model) = &mut self.served_model
            && model.as_str().chars().count() > MAX_UPSTREAM_TEXT_CHARS
        {
            let mut text = model.as_str().to_owned();
            cut(&mut text);
            *model = ModelId::new(text);
        }
        if let Some(SafetyVerdict::Other(text)) = &mut self.safety_verdict {
            cut(text);
        }
        if let Some(usage) = &mut self.usage
            && !usage.extra.is_empty()
            && json_len(&usage.extra) > MAX_USAGE_EXTRA_BYTES
        {
            usage.extra.clear();
        }
    }
}

impl AuditEntry {
    /// Cuts what the entry took from the caller to the bounds a valid request keeps: at
    /// most [`MAX_METADATA_ENTRIES`] labels (the first, in key order) with keys a valid
    /// request can carry (1 to [`MAX_METADATA_KEY_CHARS`](crate::MAX_METADATA_KEY_CHARS)
    /// characters of [`METADATA_KEY_PATTERN`](crate::METADATA_KEY_PATTERN); the others
    /// are left out), values of [`MAX_METADATA_VALUE_CHARS`] characters, a caller
    /// request id of [`MAX_CALLER_REQUEST_ID_CHARS`]. The entry for a request refused
    /// for breaking those bounds stays small and keeps to the exported schema.
    ///
    /// ```
    /// # use gateway_model::{AuditEntry, MAX_METADATA_VALUE_CHARS, Metadata};
    /// # fn entry() -> AuditEntry { serde_json::from_value(serde_json::json!({
    /// #     "id": "0190f0b8-3c4e-7a6b-8c3d-2e1f0a9b8c7d", "timestamp": "2026-12-05T10:00:00Z",
    /// #     "route": "r", "requestId": "q", "correlationId": "c", "requestedModel": "m",
    /// #     "attempts": 0, "fallbacksUsed": 0, "modelsTried": [], "outcome": "client_error",
    /// #     "latencyUs": 1, "tuning": "default", "temperature": 0.2,
    /// #     "promptSha256": "0".repeat(64), "promptChars": 1 })).unwrap() }
    /// let mut entry = entry();
    /// entry.metadata = Metadata::from_iter([("k", "v".repeat(1_000_000))]);
    /// entry.bound_caller_fields();
    /// let value = entry.metadata.iter().next().unwrap().1;
    /// assert_eq!(value.chars().count(), MAX_METADATA_VALUE_CHARS);
    /// ```
    pub fn bound_caller_fields(&mut self) {
        if let Some(id) = &mut self.caller_request_id {
            cut_to(id, MAX_CALLER_REQUEST_ID_CHARS);
        }
        // A text no longer in bytes than the bound is within it in characters too.
        let over = |text: &str, max: usize| text.len() > max && text.chars().count() > max;
        let labels = &self.metadata;
        if labels.len() > MAX_METADATA_ENTRIES
            || labels.iter().any(|(key, value)| {
                !METADATA_KEY.accepts(key) || over(value, MAX_METADATA_VALUE_CHARS)
            })
        {
            self.metadata = labels
                .iter()
                .filter(|(key, _)| METADATA_KEY.accepts(key))
                .take(MAX_METADATA_ENTRIES)
                .map(|(key, value)| {
                    let mut value = value.clone();
                    cut_to(&mut value, MAX_METADATA_VALUE_CHARS);
                    (key.clone(), value)
                })
                .collect();
        }
    }
}

/// Whether `text` is `len` lowercase hexadecimal digits.
fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Validate for AuditEntry {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        if !is_lower_hex(&self.prompt_sha256, 64) {
            out.push(
                &at.key("promptSha256"),
                Rule::Pattern {
                    pattern: r"^[0-9a-f]{64}$",
                },
            );
        }
        if self
            .trace_id
            .as_deref()
            .is_some_and(|id| !is_lower_hex(id, 32))
        {
            out.push(
                &at.key("traceId"),
                Rule::Pattern {
                    pattern: r"^[0-9a-f]{32}$",
                },
            );
        }
        self.requested_model
            .collect_violations(&at.key("requestedModel"), out);
        check_models_tried(&self.models_tried, &at.key("modelsTried"), out);
        self.metadata.collect_violations(&at.key("metadata"), out);
    }
}

/// Each model tried names a model by the model id rules, as the schema states.
pub(crate) fn check_models_tried(tried: &[ModelAttempt], at: &Location<'_>, out: &mut Violations) {
    for (i, attempt) in tried.iter().enumerate() {
        attempt
            .model_id
            .collect_violations(&at.index(i).key("modelId"), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_are_snake_case_on_the_wire() {
        for o in Outcome::ALL {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
    }
}
