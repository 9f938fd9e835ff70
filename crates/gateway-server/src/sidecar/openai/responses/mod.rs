//! OpenAI's Responses API (`POST /v1/responses`), as far as a gateway that answers one
//! text turn can serve it: the request read into a [`RouteRequest`], and the answer as a
//! `response` object or its Server-Sent Events.
//!
//! `input` is a string (one user message) or a list of `message` items, rendered into the
//! prompt by the Chat Completions template ([`super::request`]); `instructions` comes
//! first, as a `System` turn. Parts of type `input_text` and `output_text` hold text, and
//! so does an assistant's `refusal` part;
//! other item types (function calls, reasoning), other parts (images, files) and
//! parameters the gateway cannot honour (`tools`, `previous_response_id`, `store: true`,
//! a `text.format` other than `text`, ...) are refused by name. Nothing is stored, so a
//! response cannot be fetched again.

use gateway_model::{Metadata, RouteRequest, Tuning};
use http::HeaderMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

mod answer;

pub(crate) use self::answer::{ResponseObject, ResponseStreamEvent, response_events};

use super::error::OpenAiError;
use super::request::{
    ChatCall, ChatMessage, ResponseEcho, Role, is_default_verbosity, is_empty_array,
    is_neutral_in_both, is_text_format, one_temperature, options_need_a_stream, read_json, render,
    sticky_key, unsupported,
};
use super::text_or_list::{self, TextOrList};

/// Responses API parameters accepted at their neutral value (see
/// [`is_neutral_in_both`]).
fn is_neutral(name: &str, value: &Value) -> bool {
    match name {
        "background" => value == &Value::Bool(false),
        "include" => is_empty_array(value),
        "truncation" => value.as_str() == Some("disabled"),
        "reasoning" => value
            .as_object()
            .is_some_and(|o| o.values().all(Value::is_null)),
        _ => is_neutral_in_both(name, value),
    }
}

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
    #[serde(default, deserialize_with = "gateway_model::whole::option")]
    max_output_tokens: Option<u32>,
    /// Whether to answer as Server-Sent Events.
    #[serde(default)]
    stream: Option<bool>,
    /// Options of the stream (only with `stream: true`).
    #[serde(default)]
    stream_options: Option<ResponseStreamOptions>,
    /// The caller's end-user id: the sticky key, unless an `X-Sticky-Key` header is given.
    #[serde(default)]
    user: Option<String>,
    /// The sticky key when neither the header nor `user` is given.
    #[serde(default)]
    safety_identifier: Option<String>,
    /// The sticky key when none of the above is given (OpenAI routes calls with the same
    /// key alike too).
    #[serde(default)]
    prompt_cache_key: Option<String>,
    /// Labels added to the gateway payload's metadata and the audit entry.
    #[serde(default)]
    metadata: Option<Metadata>,
    /// Output format: only `{"format": {"type": "text"}}`.
    #[serde(default, deserialize_with = "super::unique_keys::option")]
    text: Option<Value>,
    /// Accepted only at their "off" values (`store: false`, `tools: []`, `tool_choice:
    /// "auto"`, `truncation: "disabled"`, ...); any other parameter is refused.
    #[serde(flatten, deserialize_with = "super::unique_keys::map")]
    #[schemars(skip)]
    rest: Map<String, Value>,
}

/// `stream_options` of the Responses API.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResponseStreamOptions {
    /// Pad stream events against length side channels: accepted and ignored (the whole
    /// answer comes in one delta).
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for OpenAI's clients; nothing needs padding"
    )]
    include_obfuscation: Option<bool>,
}

/// `input`: a string, or a list of items.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub(crate) enum ResponseInput {
    /// One user message.
    Text(String),
    /// `message` items: `{"role", "content"}`, optionally with `"type": "message"` (and
    /// the `id` and `status` of an earlier output item, which are ignored).
    Items(Vec<InputItem>),
}

/// One `input` item, read field by field so that a key given twice is refused, as the
/// chat door refuses it, rather than resolved to its last value.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct InputItem {
    /// `message` (or absent); other item types are refused.
    #[serde(
        rename = "type",
        default,
        deserialize_with = "super::unique_keys::option"
    )]
    kind: Option<Value>,
    /// An earlier output item's id (ignored).
    #[serde(default, deserialize_with = "super::unique_keys::option")]
    id: Option<Value>,
    /// An earlier output item's status (ignored).
    #[serde(default, deserialize_with = "super::unique_keys::option")]
    status: Option<Value>,
    /// `user`, `assistant`, `system` or `developer`.
    #[serde(default, deserialize_with = "super::unique_keys::option")]
    role: Option<Value>,
    /// The text, as a string or as `input_text` / `output_text` parts.
    #[serde(default, deserialize_with = "super::unique_keys::option")]
    content: Option<Value>,
    /// Anything else is refused when not null.
    #[serde(flatten, deserialize_with = "super::unique_keys::map")]
    #[schemars(skip)]
    rest: Map<String, Value>,
}

impl<'de> Deserialize<'de> for ResponseInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(
            match text_or_list::read(deserializer, "a string or an array of message items")? {
                TextOrList::Text(text) => ResponseInput::Text(text),
                TextOrList::List(items) => ResponseInput::Items(items),
            },
        )
    }
}

impl CreateResponseRequest {
    /// Reads `body` (with the caller's `headers`) as a Responses API request: the call
    /// for the router, and how to answer it.
    pub(crate) fn parse(
        body: &[u8],
        headers: &HeaderMap,
    ) -> Result<(RouteRequest, ChatCall), OpenAiError> {
        read_json::<Self>(body)?.into_call(headers)
    }

    fn into_call(self, headers: &HeaderMap) -> Result<(RouteRequest, ChatCall), OpenAiError> {
        refuse_unsupported(&self.rest, self.text.as_ref())?;
        let sticky = [
            ("user", self.user),
            ("safety_identifier", self.safety_identifier),
            ("prompt_cache_key", self.prompt_cache_key),
        ];
        let model = self.model.ok_or_else(|| OpenAiError::missing("model"))?;
        let input = self.input.ok_or_else(|| OpenAiError::missing("input"))?;
        one_temperature(self.temperature, self.tuning)?;
        let echo = ResponseEcho {
            instructions: self.instructions.clone(),
            metadata: self.metadata.clone(),
            temperature: self.temperature,
            top_p: self.top_p,
        };
        let prompt = prompt(input, self.instructions)?;
        let mut request = RouteRequest::new(model, prompt);
        request.tuning = self.tuning.unwrap_or_default();
        request.temperature = self.temperature;
        request.top_p = self.top_p;
        request.max_tokens = self.max_output_tokens;
        request.metadata = self.metadata.unwrap_or_default();
        let (sticky_key, sticky_key_param) = sticky_key(headers, sticky)?;
        request.sticky_key = sticky_key;
        let stream = self.stream.unwrap_or(false);
        options_need_a_stream(self.stream_options.is_some(), stream)?;
        let call = ChatCall {
            stream,
            include_usage: true,
            max_tokens_param: "max_output_tokens",
            prompt_param: "input",
            sticky_key_param,
            echo,
        };
        Ok((request, call))
    }
}

/// Refuses the first parameter the gateway cannot honour, by name.
fn refuse_unsupported(rest: &Map<String, Value>, text: Option<&Value>) -> Result<(), OpenAiError> {
    if let Some((param, _)) = unsupported(rest, "", is_neutral) {
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
                    || (key == "format" && is_text_format(value))
                    || (key == "verbosity" && is_default_verbosity(value))
            })
        })
    };
    match text {
        Some(text) if !text.is_null() && !plain(text) => Err(OpenAiError::invalid(
            Some("text".into()),
            "unsupported_parameter",
            "only `{\"format\": {\"type\": \"text\"}}` (and `\"verbosity\": \"medium\"`) is supported: the gateway answers plain text at its own length"
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
fn message_item(i: usize, item: InputItem) -> Result<ChatMessage, OpenAiError> {
    let at = format!("input[{i}]");
    match item.kind {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind == "message" => {}
        Some(Value::String(mut kind)) => {
            gateway_model::cut_to(&mut kind, 64);
            return Err(OpenAiError::invalid(
                Some(format!("{at}.type")),
                "unsupported_value",
                format!(
                    "input items of type `{kind}` are not supported: the gateway takes messages"
                ),
            ));
        }
        Some(_) => {
            return Err(OpenAiError::invalid(
                Some(format!("{at}.type")),
                "invalid_type",
                format!("`{at}.type` must be a string"),
            ));
        }
    }
    // An earlier output item sent back carries its id and status; neither matters here.
    let _ = (item.id, item.status);
    let Some(role) = item.role else {
        return Err(OpenAiError::missing(&format!("{at}.role")));
    };
    // What a Chat Completions message may carry besides, which a Responses item may not.
    if let Some(key) = ["name", "refusal"]
        .into_iter()
        .find(|key| item.rest.get(*key).is_some_and(|v| !v.is_null()))
    {
        return Err(OpenAiError::invalid(
            Some(format!("{at}.{key}")),
            "unsupported_parameter",
            format!("`{at}.{key}` is not a parameter of a Responses input item; remove it"),
        ));
    }
    let mut message = item.rest;
    message.insert("role".into(), role);
    if let Some(content) = item.content {
        message.insert("content".into(), content);
    }
    serde_path_to_error::deserialize(Value::Object(message))
        .map_err(|e| OpenAiError::unreadable_at(&at, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<(RouteRequest, ChatCall), OpenAiError> {
        CreateResponseRequest::parse(body.as_bytes(), &HeaderMap::new())
    }

    fn param_of(body: &str) -> Option<String> {
        parse(body).unwrap_err().param().map(str::to_owned)
    }

    #[test]
    fn what_sdks_send_at_its_off_value_is_accepted() {
        let (request, call) = parse(
            r#"{"model":"r","input":"x","store":false,"tools":[],"tool_choice":"auto",
                "include":[],"truncation":"disabled","background":false,"service_tier":"auto",
                "top_logprobs":0.0,"reasoning":{},"parallel_tool_calls":true,
                "text":{"format":{"type":"text"},"verbosity":"medium"},"max_output_tokens":64.0}"#,
        )
        .unwrap();
        assert_eq!(request.prompt, "x");
        assert_eq!(
            request.max_tokens,
            Some(64),
            "a whole number written as a float"
        );
        assert_eq!(call.prompt_param, "input");
    }

    #[test]
    fn chat_parameters_and_unknown_item_fields_are_refused_by_name() {
        for (body, param) in [
            (r#"{"model":"r","input":"x","n":1}"#, "n"),
            (
                r#"{"model":"r","input":"x","tool_choice":"required"}"#,
                "tool_choice",
            ),
            (
                r#"{"model":"r","input":"x","text":{"verbosity":"low"}}"#,
                "text",
            ),
            // Refused like the chat door's `response_format`, not dropped.
            (
                r#"{"model":"r","input":"x","text":{"format":{"type":"text","strict":true}}}"#,
                "text",
            ),
            (
                r#"{"model":"r","input":[{"role":"user","content":"x","store":false}]}"#,
                "input[0].store",
            ),
        ] {
            assert_eq!(param_of(body).as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn an_earlier_output_message_holding_a_refusal_is_taken() {
        let (request, _) = parse(
            r#"{"model":"r","input":[{"role":"user","content":"a"},
                {"type":"message","id":"msg_1","status":"completed","role":"assistant",
                 "content":[{"type":"refusal","refusal":"I can't."}]},
                {"role":"user","content":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(request.prompt, "User: a\n\nAssistant: I can't.\n\nUser: b");
    }

    #[test]
    fn stream_options_are_taken_with_a_stream_and_refused_without_one() {
        let (_, call) = parse(
            r#"{"model":"r","input":"x","stream":true,"stream_options":{"include_obfuscation":false}}"#,
        )
        .unwrap();
        assert!(call.stream);
        for (body, param) in [
            (
                r#"{"model":"r","input":"x","stream_options":{"include_obfuscation":false}}"#,
                "stream_options",
            ),
            (
                r#"{"model":"r","input":"x","stream":true,"stream_options":{"include_usage":true}}"#,
                "stream_options.include_usage",
            ),
        ] {
            assert_eq!(param_of(body).as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn a_key_given_twice_in_an_item_is_refused_not_resolved() {
        let body = r#"{"model":"r","input":[{"role":"user","role":"system","content":"x"}]}"#;
        let err = parse(body).unwrap_err();
        assert!(
            err.param().is_some_and(|p| p.starts_with("input[0]")),
            "{err:?}"
        );
        // Nor anywhere in a free-form parameter (`"store":true,"store":false` passed).
        for (body, param) in [
            (
                r#"{"model":"r","input":"x","store":true,"store":false}"#,
                "store",
            ),
            (
                r#"{"model":"r","input":"x","text":{"format":{"type":"json_object","type":"text"}}}"#,
                "text.format.type",
            ),
            (
                r#"{"model":"r","input":[{"role":"user","content":[{"type":"input_text","text":"a","text":"b"}]}]}"#,
                "input[0].content[0].text",
            ),
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.param(), Some(param), "{body}: {err:?}");
            assert_eq!(err.code(), Some("duplicate_parameter"), "{body}: {err:?}");
        }
    }

    #[test]
    fn type_errors_name_the_parameter_in_the_callers_terms() {
        for (body, param, words) in [
            (
                r#"{"model":"r","input":[{"role":"user","content":"a"},{"role":"user","content":[{"type":"input_text","text":5}]}]}"#,
                Some("input[1].content[0].text"),
                "expected a string",
            ),
            (
                r#"{"model":"r","input":42}"#,
                Some("input"),
                "a string or an array of message items",
            ),
            (
                r#"{"model":"r","input":"x","temperature":"hot"}"#,
                Some("temperature"),
                "a number",
            ),
            (
                r#"{"model":"r","input":"x","max_output_tokens":-1}"#,
                Some("max_output_tokens"),
                "an integer",
            ),
            (r#"["not","an","object"]"#, None, "must be a JSON object"),
            (
                r#"{"model":"r","input":[{"type":7,"role":"user","content":"x"}]}"#,
                Some("input[0].type"),
                "must be a string",
            ),
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.param(), param, "{body}: {err:?}");
            let text = format!("{err:?}");
            assert!(text.contains(words), "{body}: {text}");
            for rust in ["enum", "struct", "f64", "u32"] {
                assert!(!text.contains(rust), "{body}: {text}");
            }
        }
    }

    #[test]
    fn the_sticky_key_comes_from_user_then_safety_identifier_then_prompt_cache_key() {
        for (body, key, param) in [
            (
                r#"{"model":"r","input":"x","user":"u","safety_identifier":"s"}"#,
                "u",
                "user",
            ),
            (
                r#"{"model":"r","input":"x","safety_identifier":"s","prompt_cache_key":"p"}"#,
                "s",
                "safety_identifier",
            ),
            (
                r#"{"model":"r","input":"x","prompt_cache_key":"p"}"#,
                "p",
                "prompt_cache_key",
            ),
        ] {
            let (request, call) = parse(body).unwrap();
            assert_eq!(request.sticky_key.as_deref(), Some(key), "{body}");
            assert_eq!(call.sticky_key_param, param, "{body}");
        }
    }
}
