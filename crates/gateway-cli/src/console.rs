//! The lines the commands print for people (a listening address, a summary, the final
//! error), in the log format: plain text, or JSON events like every log line.

use std::fmt::Display;
use std::io::Write as _;
use std::sync::OnceLock;

use clap::ValueEnum;

/// The tracing target of console lines; the log filter never hides it. Its own leaf,
/// as target filters match by prefix: `genesys_router` alone would let through every
/// `genesys_router::*` target (the sidecar's access log among them) whatever the filter.
pub const TARGET: &str = "genesys_router::console";

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with
    /// `message`), and the enclosing spans.
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Sets the format once, when logging is set up; text until then.
pub(crate) fn set_format(format: LogFormat) {
    let _ = FORMAT.set(format);
}

fn json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

/// A line of information.
pub fn info(message: impl Display) {
    if json() {
        tracing::info!(target: TARGET, "{message}");
    } else {
        line("", &message);
    }
}

/// A warning: `warning: ...` in text.
pub fn warn(message: impl Display) {
    if json() {
        tracing::warn!(target: TARGET, "{message}");
    } else {
        line("warning: ", &message);
    }
}

/// An error: `error: ...` in text.
pub fn error(message: impl Display) {
    if json() {
        tracing::error!(target: TARGET, "{message}");
    } else {
        line("error: ", &message);
    }
}

/// Writes `prefix` and `message` as one line on stderr. A stderr that cannot be written
/// (a closed pipe, a full disk) loses the line: it must not stop the command (as
/// `eprintln!`'s panic would, in a signal task that then never starts a shutdown).
fn line(prefix: &str, message: &dyn Display) {
    let _ = writeln!(std::io::stderr().lock(), "{prefix}{}", printable(message));
}

/// `message` as a terminal shows it as it is: control characters (an escape sequence from
/// a gateway's error text, a carriage return) are written as Rust escapes (`\u{1b}`,
/// `\r`), and each line after the first starts with at least two spaces, so a message's
/// own list (a validation error's problems) reads as one, and a line break in quoted
/// text cannot pass for a line of its own. JSON lines escape them already.
fn printable(message: &dyn Display) -> String {
    let text = message.to_string();
    if !text.chars().any(char::is_control) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            if !line.starts_with("  ") {
                out.push_str("  ");
            }
        }
        for c in line.chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// A model's answer as standard output takes it: escaped [for a terminal](for_terminal),
/// byte for byte for a pipe or a file.
pub fn answer_for_stdout(answer: &str) -> std::borrow::Cow<'_, str> {
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        for_terminal(answer)
    } else {
        std::borrow::Cow::Borrowed(answer)
    }
}

/// A model's answer as a terminal should show it: line breaks and tabs as they are,
/// every other control character (an escape sequence that would recolour or retitle the
/// terminal, a carriage return that would overwrite a line) as a Rust escape. Only for
/// a terminal: a pipe or a file gets the answer byte for byte.
pub fn for_terminal(answer: &str) -> std::borrow::Cow<'_, str> {
    let shown = |c: char| !c.is_control() || c == '\n' || c == '\t';
    if answer.chars().all(shown) {
        return std::borrow::Cow::Borrowed(answer);
    }
    let mut out = String::with_capacity(answer.len() + 8);
    for c in answer.chars() {
        if shown(c) {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A JSON document as standard output takes it: [escaped for a terminal](json_for_terminal),
/// as it is for a pipe or a file.
pub fn json_for_stdout(json: &str) -> std::borrow::Cow<'_, str> {
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        json_for_terminal(json)
    } else {
        std::borrow::Cow::Borrowed(json)
    }
}

/// A JSON document with the control characters JSON lets through raw (DEL and the C1
/// range, which some terminals read as escape sequences) written as `\u` escapes: the
/// same document to a JSON reader. They can only stand inside strings, where the escape
/// means the same character.
pub fn json_for_terminal(json: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    let raw = |c: char| ('\u{7f}'..='\u{9f}').contains(&c);
    if !json.chars().any(raw) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if raw(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::{for_terminal, json_for_terminal, printable};

    #[test]
    fn json_for_a_terminal_escapes_del_and_c1_and_reads_back_the_same() {
        let text = "csi\u{9b}31m del\u{7f} nel\u{85} ok é \u{1b}";
        let json = serde_json::to_string_pretty(&serde_json::json!({ "output": text })).unwrap();
        let shown = json_for_terminal(&json);
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown}"
        );
        assert!(
            shown.contains("\\u009b") && shown.contains("\\u007f"),
            "{shown}"
        );
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back["output"], text);
        assert!(matches!(
            json_for_terminal("{}"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn an_answer_keeps_its_lines_and_tabs_but_not_escape_sequences_on_a_terminal() {
        assert_eq!(
            for_terminal("two\nlines\tand a tab"),
            "two\nlines\tand a tab"
        );
        assert_eq!(
            for_terminal("\u{1b}]0;pwned\u{7}red\u{1b}[31m!\rover\0"),
            "\\u{1b}]0;pwned\\u{7}red\\u{1b}[31m!\\rover\\u{0}"
        );
    }

    #[test]
    fn control_characters_are_written_as_escapes_and_lines_indented() {
        assert_eq!(
            printable(&"plain: `text` \"quoted\""),
            "plain: `text` \"quoted\""
        );
        assert_eq!(
            printable(&"a\nerror: FAKE\u{1b}[31mRED\tend\u{85}\r"),
            "a\n  error: FAKE\\u{1b}[31mRED\\tend\\u{85}\\r"
        );
        assert_eq!(
            printable(&"2 validation errors\n  /prompt: is required\n  /route: is required"),
            "2 validation errors\n  /prompt: is required\n  /route: is required",
            "a message's own indented list stays as it is"
        );
    }
}
