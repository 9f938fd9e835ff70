//! Reading a spool segment back: its records in order, and the lines that do not read
//! as ones this sink wrote (kept, to be set aside, not sent).

use std::path::Path;

use bytes::Bytes;
use gateway_model::AuditEntry;

use crate::regular_file::{Contents, read_within};
use crate::webhook::batch::{Message, WebhookBatch};
use crate::webhook::spool::Record;
use crate::{AuditError, EncodedEntry};

/// A segment read back.
#[derive(Debug, Default)]
pub(crate) struct SegmentRead {
    /// Its readable records, in order.
    pub(crate) records: Vec<Record>,
    /// How many entries its unreadable lines held, as far as can be told.
    pub(crate) corrupt: u64,
    /// Its unreadable lines, each as it was (a cut-short last line gets its `\n`).
    pub(crate) unreadable: Vec<Bytes>,
}

/// A segment file read back, or why it was not read.
pub(crate) enum SegmentFile {
    /// What it holds.
    Read(SegmentRead),
    /// Not read: not a regular file, or larger than the bound. The `rejected/` suffix
    /// to set it aside under.
    Unfit(&'static str),
}

/// Reads a segment back if it is a regular file of at most `bound` bytes: its records in
/// order, and what could not be read.
pub(crate) fn read_segment(path: &Path, bound: u64) -> Result<SegmentFile, AuditError> {
    let contents = read_within(path, bound).map_err(|e| AuditError::io("read", path, e))?;
    let data = match contents {
        Contents::Bytes(bytes) => Bytes::from(bytes),
        unfit => return Ok(SegmentFile::Unfit(unfit.unfit().unwrap_or("unfit"))),
    };
    let mut read = SegmentRead::default();
    let mut start = 0;
    while start < data.len() {
        let Some(newline) = data[start..].iter().position(|&b| b == b'\n') else {
            // A partial last line: a write cut short.
            if !data[start..].trim_ascii().is_empty() {
                read.corrupt += 1;
                let mut line = data[start..].to_vec();
                line.push(b'\n');
                read.unreadable.push(Bytes::from(line));
            }
            break;
        };
        let end = start + newline;
        if !data[start..end].trim_ascii().is_empty() {
            match parse_line(&data, start, end) {
                Ok(record) => read.records.push(record),
                Err(lost) => {
                    read.corrupt += lost;
                    read.unreadable.push(data.slice(start..=end));
                }
            }
        }
        start = end + 1;
    }
    Ok(SegmentFile::Read(read))
}

/// Parses the line `data[start..end]` (`end` is its line break); `Err` says how many
/// entries a corrupt line held, as far as can be told.
///
/// Each entry must read as an [`AuditEntry`]: JSON of another kind, put in the spool
/// by hand or by another program, is corrupt, so it is never signed and sent as ours.
fn parse_line(data: &Bytes, start: usize, end: usize) -> Result<Record, u64> {
    let text = &data[start..end];
    if text.starts_with(b"{") {
        let entry: AuditEntry = serde_json::from_slice(text).map_err(|_| 1u64)?;
        return Ok(Record::Entry(EncodedEntry::from_line(
            entry.id,
            data.slice(start..=end),
        )));
    }
    let mut fields = text.splitn(3, |&b| b == b' ');
    let (Some(id), Some(count), Some(body)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(1);
    };
    let id = std::str::from_utf8(id)
        .ok()
        .filter(|id| is_message_id(id))
        .ok_or(1u64)?;
    let count: u64 = std::str::from_utf8(count)
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or(1u64)?;
    // An entry takes at least 2 bytes (`{}`): that bounds what a damaged count can claim.
    let lost = count.clamp(1, (body.len() as u64 / 2).max(1));
    let parsed: WebhookBatch = serde_json::from_slice(body).map_err(|_| lost)?;
    if count == 0 || parsed.entries.len() as u64 != count {
        return Err(lost);
    }
    let body = data.slice(end - body.len()..end);
    Ok(Record::Message(Message::from_parts(
        id.to_owned(),
        body,
        count,
    )))
}

/// Whether `id` has the form this sink gives message ids: `msg_` and 32 hex digits.
fn is_message_id(id: &str) -> bool {
    id.strip_prefix("msg_")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}
