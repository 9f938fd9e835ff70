//! Reading a Chat Completions request and turning it into a [`RouteRequest`].
//!
//! The conversation becomes the gateway's one `prompt` by this template:
//!
//! - a conversation of one `user` message without a `name` is that message's text;
//! - otherwise each message is `Label: text` (`Label (name): text` with a `name`, which
//!   must be 1 to 64 ASCII letters, digits, `_` or `-`, as OpenAI's API has it), where
//!   the label is `System` (for `system` and `developer`), `User` or `Assistant`, and the
//!   messages are joined by a blank line;
//! - a content given as text parts is those parts joined by a newline.
//!
//! The 8,000-character rule applies to the rendered prompt.

use gateway_model::{Metadata, RouteRequest, Tuning};

pub(crate) use super::call::{ChatCall, ResponseEcho};
use http::{HeaderMap, HeaderValue};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::OpenAiError;
use super::json_values::MAX_REQUEST_VALUES;
use super::text_or_list::{self, TextOrList};

/// The header that names the sticky key, winning over `user`.
pub(crate) static X_STICKY_KEY: http::HeaderName = http::HeaderName::from_static("x-sticky-key");

/// A Chat Completions request, as far as this door reads it: every other parameter is
/// refused by name, since dropping it silently would change what the caller gets.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(title = "ChatCompletionRequest")]
pub(crate) struct ChatCompletionRequest {
    /// The route, named as a model (`GET /v1/models` lists them).
    #[schemars(with = "String", required)]
    model: Option<String>,
    /// The conversation, rendered into the gateway's prompt by the door's template.
    #[schemars(with = "Vec<ChatMessage>", required, length(min = 1))]
    messages: Option<Vec<ChatMessage>>,
    /// A temperature inside the route's `low..=high` band; absent, `tuning` picks it.
    #[serde(default)]
    temperature: Option<f64>,
    /// Extension: the tuning level that picks the route's temperature (not with `temperature`).
    #[serde(default)]
    tuning: Option<Tuning>,
    /// Nucleus sampling, replacing the route's `topP`.
    #[serde(default)]
    top_p: Option<f64>,
    /// The completion token limit (deprecated name), at most the route's own.
    #[serde(default, deserialize_with = "gateway_model::whole::option")]
    max_tokens: Option<u32>,
    /// The completion token limit, at most the route's own.
    #[serde(default, deserialize_with = "gateway_model::whole::option")]
    max_completion_tokens: Option<u32>,
    /// Whether to answer as Server-Sent Events of `chat.completion.chunk`.
    #[serde(default)]
    stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// The caller's end-user id: the sticky key, unless an `X-Sticky-Key` header is given.
    #[serde(default)]
    user: Option<String>,
    /// The sticky key when neither the header nor `user` is given (OpenAI's newer name
    /// for an end-user id).
    #[serde(default)]
    safety_identifier: Option<String>,
    /// The sticky key when none of the above is given (OpenAI routes calls with the same
    /// key alike too).
    #[serde(default)]
    prompt_cache_key: Option<String>,
    /// Labels added to the gateway payload's metadata and the audit entry.
    #[serde(default)]
    metadata: Option<Metadata>,
    /// Accepted only at their "off" values (`n: 1`, `logprobs: false`, penalties `0`,
    /// `store: false`); any other parameter is refused.
    #[serde(flatten, deserialize_with = "super::unique_keys::map")]
    #[schemars(skip)]
    rest: Map<String, Value>,
}

/// `stream_options`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamOptions {
    /// Send a last chunk with the token usage.
    #[serde(default)]
    include_usage: Option<bool>,
    /// Pad stream chunks against length side channels: accepted and ignored (the whole
    /// answer comes in one content chunk).
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for OpenAI's clients; nothing needs padding"
    )]
    include_obfuscation: Option<bool>,
}

/// One message of the conversation.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ChatMessage {
    /// Who wrote it (`tool` and `function` messages are not supported).
    role: Role,
    /// The text, as a string or as text parts.
    #[serde(default)]
    content: Option<Content>,
    /// The author's name, shown in the rendered prompt.
    #[serde(default)]
    name: Option<String>,
    /// An assistant turn the model declined, as OpenAI records it: rendered as that
    /// turn's text.
    #[serde(default)]
    refusal: Option<String>,
    /// Anything else (`tool_calls`, `audio`, …) is refused when not null.
    #[serde(flatten, deserialize_with = "super::unique_keys::map")]
    #[schemars(skip)]
    rest: Map<String, Value>,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// Instructions (rendered as `System`).
    System,
    /// Instructions, the newer name (rendered as `System`).
    Developer,
    /// The end user.
    User,
    /// The model's earlier turns.
    Assistant,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::System | Role::Developer => "System",
            Role::User => "User",
            Role::Assistant => "Assistant",
        }
    }
}

/// A message's content.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub(crate) enum Content {
    /// Plain text.
    Text(String),
    /// Content parts; only `text` parts are supported.
    Parts(Vec<ContentPart>),
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(
            match text_or_list::read(deserializer, "a string or an array of text parts")? {
                TextOrList::Text(text) => Content::Text(text),
                TextOrList::List(parts) => Content::Parts(parts),
            },
        )
    }
}

/// One content part.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ContentPart {
    /// The part's type: only `text` is supported (images, audio and files are refused).
    #[serde(rename = "type")]
    kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    text: Option<String>,
    /// The text of an assistant's `refusal` part.
    #[serde(default)]
    refusal: Option<String>,
    /// Anything else (an `image_url` beside the text, `cache_control`) is refused when
    /// not null or an empty list, rather than dropped.
    #[serde(flatten, deserialize_with = "super::unique_keys::map")]
    #[schemars(skip)]
    rest: Map<String, Value>,
}

/// Parameters both doors accept at the value that means "off" or, with no tools, makes
/// no difference, which SDKs and frameworks send by default.
pub(super) fn is_neutral_in_both(name: &str, value: &Value) -> bool {
    match name {
        "store" => value == &Value::Bool(false),
        "parallel_tool_calls" => value.is_boolean(),
        "tools" => is_empty_array(value),
        "tool_choice" => matches!(value.as_str(), Some("none" | "auto")),
        "service_tier" => matches!(value.as_str(), Some("auto" | "default")),
        "top_logprobs" => value.as_f64() == Some(0.0),
        _ => false,
    }
}

/// Whether `value` is `[]`.
pub(super) fn is_empty_array(value: &Value) -> bool {
    value.as_array().is_some_and(Vec::is_empty)
}

/// Chat Completions parameters accepted at their neutral value (see
/// [`is_neutral_in_both`]).
fn is_neutral(name: &str, value: &Value) -> bool {
    match name {
        // `1.0` is the same number, as JSON Schema counts it.
        "n" => value.as_f64() == Some(1.0),
        "logprobs" => value == &Value::Bool(false),
        "presence_penalty" | "frequency_penalty" => value.as_f64() == Some(0.0),
        "functions" | "stop" => is_empty_array(value),
        "function_call" => matches!(value.as_str(), Some("none" | "auto")),
        "logit_bias" => value.as_object().is_some_and(Map::is_empty),
        "modalities" => value
            .as_array()
            .is_some_and(|m| m == &[Value::from("text")]),
        "response_format" => is_text_format(value),
        "verbosity" => is_default_verbosity(value),
        _ => is_neutral_in_both(name, value),
    }
}

/// Whether `value` is the default verbosity (`medium`): top-level in Chat Completions,
/// `text.verbosity` in the Responses API.
pub(super) fn is_default_verbosity(value: &Value) -> bool {
    value.as_str() == Some("medium")
}

/// Whether `format` asks for plain text (`{"type": "text"}`, any other key null): the
/// `response_format` of Chat Completions, the `text.format` of the Responses API.
pub(super) fn is_text_format(format: &Value) -> bool {
    format.as_object().is_some_and(|format| {
        format.get("type").and_then(Value::as_str) == Some("text")
            && format.iter().all(|(k, v)| k == "type" || v.is_null())
    })
}

/// The first parameter in `rest` that is set (not null), is not at a value `neutral`
/// accepts, and so cannot be honoured.
pub(super) fn unsupported<'a>(
    rest: &'a Map<String, Value>,
    at: &str,
    neutral: fn(&str, &Value) -> bool,
) -> Option<(String, &'a Value)> {
    rest.iter()
        .find(|(name, value)| !value.is_null() && !neutral(name, value))
        .map(|(name, value)| (format!("{at}{name}"), value))
}

/// Nothing but null: the neutral value of a message's unknown field.
fn only_null(_: &str, _: &Value) -> bool {
    false
}

/// An empty list: the neutral value of a content part's other field, as SDKs send an
/// earlier answer's parts back (`annotations: []`, `logprobs: []`).
fn only_empty(_: &str, value: &Value) -> bool {
    is_empty_array(value)
}

impl ChatCall {
    /// Reads `body` (with the caller's `headers`) as a Chat Completions request: the call
    /// for the router, and how to answer it.
    pub(crate) fn parse(
        body: &[u8],
        headers: &HeaderMap,
    ) -> Result<(RouteRequest, Self), OpenAiError> {
        read_json::<ChatCompletionRequest>(body)?.into_call(headers)
    }
}

/// Reads `body` as one JSON value of type `T`; a parameter of the wrong type is named.
/// A body of more than [`MAX_REQUEST_VALUES`] JSON values is refused before it is read.
pub(super) fn read_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, OpenAiError> {
    if gateway_model::json_value_bound(body) > MAX_REQUEST_VALUES {
        return Err(OpenAiError::invalid(
            None,
            "too_many_values",
            format!("the body holds more than {MAX_REQUEST_VALUES} JSON values"),
        ));
    }
    let mut reader = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut reader)
        .map_err(|e| OpenAiError::unreadable_body(&e, body))?;
    reader.end().map_err(|e| {
        OpenAiError::invalid(
            None,
            "invalid_json",
            format!("the body is not one JSON object: {e}"),
        )
    })?;
    Ok(parsed)
}

/// Refuses `temperature` together with `tuning`: each would pick the temperature.
pub(super) fn one_temperature(
    temperature: Option<f64>,
    tuning: Option<Tuning>,
) -> Result<(), OpenAiError> {
    if temperature.is_some() && tuning.is_some() {
        return Err(OpenAiError::invalid(
            Some("tuning".into()),
            "conflicting_parameters",
            "give `temperature` or `tuning`, not both".into(),
        ));
    }
    Ok(())
}

/// Refuses `stream_options` given without `stream: true`, as OpenAI answers options for
/// a stream that was not asked for.
pub(super) fn options_need_a_stream(options: bool, stream: bool) -> Result<(), OpenAiError> {
    if options && !stream {
        return Err(OpenAiError::invalid(
            Some("stream_options".into()),
            "invalid_value",
            "`stream_options` is only allowed when `stream` is true".into(),
        ));
    }
    Ok(())
}

impl ChatCompletionRequest {
    fn into_call(self, headers: &HeaderMap) -> Result<(RouteRequest, ChatCall), OpenAiError> {
        refuse_unsupported(&self.rest)?;
        let model = self.model.ok_or_else(|| OpenAiError::missing("model"))?;
        let messages = self
            .messages
            .ok_or_else(|| OpenAiError::missing("messages"))?;
        if messages.is_empty() {
            return Err(OpenAiError::invalid(
                Some("messages".into()),
                "invalid_value",
                "`messages` must hold at least one message".into(),
            ));
        }
        one_temperature(self.temperature, self.tuning)?;
        let stream = self.stream.unwrap_or(false);
        options_need_a_stream(self.stream_options.is_some(), stream)?;
        let (max_tokens, max_tokens_param) =
            token_cap(self.max_tokens, self.max_completion_tokens)?;
        let mut request = RouteRequest::new(model, render(&messages, "messages", &["text"])?);
        request.tuning = self.tuning.unwrap_or_default();
        request.temperature = self.temperature;
        request.top_p = self.top_p;
        request.max_tokens = max_tokens;
        request.metadata = self.metadata.unwrap_or_default();
        let sticky = [
            ("user", self.user),
            ("safety_identifier", self.safety_identifier),
            ("prompt_cache_key", self.prompt_cache_key),
        ];
        let (sticky_key, sticky_key_param) = sticky_key(headers, sticky)?;
        request.sticky_key = sticky_key;
        let include_usage = self
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let call = ChatCall {
            stream,
            include_usage,
            max_tokens_param,
            prompt_param: "messages",
            sticky_key_param,
            echo: ResponseEcho::default(),
        };
        Ok((request, call))
    }
}

/// The sticky key, from the `X-Sticky-Key` header or else the first of `fields` (named
/// body parameters, in order of precedence) that is set, and the name it came by (for
/// errors).
pub(super) fn sticky_key<const N: usize>(
    headers: &HeaderMap,
    fields: [(&'static str, Option<String>); N],
) -> Result<(Option<String>, &'static str), OpenAiError> {
    // A key the caller sent but that is not text, is empty (as `"user": ""` is refused)
    // or is sent twice is refused, not dropped or picked: the call would go to a model
    // the caller did not mean.
    let refused = |why: &str| {
        Err(OpenAiError::invalid(
            Some("X-Sticky-Key".into()),
            "invalid_value",
            format!("the X-Sticky-Key header {why}"),
        ))
    };
    if headers.get_all(&X_STICKY_KEY).iter().nth(1).is_some() {
        return refused("must be sent once");
    }
    match headers.get(&X_STICKY_KEY).map(HeaderValue::to_str) {
        Some(Ok("")) => refused("must not be empty"),
        Some(Ok(key)) => Ok((Some(key.to_owned()), "X-Sticky-Key")),
        None => {
            let first = fields.first().map_or("user", |(name, _)| *name);
            Ok(fields
                .into_iter()
                .find_map(|(name, key)| key.map(|key| (Some(key), name)))
                .unwrap_or((None, first)))
        }
        Some(Err(_)) => refused("must be visible ASCII text"),
    }
}

/// Refuses the first parameter the gateway cannot honour, by name.
fn refuse_unsupported(rest: &Map<String, Value>) -> Result<(), OpenAiError> {
    let Some((param, value)) = unsupported(rest, "", is_neutral) else {
        return Ok(());
    };
    let message = if param == "n" {
        format!("`n` = {value} is not supported: the Genesys Cloud AI Gateway answers one choice")
    } else {
        format!("`{param}` is not supported by the Genesys Cloud AI Gateway; remove it")
    };
    Err(OpenAiError::invalid(
        Some(param),
        "unsupported_parameter",
        message,
    ))
}

/// The token cap asked for and the parameter that asked (`max_tokens`, or the newer
/// `max_completion_tokens`); both at once is refused.
fn token_cap(
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
) -> Result<(Option<u32>, &'static str), OpenAiError> {
    match (max_tokens, max_completion_tokens) {
        (Some(_), Some(_)) => Err(OpenAiError::invalid(
            Some("max_tokens".into()),
            "conflicting_parameters",
            "give `max_completion_tokens` or `max_tokens`, not both".into(),
        )),
        (Some(n), None) => Ok((Some(n), "max_tokens")),
        (None, n) => Ok((n, "max_completion_tokens")),
    }
}

/// The conversation as one prompt, by the template in this module's documentation.
/// `list` names the messages in errors (`messages`, `input`); `text_kinds` are the types
/// of the content parts that hold text.
pub(super) fn render(
    messages: &[ChatMessage],
    list: &str,
    text_kinds: &[&str],
) -> Result<String, OpenAiError> {
    let mut texts = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        texts.push(message.text(&format!("{list}[{i}]."), text_kinds)?);
    }
    if let [only] = messages
        && only.role == Role::User
        && only.name.is_none()
    {
        return Ok(texts.swap_remove(0));
    }
    let mut prompt = String::new();
    for (message, text) in messages.iter().zip(&texts) {
        if !prompt.is_empty() {
            prompt.push_str("\n\n");
        }
        prompt.push_str(message.role.label());
        if let Some(name) = &message.name {
            prompt.push_str(" (");
            prompt.push_str(name);
            prompt.push(')');
        }
        prompt.push_str(": ");
        prompt.push_str(text);
    }
    Ok(prompt)
}

/// Longest author `name`, as OpenAI's API takes it.
const MAX_NAME_CHARS: usize = 64;

/// Whether `name` is what OpenAI's API takes for an author: 1 to 64 ASCII letters,
/// digits, `_` or `-`. Anything else (a line break, a colon) could forge a turn of the
/// rendered prompt.
fn is_author_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ChatMessage {
    /// A message of `role` holding `text`.
    pub(super) fn plain(role: Role, text: String) -> Self {
        Self {
            role,
            content: Some(Content::Text(text)),
            name: None,
            refusal: None,
            rest: Map::new(),
        }
    }

    /// The message's text; `at` names it in errors (`messages[2].`).
    fn text(&self, at: &str, text_kinds: &[&str]) -> Result<String, OpenAiError> {
        if let Some(name) = &self.name
            && !is_author_name(name)
        {
            return Err(OpenAiError::invalid(
                Some(format!("{at}name")),
                "invalid_value",
                format!(
                    "`{at}name` must be 1 to {MAX_NAME_CHARS} ASCII letters, digits, `_` or `-`"
                ),
            ));
        }
        if let Some((param, _)) = unsupported(&self.rest, at, only_null) {
            return Err(OpenAiError::invalid(
                Some(param.clone()),
                "unsupported_parameter",
                format!("`{param}` is not supported: the gateway takes text messages only"),
            ));
        }
        if self.refusal.is_some() && self.role != Role::Assistant {
            return Err(OpenAiError::invalid(
                Some(format!("{at}refusal")),
                "unsupported_parameter",
                format!("`{at}refusal` is only an assistant's"),
            ));
        }
        let content = match &self.content {
            None => None,
            Some(Content::Text(text)) => Some(text.clone()),
            Some(Content::Parts(parts)) => Some(self.parts_text(parts, at, text_kinds)?),
        };
        match (content, &self.refusal) {
            (Some(text), None) => Ok(text),
            (None, Some(refusal)) => Ok(refusal.clone()),
            (Some(text), Some(refusal)) => Ok(format!("{text}\n{refusal}")),
            (None, None) => Err(OpenAiError::missing(&format!("{at}content"))),
        }
    }

    /// The text of content `parts`, one part a line: text parts of `text_kinds`, and an
    /// assistant's `refusal` parts.
    fn parts_text(
        &self,
        parts: &[ContentPart],
        at: &str,
        text_kinds: &[&str],
    ) -> Result<String, OpenAiError> {
        let mut text = String::new();
        for (j, part) in parts.iter().enumerate() {
            let here = format!("{at}content[{j}].");
            let kind = part.kind.as_str();
            let refusal = kind == "refusal" && self.role == Role::Assistant;
            if !refusal && !text_kinds.contains(&kind) {
                return Err(OpenAiError::invalid(
                    Some(format!("{here}type")),
                    "unsupported_value",
                    format!(
                        "content parts of type `{kind}` are not supported: the gateway takes text only"
                    ),
                ));
            }
            // The part's own field, and the other kind's, which must not be set.
            let ((own, own_name), (other, other_name)) = if refusal {
                ((&part.refusal, "refusal"), (&part.text, "text"))
            } else {
                ((&part.text, "text"), (&part.refusal, "refusal"))
            };
            let Some(part_text) = own else {
                return Err(OpenAiError::missing(&format!("{here}{own_name}")));
            };
            let unsupported = match other {
                Some(_) => Some(format!("{here}{other_name}")),
                None => unsupported(&part.rest, &here, only_empty).map(|(param, _)| param),
            };
            if let Some(param) = unsupported {
                return Err(OpenAiError::invalid(
                    Some(param.clone()),
                    "unsupported_parameter",
                    format!("`{param}` is not supported: the gateway takes text only"),
                ));
            }
            if j > 0 {
                text.push('\n');
            }
            text.push_str(part_text);
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: &str) -> Result<(RouteRequest, ChatCall), OpenAiError> {
        ChatCall::parse(body.as_bytes(), &HeaderMap::new())
    }

    #[test]
    fn one_user_message_is_the_prompt_itself() {
        let (request, call) = call(
            r#"{"model":"reply","messages":[{"role":"user","content":"Where is my parcel?"}]}"#,
        )
        .unwrap();
        assert_eq!(request.route, "reply");
        assert_eq!(request.prompt, "Where is my parcel?");
        assert!(!call.stream);
    }

    #[test]
    fn a_conversation_is_labelled_turn_by_turn() {
        let (request, _) = call(
            r##"{"model":"reply","messages":[
                {"role":"developer","content":"Be brief."},
                {"role":"user","name":"ana","content":[{"type":"text","text":"Hi"},{"type":"text","text":"Refund?"}]},
                {"role":"assistant","content":"Which order?","refusal":null},
                {"role":"user","content":"#42"}]}"##,
        )
        .unwrap();
        assert_eq!(
            request.prompt,
            "System: Be brief.\n\nUser (ana): Hi\nRefund?\n\nAssistant: Which order?\n\nUser: #42"
        );
    }

    /// A conversation replayed with a turn the model declined is taken, the refusal as
    /// that turn's text; only an assistant's turn can hold one.
    #[test]
    fn an_assistants_refusal_is_its_turns_text() {
        for body in [
            r#"{"model":"r","messages":[{"role":"user","content":"a"},{"role":"assistant","content":null,"refusal":"I can't."},{"role":"user","content":"b"}]}"#,
            r#"{"model":"r","messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"refusal","refusal":"I can't."}]},{"role":"user","content":"b"}]}"#,
        ] {
            let (request, _) = call(body).unwrap();
            assert_eq!(
                request.prompt, "User: a\n\nAssistant: I can't.\n\nUser: b",
                "{body}"
            );
        }
        for (body, param) in [
            (
                r#"{"model":"r","messages":[{"role":"user","content":[{"type":"refusal","refusal":"no"}]}]}"#,
                "messages[0].content[0].type",
            ),
            (
                r#"{"model":"r","messages":[{"role":"user","content":"a","refusal":"no"}]}"#,
                "messages[0].refusal",
            ),
            (
                r#"{"model":"r","messages":[{"role":"assistant","content":[{"type":"refusal","refusal":"no","text":"yes"}]}]}"#,
                "messages[0].content[0].text",
            ),
            (
                r#"{"model":"r","messages":[{"role":"assistant","content":[{"type":"refusal"}]}]}"#,
                "messages[0].content[0].refusal",
            ),
        ] {
            let err = call(body).unwrap_err();
            assert_eq!(err.param(), Some(param), "{body}: {err:?}");
        }
    }

    /// A content part of the wrong type is named where it is, with what is expected
    /// there, not as a `content` that matched no variant.
    #[test]
    fn a_content_part_of_the_wrong_type_is_named_where_it_is() {
        for (body, param, words) in [
            (
                r#"{"model":"r","messages":[{"role":"user","content":[{"type":"text","text":5}]}]}"#,
                "messages[0].content[0].text",
                "expected a string",
            ),
            (
                r#"{"model":"r","messages":[{"role":"user","content":5}]}"#,
                "messages[0].content",
                "expected a string or an array of text parts",
            ),
        ] {
            let err = call(body).unwrap_err();
            assert_eq!(err.param(), Some(param), "{body}: {err:?}");
            assert!(format!("{err:?}").contains(words), "{body}: {err:?}");
        }
    }

    /// A number too large for any type (`1e400`) or outside its type's range is a wrong
    /// value, named where it is; before, serde read the first as bad JSON, naming nothing,
    /// and the second as a wrong type.
    #[test]
    fn a_number_out_of_range_is_named_where_it_is() {
        for (body, param) in [
            (
                r#"{"model":"r","messages":[{"role":"user","content":"x"}],"temperature":1e400}"#,
                "temperature",
            ),
            (
                r#"{"model":"r","messages":[{"role":"user","content":"x"}],"max_tokens":-1e999}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"r","messages":[{"role":"user","content":9e999}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"model":"r","messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#,
                "max_tokens",
            ),
        ] {
            let err = call(body).unwrap_err();
            assert_eq!(err.param(), Some(param), "{body}: {err:?}");
            assert_eq!(err.code(), Some("invalid_value"), "{body}: {err:?}");
        }
        let err =
            call(r#"{"model":"r","messages":[{"role":"user","content":"x"}],"temperature":1e4"#)
                .unwrap_err();
        assert_eq!(
            err.param(),
            None,
            "a body cut short is not one parameter's fault: {err:?}"
        );
    }

    #[test]
    fn stream_options_without_a_stream_are_refused_as_openai_refuses_them() {
        let options = r#""stream_options":{"include_usage":true}"#;
        for stream in ["", r#""stream":false,"#] {
            let body = format!(
                r#"{{"model":"r","messages":[{{"role":"user","content":"x"}}],{stream}{options}}}"#
            );
            let err = call(&body).unwrap_err();
            assert_eq!(err.param(), Some("stream_options"), "{body}: {err:?}");
        }
        let streamed = format!(
            r#"{{"model":"r","messages":[{{"role":"user","content":"x"}}],"stream":true,{options}}}"#
        );
        let (_, streamed) = call(&streamed).unwrap();
        assert!(streamed.stream && streamed.include_usage);
        // Null is absent, as the SDKs send it.
        call(r#"{"model":"r","messages":[{"role":"user","content":"x"}],"stream_options":null}"#)
            .unwrap();
    }

    /// Regression: a parameter the door reads only at its "off" value kept its last
    /// value when given twice, so `"n":2,"n":1` passed as `n: 1`.
    #[test]
    fn a_parameter_given_twice_is_refused_by_name_at_any_depth() {
        for (body, param) in [
            (r#"{"model":"r","messages":[],"n":2,"n":1}"#, "n"),
            (r#"{"model":"r","model":"s","messages":[]}"#, "model"),
            (
                r#"{"model":"r","messages":[],"response_format":{"type":"json_object","type":"text"}}"#,
                "response_format.type",
            ),
            (
                r#"{"model":"r","messages":[{"role":"user","content":"x","audio":null,"audio":{}}]}"#,
                "messages[0].audio",
            ),
            // Inside a content part, and a metadata label: refused before, but as "no
            // variant matched" and as a wrong type.
            (
                r#"{"model":"r","messages":[{"role":"user","content":[{"type":"text","text":"a","text":"b"}]}]}"#,
                "messages[0].content[0].text",
            ),
            (
                r#"{"model":"r","messages":[],"metadata":{"ticket":"1","ticket":"2"}}"#,
                "metadata.ticket",
            ),
        ] {
            let err = call(body).unwrap_err();
            assert_eq!(err.param(), Some(param), "{body}: {err:?}");
            assert_eq!(err.code(), Some("duplicate_parameter"), "{body}: {err:?}");
        }
    }

    #[test]
    fn parameters_that_cannot_be_honoured_are_refused_by_name() {
        for (body, param) in [
            (
                r#"{"model":"r","messages":[],"tools":[{"type":"function"}]}"#,
                "tools",
            ),
            (r#"{"model":"r","messages":[],"n":2}"#, "n"),
            (r#"{"model":"r","messages":[],"logprobs":true}"#, "logprobs"),
            (
                r#"{"model":"r","messages":[],"tool_choice":"required"}"#,
                "tool_choice",
            ),
            (r#"{"model":"r","messages":[],"stop":["\n"]}"#, "stop"),
            (
                r#"{"model":"r","messages":[],"modalities":["text","audio"]}"#,
                "modalities",
            ),
            (
                r#"{"model":"r","messages":[],"logit_bias":{"50256":-100}}"#,
                "logit_bias",
            ),
            (
                r#"{"model":"r","messages":[],"response_format":{"type":"json_object"}}"#,
                "response_format",
            ),
            (
                r#"{"model":"r","messages":[],"response_format":{"type":"text","strict":true}}"#,
                "response_format",
            ),
            (
                r#"{"model":"r","messages":[],"service_tier":"flex"}"#,
                "service_tier",
            ),
            (
                r#"{"model":"r","messages":[{"role":"assistant","content":null,"tool_calls":[]}]}"#,
                "messages[0].tool_calls",
            ),
            (
                r#"{"model":"r","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}"#,
                "messages[0].content[0].type",
            ),
            (
                r#"{"model":"r","messages":[{"role":"user","content":[{"type":"text","text":"a","image_url":{"url":"x"}}]}]}"#,
                "messages[0].content[0].image_url",
            ),
            (
                r#"{"model":"r","messages":[{"role":"tool","content":"x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"r","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
                "temperature",
            ),
            (
                r#"{"model":"r","messages":[{"role":"user","content":"x"}],"temperature":0.5,"tuning":"low"}"#,
                "tuning",
            ),
            (r#"{"messages":[{"role":"user","content":"x"}]}"#, "model"),
            (
                r#"{"model":"r","messages":[{"role":"user","name":"ana\n\nSystem","content":"x"}]}"#,
                "messages[0].name",
            ),
            (
                r#"{"model":"r","messages":[{"role":"user","content":"x"},{"role":"user","name":"","content":"y"}]}"#,
                "messages[1].name",
            ),
        ] {
            let err = call(body).unwrap_err();
            assert_eq!(err.param(), Some(param), "{body}: {err:?}");
            assert_eq!(err.status_code(), http::StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn default_valued_parameters_and_nulls_are_accepted() {
        let (request, call) = call(
            r#"{"model":"r","messages":[{"role":"user","content":"x"}],"n":1,"logprobs":false,
                "presence_penalty":0,"frequency_penalty":0.0,"seed":null,"temperature":null,
                "stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false},
                "user":"conv-9","safety_identifier":"s","prompt_cache_key":"p",
                "tools":[],"tool_choice":"none","parallel_tool_calls":true,"functions":[],
                "function_call":"auto","response_format":{"type":"text"},"stop":[],
                "service_tier":"auto","modalities":["text"],"logit_bias":{},"store":false,
                "top_logprobs":0}"#,
        )
        .unwrap();
        assert!(call.stream && call.include_usage);
        assert_eq!(request.temperature, None);
        assert_eq!(request.sticky_key.as_deref(), Some("conv-9"));
    }

    /// JSON Schema counts `100.0` as the integer 100, and Python clients write it so.
    #[test]
    fn whole_numbers_written_as_floats_are_taken_and_fractions_refused() {
        let (request, _) = call(
            r#"{"model":"r","messages":[{"role":"user","content":"x"}],"n":1.0,
                "max_completion_tokens":1e2,"top_logprobs":0.0}"#,
        )
        .unwrap();
        assert_eq!(request.max_tokens, Some(100));
        let (request, _) =
            call(r#"{"model":"r","messages":[{"role":"user","content":"x"}],"max_tokens":64.0}"#)
                .unwrap();
        assert_eq!(request.max_tokens, Some(64));
        for (body, param) in [
            (
                r#"{"model":"r","messages":[{"role":"user","content":"x"}],"max_tokens":64.5}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"r","messages":[{"role":"user","content":"x"}],"n":2.0}"#,
                "n",
            ),
        ] {
            let err = call(body).unwrap_err();
            assert_eq!(err.param(), Some(param), "{body}: {err:?}");
        }
    }

    #[test]
    fn the_sticky_key_header_wins_over_user() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_STICKY_KEY, "conv-1".parse().unwrap());
        let body = br#"{"model":"r","messages":[{"role":"user","content":"x"}],"user":"u-7"}"#;
        let (request, call) = ChatCall::parse(body, &headers).unwrap();
        assert_eq!(request.sticky_key.as_deref(), Some("conv-1"));
        assert_eq!(call.sticky_key_param, "X-Sticky-Key");
    }
}
