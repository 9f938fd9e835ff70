//! W3C trace context towards the gateway: the caller's trace (or a new one), with a
//! parent id of the router's own for each model it sends to.

use std::io::Write as _;

use gateway_model::TraceParent;
use gateway_transport::Call;
use http::HeaderValue;
use http::header::HeaderName;

use crate::ids;

/// The `traceparent` header.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The trace one routed call belongs to.
#[derive(Debug)]
pub(crate) struct TraceContext {
    parent: TraceParent,
    state: Option<HeaderValue>,
}

impl TraceContext {
    /// The caller's trace when `traceparent` is a valid one; otherwise a new, unsampled
    /// trace, and `tracestate` is dropped with it (the specification ties the two).
    pub(crate) fn continue_or_start(traceparent: Option<&str>, tracestate: Option<&str>) -> Self {
        match traceparent.and_then(TraceParent::parse) {
            Some(parent) => Self {
                parent,
                state: tracestate.and_then(|s| HeaderValue::from_str(s).ok()),
            },
            None => Self {
                parent: TraceParent::new(ids::random().as_u128(), span_id(), 0)
                    .expect("a version-4 UUID and a span id are never zero"),
                state: None,
            },
        }
    }

    /// The trace id, as the audit entry records it.
    pub(crate) fn trace_id(&self) -> String {
        self.parent.trace_id_hex()
    }

    /// `call` with this trace's headers, under a new parent id: one per model sent to.
    pub(crate) fn apply(&self, call: Call) -> Call {
        // 55 characters, written on the stack and copied once into the header value.
        let mut text = [0u8; 64];
        let mut cursor = std::io::Cursor::new(&mut text[..]);
        let written = write!(cursor, "{}", self.parent.with_parent(span_id()));
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        let value = written.map(|()| gateway_transport::shared_header_value(&text[..len]));
        let call = match value {
            Ok(Ok(value)) => call.header(TRACEPARENT, value),
            _ => call,
        };
        match &self.state {
            Some(state) => call.header(TRACESTATE, state.clone()),
            None => call,
        }
    }
}

/// A new span id: 64 random bits, never zero (a version-4 UUID's variant bits are set).
fn span_id() -> u64 {
    ids::random().as_u64_pair().1
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn sent(context: &TraceContext) -> (String, Option<String>) {
        let call = context.apply(Call::get(http::Uri::from_static("http://x/"), "r"));
        let get = |name: &HeaderName| {
            call.headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        (get(&TRACEPARENT).unwrap(), get(&TRACESTATE))
    }

    #[test]
    fn continues_the_callers_trace_with_a_new_parent_per_model() {
        let context = TraceContext::continue_or_start(Some(CALLER), Some("vendor=a"));
        let (first, state) = sent(&context);
        let (second, _) = sent(&context);
        let first = TraceParent::parse(&first).unwrap();
        let second = TraceParent::parse(&second).unwrap();
        assert_eq!(first.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(first.sampled(), "the caller's flags are kept");
        assert_ne!(first, second, "each model gets its own parent id");
        assert_ne!(
            first.to_string(),
            CALLER,
            "the caller's parent id is replaced"
        );
        assert_eq!(state.as_deref(), Some("vendor=a"));
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn starts_a_trace_when_the_callers_is_missing_or_invalid() {
        for caller in [
            None,
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        ] {
            let context = TraceContext::continue_or_start(caller, Some("vendor=a"));
            let (sent, state) = sent(&context);
            let parent = TraceParent::parse(&sent).unwrap();
            assert_eq!(parent.trace_id_hex(), context.trace_id());
            assert!(!parent.sampled());
            assert_eq!(
                state, None,
                "a tracestate without its traceparent is dropped"
            );
        }
        let a = TraceContext::continue_or_start(None, None).trace_id();
        let b = TraceContext::continue_or_start(None, None).trace_id();
        assert_ne!(a, b);
    }
}
