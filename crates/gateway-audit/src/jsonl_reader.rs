//! Reading a JSONL audit file back, entry by entry, skipping (and reporting) broken lines.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::path::Path;

use gateway_model::AuditEntry;

use crate::AuditError;

/// Longest line read; a longer one is skipped as [`SkipReason::TooLong`].
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Most skipped lines a [`ReadReport`] lists; beyond them it only counts, so a file of
/// garbage cannot make a report many times the file's size.
pub const MAX_SKIPPED_LISTED: usize = 1_000;

/// Why a line was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// A complete line that is not a valid audit entry.
    Malformed {
        /// The decoder's complaint.
        error: String,
    },
    /// The last line has no line break and does not decode: a write cut short by a crash,
    /// or, in a file still being written, a line whose write had not ended when read.
    Truncated {
        /// The decoder's complaint.
        error: String,
    },
    /// The line is longer than [`MAX_LINE_BYTES`].
    TooLong {
        /// Its length in bytes.
        bytes: u64,
    },
    /// Reading failed here; nothing after this point was read.
    Io {
        /// The OS error, as text.
        error: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Malformed { error } => write!(f, "not a valid audit entry: {error}"),
            SkipReason::Truncated { error } => {
                write!(f, "half-written last line (no line break): {error}")
            }
            SkipReason::TooLong { bytes } => {
                write!(f, "line of {bytes} bytes is longer than {MAX_LINE_BYTES}")
            }
            SkipReason::Io { error } => write!(f, "read failed: {error}"),
        }
    }
}

/// A line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line number.
    pub line: u64,
    /// Why it was skipped.
    pub reason: SkipReason,
}

impl fmt::Display for SkippedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Everything [`read_jsonl`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadReport {
    /// The entries that decoded, in file order.
    pub entries: Vec<AuditEntry>,
    /// The lines that did not, in file order: the first [`MAX_SKIPPED_LISTED`].
    pub skipped: Vec<SkippedLine>,
    /// How many more lines were skipped than `skipped` lists.
    pub skipped_unlisted: u64,
}

/// Iterates a JSONL audit stream: `Ok` per entry, `Err` per skipped line (blank lines
/// are ignored). Memory is bounded by [`MAX_LINE_BYTES`] whatever the input.
///
/// The stream ends at the first end of input: a file that grows while it is read (the
/// sink appending to it) reads as it stood then, its last line at most half-written,
/// never as the two halves of a line written in between.
pub struct JsonlReader<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl JsonlReader<BufReader<File>> {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let file = File::open(path).map_err(|e| AuditError::io("open", path, e))?;
        Ok(Self::new(BufReader::with_capacity(64 * 1024, file)))
    }
}

impl<R: BufRead> JsonlReader<R> {
    /// Reads entries from `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Reads the next raw line into `buf`: `None` at the end, else (terminated, length).
    fn next_line(&mut self) -> std::io::Result<Option<(bool, usize)>> {
        self.buf.clear();
        let mut total = 0usize;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok((total > 0).then_some((false, total)));
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            if total + chunk.len() <= MAX_LINE_BYTES {
                self.buf.extend_from_slice(chunk);
            }
            total += chunk.len();
            let consumed = newline.map_or(available.len(), |i| i + 1);
            self.reader.consume(consumed);
            if newline.is_some() {
                return Ok(Some((true, total)));
            }
        }
    }
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Result<AuditEntry, SkippedLine>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let read = self.next_line();
            self.line += 1;
            let skipped = |line, reason| Some(Err(SkippedLine { line, reason }));
            let (terminated, length) = match read {
                Ok(Some(found)) => {
                    // A line cut by the end of input is the last: what comes after it
                    // was written since, and would read as a broken line of its own.
                    self.done = !found.0;
                    found
                }
                Ok(None) => break,
                Err(e) => {
                    self.done = true;
                    return skipped(
                        self.line,
                        SkipReason::Io {
                            error: e.to_string(),
                        },
                    );
                }
            };
            if length > MAX_LINE_BYTES {
                return skipped(
                    self.line,
                    SkipReason::TooLong {
                        bytes: length as u64,
                    },
                );
            }
            let text = self.buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            return match serde_json::from_slice::<AuditEntry>(text) {
                Ok(entry) => Some(Ok(entry)),
                Err(e) if terminated => skipped(
                    self.line,
                    SkipReason::Malformed {
                        error: e.to_string(),
                    },
                ),
                Err(e) => skipped(
                    self.line,
                    SkipReason::Truncated {
                        error: e.to_string(),
                    },
                ),
            };
        }
        self.done = true;
        None
    }
}

impl<R> fmt::Debug for JsonlReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlReader")
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

/// Reads a whole JSONL audit file: every entry that decodes, and the lines skipped (the
/// first [`MAX_SKIPPED_LISTED`], and how many more).
///
/// Only failing to open the file is an error; broken lines are reported in the result.
/// The entries are all held at once: [`JsonlReader`] goes through a large file one entry
/// at a time.
pub fn read_jsonl(path: impl AsRef<Path>) -> Result<ReadReport, AuditError> {
    let mut report = ReadReport::default();
    for item in JsonlReader::open(path.as_ref())? {
        match item {
            Ok(entry) => report.entries.push(entry),
            Err(skipped) if report.skipped.len() < MAX_SKIPPED_LISTED => {
                report.skipped.push(skipped);
            }
            Err(_) => report.skipped_unlisted = report.skipped_unlisted.saturating_add(1),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_reported_not_fatal() {
        let mut input = Vec::new();
        input.extend_from_slice(b"\n   \n{not json}\n\xff\xfe\n");
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        input.extend_from_slice(b"\n{\"id\":");
        let skipped: Vec<_> = JsonlReader::new(&input[..])
            .map(|r| r.unwrap_err())
            .collect();
        let lines: Vec<_> = skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
        assert!(matches!(skipped[0].reason, SkipReason::Malformed { .. }));
        assert!(matches!(skipped[1].reason, SkipReason::Malformed { .. }));
        assert_eq!(
            skipped[2].reason,
            SkipReason::TooLong {
                bytes: (MAX_LINE_BYTES + 10) as u64
            }
        );
        assert!(matches!(skipped[3].reason, SkipReason::Truncated { .. }));
    }

    /// A file that is appended to between two reads: each `read` gives the next chunk,
    /// an empty chunk being the end of the file as it stood then.
    struct Growing(std::collections::VecDeque<&'static [u8]>);

    impl std::io::Read for Growing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let chunk = self.0.pop_front().unwrap_or_default();
            buf[..chunk.len()].copy_from_slice(chunk);
            Ok(chunk.len())
        }
    }

    #[test]
    fn a_file_read_while_it_grows_ends_at_its_first_end() {
        let file = Growing([&b"{not json}\n{\"id\":"[..], b"", b"1}\n{also not}\n"].into());
        let skipped: Vec<_> = JsonlReader::new(BufReader::new(file))
            .map(|r| r.unwrap_err())
            .collect();
        let lines: Vec<_> = skipped.iter().map(|s| s.line).collect();
        assert_eq!(
            lines,
            [1, 2],
            "the rest of line 2, written after the read reached the end, is not a line 3: {skipped:?}"
        );
        assert!(matches!(skipped[1].reason, SkipReason::Truncated { .. }));
    }
}
