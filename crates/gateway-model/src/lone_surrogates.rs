//! JSON text whose `\u` escapes name half of a UTF-16 surrogate pair (a service that
//! cut a string between the two halves of an emoji), made readable: `serde_json` refuses
//! such a string, and with it the whole answer.

/// `json` with every unpaired surrogate escape (`\ud83d` not followed by a low half, or
/// a low half alone) replaced by `\ufffd`, the replacement character; `None` when there
/// is none, so a caller tries again only when something changed.
///
/// ```
/// let cut = br#"{"output":"smile \ud83d"}"#;
/// let fixed = gateway_model::replace_lone_surrogates(cut).unwrap();
/// let value: serde_json::Value = serde_json::from_slice(&fixed).unwrap();
/// assert_eq!(value["output"], "smile \u{fffd}");
/// assert!(gateway_model::replace_lone_surrogates(br#"{"ok":"\ud83d\ude00"}"#).is_none());
/// ```
pub fn replace_lone_surrogates(json: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < json.len() {
        let escape_len = match (json[i], json.get(i + 1)) {
            (b'\\', Some(b'u')) => 6,
            (b'\\', Some(_)) => 2,
            _ => 1,
        };
        let lone = escape_len == 6
            && match unit_at(json, i) {
                Some(0xD800..=0xDBFF) => !matches!(unit_at(json, i + 6), Some(0xDC00..=0xDFFF)),
                Some(0xDC00..=0xDFFF) => true,
                _ => false,
            };
        // A pair is copied whole, so its low half is not read again as a lone one.
        let take = if escape_len == 6 && matches!(unit_at(json, i), Some(0xD800..=0xDBFF)) && !lone
        {
            12
        } else {
            escape_len
        };
        let end = (i + take).min(json.len());
        if lone {
            let copy = out.get_or_insert_with(|| json[..i].to_vec());
            copy.extend_from_slice(br"\ufffd");
        } else if let Some(copy) = out.as_mut() {
            copy.extend_from_slice(&json[i..end]);
        }
        i = end;
    }
    out
}

/// The UTF-16 unit of the `\uXXXX` escape at `at`, if one is there.
fn unit_at(json: &[u8], at: usize) -> Option<u16> {
    let escape = json.get(at..at + 6)?;
    if !escape.starts_with(br"\u") {
        return None;
    }
    let hex = std::str::from_utf8(&escape[2..]).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::replace_lone_surrogates;

    fn fixed(json: &str) -> Option<String> {
        replace_lone_surrogates(json.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn only_unpaired_halves_are_replaced() {
        assert_eq!(fixed(r#""\ud83d""#).as_deref(), Some(r#""\ufffd""#));
        assert_eq!(fixed(r#""\ude00x""#).as_deref(), Some(r#""\ufffdx""#));
        assert_eq!(
            fixed(r#""\ud83d\ud83d\ude00""#).as_deref(),
            Some(r#""\ufffd\ud83d\ude00""#)
        );
        assert_eq!(fixed(r#""\ud83d\ude00""#), None, "a pair");
        assert_eq!(
            fixed(r#""\\ud83d""#),
            None,
            "an escaped backslash, then text"
        );
        assert_eq!(fixed(r#""\u00e9 \n""#), None);
        assert_eq!(fixed(r#""\ud8"#), None, "cut short: left to the parser");
    }

    #[test]
    fn what_is_replaced_parses() {
        for cut in [
            r#"{"a":"x\ud83d"}"#,
            r#"{"a":"\udfff\ud800"}"#,
            r#"["\ud800\u0041"]"#,
        ] {
            let fixed = fixed(cut).unwrap();
            assert!(
                serde_json::from_str::<serde_json::Value>(cut).is_err(),
                "{cut}"
            );
            serde_json::from_str::<serde_json::Value>(&fixed).unwrap();
        }
    }
}
