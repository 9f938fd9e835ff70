//! What a caller asks the router for, and what it gets back: the library's `route()`
//! types, also the JSON of the sidecar's `POST /v1/route`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::ModelAttempt;
use crate::bounds::{self, Bound, Bounded, Text, widen};
use crate::config::MAX_ROUTE_NAME_CHARS;
use crate::model_id::ModelId;
use crate::payload::{MAX_TOKENS_CAP, MAX_TOKENS_MIN, Metadata, PROMPT, TOP_P_ABOVE, TOP_P_MAX};
use crate::response::GatewayResponse;
use crate::trace;
use crate::tuning::{TEMPERATURE_MAX, TEMPERATURE_MIN, Tuning};
use crate::validation::{Location, Validate, Violations};

/// Longest sticky key, in characters.
pub const MAX_STICKY_KEY_CHARS: usize = 256;

/// One prompt to route: which route, the prompt, how creative, and what keeps the model
/// choice sticky.
///
/// ```
/// use gateway_model::{RouteRequest, Tuning};
///
/// let request = RouteRequest::new("summarize", "Summarize this transcript")
///     .tuning(Tuning::Low)
///     .sticky_key("conversation-7f3a")
///     .metadata("queue", "billing");
/// assert_eq!(request.sticky_key.as_deref(), Some("conversation-7f3a"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = bounds::state::<Self>)]
pub struct RouteRequest {
    /// The route name, as configured.
    pub route: String,
    /// The prompt text: 1 to 8000 characters, not all whitespace.
    pub prompt: String,
    /// The tuning level that picks the temperature (default `default`).
    #[serde(default)]
    pub tuning: Tuning,
    /// A key such as the conversation id: the same key always gets the same model of a
    /// weighted split. Without one, the prompt text is the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_key: Option<String>,
    /// Labels added to the payload's metadata (and the audit entry).
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    /// A temperature replacing the one `tuning` picks; it must lie in the route's
    /// `low..=high` band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// A completion token limit replacing the route's; at most the route's own.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option"
    )]
    pub max_tokens: Option<u32>,
    /// A nucleus sampling value replacing the route's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// The caller's W3C `traceparent`: the router sends the gateway the same trace id
    /// with its own parent id (without one, it starts a trace), and audits the trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The caller's W3C `tracestate`, passed on to the gateway unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// The caller's own request id (such as its `X-Request-Id`), recorded in the audit entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_request_id: Option<String>,
}

impl RouteRequest {
    /// A request for `route` with `prompt`, default tuning, no sticky key.
    pub fn new(route: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            route: route.into(),
            prompt: prompt.into(),
            tuning: Tuning::Default,
            sticky_key: None,
            metadata: Metadata::new(),
            temperature: None,
            max_tokens: None,
            top_p: None,
            traceparent: None,
            tracestate: None,
            caller_request_id: None,
        }
    }

    /// Sets the tuning level.
    #[must_use]
    pub fn tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    /// Sets the sticky key.
    #[must_use]
    pub fn sticky_key(mut self, key: impl Into<String>) -> Self {
        self.sticky_key = Some(key.into());
        self
    }

    /// Adds a metadata label.
    #[must_use]
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key, value);
        self
    }

    /// Sets the temperature, replacing the one `tuning` picks.
    #[must_use]
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets the completion token limit, replacing the route's.
    #[must_use]
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Sets `topP`, replacing the route's.
    #[must_use]
    pub fn top_p(mut self, top_p: f64) -> Self {
        self.top_p = Some(top_p);
        self
    }

    /// Sets the caller's `traceparent` (and `tracestate`, if any).
    #[must_use]
    pub fn trace_context(
        mut self,
        traceparent: impl Into<String>,
        tracestate: Option<String>,
    ) -> Self {
        self.traceparent = Some(traceparent.into());
        self.tracestate = tracestate;
        self
    }

    /// Sets the caller's request id.
    #[must_use]
    pub fn caller_request_id(mut self, id: impl Into<String>) -> Self {
        self.caller_request_id = Some(id.into());
        self
    }
}

impl Bounded for RouteRequest {
    const BOUNDS: &'static [Bound<Self>] = &[
        // Only the length: a malformed name is reported as an unknown route.
        bounds::text!(route, Text::chars(1, MAX_ROUTE_NAME_CHARS)),
        bounds::text!(prompt, PROMPT),
        bounds::text!(sticky_key as "stickyKey", Text::chars(1, MAX_STICKY_KEY_CHARS)),
        bounds::float!(temperature, TEMPERATURE_MIN, TEMPERATURE_MAX),
        bounds::int!(max_tokens as "maxTokens", MAX_TOKENS_MIN, widen(MAX_TOKENS_CAP)),
        bounds::float!(top_p as "topP", above TOP_P_ABOVE, TOP_P_MAX),
        bounds::text!(traceparent, trace::TRACEPARENT),
        bounds::text!(tracestate, trace::TRACESTATE),
        bounds::text!(caller_request_id as "callerRequestId", trace::CALLER_REQUEST_ID),
    ];
}

impl Validate for RouteRequest {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        bounds::check(self, at, out);
        self.metadata.collect_violations(&at.key("metadata"), out);
    }
}

/// What a routed call produced: the answer, which model gave it, and how it got there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteOutcome {
    /// The route used.
    pub route: String,
    /// The gateway's answer.
    pub response: GatewayResponse,
    /// The model selection chose first.
    pub requested_model: ModelId,
    /// The model that answered, as the gateway reports it (at most 256 characters: a
    /// longer id is cut, ending in `…`; `response.modelId` keeps it whole).
    #[schemars(with = "String")]
    pub served_model: ModelId,
    /// HTTP attempts across every model tried.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub attempts: u32,
    /// Fallback models tried after the first.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub fallbacks_used: u32,
    /// Every model tried, in order, the one that answered last.
    pub models_tried: Vec<ModelAttempt>,
    /// Time from the call's start to its answer, in microseconds.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub latency_us: u64,
    /// The `X-Correlation-Id` shared by every model tried.
    pub correlation_id: String,
    /// The `X-Genesys-Request-Id` of the model that answered.
    pub request_id: String,
    /// The id of the audit entry written for this call; absent when auditing is off or
    /// the entry could not be written (the failure is logged and counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<Uuid>,
}

/// The model ids the schema states rules for: the model selected and each model tried
/// (the model that answered is the gateway's word, any string).
impl Validate for RouteOutcome {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        self.requested_model
            .collect_violations(&at.key("requestedModel"), out);
        crate::audit::check_models_tried(&self.models_tried, &at.key("modelsTried"), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_camel_case_with_defaults() {
        let r: RouteRequest =
            serde_json::from_str(r#"{"route":"summarize","prompt":"hi","stickyKey":"c-1"}"#)
                .unwrap();
        assert_eq!(r.tuning, Tuning::Default);
        assert_eq!(r.sticky_key.as_deref(), Some("c-1"));
        r.validate().unwrap();
        let err =
            crate::from_json_slice::<RouteRequest>(br#"{"route":"s","prompt":"hi","colour":1}"#)
                .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err = RouteRequest::new("", "").validate().unwrap_err();
        assert!(err.has_path("/route") && err.has_path("/prompt"));
        let err = RouteRequest::new("s", " \u{3000}\n")
            .validate()
            .unwrap_err();
        assert!(err.has_path("/prompt"), "{err}");
    }
}
