//! How a routed call's failure maps onto the door's OpenAI-shaped errors, naming the
//! parameters as the caller gave them.

use std::time::Duration;

use gateway_model::{Outcome, Rule, ValidationErrors};
use gateway_router::{RouteError, RouteErrorKind};
use http::StatusCode;

use super::error::OpenAiError;
use super::request::ChatCall;

/// The longest `Retry-After` OpenAI's SDKs wait out (openai-python honours up to 60 s
/// and uses its own short backoff past that).
const SDK_LONGEST_WAIT: Duration = Duration::from_secs(60);

impl OpenAiError {
    /// A routed call's failure; `call` names the parameters as the caller gave them.
    pub(crate) fn route(err: &RouteError, call: &ChatCall) -> Self {
        let retry_after = err.retry_after();
        let mut error = match err.kind() {
            RouteErrorKind::UnknownRoute {
                route,
                known,
                unlisted,
            } => Self::new(
                StatusCode::NOT_FOUND,
                Some("model".into()),
                "model_not_found",
                format!(
                    "the model `{route}` does not exist: models are the configured routes ({})",
                    gateway_router::route_list(known, *unlisted)
                ),
            ),
            RouteErrorKind::Invalid(errors) => invalid_request(errors, call),
            RouteErrorKind::Exhausted {
                tried,
                refused: Some(_),
                ..
            } if tried.iter().all(|(_, o)| *o == Outcome::PolicyViolation) => Self::new(
                StatusCode::BAD_REQUEST,
                None,
                "content_policy_violation",
                err.to_string(),
            ),
            RouteErrorKind::Refused { status: 413, .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                "request_too_large",
                err.to_string(),
            ),
            RouteErrorKind::Refused { .. } => refused(err),
            // Every model refused it (restricted, or on policy): restricted everywhere is
            // the generic arm's 403.
            RouteErrorKind::Exhausted {
                refused: Some(status),
                ..
            } if *status != 403 => refused(err),
            _ => Self::failed(err),
        };
        if error.retry_after.is_none() {
            error.retry_after = retry_after;
        }
        error
    }

    /// A failure that names no parameter (rate limited, unavailable, overloaded, a
    /// timeout, the gateway or the credentials failing), by its HTTP status; a retryable
    /// one says when to come back.
    pub(crate) fn failed(err: &RouteError) -> Self {
        let status = StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
        let code = match status {
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_exceeded",
            StatusCode::FORBIDDEN => "permission_denied",
            // Every model skipped on an open circuit: nothing was sent.
            StatusCode::SERVICE_UNAVAILABLE
                if matches!(err.kind(), RouteErrorKind::Exhausted { .. }) =>
            {
                "models_unavailable"
            }
            StatusCode::SERVICE_UNAVAILABLE => "overloaded",
            StatusCode::GATEWAY_TIMEOUT => "timeout",
            _ => "upstream_error",
        };
        let mut error = Self::new(status, None, code, err.to_string());
        // As `/v1/route` says it: the gateway's or the login's own wait, if one is known
        // (a 429 or 503 without one says a second, as every such answer does).
        error.retry_after = err.retry_after();
        // The router has already retried and fallen back: an SDK's own retries of a
        // failure that will not pass (the gateway refusing the router's credentials)
        // would only make more routed, audited calls. Nor should an SDK retry one that
        // asks for a longer wait than SDKs keep to: they would retry within seconds.
        error.should_retry = Some(
            err.is_retryable()
                && error
                    .retry_after
                    .is_none_or(|wait| wait <= SDK_LONGEST_WAIT),
        );
        error
    }
}

/// The gateway would not process the request: OpenAI's answer to a request it will not
/// take, which its SDKs do not retry.
fn refused(err: &RouteError) -> OpenAiError {
    OpenAiError::new(
        StatusCode::BAD_REQUEST,
        None,
        "request_refused",
        err.to_string(),
    )
}

/// A validation failure, naming the first parameter at fault as the caller named it.
fn invalid_request(errors: &ValidationErrors, call: &ChatCall) -> OpenAiError {
    let violations = errors.violations();
    let message = violations
        .iter()
        .map(|v| {
            let param = param_of(&v.path, call);
            let param = param.as_deref().unwrap_or("request");
            match (&v.rule, v.path.as_str()) {
                // The sticky key's parameters are optional: only an empty one is refused.
                (Rule::Required, "/stickyKey") => format!("`{param}` must not be empty when given"),
                (rule, _) => format!("`{param}` {rule}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    // Said first: a long message is cut at its end.
    let message = if errors.omitted() > 0 {
        let (all, listed) = (errors.len(), violations.len());
        format!("{all} problems, the first {listed}: {message}")
    } else {
        message
    };
    let first = violations.first();
    let param = first.and_then(|v| param_of(&v.path, call));
    let code = first.map_or("invalid_value", |v| code_of(&v.rule, param.as_deref()));
    OpenAiError::invalid(param, code, message)
}

/// The parameter of the caller's request a `RouteRequest` (or payload) path comes from;
/// a label is named by its key (`metadata.user id`), cut to 64 characters.
fn param_of(path: &str, call: &ChatCall) -> Option<String> {
    let field = path.trim_start_matches('/');
    let field = field.strip_prefix("parameters/").unwrap_or(field);
    let (head, tail) = field.split_once('/').unwrap_or((field, ""));
    Some(match head {
        "prompt" => call.prompt_param.to_owned(),
        "route" => "model".to_owned(),
        "temperature" => "temperature".to_owned(),
        "maxTokens" => call.max_tokens_param.to_owned(),
        "topP" => "top_p".to_owned(),
        "stickyKey" => call.sticky_key_param.to_owned(),
        "metadata" if tail.is_empty() => "metadata".to_owned(),
        "metadata" => {
            // A JSON Pointer token: `~1` is `/`, `~0` is `~`.
            let mut key = tail.replace("~1", "/").replace("~0", "~");
            gateway_model::cut_to(&mut key, 64);
            format!("metadata.{key}")
        }
        _ => return None,
    })
}

/// OpenAI's code for a broken rule.
fn code_of(rule: &Rule, param: Option<&str>) -> &'static str {
    match rule {
        Rule::TooLong { .. } if matches!(param, Some("messages" | "input")) => {
            "context_length_exceeded"
        }
        Rule::TooLong { .. } => "string_above_max_length",
        Rule::TooShort { .. } | Rule::Required => "empty_value",
        Rule::Missing => "missing_required_parameter",
        Rule::OutOfRange { .. } | Rule::OutsideRoute { .. } => "out_of_range",
        Rule::TooMany { .. } => "array_above_max_length",
        _ => "invalid_value",
    }
}

#[cfg(test)]
mod tests {
    use gateway_model::ModelId;
    use http_body_util::BodyExt as _;

    use super::*;

    /// The door's answer to an exhausted call: status, `error.code`, and whether it
    /// tells SDKs to retry (`x-should-retry: true`).
    fn answer(tried: &[Outcome], refused: Option<u16>) -> (StatusCode, String, bool) {
        let err = RouteError::from(RouteErrorKind::Exhausted {
            route: "r".into(),
            tried: tried
                .iter()
                .enumerate()
                .map(|(i, o)| (ModelId::new(format!("m{i}")), *o))
                .collect(),
            last: "refused".into(),
            retry_after: None,
            refused,
        });
        let call = ChatCall {
            stream: false,
            include_usage: false,
            max_tokens_param: "max_tokens",
            prompt_param: "messages",
            sticky_key_param: "user",
            echo: crate::sidecar::openai::request::ResponseEcho::default(),
        };
        let reply = OpenAiError::route(&err, &call).into_reply();
        let status = reply.status();
        let retry = reply
            .headers()
            .get("x-should-retry")
            .is_some_and(|v| v == "true");
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(reply.into_body().collect())
            .unwrap()
            .to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (status, code, retry)
    }

    #[test]
    fn a_call_every_model_refused_is_an_error_sdks_do_not_retry() {
        use Outcome::{ClientError, PolicyViolation};
        assert_eq!(
            answer(&[ClientError, ClientError], Some(403)),
            (StatusCode::FORBIDDEN, "permission_denied".into(), false),
            "restricted everywhere"
        );
        assert_eq!(
            answer(&[PolicyViolation, PolicyViolation], Some(422)),
            (
                StatusCode::BAD_REQUEST,
                "content_policy_violation".into(),
                false
            )
        );
        assert_eq!(
            answer(&[ClientError, PolicyViolation], Some(422)),
            (StatusCode::BAD_REQUEST, "request_refused".into(), false),
            "restricted for one model, a policy for the other"
        );
        // The deadline left the fallback untried: that model may still answer.
        assert_eq!(
            answer(&[PolicyViolation], None),
            (StatusCode::BAD_GATEWAY, "upstream_error".into(), true)
        );
    }

    #[test]
    fn a_call_that_found_every_circuit_open_is_told_apart_from_shed_load() {
        use Outcome::CircuitOpen;
        assert_eq!(
            answer(&[CircuitOpen, CircuitOpen], None),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "models_unavailable".into(),
                true
            )
        );
    }
}
