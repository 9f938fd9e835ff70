//! A small parser of the Prometheus text exposition format (`name{labels} value`
//! lines), for tests that check what a recorder rendered: exact values, not substrings.
//!
//! ```
//! use gateway_telemetry::exposition::{parse, series};
//!
//! let text = "# HELP x_total a counter\nx_total{model=\"m\"} 3\n";
//! let samples = parse(text).unwrap();
//! assert_eq!(samples[&series("x_total", &[("model", "m")])], 3.0);
//! ```

use std::collections::BTreeMap;

/// One series: metric name and its labels.
pub type Series = (String, BTreeMap<String, String>);

/// A line that is not a valid sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}: {text}")]
pub struct ExpositionError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
    /// The line.
    pub text: String,
}

/// Every sample line of `text`, keyed by series; a malformed or repeated line is an error.
pub fn parse(text: &str) -> Result<BTreeMap<Series, f64>, ExpositionError> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let error = |reason| ExpositionError {
            line: n + 1,
            reason,
            text: line.to_owned(),
        };
        let (series, value) = parse_line(line).ok_or_else(|| error("malformed sample"))?;
        if out.insert(series, value).is_some() {
            return Err(error("duplicate series"));
        }
    }
    Ok(out)
}

fn parse_line(line: &str) -> Option<(Series, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end = loop {
            let (start, c) = chars.next()?;
            if c == '}' {
                break start + 1;
            }
            if c == ',' {
                continue;
            }
            let mut key = String::from(c);
            loop {
                let (_, c) = chars.next()?;
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.insert(key, value);
        };
        rest = &after[end..];
    }
    let value = match rest.trim() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(((name, labels), value))
}

/// A series key from a name and `key=value` pairs.
pub fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_reads_labels_escapes_and_special_values() {
        let parsed = parse(
            "# HELP x y\nx_total{a=\"1\",b=\"q\\\"uote\"} 3\nplain 2.5\nh_bucket{le=\"+Inf\"} 7\n",
        )
        .unwrap();
        assert_eq!(
            parsed[&series("x_total", &[("a", "1"), ("b", "q\"uote")])],
            3.0
        );
        assert_eq!(parsed[&series("plain", &[])], 2.5);
        assert_eq!(parsed[&series("h_bucket", &[("le", "+Inf")])], 7.0);
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        assert_eq!(parse("ok 1\nbroken{ 2\n").unwrap_err().line, 2);
        assert_eq!(parse("a 1\na 2\n").unwrap_err().reason, "duplicate series");
    }
}
