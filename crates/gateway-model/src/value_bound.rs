//! A cheap upper bound on the JSON values a document holds, read before it is parsed:
//! a `serde_json::Value` takes about 80 bytes however short its JSON (`{}` is two), so a
//! reader that keeps values checks the bound first.

/// An upper bound on the JSON values `json` holds, read in one pass without parsing:
/// one, and one more for each `{`, `[` and `,` outside a string.
///
/// ```
/// assert_eq!(gateway_model::json_value_bound(br#"{"a":[1,2],"b":"x,y"}"#), 5);
/// ```
pub fn json_value_bound(json: &[u8]) -> usize {
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
    use super::json_value_bound as value_bound;

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
