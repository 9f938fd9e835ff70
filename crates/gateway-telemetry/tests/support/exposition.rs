//! A small parser of the Prometheus text exposition format: `name{labels} value` lines.

use std::collections::BTreeMap;

/// One series: metric name and its labels.
pub type Series = (String, BTreeMap<String, String>);

/// Every sample line of `text`, keyed by series. Panics on a malformed or duplicate line.
pub fn parse(text: &str) -> BTreeMap<Series, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = parse_line(line).unwrap_or_else(|| panic!("malformed line: {line}"));
        assert!(
            out.insert(series, value).is_none(),
            "duplicate series: {line}"
        );
    }
    out
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

#[test]
fn parser_reads_labels_escapes_and_special_values() {
    let parsed = parse(
        "# HELP x y\nx_total{a=\"1\",b=\"q\\\"uote\"} 3\nplain 2.5\nh_bucket{le=\"+Inf\"} 7\n",
    );
    assert_eq!(
        parsed[&series("x_total", &[("a", "1"), ("b", "q\"uote")])],
        3.0
    );
    assert_eq!(parsed[&series("plain", &[])], 2.5);
    assert_eq!(parsed[&series("h_bucket", &[("le", "+Inf")])], 7.0);
}
