//! The error body every Genesys Cloud API answers with, modelled once.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod essentials;

pub use essentials::MAX_ERROR_BODY_VALUES;

/// Code Genesys Cloud puts in a 429 body.
pub const CODE_TOO_MANY_REQUESTS: &str = "too.many.requests.retry.after";
/// Code a 422 carries when the prompt or answer breaks a content policy.
pub const CODE_POLICY_VIOLATION: &str = "ai.gateway.policy.violation";
/// Code a 400 carries when the payload breaks the gateway's schema.
pub const CODE_BAD_REQUEST: &str = "bad.request";
/// Code a 404 carries for an unknown model.
pub const CODE_NOT_FOUND: &str = "not.found";
/// Code a 401 carries when no bearer token was sent.
pub const CODE_AUTHENTICATION_REQUIRED: &str = "authentication.required";
/// Code a 401 carries when the bearer token is unknown, expired or revoked.
pub const CODE_BAD_CREDENTIALS: &str = "bad.credentials";
/// Code a 403 carries when the OAuth client's roles lack a permission (a client problem:
/// another model will not help).
pub const CODE_MISSING_PERMISSIONS: &str = "missing.permissions";
/// Code a 403 carries when the model itself is restricted for this org (another model may work).
pub const CODE_MODEL_RESTRICTED: &str = "ai.model.restricted";
/// Code a 413 carries when the request body exceeds the 512,000-byte limit.
pub const CODE_REQUEST_TOO_LARGE: &str = "request.entity.too.large";

/// A Genesys Cloud API error: `{"message","code","status","contextId","details","errors",...}`.
///
/// Every field is optional on read ([`ErrorBody::parse`]), so a truncated or unusual
/// body still parses; fields this version does not know are kept in
/// [`ErrorBody::extra`]. The exported schema and [`Validate`](crate::Validate) require
/// `message`, `code` and `status`, which every Genesys service, the simulator and the
/// sidecar always write (`REQUIRED_FIELDS`).
#[derive(Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = REQUIRED_FIELDS))]
pub struct ErrorBody {
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Required by the schema: never `null` there, as `Validate` reads `null` as absent.
    #[schemars(with = "String")]
    pub message: Option<String>,
    /// Machine-readable code, such as `too.many.requests.retry.after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub code: Option<String>,
    /// The HTTP status, repeated.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option"
    )]
    #[schemars(with = "u16")]
    pub status: Option<u16>,
    /// Genesys' id for this failure; quote it to Genesys support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// Further detail objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<serde_json::Value>,
    /// Nested errors, each usually of this same shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<serde_json::Value>,
    /// The entity the error concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// The name of that entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_name: Option<String>,
    /// The message with `{placeholders}` for [`ErrorBody::message_params`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_with_params: Option<String>,
    /// Values for the placeholders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub message_params: BTreeMap<String, String>,
    /// The rate limit that was hit, on 429 answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<RateLimitInfo>,
    /// Fields this version does not know, kept as received (with `details` and `errors`,
    /// at most [`MAX_UNKNOWN_VALUES`](crate::MAX_UNKNOWN_VALUES) JSON values).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

crate::unknown_fields::keep_unknown_fields!(ErrorBody {
    message: "message" optional,
    code: "code" optional,
    status: "status" optional_whole,
    context_id: "contextId" optional,
    details: "details" values,
    errors: "errors" values,
    entity_id: "entityId" optional,
    entity_name: "entityName" optional,
    message_with_params: "messageWithParams" optional,
    message_params: "messageParams" list,
    limit: "limit" optional,
});

/// Which limit a 429 hit.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitInfo {
    /// The limit's key, such as `token.rate.per.minute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its namespace, such as `platform.api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its value, such as 300.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::signed_option"
    )]
    pub value: Option<i64>,
}

impl ErrorBody {
    /// An error body with the four fields every Genesys error has.
    pub fn new(
        status: u16,
        code: impl Into<String>,
        message: impl Into<String>,
        context_id: impl Into<String>,
    ) -> Self {
        Self {
            status: Some(status),
            code: Some(code.into()),
            message: Some(message.into()),
            context_id: Some(context_id.into()),
            ..Self::default()
        }
    }

    /// Parses a body leniently: anything that is not a JSON object yields `None`, and a
    /// field of the wrong type (`"status": "403"`) is left out rather than losing the
    /// rest (the `code` that says a model is restricted, say). A body of more than
    /// [`MAX_ERROR_BODY_VALUES`] JSON values keeps only `message`, `code`, `status` and
    /// `contextId`, so its memory does not grow with it.
    ///
    /// ```
    /// use gateway_model::ErrorBody;
    ///
    /// let body = br#"{"code":"ai.model.restricted","status":"403"}"#;
    /// let parsed = ErrorBody::parse(body).unwrap();
    /// assert!(parsed.is_model_restricted());
    /// assert_eq!(parsed.status, None);
    /// ```
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if crate::json_value_bound(bytes) > MAX_ERROR_BODY_VALUES {
            return essentials::essentials(bytes, &[]);
        }
        serde_json::from_slice(bytes)
            .ok()
            .or_else(|| Self::field_by_field(serde_json::from_slice(bytes).ok()?))
    }

    /// `value`'s fields that read as this shape, each on its own; `None` if it is not an
    /// object.
    fn field_by_field(value: serde_json::Value) -> Option<Self> {
        let serde_json::Value::Object(fields) = value else {
            return None;
        };
        let kept: serde_json::Map<String, serde_json::Value> = fields
            .into_iter()
            .filter(|(name, field)| {
                let one = serde_json::Map::from_iter([(name.clone(), field.clone())]);
                serde_json::from_value::<Self>(serde_json::Value::Object(one)).is_ok()
            })
            .collect();
        serde_json::from_value(serde_json::Value::Object(kept)).ok()
    }

    /// Parses a body like [`ErrorBody::parse`], with each of `secrets` taken out of
    /// every string ([`redact_json`](crate::redact::redact_json)): for an answer to a
    /// request that carried them, which the other side may have repeated.
    ///
    /// ```
    /// use gateway_model::ErrorBody;
    ///
    /// let body = br#"{"message":"bad token: Bearer tok-123","code":"bad.credentials"}"#;
    /// let parsed = ErrorBody::parse_redacting(body, &["tok-123"]).unwrap();
    /// assert_eq!(parsed.message.as_deref(), Some("bad token: Bearer <redacted>"));
    /// ```
    pub fn parse_redacting(bytes: &[u8], secrets: &[&str]) -> Option<Self> {
        if secrets.iter().all(|s| s.is_empty()) {
            return Self::parse(bytes);
        }
        if crate::json_value_bound(bytes) > MAX_ERROR_BODY_VALUES {
            return essentials::essentials(bytes, secrets);
        }
        let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        crate::redact::redact_json(&mut value, secrets);
        Self::deserialize(&value)
            .ok()
            .or_else(|| Self::field_by_field(value))
    }

    /// Whether a 403 with this body concerns the model (restricted) rather than the OAuth client.
    pub fn is_model_restricted(&self) -> bool {
        self.code.as_deref() == Some(CODE_MODEL_RESTRICTED)
    }

    /// Whether the code marks a content-policy or safety violation.
    pub fn is_policy_violation(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| c.contains("policy") || c.contains("safety"))
    }
}

/// Longest `message` an error body's `Display` shows, in characters: it goes into
/// every error and log line that quotes the gateway's answer.
pub const MAX_SHOWN_MESSAGE_CHARS: usize = 1_024;

impl fmt::Display for ErrorBody {
    /// `code: message (contextId …)`, leaving out what is missing: each on one line (its
    /// control characters escaped), the code and context id cut to
    /// [`MAX_UPSTREAM_TEXT_CHARS`](crate::MAX_UPSTREAM_TEXT_CHARS) characters and the
    /// message to [`MAX_SHOWN_MESSAGE_CHARS`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::{MAX_UPSTREAM_TEXT_CHARS, OneLine};
        let code = self.code.as_deref().unwrap_or("unknown");
        let message = self.message.as_deref().unwrap_or("no message");
        write!(
            f,
            "{}: {}",
            OneLine::new(code, MAX_UPSTREAM_TEXT_CHARS),
            OneLine::new(message, MAX_SHOWN_MESSAGE_CHARS)
        )?;
        if let Some(ctx) = &self.context_id {
            write!(
                f,
                " (contextId {})",
                OneLine::new(ctx, MAX_UPSTREAM_TEXT_CHARS)
            )?;
        }
        Ok(())
    }
}

/// The fields every error body carries, as the schema's `required` lists them.
pub const REQUIRED_FIELDS: [&str; 3] = ["message", "code", "status"];

/// An error body as written by a service: `message`, `code` and `status` present
/// (`REQUIRED_FIELDS`); reading one ([`ErrorBody::parse`]) checks nothing of this.
impl crate::Validate for ErrorBody {
    fn collect_violations(&self, at: &crate::Location<'_>, out: &mut crate::Violations) {
        let present = [
            self.message.is_some(),
            self.code.is_some(),
            self.status.is_some(),
        ];
        for (name, present) in REQUIRED_FIELDS.into_iter().zip(present) {
            if !present {
                out.push(&at.key(name), crate::Rule::Required);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway's message went whole (up to 64 KiB, line breaks and terminal escapes
    /// included) into every error and log line that quoted the answer.
    #[test]
    fn shown_it_is_one_bounded_line() {
        let mut body = ErrorBody::new(500, "c\nd", "line\n".repeat(20_000), "ctx\u{1b}[2J");
        body.message.as_mut().unwrap().insert_str(0, "first ");
        let shown = body.to_string();
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown:.200}"
        );
        assert!(
            shown.starts_with("c\\nd: first line\\nline"),
            "{shown:.200}"
        );
        assert!(shown.contains("…"), "cut");
        assert!(shown.ends_with("(contextId ctx\\u{1b}[2J)"), "{shown:.200}");
        assert!(shown.chars().count() <= MAX_SHOWN_MESSAGE_CHARS + 2 * 256 + 20);
    }

    #[test]
    fn parses_a_rate_limit_body() {
        let text = r#"{"message":"Rate limit exceeded the maximum. [300] requests for 60 seconds",
            "code":"too.many.requests.retry.after","status":429,"contextId":"ctx-9",
            "details":[],"errors":[],"limit":{"key":"token.rate.per.minute","namespace":"platform.api","value":300}}"#;
        let body = ErrorBody::parse(text.as_bytes()).unwrap();
        assert_eq!(body.code.as_deref(), Some(CODE_TOO_MANY_REQUESTS));
        assert_eq!(body.limit.unwrap().value, Some(300));
        assert_eq!(body.context_id.as_deref(), Some("ctx-9"));
    }

    #[test]
    fn display_names_code_message_and_context() {
        let body = ErrorBody::new(422, CODE_POLICY_VIOLATION, "blocked by policy", "ctx-1");
        assert_eq!(
            body.to_string(),
            "ai.gateway.policy.violation: blocked by policy (contextId ctx-1)"
        );
        assert!(body.is_policy_violation());
        assert!(ErrorBody::parse(b"<html>").is_none());
    }

    /// Unknown fields, `details` and `errors` are kept as received and written back.
    #[test]
    fn unknown_fields_round_trip_intact() {
        let text = r#"{"message":"m","code":"c","status":503,"contextId":"x","details":[{"a":1}],"errors":[{"code":"e"}],"messageParams":{"p":"v"},"future":{"n":[1,null]}}"#;
        let body = ErrorBody::parse(text.as_bytes()).unwrap();
        assert_eq!(body.extra["future"], serde_json::json!({"n": [1, null]}));
        let whole: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&body).unwrap(), whole);
    }

    /// Regression: read whole (and with serde's `flatten`, buffered twice), a 64 KiB body
    /// of empty arrays took 4.6 MB to parse and 6.6 MB to parse redacted. Past the bound
    /// only the fields the router reads are kept, of their type, redacted.
    #[test]
    fn a_body_of_too_many_values_keeps_what_the_router_reads() {
        let many = vec!["[]"; MAX_ERROR_BODY_VALUES].join(",");
        let text = format!(
            r#"{{"message":"bad Bearer tok-1","details":[{many}],"code":"ai.model.restricted","status":403,"contextId":"ctx","limit":{{"value":3}}}}"#
        );
        let body = ErrorBody::parse_redacting(text.as_bytes(), &["tok-1"]).unwrap();
        assert_eq!(body.message.as_deref(), Some("bad Bearer <redacted>"));
        assert!(body.is_model_restricted());
        assert_eq!(
            (body.status, body.context_id.as_deref()),
            (Some(403), Some("ctx"))
        );
        assert!(body.details.is_empty() && body.limit.is_none() && body.extra.is_empty());
        // A field of another type is left out, as when the body is read whole.
        let odd = format!(r#"{{"status":"403","code":"c","x":[{many}]}}"#);
        let body = ErrorBody::parse(odd.as_bytes()).unwrap();
        assert_eq!((body.status, body.code.as_deref()), (None, Some("c")));
        assert!(ErrorBody::parse(format!("[{many}]").as_bytes()).is_none());
        // A key given twice keeps its last value, and a whole number may be written as a
        // float, as when the body is read whole.
        let twice =
            format!(r#"{{"code":"x","code":"ai.model.restricted","status":403.0,"d":[{many}]}}"#);
        let body = ErrorBody::parse(twice.as_bytes()).unwrap();
        assert!(body.is_model_restricted(), "{body:?}");
        assert_eq!(body.status, Some(403));
    }
}
