//! The answer to a prompt. Forward compatible: fields this version does not know are kept.

use schemars::JsonSchema;

use crate::model_id::ModelId;
use crate::open_enum::open_enum;
use crate::safety::SafetyReport;
use crate::unknown_fields::keep_unknown_fields;

open_enum! {
    /// Why the model stopped generating.
    pub enum FinishReason (Open) {
        /// The model finished its answer.
        Stop = "stop",
        /// `maxTokens` was reached.
        Length = "length",
        /// A safety filter cut the answer short.
        ContentFilter = "content_filter",
    }
}

/// Token counts of one call, for cost monitoring.
#[derive(Debug, Clone, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens in the answer.
    pub completion_tokens: u32,
    /// Sum of both.
    pub total_tokens: u32,
    /// Fields this version does not know (for example cached-token counts), kept as received
    /// (at most [`MAX_UNKNOWN_VALUES`](crate::MAX_UNKNOWN_VALUES) JSON values).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A `200 OK` answer from the AI Gateway.
///
/// Unknown fields are kept in [`GatewayResponse::extra`] and written back unchanged,
/// so a router built today keeps working when the gateway adds fields.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayResponse {
    /// The gateway's id for this completion.
    pub id: String,
    /// The model that actually answered (may be a gateway-side fallback). Read as any
    /// string: the gateway's naming is not ours to police.
    #[schemars(with = "String")]
    pub model_id: ModelId,
    /// The generated text.
    pub output: String,
    /// Token counts, when the gateway reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Why generation stopped, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// The safety pipeline's verdict, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<SafetyReport>,
    /// Fields this version does not know, kept as received (at most
    /// [`MAX_UNKNOWN_VALUES`](crate::MAX_UNKNOWN_VALUES) JSON values).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

keep_unknown_fields!(Usage {
    prompt_tokens: "promptTokens" whole,
    completion_tokens: "completionTokens" whole,
    total_tokens: "totalTokens" whole,
});

keep_unknown_fields!(GatewayResponse {
    id: "id" required,
    model_id: "modelId" required,
    output: "output" required,
    usage: "usage" nested,
    finish_reason: "finishReason" optional,
    safety: "safety" nested,
});

/// Responses are read leniently: nothing beyond their JSON shape is checked.
impl crate::Validate for GatewayResponse {
    fn collect_violations(&self, _: &crate::Location<'_>, _: &mut crate::Violations) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_round_trip_intact() {
        let text = r#"{
            "id": "cmpl-1",
            "modelId": "model-gen-4",
            "output": "Hello",
            "usage": {"promptTokens": 3, "completionTokens": 1, "totalTokens": 4, "cachedTokens": 2},
            "finishReason": "tool_calls",
            "safety": {"verdict": "passed", "scores": {"pii": 0.01}},
            "citations": [{"source": "kb-7", "span": [0, 5]}],
            "latencyMs": 812
        }"#;
        let parsed: GatewayResponse = serde_json::from_str(text).unwrap();
        assert_eq!(
            parsed.finish_reason,
            Some(FinishReason::Other("tool_calls".into()))
        );
        assert_eq!(parsed.extra["latencyMs"], 812);
        let safety = parsed.safety.as_ref().unwrap();
        assert_eq!(safety.extra["scores"]["pii"], 0.01);

        assert_eq!(parsed.usage.as_ref().unwrap().extra["cachedTokens"], 2);

        let written = serde_json::to_value(&parsed).unwrap();
        let original: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(written, original);
    }

    #[test]
    fn nulls_missing_fields_duplicates_and_escaped_keys_read_as_the_derive_did() {
        let read = |text: &str| serde_json::from_str::<GatewayResponse>(text);
        let nulls = read(r#"{"id":"a","modelId":"m","output":"o","usage":null,"safety":null}"#);
        let nulls = nulls.unwrap();
        assert_eq!((nulls.usage, nulls.safety), (None, None));
        assert!(nulls.extra.is_empty());

        let missing = read(r#"{"id":"a","modelId":"m"}"#).unwrap_err();
        assert!(
            missing.to_string().contains("missing field `output`"),
            "{missing}"
        );
        let twice = read(r#"{"id":"a","id":"b","modelId":"m","output":"o"}"#).unwrap_err();
        assert!(
            twice.to_string().contains("duplicate field `id`"),
            "{twice}"
        );
        let wrong = read(r#"{"id":"a","modelId":"m","output":7}"#).unwrap_err();
        assert!(wrong.to_string().contains("invalid type"), "{wrong}");

        // An escaped key cannot be borrowed from the input: it is still a known field.
        let escaped = read(r#"{"id":"a","mod\u0065lId":"m","output":"o","n\u0065w":1}"#);
        let escaped = escaped.unwrap();
        assert_eq!(escaped.model_id, "m");
        assert_eq!(escaped.extra["new"], 1);
    }

    #[test]
    fn token_counts_written_as_whole_floats_are_read_and_fractions_refused() {
        let usage = |counts: &str| {
            serde_json::from_str::<GatewayResponse>(&format!(
                r#"{{"id":"a","modelId":"m","output":"o","usage":{{{counts}}}}}"#
            ))
            .map(|r| r.usage.unwrap())
        };
        let read = usage(r#""promptTokens":12.0,"completionTokens":3e1,"totalTokens":42"#);
        let read = read.unwrap();
        assert_eq!(
            (
                read.prompt_tokens,
                read.completion_tokens,
                read.total_tokens
            ),
            (12, 30, 42)
        );
        let fraction = usage(r#""promptTokens":1.5,"completionTokens":3,"totalTokens":4"#);
        assert!(
            fraction
                .unwrap_err()
                .to_string()
                .contains("floating point `1.5`")
        );
        let missing = usage(r#""promptTokens":1,"completionTokens":3"#).unwrap_err();
        assert!(
            missing.to_string().contains("missing field `totalTokens`"),
            "{missing}"
        );
    }
}
