//! The door's errors in OpenAI's shape, `{"error":{"message","type","param","code"}}`.

use std::time::Duration;

use http::StatusCode;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};

/// The header OpenAI's SDKs read to decide whether to retry a failed request.
const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");
use schemars::JsonSchema;
use serde::Serialize;

use super::super::reply::{Reply, json, with_retry_after};

/// The error body of the OpenAI-compatible door.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "OpenAiErrorBody")]
pub(crate) struct OpenAiErrorBody {
    /// What went wrong.
    error: OpenAiErrorDetail,
}

/// What went wrong, as OpenAI's clients read it.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct OpenAiErrorDetail {
    /// A sentence for people.
    message: String,
    /// The error's class, as OpenAI's API answers: `invalid_request_error` (any 4xx but
    /// 429), `requests` (429) or `server_error` (5xx); `code` says more.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The request parameter at fault, if one is.
    param: Option<String>,
    /// A stable machine-readable code, if there is one.
    code: Option<&'static str>,
}

/// Longest error message, in characters: a message may quote what the caller sent.
const MAX_MESSAGE_CHARS: usize = 1024;

/// Longest `param`, in characters: a parameter's name is the caller's key.
const MAX_PARAM_CHARS: usize = 256;

/// An answer of the door that is not a completion.
#[derive(Debug)]
pub(crate) struct OpenAiError {
    status: StatusCode,
    message: String,
    param: Option<String>,
    code: Option<&'static str>,
    pub(super) retry_after: Option<Duration>,
    /// `x-should-retry`: whether OpenAI's SDKs should try again (they retry 408, 409,
    /// 429 and 5xx twice by default unless told).
    pub(super) should_retry: Option<bool>,
    challenge: Option<&'static str>,
}

impl OpenAiError {
    pub(super) fn new(
        status: StatusCode,
        param: Option<String>,
        code: &'static str,
        message: String,
    ) -> Self {
        // Both may repeat what the caller sent: a key, a role, a type of any length.
        let mut message = message;
        gateway_model::cut_to(&mut message, MAX_MESSAGE_CHARS);
        let param = param.map(|mut param| {
            gateway_model::cut_to(&mut param, MAX_PARAM_CHARS);
            param
        });
        Self {
            status,
            message,
            param,
            code: Some(code),
            retry_after: None,
            should_retry: None,
            challenge: None,
        }
    }

    /// A 400 naming `param`.
    pub(crate) fn invalid(param: Option<String>, code: &'static str, message: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, param, code, message)
    }

    /// A 400 for a required parameter that is missing.
    pub(crate) fn missing(param: &str) -> Self {
        Self::invalid(
            Some(param.to_owned()),
            "missing_required_parameter",
            format!("`{param}` is required"),
        )
    }

    /// A 400 for a body that is not JSON, or a parameter of the wrong type
    /// (`invalid_type`) or at a value its type cannot take (`invalid_value`).
    pub(crate) fn unreadable(error: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        Self::unreadable_at("", error)
    }

    /// [`OpenAiError::unreadable`] for a whole request `body`. `serde_json` reports a
    /// value of the wrong type where it reads a name (`"role": 5`, `"tuning": true`) as
    /// a syntax error; a body that is JSON after all is refused at that parameter.
    pub(crate) fn unreadable_body(
        error: &serde_path_to_error::Error<serde_json::Error>,
        body: &[u8],
    ) -> Self {
        let inner = error.inner();
        let path = error.path().to_string();
        let mistyped = inner.is_syntax()
            && !inner.to_string().starts_with(OUT_OF_RANGE)
            && path != "."
            && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
        if mistyped {
            return Self::invalid(
                Some(path.clone()),
                "invalid_type",
                format!("`{path}`: a value of the wrong type (a name, as a string, is expected)"),
            );
        }
        Self::unreadable(error)
    }

    /// [`OpenAiError::unreadable`] for a value read at `at` (such as `input[2]`), so the
    /// parameter is named from the top of the request.
    pub(crate) fn unreadable_at(
        at: &str,
        error: &serde_path_to_error::Error<serde_json::Error>,
    ) -> Self {
        let inner = error.inner();
        let text = inner.to_string();
        // A number too large for any type (`1e400`) is well-formed JSON that `serde_json`
        // refuses as it reads it: the parameter it sits in is at fault, not the body.
        let out_of_range = inner.is_syntax() && text.starts_with(OUT_OF_RANGE);
        if (inner.is_syntax() && !out_of_range) || inner.is_eof() || inner.is_io() {
            return Self::invalid(
                None,
                "invalid_json",
                format!("the body is not JSON: {inner}"),
            );
        }
        let path = error.path().to_string();
        if let Some(param) = repeated(at, &path, inner) {
            return Self::invalid(
                Some(param.clone()),
                "duplicate_parameter",
                format!("`{param}` is given twice; give it once"),
            );
        }
        let param = match (at, path.as_str()) {
            ("", ".") => {
                return Self::invalid(
                    None,
                    "invalid_type",
                    format!("the body must be a JSON object: {}", plain_words(inner)),
                );
            }
            (at, ".") => at.to_owned(),
            ("", path) => path.to_owned(),
            (at, path) => format!("{at}.{path}"),
        };
        Self::invalid(
            Some(param.clone()),
            // The right type at a value it cannot take (`-1` tokens) is a wrong value.
            if out_of_range || text.starts_with(INVALID_VALUE) {
                "invalid_value"
            } else {
                "invalid_type"
            },
            format!("`{param}`: {}", plain_words(inner)),
        )
    }

    /// A key refused with `status` (401, or 400 for a malformed `Authorization`) and a
    /// `WWW-Authenticate` challenge.
    pub(crate) fn unauthenticated(
        status: StatusCode,
        message: &str,
        challenge: &'static str,
    ) -> Self {
        let code = if status == StatusCode::BAD_REQUEST {
            "invalid_request"
        } else {
            "invalid_api_key"
        };
        let mut error = Self::new(status, None, code, message.to_owned());
        error.challenge = Some(challenge);
        error
    }

    /// A status of the door's own, such as 404 for a path or 405 for a method.
    pub(crate) fn status(status: StatusCode, code: &'static str, message: &str) -> Self {
        Self::new(status, None, code, message.to_owned())
    }

    /// The same error, naming `param`.
    pub(crate) fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// A request body the service could not read (too large, too slow).
    pub(crate) fn body(error: &crate::BodyError) -> Self {
        let code = match error.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            StatusCode::REQUEST_TIMEOUT => "request_timeout",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_content_encoding",
            _ => "body_unreadable",
        };
        Self::new(error.status(), None, code, error.to_string())
    }

    /// The HTTP status.
    #[cfg(test)]
    pub(crate) fn status_code(&self) -> StatusCode {
        self.status
    }

    /// The parameter named.
    #[cfg(test)]
    pub(crate) fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    /// The machine-readable code.
    #[cfg(test)]
    pub(crate) fn code(&self) -> Option<&'static str> {
        self.code
    }

    /// The answer.
    pub(crate) fn into_reply(self) -> Reply {
        let body = OpenAiErrorBody {
            error: OpenAiErrorDetail {
                message: self.message,
                kind: error_type(self.status),
                param: self.param,
                code: self.code,
            },
        };
        let mut reply = json(self.status, &body);
        let headers = reply.headers_mut();
        if let Some(after) = self.retry_after {
            let secs = after
                .as_secs()
                .saturating_add(u64::from(after.subsec_nanos() > 0));
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.challenge {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(retry) = self.should_retry {
            let value = HeaderValue::from_static(if retry { "true" } else { "false" });
            headers.insert(SHOULD_RETRY, value);
        }
        with_retry_after(reply)
    }
}

/// OpenAI's error class for a status, as its API answers: `requests` for a rate limit
/// on requests, `invalid_request_error` for every other 4xx (a wrong key and an unknown
/// model too; `code` tells them apart), `server_error` for a 5xx.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "requests",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// The parameter given twice, named from the top of the request, if `error` is serde's
/// (or [`super::unique_keys`]') refusal of a repeated key found at `at` and `path`, or
/// the refusal of a `metadata` label given twice.
fn repeated(at: &str, path: &str, error: &serde_json::Error) -> Option<String> {
    let text = error.to_string();
    let key = text
        .strip_prefix("duplicate field `")
        .or_else(|| text.strip_prefix("duplicate label `"))?;
    let key = &key[..key.rfind('`')?];
    let parts = [at, path, key];
    let mut param = String::new();
    for part in parts.into_iter().filter(|p| !p.is_empty() && *p != ".") {
        if !param.is_empty() && !part.starts_with('[') {
            param.push('.');
        }
        param.push_str(part);
    }
    Some(param)
}

/// How serde names a struct it expected, at the end of its message.
const STRUCT: &str = "expected struct ";

/// Whether `tail` is `<line> column <column>`, as `serde_json` ends its messages.
fn is_position(tail: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    tail.split_once(" column ")
        .is_some_and(|(line, column)| digits(line) && digits(column))
}

/// How `serde_json` begins the error for a number no type can hold.
const OUT_OF_RANGE: &str = "number out of range";

/// How serde begins the error for a value of the right type that the type cannot take.
const INVALID_VALUE: &str = "invalid value:";

/// serde's complaint in the caller's terms: without its ` at line 1 column 7` tail and
/// without the Rust types it names (a struct, `f64`, `u32`).
fn plain_words(error: &serde_json::Error) -> String {
    let text = error.to_string();
    // Only serde_json's own tail: the message may quote the caller's text.
    let text = match text.rfind(" at line ") {
        Some(at) if is_position(&text[at + " at line ".len()..]) => &text[..at],
        _ => &text,
    };
    let mut words = text.to_owned();
    // serde's own words end the message (`expected struct ChatMessage`); the caller's
    // text may come before them.
    if let Some(start) = words.rfind(STRUCT).filter(|start| {
        let name = &words[start + STRUCT.len()..];
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }) {
        words.replace_range(start.., "expected an object");
    }
    for (rust, said) in [
        ("expected f64", "expected a number"),
        ("expected u32", "expected an integer from 0 to 4294967295"),
        ("expected u64", "expected a non-negative integer"),
        ("expected a boolean", "expected true or false"),
    ] {
        words = words.replace(rust, said);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::plain_words;

    fn error_of(json: &str) -> serde_json::Error {
        #[derive(Debug, serde::Deserialize)]
        #[expect(dead_code, reason = "only its errors are read")]
        struct Turn {
            role: String,
        }
        serde_json::from_str::<Turn>(json).unwrap_err()
    }

    /// Only serde's own tail and type names are rewritten: the caller's text, quoted in
    /// the message, is left whole.
    #[test]
    fn the_callers_words_are_kept_whole() {
        assert_eq!(
            plain_words(&error_of(r#""a""#)),
            r#"invalid type: string "a", expected an object"#
        );
        let quoted = r#""x at line 3 and expected struct Y""#;
        assert_eq!(
            plain_words(&error_of(quoted)),
            r#"invalid type: string "x at line 3 and expected struct Y", expected an object"#
        );
    }
}
