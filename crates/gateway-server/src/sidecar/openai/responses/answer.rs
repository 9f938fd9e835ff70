//! The Responses API's answers: the `response` object and its Server-Sent Events.

use gateway_model::{FinishReason, Metadata, RouteOutcome};

use crate::sidecar::openai::request::ResponseEcho;
use schemars::JsonSchema;
use serde::Serialize;

/// A whole answer: a `response` object.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "Response")]
pub(crate) struct ResponseObject {
    /// `resp_` and the router's request id for the call.
    id: String,
    /// Always `response`.
    object: &'static str,
    /// When the answer was made, in Unix seconds.
    created_at: u64,
    /// `completed`, `incomplete` (cut at the token limit or by a content filter), or
    /// `in_progress` in the stream's first event.
    status: &'static str,
    /// Why an `incomplete` answer stopped.
    #[schemars(required, schema_with = "or_null::<IncompleteDetails>")]
    incomplete_details: Option<IncompleteDetails>,
    /// Always null: a failed call is an HTTP error instead.
    #[schemars(required)]
    error: Option<()>,
    /// The model that answered.
    model: String,
    /// The one assistant message (empty in the stream's first event).
    output: Vec<OutputMessage>,
    /// Token counts, when the gateway reports them.
    usage: Option<ResponseUsage>,
    /// Always empty: no tools are offered.
    tools: [(); 0],
    /// Always `auto` (with no tools, the same as `none`).
    tool_choice: &'static str,
    /// Always false.
    parallel_tool_calls: bool,
    /// The request's `instructions`, or null.
    #[schemars(required, schema_with = "or_null::<String>")]
    instructions: Option<String>,
    /// The request's `metadata`, or null.
    #[schemars(required, schema_with = "or_null::<Metadata>")]
    metadata: Option<Metadata>,
    /// The request's `temperature`, or null when the route picked it.
    #[schemars(required, schema_with = "or_null::<f64>")]
    temperature: Option<f64>,
    /// The request's `top_p`, or null when the route's applies.
    #[schemars(required, schema_with = "or_null::<f64>")]
    top_p: Option<f64>,
}

/// The schema of a required key whose value is a `T` or null (`required` alone would
/// drop the null).
fn or_null<T: JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let value = generator.subschema_for::<T>();
    schemars::json_schema!({ "anyOf": [value, { "type": "null" }] })
}

/// Why an answer is incomplete.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
pub(crate) struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    reason: &'static str,
}

/// The assistant's message.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct OutputMessage {
    /// Always `message`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// `msg_` and the router's request id.
    id: String,
    /// `completed` or `incomplete` (`in_progress` while streaming).
    status: &'static str,
    /// Always `assistant`.
    role: &'static str,
    /// The text, as one `output_text` part (none yet while streaming).
    content: Vec<OutputText>,
}

/// A text part of the answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct OutputText {
    /// Always `output_text`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The generated text.
    text: String,
    /// Always empty.
    annotations: Vec<()>,
    /// Always empty: the gateway gives no log probabilities.
    logprobs: Vec<()>,
}

/// Token counts (the Responses API's field names).
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
pub(crate) struct ResponseUsage {
    /// Tokens in the prompt.
    input_tokens: u32,
    /// Always `{"cached_tokens": 0}`.
    input_tokens_details: CachedTokens,
    /// Tokens in the answer.
    output_tokens: u32,
    /// Always `{"reasoning_tokens": 0}`.
    output_tokens_details: ReasoningTokens,
    /// Sum of both.
    total_tokens: u32,
}

/// `input_tokens_details`.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
pub(crate) struct CachedTokens {
    /// Always 0.
    cached_tokens: u32,
    /// Always 0.
    cache_write_tokens: u32,
}

/// `output_tokens_details`.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
pub(crate) struct ReasoningTokens {
    /// Always 0.
    reasoning_tokens: u32,
}

impl ResponseObject {
    /// The answer for `outcome`, repeating `echo` of its request.
    pub(crate) fn new(outcome: &RouteOutcome, echo: &ResponseEcho, created_at: u64) -> Self {
        let incomplete = if crate::sidecar::openai::response::filtered(outcome) {
            Some("content_filter")
        } else if outcome.response.finish_reason == Some(FinishReason::Length) {
            Some("max_output_tokens")
        } else {
            None
        };
        let status = if incomplete.is_some() {
            "incomplete"
        } else {
            "completed"
        };
        Self {
            id: format!("resp_{}", outcome.request_id),
            object: "response",
            created_at,
            status,
            incomplete_details: incomplete.map(|reason| IncompleteDetails { reason }),
            error: None,
            model: outcome.served_model.to_string(),
            output: vec![OutputMessage {
                kind: "message",
                id: format!("msg_{}", outcome.request_id),
                status,
                role: "assistant",
                content: vec![OutputText {
                    kind: "output_text",
                    text: outcome.response.output.clone(),
                    annotations: Vec::new(),
                    logprobs: Vec::new(),
                }],
            }],
            usage: outcome.response.usage.as_ref().map(|u| ResponseUsage {
                input_tokens: u.prompt_tokens,
                input_tokens_details: CachedTokens {
                    cached_tokens: 0,
                    cache_write_tokens: 0,
                },
                output_tokens: u.completion_tokens,
                output_tokens_details: ReasoningTokens {
                    reasoning_tokens: 0,
                },
                total_tokens: u.total_tokens,
            }),
            tools: [],
            tool_choice: "auto",
            parallel_tool_calls: false,
            instructions: echo.instructions.clone(),
            metadata: echo.metadata.clone(),
            temperature: echo.temperature,
            top_p: echo.top_p,
        }
    }

    /// The same answer before its output: the stream's first events.
    fn in_progress(&self) -> Self {
        Self {
            id: self.id.clone(),
            object: self.object,
            created_at: self.created_at,
            status: "in_progress",
            incomplete_details: None,
            error: None,
            model: self.model.clone(),
            output: Vec::new(),
            usage: None,
            tools: [],
            tool_choice: self.tool_choice,
            parallel_tool_calls: self.parallel_tool_calls,
            instructions: self.instructions.clone(),
            metadata: self.metadata.clone(),
            temperature: self.temperature,
            top_p: self.top_p,
        }
    }
}

/// One Server-Sent Event of a streamed answer: its `type` is also the SSE `event` name.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "ResponseStreamEvent")]
pub(crate) struct ResponseStreamEvent<'a> {
    /// `response.created`, `response.in_progress`, `response.output_item.added`,
    /// `response.content_part.added`, `response.output_text.delta`,
    /// `response.output_text.done`, `response.content_part.done`,
    /// `response.output_item.done`, then `response.completed` or `response.incomplete`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// 0, 1, 2, ... in the order sent.
    sequence_number: u32,
    /// The whole response (`response.created`, `.in_progress`, `.completed`, `.incomplete`).
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<&'a ResponseObject>,
    /// Always 0 (the item events).
    #[serde(skip_serializing_if = "Option::is_none")]
    output_index: Option<u32>,
    /// The item (`response.output_item.added`, `.done`).
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<&'a OutputMessage>,
    /// The message's id (the part and text events).
    #[serde(skip_serializing_if = "Option::is_none")]
    item_id: Option<&'a str>,
    /// Always 0 (the part and text events).
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    /// The part (`response.content_part.added`, `.done`).
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<&'a OutputText>,
    /// The text added (`response.output_text.delta`): the whole text, in one delta.
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<&'a str>,
    /// The whole text (`response.output_text.done`).
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    /// Always empty (the text events): the gateway gives no log probabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
}

impl<'a> ResponseStreamEvent<'a> {
    /// An event of `kind` with no fields set yet.
    fn of(kind: &'static str) -> Self {
        Self {
            kind,
            sequence_number: 0,
            response: None,
            output_index: None,
            item: None,
            item_id: None,
            content_index: None,
            part: None,
            delta: None,
            text: None,
            logprobs: None,
        }
    }

    /// A `response.*` event carrying the whole `response`.
    fn whole(kind: &'static str, response: &'a ResponseObject) -> Self {
        Self {
            response: Some(response),
            ..Self::of(kind)
        }
    }

    /// A `response.output_item.*` event carrying `item`.
    fn item(kind: &'static str, item: &'a OutputMessage) -> Self {
        Self {
            output_index: Some(0),
            item: Some(item),
            ..Self::of(kind)
        }
    }

    /// A part or text event of the item `item_id`.
    fn part(kind: &'static str, item_id: &'a str) -> Self {
        Self {
            output_index: Some(0),
            item_id: Some(item_id),
            content_index: Some(0),
            ..Self::of(kind)
        }
    }
}

/// The whole event stream for `outcome`, in the Responses API's order; the text comes in
/// one delta, as the gateway answers whole.
pub(crate) fn response_events(
    outcome: &RouteOutcome,
    echo: &ResponseEcho,
    created_at: u64,
) -> String {
    let done = ResponseObject::new(outcome, echo, created_at);
    let started = done.in_progress();
    let item = &done.output[0];
    let part = &item.content[0];
    let item_started = OutputMessage {
        status: "in_progress",
        content: Vec::new(),
        ..item.clone()
    };
    let part_started = OutputText {
        text: String::new(),
        ..part.clone()
    };
    let last = if done.status == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    let id = item.id.as_str();
    let text = part.text.as_str();
    write_events([
        ResponseStreamEvent::whole("response.created", &started),
        ResponseStreamEvent::whole("response.in_progress", &started),
        ResponseStreamEvent::item("response.output_item.added", &item_started),
        ResponseStreamEvent {
            part: Some(&part_started),
            ..ResponseStreamEvent::part("response.content_part.added", id)
        },
        ResponseStreamEvent {
            delta: Some(text),
            logprobs: Some([]),
            ..ResponseStreamEvent::part("response.output_text.delta", id)
        },
        ResponseStreamEvent {
            text: Some(text),
            logprobs: Some([]),
            ..ResponseStreamEvent::part("response.output_text.done", id)
        },
        ResponseStreamEvent {
            part: Some(part),
            ..ResponseStreamEvent::part("response.content_part.done", id)
        },
        ResponseStreamEvent::item("response.output_item.done", item),
        ResponseStreamEvent::whole(last, &done),
    ])
}

/// `events` as Server-Sent Events, numbered in order.
fn write_events<const N: usize>(events: [ResponseStreamEvent<'_>; N]) -> String {
    let mut stream = String::new();
    for (n, mut event) in (0u32..).zip(events) {
        event.sequence_number = n;
        stream.push_str("event: ");
        stream.push_str(event.kind);
        stream.push_str("\ndata: ");
        stream.push_str(&serde_json::to_string(&event).unwrap_or_default());
        stream.push_str("\n\n");
    }
    stream
}
