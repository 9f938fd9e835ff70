//! What a caller's headers say about its call: its W3C trace context and request id,
//! carried into the [`RouteRequest`] so the gateway and the audit trail see them.

use gateway_model::{
    MAX_CALLER_REQUEST_ID_CHARS, MAX_TRACEPARENT_CHARS, MAX_TRACESTATE_CHARS, RouteRequest,
    TraceParent,
};
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

/// The header every answer carries: the caller's `x-request-id`, or one made up.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Fills `request`'s trace context and caller request id from `headers`, where the body
/// gave none. A header that breaks its rules is ignored, never refused: the
/// specification asks a receiver of a malformed `traceparent` to start a trace of its
/// own, and the request id is only a label.
pub(crate) fn adopt(headers: &HeaderMap, request: &mut RouteRequest) {
    if request.traceparent.is_none()
        && let Some(parent) = text(headers, &TRACEPARENT, MAX_TRACEPARENT_CHARS)
            .filter(|t| TraceParent::parse(t).is_some())
    {
        request.traceparent = Some(parent.to_owned());
        request.tracestate = text(headers, &TRACESTATE, MAX_TRACESTATE_CHARS).map(str::to_owned);
    }
    if request.caller_request_id.is_none() {
        request.caller_request_id =
            text(headers, &X_REQUEST_ID, MAX_CALLER_REQUEST_ID_CHARS).map(str::to_owned);
    }
}

/// The `x-request-id` to answer with when the body of a `/v1/route` request gave its
/// own `callerRequestId`, which the audit trail keeps over the header's: that id, if
/// it is one the trail can keep, so the id echoed is the one audited. Spaces around it
/// are taken off first, as they are from a header's value (a client reading the echo
/// would not see them); an id of spaces only is none, and the header's is taken.
pub(crate) fn body_request_id(request: &mut RouteRequest) -> Option<HeaderValue> {
    if let Some(id) = &mut request.caller_request_id {
        let trimmed = id.trim_matches(' ');
        if trimmed.is_empty() {
            request.caller_request_id = None;
        } else if trimmed.len() < id.len() {
            *id = trimmed.to_owned();
        }
    }
    let id = request.caller_request_id.as_deref()?;
    let bytes = id.as_bytes();
    (usable(bytes, MAX_CALLER_REQUEST_ID_CHARS))
        .then(|| HeaderValue::from_str(id).ok())
        .flatten()
}

/// Whether `headers` carry a caller request id the audit trail can keep (one value,
/// printable ASCII, 1 to [`MAX_CALLER_REQUEST_ID_CHARS`] bytes).
pub(crate) fn has_usable_request_id(headers: &HeaderMap) -> bool {
    text(headers, &X_REQUEST_ID, MAX_CALLER_REQUEST_ID_CHARS).is_some()
}

/// The header's one value if it is non-empty printable ASCII of at most `max` bytes.
fn text<'h>(headers: &'h HeaderMap, name: &HeaderName, max: usize) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    usable(value.as_bytes(), max)
        .then(|| value.to_str().ok())
        .flatten()
}

/// Whether `bytes` are non-empty printable ASCII of at most `max` bytes.
fn usable(bytes: &[u8], max: usize) -> bool {
    !bytes.is_empty() && bytes.len() <= max && bytes.iter().all(|b| (b' '..=b'~').contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_model::Validate;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn adopted(pairs: &[(&str, &str)]) -> RouteRequest {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let mut request = RouteRequest::new("r", "p");
        adopt(&headers, &mut request);
        request
    }

    #[test]
    fn valid_headers_are_carried_and_pass_validation() {
        let r = adopted(&[
            ("traceparent", PARENT),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-request-id", "caller-1"),
        ]);
        assert_eq!(r.traceparent.as_deref(), Some(PARENT));
        assert_eq!(r.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(r.caller_request_id.as_deref(), Some("caller-1"));
        r.validate().unwrap();
    }

    #[test]
    fn a_later_versions_traceparent_is_carried_up_to_its_bound() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future";
        let r = adopted(&[("traceparent", later), ("tracestate", "a=b")]);
        assert_eq!(r.traceparent.as_deref(), Some(later));
        assert_eq!(r.tracestate.as_deref(), Some("a=b"));
        r.validate().unwrap();

        let longest = format!("{later}{}", "x".repeat(MAX_TRACEPARENT_CHARS - later.len()));
        assert_eq!(
            adopted(&[("traceparent", &longest)]).traceparent,
            Some(longest.clone())
        );
        let too_long = format!("{longest}x");
        assert_eq!(adopted(&[("traceparent", &too_long)]).traceparent, None);
    }

    #[test]
    fn headers_breaking_their_rules_are_ignored() {
        let long = "x".repeat(MAX_CALLER_REQUEST_ID_CHARS + 1);
        let r = adopted(&[
            (
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            ("tracestate", "a=b"),
            ("x-request-id", &long),
        ]);
        assert_eq!(
            (r.traceparent, r.tracestate, r.caller_request_id),
            (None, None, None)
        );
        let r = adopted(&[("traceparent", PARENT), ("traceparent", PARENT)]);
        assert_eq!(r.traceparent, None, "two traceparents are ambiguous");
    }
}
