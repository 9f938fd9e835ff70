//! Text from outside, bounded before it is kept or shown.

use std::fmt;

/// Cuts `text` to `max_chars` characters (at least 1), its last one a `…` if it was
/// longer: how every text from outside is bounded before it is kept or echoed.
///
/// ```
/// let mut text = String::from("conversation");
/// gateway_model::cut_to(&mut text, 5);
/// assert_eq!(text, "conv…");
/// ```
pub fn cut_to(text: &mut String, max_chars: usize) {
    let max_chars = max_chars.max(1);
    if text.char_indices().nth(max_chars).is_some()
        && let Some((keep, _)) = text.char_indices().nth(max_chars - 1)
    {
        text.truncate(keep);
        text.push('…');
    }
}

/// Text from outside fit for one line of an error or a log, shown through `Display`:
/// control characters escaped (a newline or a terminal escape cannot forge a line), then
/// cut as [`cut_to`] cuts, so what is shown has at most `max_chars` characters.
///
/// ```
/// use gateway_model::OneLine;
///
/// assert_eq!(OneLine::new("line\nfeed", 100).to_string(), "line\\nfeed");
/// assert_eq!(OneLine::new("conversation", 5).to_string(), "conv…");
/// let escapes = OneLine::new(&"\u{1b}".repeat(100), 20).to_string();
/// assert_eq!(escapes.chars().count(), 20, "escapes count toward the bound");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OneLine<'a> {
    text: &'a str,
    max_chars: usize,
}

impl<'a> OneLine<'a> {
    /// `text`, to be shown in at most `max_chars` characters (at least 1), escapes
    /// included.
    pub fn new(text: &'a str, max_chars: usize) -> Self {
        Self {
            text,
            max_chars: max_chars.max(1),
        }
    }
}

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bound holds for what is shown: escapes count (`\u{1b}` is six characters).
        let mut shown = String::new();
        for c in self.text.chars().take(self.max_chars.saturating_add(1)) {
            if c.is_control() {
                shown.extend(c.escape_default());
            } else {
                shown.push(c);
            }
        }
        cut_to(&mut shown, self.max_chars);
        f.write_str(&shown)
    }
}
