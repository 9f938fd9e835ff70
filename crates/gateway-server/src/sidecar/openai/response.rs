//! The door's answers: `chat.completion`, `chat.completion.chunk` events and model lists.

use std::time::{SystemTime, UNIX_EPOCH};

use gateway_model::{FinishReason, RouteOutcome, SafetyVerdict};
use schemars::JsonSchema;
use serde::Serialize;

/// A whole answer.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "ChatCompletion")]
pub(crate) struct ChatCompletion {
    /// The router's request id for the call (the gateway's `X-Genesys-Request-Id`).
    id: String,
    /// Always `chat.completion`.
    object: &'static str,
    /// When the answer was made, in Unix seconds.
    created: u64,
    /// The model that answered.
    model: String,
    /// The one choice.
    choices: Vec<Choice>,
    /// Token counts, when the gateway reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<CompletionUsage>,
}

/// The one choice of an answer.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Choice {
    /// Always 0.
    index: u32,
    /// The answer.
    message: AssistantMessage,
    /// Why generation stopped: `stop`, `length` or `content_filter`.
    finish_reason: &'static str,
    /// Always null: the gateway gives no log probabilities.
    logprobs: Option<()>,
}

/// The model's message.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct AssistantMessage {
    /// Always `assistant`.
    role: &'static str,
    /// The generated text.
    content: String,
    /// Always null.
    refusal: Option<String>,
}

/// Token counts (OpenAI's field names).
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[allow(clippy::struct_field_names)]
pub(crate) struct CompletionUsage {
    /// Tokens in the prompt.
    prompt_tokens: u32,
    /// Tokens in the answer.
    completion_tokens: u32,
    /// Sum of both.
    total_tokens: u32,
}

/// One Server-Sent Event of a streamed answer.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "ChatCompletionChunk")]
pub(crate) struct ChatCompletionChunk<'a> {
    /// The same id on every chunk of an answer.
    id: &'a str,
    /// Always `chat.completion.chunk`.
    object: &'static str,
    /// The same time on every chunk, in Unix seconds.
    created: u64,
    /// The model that answered.
    model: &'a str,
    /// The choice's delta (empty on the usage chunk).
    choices: Vec<ChunkChoice<'a>>,
    /// Token counts when `stream_options.include_usage` is set: `null` on every chunk
    /// but the last, which has the counts (`null` there too when the gateway reported
    /// none); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[allow(clippy::option_option)] // absent, `null` or the counts: three states on the wire
    usage: Option<Option<CompletionUsage>>,
}

/// What one chunk adds to the choice.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ChunkChoice<'a> {
    /// Always 0.
    index: u32,
    /// The text added.
    delta: Delta<'a>,
    /// Set on the last chunk of the choice.
    finish_reason: Option<&'static str>,
}

/// The text a chunk adds.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub(crate) struct Delta<'a> {
    /// `assistant`, on the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// The text added.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

/// The routes, listed as models.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "ModelList")]
pub(crate) struct ModelList {
    /// Always `list`.
    object: &'static str,
    /// One entry per route.
    data: Vec<ModelCard>,
}

/// A route, as a model.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "Model")]
pub(crate) struct ModelCard {
    /// The route's name: the `model` to send.
    id: String,
    /// Always `model`.
    object: &'static str,
    /// When the sidecar started, in Unix seconds.
    created: u64,
    /// Always `genesys-router`.
    owned_by: &'static str,
}

impl ModelCard {
    /// The card of route `name`, served since `created`.
    pub(crate) fn new(name: &str, created: u64) -> Self {
        Self {
            id: name.to_owned(),
            object: "model",
            created,
            owned_by: "genesys-router",
        }
    }
}

impl ModelList {
    /// The list of `cards`.
    pub(crate) fn new(data: Vec<ModelCard>) -> Self {
        Self {
            object: "list",
            data,
        }
    }
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether the gateway's safety pipeline stopped the answer: it says so as the finish
/// reason, or as a `blocked` verdict whatever the finish reason.
pub(crate) fn filtered(outcome: &RouteOutcome) -> bool {
    matches!(
        outcome.response.finish_reason,
        Some(FinishReason::ContentFilter)
    ) || outcome
        .response
        .safety
        .as_ref()
        .is_some_and(|s| s.verdict == SafetyVerdict::Blocked)
}

/// OpenAI's name for why the gateway stopped; a reason it does not know reads as `stop`.
fn finish_reason(outcome: &RouteOutcome) -> &'static str {
    if filtered(outcome) {
        return "content_filter";
    }
    match &outcome.response.finish_reason {
        Some(FinishReason::Length) => "length",
        Some(FinishReason::ContentFilter | FinishReason::Stop | FinishReason::Other(_)) | None => {
            "stop"
        }
    }
}

fn usage(outcome: &RouteOutcome) -> Option<CompletionUsage> {
    outcome.response.usage.as_ref().map(|u| CompletionUsage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
    })
}

impl ChatCompletion {
    /// The answer for `outcome`.
    pub(crate) fn new(outcome: &RouteOutcome, created: u64) -> Self {
        Self {
            id: outcome.request_id.clone(),
            object: "chat.completion",
            created,
            model: outcome.served_model.to_string(),
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: outcome.response.output.clone(),
                    refusal: None,
                },
                finish_reason: finish_reason(outcome),
                logprobs: None,
            }],
            usage: usage(outcome),
        }
    }
}

/// The whole event stream for `outcome`: a role chunk, the content in one chunk (the
/// gateway answers whole), a finish chunk, a usage chunk if asked for, then `[DONE]`.
pub(crate) fn event_stream(outcome: &RouteOutcome, created: u64, include_usage: bool) -> String {
    let model = outcome.served_model.to_string();
    let chunk = |delta, finish_reason| ChatCompletionChunk {
        id: &outcome.request_id,
        object: "chat.completion.chunk",
        created,
        model: &model,
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason,
        }],
        // As OpenAI: with usage asked for, `null` on every chunk before the usage chunk.
        usage: include_usage.then_some(None),
    };
    let mut chunks = vec![
        chunk(
            Delta {
                role: Some("assistant"),
                content: Some(""),
            },
            None,
        ),
        chunk(
            Delta {
                role: None,
                content: Some(&outcome.response.output),
            },
            None,
        ),
        chunk(Delta::default(), Some(finish_reason(outcome))),
    ];
    if include_usage {
        chunks.push(ChatCompletionChunk {
            id: &outcome.request_id,
            object: "chat.completion.chunk",
            created,
            model: &model,
            choices: Vec::new(),
            usage: Some(usage(outcome)),
        });
    }
    let mut events = String::new();
    for chunk in &chunks {
        events.push_str("data: ");
        events.push_str(&serde_json::to_string(chunk).unwrap_or_default());
        events.push_str("\n\n");
    }
    events.push_str("data: [DONE]\n\n");
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// An answer of `output` from `model-gen-4`, with token counts.
    fn outcome() -> RouteOutcome {
        serde_json::from_value(json!({
            "route": "summarize",
            "response": {
                "id": "r-1", "modelId": "model-gen-4", "output": "Short.",
                "usage": {"promptTokens": 3, "completionTokens": 2, "totalTokens": 5},
            },
            "requestedModel": "model-gen-4", "servedModel": "model-gen-4",
            "attempts": 1, "fallbacksUsed": 0, "modelsTried": [], "latencyUs": 1,
            "correlationId": "c-1", "requestId": "req-1",
        }))
        .unwrap()
    }

    /// An answer the gateway's safety pipeline blocked, whatever finish reason it gave,
    /// is a `content_filter` finish on both doors, as OpenAI says a filtered answer.
    #[test]
    fn a_blocked_verdict_is_a_content_filter_finish() {
        for finish in [None, Some("stop")] {
            let mut blocked = outcome();
            blocked.response.finish_reason =
                finish.map(|f| serde_json::from_value(json!(f)).unwrap());
            blocked.response.safety =
                Some(serde_json::from_value(json!({"verdict": "blocked", "filters": []})).unwrap());
            let chat = serde_json::to_value(ChatCompletion::new(&blocked, 0)).unwrap();
            assert_eq!(
                chat["choices"][0]["finish_reason"], "content_filter",
                "{finish:?}"
            );
            let response = crate::sidecar::openai::responses::ResponseObject::new(
                &blocked,
                &crate::sidecar::openai::request::ResponseEcho::default(),
                0,
            );
            let response = serde_json::to_value(response).unwrap();
            assert_eq!(response["status"], "incomplete");
            assert_eq!(response["incomplete_details"]["reason"], "content_filter");
        }
        let passed = serde_json::to_value(ChatCompletion::new(&outcome(), 0)).unwrap();
        assert_eq!(passed["choices"][0]["finish_reason"], "stop");
    }

    /// The JSON chunks of `events`, without the closing `[DONE]`.
    fn chunks(events: &str) -> Vec<Value> {
        let mut datas: Vec<&str> = events
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .collect();
        assert_eq!(datas.pop(), Some("[DONE]"));
        datas
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn with_include_usage_every_chunk_but_the_last_says_usage_null() {
        let chunks = chunks(&event_stream(&outcome(), 1, true));
        let (last, before) = chunks.split_last().unwrap();
        assert_eq!(before.len(), 3, "role, content and finish chunks");
        for chunk in before {
            assert_eq!(chunk.get("usage"), Some(&Value::Null), "{chunk}");
        }
        assert_eq!(last["usage"]["total_tokens"], 5, "{last}");
        assert_eq!(last["choices"], json!([]));
    }

    #[test]
    fn without_include_usage_no_chunk_has_a_usage_field() {
        let chunks = chunks(&event_stream(&outcome(), 1, false));
        assert_eq!(chunks.len(), 3);
        for chunk in &chunks {
            assert!(chunk.get("usage").is_none(), "{chunk}");
        }
    }
}
