//! A bound on the JSON values an OpenAI request body may hold, checked before it is
//! parsed. The doors read free-form parts of a request (message `content`, parameters
//! they then refuse) into `serde_json::Value`s, which take about 80 bytes each however
//! short their JSON (`{}` is two): within the 1 MiB body cap, a body of empty objects
//! would take dozens of times its size in memory, in every call in flight at once.

/// The most JSON values an OpenAI request body may hold: far past any real request's
/// (twenty thousand messages of five values each), and about 8 MB of values at most.
pub(crate) const MAX_REQUEST_VALUES: usize = 100_000;

/// An upper bound on the JSON values `json` holds, read in one pass without parsing:
/// one, and one more for each `{`, `[` and `,` outside a string.
pub(crate) fn value_bound(json: &[u8]) -> usize {
    let (mut count, mut in_string, mut escaped) = (1_usize, false, false);
    for &byte in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' | b',' => count = count.saturating_add(1),
            _ => {}
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::value_bound;

    /// The values `serde_json` reads `json` into, counted.
    fn values(json: &str) -> usize {
        fn count(value: &serde_json::Value) -> usize {
            1 + match value {
                serde_json::Value::Array(items) => items.iter().map(count).sum(),
                serde_json::Value::Object(map) => map.values().map(count).sum(),
                _ => 0,
            }
        }
        count(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn the_bound_is_never_below_what_serde_json_reads() {
        for json in [
            "1",
            "[]",
            "{}",
            "[{},{},[1,2,[3]]]",
            r#"{"a":{"b":[null,true,"x"]},"c":"d"}"#,
            r#"{"s":"a,b{c[d\"e,\\"}"#,
            r#"[" , , ", {"k,":"[["}]"#,
        ] {
            assert!(value_bound(json.as_bytes()) >= values(json), "{json}");
        }
        // Commas and brackets inside strings, escaped quotes included, do not count.
        assert_eq!(value_bound(br#"{"s":"a,b{c[d\"e,\\"}"#), 2);
    }
}
