//! Building the sidecar's answers: JSON bodies, Genesys-style error bodies, headers.

use axum::body::Body;
use axum::response::Response;
use gateway_model::ErrorBody;
use gateway_router::RouteError;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde_json::json;

/// The answer type of every sidecar handler.
pub(crate) type Reply = Response;

/// A route failure as a Genesys-style error body; `contextId` is the correlation id, if
/// the call had one.
pub(crate) fn route_error(err: &RouteError) -> Reply {
    let status = StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut body = ErrorBody::new(status.as_u16(), err.code(), err.to_string(), "");
    // A failure before any call (an unknown route) has no correlation id: no `contextId`.
    body.context_id = err.correlation_id().map(str::to_owned);
    if let Some(details) = err.violations().map(violation_details) {
        body.details = details;
    }
    if let Some(trace) = err.trace() {
        body.extra.insert(
            "modelsTried".into(),
            serde_json::to_value(&trace.models_tried).unwrap_or_default(),
        );
    }
    let mut response = json(status, &body);
    if let Some(after) = err.retry_after() {
        let secs = after
            .as_secs()
            .saturating_add(u64::from(after.subsec_nanos() > 0));
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    with_retry_after(response)
}

/// Every 429 and 503 the service answers says when to come back (a second, unless the
/// answer already says).
pub(crate) fn with_retry_after(mut response: Reply) -> Reply {
    let status = response.status();
    if (status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE)
        && !response.headers().contains_key(RETRY_AFTER)
    {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Each violation as a Genesys `details` entry.
pub(crate) fn violation_details(
    errors: &gateway_model::ValidationErrors,
) -> Vec<serde_json::Value> {
    errors
        .violations()
        .iter()
        .map(|v| json!({ "fieldName": v.path, "errorMessage": v.rule.to_string() }))
        .collect()
}

/// A Genesys-style error body without a correlation id.
pub(crate) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    details: Option<Vec<serde_json::Value>>,
) -> Reply {
    let mut body = ErrorBody::new(status.as_u16(), code, message, "");
    body.context_id = None;
    body.details = details.unwrap_or_default();
    with_retry_after(json(status, &body))
}

/// `body` as JSON.
pub(crate) fn json(status: StatusCode, body: &impl serde::Serialize) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    text(status, "application/json", bytes)
}

/// `body` with a content type.
pub(crate) fn text(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Reply {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
