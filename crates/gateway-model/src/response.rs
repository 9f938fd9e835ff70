//! The answer to a prompt. Forward compatible: fields this version does not know are kept.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model_id::ModelId;
use crate::open_enum::open_enum;
use crate::safety::SafetyReport;

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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens in the answer.
    pub completion_tokens: u32,
    /// Sum of both.
    pub total_tokens: u32,
    /// Fields this version does not know (for example cached-token counts), kept as received.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A `200 OK` answer from the AI Gateway.
///
/// Unknown fields are kept in [`GatewayResponse::extra`] and written back unchanged,
/// so a router built today keeps working when the gateway adds fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// Fields this version does not know, kept as received.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

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
}
