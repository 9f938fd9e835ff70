//! OpenAI's Responses API (`POST /v1/responses`), as far as a gateway that answers one
//! text turn can serve it: the request read into a [`RouteRequest`], and the answer as a
//! `response` object or its Server-Sent Events.
//!
//! `input` is a string (one user message) or a list of `message` items, rendered into the
//! prompt by the Chat Completions template ([`super::request`]); `instructions` comes
//! first, as a `System` turn. Parts of type `input_text` and `output_text` hold text;
//! other item types (function calls, reasoning), other parts (images, files) and
//! parameters the gateway cannot honour (`tools`, `previous_response_id`, `store: true`,
//! a `text.format` other than `text`, ...) are refused by name. Nothing is stored, so a
//! response cannot be fetched again.

use gateway_model::{FinishReason, Metadata, RouteOutcome, RouteRequest, Tuning};
use http::HeaderMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::OpenAiError;
use super::request::{ChatCall, ChatMessage, Role, render, sticky_key, unsupported};

/// The content part types that hold text in `input`.
const TEXT_PARTS: &[&str] = &["input_text", "output_text"];

/// A Responses API request, as far as this door reads it: every other parameter is
/// refused by name, since dropping it silently would change what the caller gets.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(title = "CreateResponseRequest")]
pub(crate) struct CreateResponseRequest {
    /// The route, named as a model (`GET /v1/models` lists them).
    #[schemars(with = "String", required)]
    model: Option<String>,
    /// The prompt: a string, or a list of `message` items (`role`, `content`).
    #[schemars(with = "ResponseInput", required)]
    input: Option<ResponseInput>,
    /// Instructions, rendered as the first (`System`) turn.
    #[serde(default)]
    instructions: Option<String>,
    /// A temperature inside the route's `low..=high` band; absent, `tuning` picks it.
    #[serde(default)]
    temperature: Option<f64>,
    /// Extension: the tuning level that picks the route's temperature (not with `temperature`).
    #[serde(default)]
    tuning: Option<Tuning>,
    /// Nucleus sampling, replacing the route's `topP`.
    #[serde(default)]
    top_p: Option<f64>,
    /// The output token limit, at most the route's own.
    #[serde(default)]
    max_output_tokens: Option<u32>,
    /// Whether to answer as Server-Sent Events.
    #[serde(default)]
    stream: Option<bool>,
    /// The caller's end-user id: the sticky key, unless an `X-Sticky-Key` header is given.
    #[serde(default)]
    user: Option<String>,
    /// Labels added to the gateway payload's metadata and the audit entry.
    #[serde(default)]
    metadata: Option<Metadata>,
    /// Output format: only `{"format": {"type": "text"}}`.
    #[serde(default)]
    text: Option<Value>,
    /// Accepted only at their "off" values (`store: false`, `parallel_tool_calls:
    /// false`); any other parameter is refused.
    #[serde(flatten)]
    #[schemars(skip)]
    rest: Map<String, Value>,
}

/// `input`: a string, or a list of items.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum ResponseInput {
    /// One user message.
    Text(String),
    /// `message` items: `{"role", "content"}`, optionally with `"type": "message"` (and
    /// the `id` and `status` of an earlier output item, which are ignored).
    Items(Vec<Map<String, Value>>),
}

impl CreateResponseRequest {
    /// Reads `body` (with the caller's `headers`) as a Responses API request: the call
    /// for the router, and how to answer it.
    pub(crate) fn parse(
        body: &[u8],
        headers: &HeaderMap,
    ) -> Result<(RouteRequest, ChatCall), OpenAiError> {
        let mut reader = serde_json::Deserializer::from_slice(body);
        let parsed: Self = serde_path_to_error::deserialize(&mut reader)
            .map_err(|e| OpenAiError::unreadable(&e))?;
        reader.end().map_err(|e| {
            OpenAiError::invalid(
                None,
                "invalid_json",
                format!("the body is not one JSON object: {e}"),
            )
        })?;
        parsed.into_call(headers)
    }

    fn into_call(self, headers: &HeaderMap) -> Result<(RouteRequest, ChatCall), OpenAiError> {
        refuse_unsupported(&self.rest, self.text.as_ref())?;
        let model = self.model.ok_or_else(|| OpenAiError::missing("model"))?;
        let input = self.input.ok_or_else(|| OpenAiError::missing("input"))?;
        if self.temperature.is_some() && self.tuning.is_some() {
            return Err(OpenAiError::invalid(
                Some("tuning".into()),
                "conflicting_parameters",
                "give `temperature` or `tuning`, not both".into(),
            ));
        }
        let prompt = prompt(input, self.instructions)?;
        let mut request = RouteRequest::new(model, prompt);
        request.tuning = self.tuning.unwrap_or_default();
        request.temperature = self.temperature;
        request.top_p = self.top_p;
        request.max_tokens = self.max_output_tokens;
        request.metadata = self.metadata.unwrap_or_default();
        let (sticky_key, sticky_key_param) = sticky_key(headers, self.user)?;
        request.sticky_key = sticky_key;
        let call = ChatCall {
            stream: self.stream.unwrap_or(false),
            include_usage: true,
            max_tokens_param: "max_output_tokens",
            prompt_param: "input",
            sticky_key_param,
        };
        Ok((request, call))
    }
}

/// Refuses the first parameter the gateway cannot honour, by name.
fn refuse_unsupported(rest: &Map<String, Value>, text: Option<&Value>) -> Result<(), OpenAiError> {
    if let Some((param, _)) = unsupported(rest, "") {
        let message = if param == "store" {
            "nothing is stored, so a response cannot be fetched again: `store` must be false or absent".to_owned()
        } else {
            format!("`{param}` is not supported by the Genesys Cloud AI Gateway; remove it")
        };
        return Err(OpenAiError::invalid(
            Some(param),
            "unsupported_parameter",
            message,
        ));
    }
    let plain = |text: &Value| {
        text.as_object().is_some_and(|t| {
            t.iter().all(|(key, value)| {
                value.is_null()
                    || (key == "format"
                        && value.get("type").and_then(Value::as_str) == Some("text"))
            })
        })
    };
    match text {
        Some(text) if !text.is_null() && !plain(text) => Err(OpenAiError::invalid(
            Some("text".into()),
            "unsupported_parameter",
            "only `{\"format\": {\"type\": \"text\"}}` is supported: the gateway answers plain text"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// The prompt of `input`, with `instructions` as the first turn.
fn prompt(input: ResponseInput, instructions: Option<String>) -> Result<String, OpenAiError> {
    let mut messages: Vec<ChatMessage> = instructions
        .map(|text| ChatMessage::plain(Role::System, text))
        .into_iter()
        .collect();
    match input {
        ResponseInput::Text(text) if messages.is_empty() => return Ok(text),
        ResponseInput::Text(text) => messages.push(ChatMessage::plain(Role::User, text)),
        ResponseInput::Items(items) => {
            if items.is_empty() {
                return Err(OpenAiError::invalid(
                    Some("input".into()),
                    "invalid_value",
                    "`input` must hold at least one message".into(),
                ));
            }
            for (i, item) in items.into_iter().enumerate() {
                messages.push(message_item(i, item)?);
            }
        }
    }
    render(&messages, "input", TEXT_PARTS)
}

/// One `input` item as a message; any other item type is refused.
fn message_item(i: usize, mut item: Map<String, Value>) -> Result<ChatMessage, OpenAiError> {
    let at = format!("input[{i}]");
    match item.remove("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind == "message" => {}
        Some(other) => {
            return Err(OpenAiError::invalid(
                Some(format!("{at}.type")),
                "unsupported_value",
                format!(
                    "input items of type {other} are not supported: the gateway takes messages"
                ),
            ));
        }
    }
    // An earlier output item sent back carries its id and status; neither matters here.
    item.remove("id");
    item.remove("status");
    serde_path_to_error::deserialize(Value::Object(item)).map_err(|e| {
        let path = e.path().to_string();
        let param = if path == "." {
            at.clone()
        } else {
            format!("{at}.{path}")
        };
        OpenAiError::invalid(
            Some(param.clone()),
            "invalid_type",
            format!("`{param}`: {}", e.inner()),
        )
    })
}

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
    incomplete_details: Option<IncompleteDetails>,
    /// Always null: a failed call is an HTTP error instead.
    error: Option<()>,
    /// The model that answered.
    model: String,
    /// The one assistant message (empty in the stream's first event).
    output: Vec<OutputMessage>,
    /// Token counts, when the gateway reports them.
    usage: Option<ResponseUsage>,
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
}

/// `output_tokens_details`.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
pub(crate) struct ReasoningTokens {
    /// Always 0.
    reasoning_tokens: u32,
}

impl ResponseObject {
    /// The answer for `outcome`.
    pub(crate) fn new(outcome: &RouteOutcome, created_at: u64) -> Self {
        let incomplete = match outcome.response.finish_reason {
            Some(FinishReason::Length) => Some("max_output_tokens"),
            Some(FinishReason::ContentFilter) => Some("content_filter"),
            _ => None,
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
                input_tokens_details: CachedTokens { cached_tokens: 0 },
                output_tokens: u.completion_tokens,
                output_tokens_details: ReasoningTokens {
                    reasoning_tokens: 0,
                },
                total_tokens: u.total_tokens,
            }),
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
pub(crate) fn response_events(outcome: &RouteOutcome, created_at: u64) -> String {
    let done = ResponseObject::new(outcome, created_at);
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
