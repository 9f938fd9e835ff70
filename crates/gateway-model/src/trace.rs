//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` a caller
//! sends and the router passes on to the gateway with the same trace id and its own
//! parent id, so one trace spans the caller, the router and Genesys Cloud.

use std::fmt;

use crate::bounds::{Pattern, Text};

/// The pattern a `traceparent` matches: version, trace id, parent id, flags; a version
/// after `00` (but not the invalid `ff`) may add fields after a dash, which are ignored.
pub const TRACEPARENT_PATTERN: &str = "^(00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}|\
(0[1-9a-f]|[1-9a-e][0-9a-f]|f[0-9a-e])-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[ -~]*)?)$";

/// Longest `traceparent` accepted, in characters: version 00 has 55, later versions more.
pub const MAX_TRACEPARENT_CHARS: usize = 512;

/// Longest `tracestate` passed on, in characters (the specification's own limit).
pub const MAX_TRACESTATE_CHARS: usize = 512;

/// Longest caller request id (`X-Request-Id`) recorded, in characters.
pub const MAX_CALLER_REQUEST_ID_CHARS: usize = 256;

/// The pattern of printable ASCII, space included: `tracestate` and request ids.
pub const PRINTABLE_ASCII_PATTERN: &str = "^[ -~]*$";

/// A `traceparent` field: [`TRACEPARENT_PATTERN`].
pub(crate) const TRACEPARENT: Text =
    Text::chars(55, MAX_TRACEPARENT_CHARS).matching(&TRACEPARENT_FORMAT);

/// A `tracestate` field: printable ASCII, at most [`MAX_TRACESTATE_CHARS`].
pub(crate) const TRACESTATE: Text = Text::chars(1, MAX_TRACESTATE_CHARS).matching(&PRINTABLE);

/// A caller request id: printable ASCII, at most [`MAX_CALLER_REQUEST_ID_CHARS`].
pub(crate) const CALLER_REQUEST_ID: Text =
    Text::chars(1, MAX_CALLER_REQUEST_ID_CHARS).matching(&PRINTABLE);

// The pattern states the format only: a well-formed value with an all-zero id is
// accepted and then ignored (a new trace is started), as the specification asks.
const TRACEPARENT_FORMAT: Pattern = Pattern::new(TRACEPARENT_PATTERN, well_formed);

/// Whether `text` has the format of [`TRACEPARENT_PATTERN`]: the specification's
/// version 00 exactly, or a later version read as version 00 where it can be (its first
/// 55 characters in that format, then nothing or a dash and anything printable).
fn well_formed(text: &str) -> bool {
    let bytes = text.as_bytes();
    let Some((head, tail)) = bytes.split_at_checked(55) else {
        return false;
    };
    let head_ok = head.iter().enumerate().all(|(i, &b)| match i {
        2 | 35 | 52 => b == b'-',
        _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
    });
    let tail_ok = match head.get(..2) {
        Some(b"00") => tail.is_empty(),
        Some(b"ff") => false,
        _ => match tail.split_first() {
            None => true,
            Some((&dash, rest)) => dash == b'-' && rest.iter().all(|b| (b' '..=b'~').contains(b)),
        },
    };
    head_ok && tail_ok
}

const PRINTABLE: Pattern = Pattern::new(PRINTABLE_ASCII_PATTERN, |text| {
    text.bytes().all(|b| (b' '..=b'~').contains(&b))
});

/// A parsed version-00 `traceparent`: the trace it belongs to, the caller's span, flags.
///
/// ```
/// use gateway_model::TraceParent;
///
/// let caller = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
///     .expect("valid");
/// let ours = caller.with_parent(0x1234);
/// assert_eq!(ours.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000001234-01");
/// assert_eq!(ours.trace_id_hex(), caller.trace_id_hex());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: u128,
    parent_id: u64,
    flags: u8,
}

impl TraceParent {
    /// A new trace: `trace_id` and `parent_id` must be non-zero (`None` otherwise).
    pub fn new(trace_id: u128, parent_id: u64, flags: u8) -> Option<Self> {
        (trace_id != 0 && parent_id != 0).then_some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Reads a `traceparent` header (lowercase hex, as the specification requires): a
    /// version-00 one, or a later version's first four fields, as the specification asks
    /// of a version-00 reader; `None` for anything else, including all-zero ids, which
    /// the specification calls invalid. What it writes back is always version 00.
    pub fn parse(text: &str) -> Option<Self> {
        if !well_formed(text) {
            return None;
        }
        let trace_id = u128::from_str_radix(text.get(3..35)?, 16).ok()?;
        let parent_id = u64::from_str_radix(text.get(36..52)?, 16).ok()?;
        let flags = u8::from_str_radix(text.get(53..55)?, 16).ok()?;
        Self::new(trace_id, parent_id, flags)
    }

    /// The same trace and flags with `parent_id` as the parent (ours, towards the
    /// gateway); a zero `parent_id` keeps the current one.
    #[must_use]
    pub fn with_parent(self, parent_id: u64) -> Self {
        Self {
            parent_id: if parent_id == 0 {
                self.parent_id
            } else {
                parent_id
            },
            ..self
        }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        use fmt::Write as _;
        let mut hex = String::with_capacity(32);
        let _ = write!(hex, "{:032x}", self.trace_id);
        hex
    }

    /// Whether the caller sampled (recorded) this trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_and_writes_the_specification_example() {
        let parent = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(parent.to_string(), EXAMPLE);
        assert!(parent.sampled());
        assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn refuses_what_the_specification_calls_invalid() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0100",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-\u{e9}",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736x00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u{e9}",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_version_00_and_passed_on_as_one() {
        for later in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
            "fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        ] {
            let parent = TraceParent::parse(later).unwrap_or_else(|| panic!("{later}"));
            assert_eq!(parent.to_string(), EXAMPLE, "{later}");
            assert!(TRACEPARENT.accepts(later), "{later}");
        }
    }

    #[test]
    fn a_new_parent_keeps_the_trace_and_flags() {
        let parent = TraceParent::parse(EXAMPLE).unwrap();
        let child = parent.with_parent(u64::MAX);
        assert_eq!(
            child.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-ffffffffffffffff-01"
        );
        assert_eq!(parent.with_parent(0), parent);
        assert_eq!(TraceParent::new(0, 1, 0), None);
        assert_eq!(TraceParent::new(1, 0, 0), None);
    }
}
