//! Known secrets taken out of text that another host sent back.
//!
//! A gateway, a proxy or a login host may repeat what it was sent (an `Authorization`
//! header, say) in an error message. The router quotes such messages in its errors, so
//! whoever reads them first takes out the secrets it sent.

use std::borrow::Cow;

use serde_json::Value;

/// What stands in for a secret taken out of a text.
pub const REDACTED: &str = "<redacted>";

/// serde's complaint about a value without the value: every string it quotes in double
/// quotes (escapes included), in an `invalid type` or `invalid value` complaint every
/// number or other value it quotes in backticks, and in an `unknown variant` complaint
/// the variant it was given (the first backticked word), shown as `…`. Names of fields
/// and of the variants expected, which serde also quotes in backticks (as in "missing
/// field"), are kept. For an input that may hold a secret where serde did not expect it
/// (a token answer that is a bare string, a secret written into a config file under the
/// wrong key).
///
/// ```
/// use gateway_model::redact::without_quoted_values;
///
/// let said = r#"invalid type: string "tok-\"123", expected struct Grant"#;
/// assert_eq!(without_quoted_values(said), "invalid type: string \"…\", expected struct Grant");
/// let said = "invalid type: integer `123456789`, expected a string";
/// assert_eq!(without_quoted_values(said), "invalid type: integer `…`, expected a string");
/// assert_eq!(without_quoted_values("missing field `code`"), "missing field `code`");
/// let said = "unknown variant `hunter2`, expected `webpki` or `native`";
/// assert_eq!(without_quoted_values(said), "unknown variant `…`, expected `webpki` or `native`");
/// ```
pub fn without_quoted_values(text: &str) -> String {
    let every_backtick = text.starts_with("invalid type") || text.starts_with("invalid value");
    let mut first_backtick = text.starts_with("unknown variant");
    let mut out = String::with_capacity(text.len().min(256));
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        let closing = match c {
            '"' => '"',
            '`' if every_backtick || std::mem::take(&mut first_backtick) => '`',
            _ => continue,
        };
        out.push('…');
        let mut escaped = false;
        for inner in chars.by_ref() {
            if escaped {
                escaped = false;
            } else if inner == '\\' && closing == '"' {
                escaped = true;
            } else if inner == closing {
                out.push(closing);
                break;
            }
        }
    }
    out
}

/// `text` with every occurrence of each non-empty secret replaced by [`REDACTED`], as it
/// is and as `{:?}` (and serde's error messages) escape it inside quotes.
///
/// ```
/// use gateway_model::redact::redact_secrets;
///
/// let text = redact_secrets("auth was Bearer tok-123", &["tok-123"]);
/// assert_eq!(text, "auth was Bearer <redacted>");
/// assert_eq!(redact_secrets("nothing to hide", &["tok-123", ""]), "nothing to hide");
/// let quoted = format!("invalid type: string {:?}", "s\"cr\\et");
/// assert_eq!(redact_secrets(&quoted, &["s\"cr\\et"]), "invalid type: string \"<redacted>\"");
/// ```
pub fn redact_secrets<'a>(text: &'a str, secrets: &[&str]) -> Cow<'a, str> {
    let mut text = Cow::Borrowed(text);
    for secret in longest_first(secrets) {
        if text.contains(secret) {
            text = Cow::Owned(text.replace(secret, REDACTED));
        }
        // Escaped, it reads differently only if it holds a quote, a backslash or a
        // character `{:?}` writes as an escape: most secrets (tokens) hold none, and
        // this runs on every answer's correlation id, so no copy is made for them.
        if !secret.chars().any(|c| c.escape_debug().len() > 1) {
            continue;
        }
        let quoted = format!("{secret:?}");
        let escaped = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or(&quoted);
        if escaped != secret && text.contains(escaped) {
            text = Cow::Owned(text.replace(escaped, REDACTED));
        }
    }
    text
}

/// The non-empty `secrets`, longest first (equal lengths in their order), so a secret
/// found inside a longer one (a client secret inside the Basic credential built from it)
/// cannot break the longer one up before it is taken out whole. Without a copy: this
/// runs on every answer.
fn longest_first<'s>(secrets: &'s [&'s str]) -> impl Iterator<Item = &'s str> {
    let mut below = usize::MAX;
    std::iter::from_fn(move || {
        let len = secrets
            .iter()
            .map(|s| s.len())
            .filter(|&len| len > 0 && len < below)
            .max()?;
        below = len;
        Some(secrets.iter().copied().filter(move |s| s.len() == len))
    })
    .flatten()
}

/// Takes each non-empty secret out of every string in `value`, object keys included.
///
/// Strings are compared as decoded, so a secret written with JSON escapes (`\/`,
/// `\u0041`) is found too.
///
/// ```
/// use gateway_model::redact::redact_json;
///
/// let mut value = serde_json::json!({"message": "got Bearer tok-123", "errors": [{"tok-123": 1}]});
/// redact_json(&mut value, &["tok-123"]);
/// assert_eq!(value, serde_json::json!({"message": "got Bearer <redacted>", "errors": [{"<redacted>": 1}]}));
/// ```
pub fn redact_json(value: &mut Value, secrets: &[&str]) {
    match value {
        Value::String(text) => {
            if let Cow::Owned(redacted) = redact_secrets(text, secrets) {
                *text = redacted;
            }
        }
        Value::Array(items) => {
            for item in items {
                redact_json(item, secrets);
            }
        }
        Value::Object(map) => {
            let keys_hold_one = map
                .keys()
                .any(|key| matches!(redact_secrets(key, secrets), Cow::Owned(_)));
            if keys_hold_one {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(key, mut item)| {
                        redact_json(&mut item, secrets);
                        (redact_secrets(&key, secrets).into_owned(), item)
                    })
                    .collect();
            } else {
                for item in map.values_mut() {
                    redact_json(item, secrets);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_found_escaped_only_when_escaping_changes_it() {
        // A quote alone is escaped by `{:?}` and serde: found both ways.
        let quoted = format!("got {:?}", "a\"b");
        assert_eq!(redact_secrets(&quoted, &["a\"b"]), "got \"<redacted>\"");
        assert_eq!(redact_secrets("got a\"b", &["a\"b"]), "got <redacted>");
        // A token of letters, digits and dashes reads the same escaped.
        assert_eq!(
            redact_secrets("corr-sim-12ab", &["sim-12ab"]),
            "corr-<redacted>"
        );
        assert!(matches!(
            redact_secrets("corr-1", &["sim-12ab"]),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn every_occurrence_of_every_secret_goes_and_the_rest_stays() {
        assert_eq!(
            redact_secrets("a s1 b s2 c s1", &["s1", "s2"]),
            "a <redacted> b <redacted> c <redacted>"
        );
        assert!(matches!(
            redact_secrets("clean", &["s1"]),
            Cow::Borrowed("clean")
        ));
    }

    /// A short secret inside a longer one (a client secret inside the Basic credential
    /// built from it) once broke the longer one up when listed first, leaving the rest
    /// of it in the text.
    #[test]
    fn a_secret_inside_a_longer_one_does_not_break_it_up() {
        // `Q6` stands for a short client secret found inside `base64("id:x")`.
        let text = "sent Basic aWQ6eA== with Q6";
        for secrets in [["Q6", "aWQ6eA=="], ["aWQ6eA==", "Q6"]] {
            assert_eq!(
                redact_secrets(text, &secrets),
                "sent Basic <redacted> with <redacted>",
                "{secrets:?}"
            );
        }
        assert_eq!(
            longest_first(&["b", "", "ccc", "a", "dd"]).collect::<Vec<_>>(),
            ["ccc", "dd", "b", "a"]
        );
    }

    #[test]
    fn a_secret_written_with_json_escapes_is_found() {
        let mut value: Value =
            serde_json::from_str(r#"{"m": "Basic YWJj\/ZGVm", "n": ["\u0074ok"]}"#).unwrap();
        redact_json(&mut value, &["YWJj/ZGVm", "tok"]);
        assert_eq!(
            value,
            serde_json::json!({"m": "Basic <redacted>", "n": ["<redacted>"]})
        );
    }
}
