//! The webhook spool: a directory of numbered JSONL segment files, appended and synced,
//! replayed oldest first and deleted once delivered.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;
use uuid::Uuid;

use crate::audit::{AuditError, EncodedEntry};

/// A sealed segment waiting for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) index: u64,
    pub(crate) bytes: u64,
}

#[derive(Debug)]
struct OpenSegment {
    index: u64,
    file: BufWriter<File>,
    bytes: u64,
}

/// What one append did.
#[derive(Debug, Default)]
pub(crate) struct Appended {
    /// Entries written (and synced, unless `error` says otherwise).
    pub(crate) written: u64,
    /// Entries not written: the spool was full, or writing failed.
    pub(crate) dropped: u64,
    /// Why writing failed, if it did.
    pub(crate) error: Option<AuditError>,
}

#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    sealed: VecDeque<Segment>,
    current: Option<OpenSegment>,
    next_index: u64,
    total_bytes: u64,
    max_bytes: u64,
    segment_bytes: u64,
}

fn segment_index(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".jsonl")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io("sync directory", dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl Spool {
    /// Opens (creating) `dir`; segments left by an earlier run are queued for replay.
    pub(crate) fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir).map_err(|e| AuditError::io("create directory", dir, e))?;
        let mut sealed = Vec::new();
        let listing = std::fs::read_dir(dir).map_err(|e| AuditError::io("list", dir, e))?;
        for item in listing {
            let item = item.map_err(|e| AuditError::io("list", dir, e))?;
            let Some(index) = item.file_name().to_str().and_then(segment_index) else {
                continue;
            };
            let bytes = item
                .metadata()
                .map_err(|e| AuditError::io("inspect", item.path(), e))?
                .len();
            if bytes == 0 {
                let _ = std::fs::remove_file(item.path());
            } else {
                sealed.push(Segment { index, bytes });
            }
        }
        sealed.sort_by_key(|s| s.index);
        Ok(Self {
            dir: dir.to_owned(),
            next_index: sealed.last().map_or(1, |s| s.index + 1),
            total_bytes: sealed.iter().map(|s| s.bytes).sum(),
            sealed: sealed.into(),
            current: None,
            max_bytes,
            segment_bytes: segment_bytes.max(1),
        })
    }

    pub(crate) fn path_of(&self, index: u64) -> PathBuf {
        self.dir.join(format!("{index:020}.jsonl"))
    }

    /// Bytes waiting in the spool.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    fn start_segment(&mut self) -> Result<&mut OpenSegment, AuditError> {
        if self.current.is_none() {
            let index = self.next_index;
            let path = self.path_of(index);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|e| AuditError::io("create", &path, e))?;
            self.next_index += 1;
            sync_dir(&self.dir)?;
            self.current = Some(OpenSegment {
                index,
                file: BufWriter::with_capacity(64 * 1024, file),
                bytes: 0,
            });
        }
        Ok(self.current.as_mut().expect("just opened"))
    }

    fn sync_current(&mut self) -> Result<(), AuditError> {
        if let Some(current) = &mut self.current {
            let path = self.dir.join(format!("{:020}.jsonl", current.index));
            current
                .file
                .flush()
                .and_then(|()| current.file.get_ref().sync_data())
                .map_err(|e| AuditError::io("sync", path, e))?;
        }
        Ok(())
    }

    /// Closes the current segment (it becomes replayable); after a write error it may end
    /// with a partial line, which replay skips.
    fn seal(&mut self) {
        if let Some(current) = self.current.take() {
            let OpenSegment { index, file, bytes } = current;
            drop(file.into_inner());
            if bytes > 0 {
                self.sealed.push_back(Segment { index, bytes });
            } else {
                let _ = std::fs::remove_file(self.path_of(index));
            }
        }
    }

    /// Appends `entries` and syncs them to disk; entries past the size cap are dropped.
    pub(crate) fn append(&mut self, entries: &[EncodedEntry]) -> Appended {
        let mut done = Appended::default();
        for (i, entry) in entries.iter().enumerate() {
            let line = entry.line();
            let len = line.len() as u64;
            if self.total_bytes + len > self.max_bytes {
                done.dropped += 1;
                continue;
            }
            let written = self.start_segment().and_then(|segment| {
                segment.file.write_all(line).map_err(|e| {
                    AuditError::io(
                        "append to",
                        format!("spool segment {:020}", segment.index),
                        e,
                    )
                })?;
                segment.bytes += len;
                Ok(segment.bytes)
            });
            match written {
                Ok(segment_bytes) => {
                    self.total_bytes += len;
                    done.written += 1;
                    if segment_bytes >= self.segment_bytes {
                        if let Err(e) = self.sync_current() {
                            done.error = Some(e);
                        }
                        self.seal();
                    }
                }
                Err(e) => {
                    self.seal();
                    done.dropped += (entries.len() - i) as u64;
                    done.error = Some(e);
                    return done;
                }
            }
        }
        if done.written > 0
            && let Err(e) = self.sync_current()
        {
            self.seal();
            done.error = Some(e);
        }
        done
    }

    /// The oldest segment to replay, sealing the current one if nothing else waits.
    pub(crate) fn oldest(&mut self) -> Result<Option<Segment>, AuditError> {
        if self.sealed.is_empty() && self.current.as_ref().is_some_and(|c| c.bytes > 0) {
            self.sync_current()?;
            self.seal();
        }
        Ok(self.sealed.front().copied())
    }

    /// Deletes a replayed segment (the oldest).
    /// Forgets a replayed segment and deletes its file. If the file cannot be deleted it
    /// is still forgotten (so it is not replayed in a loop); a restart replays it once
    /// more, which receivers deduplicate by id.
    pub(crate) fn remove(&mut self, segment: Segment) -> Result<(), AuditError> {
        if let Some(pos) = self.sealed.iter().position(|s| s.index == segment.index) {
            self.sealed.remove(pos);
            self.total_bytes = self.total_bytes.saturating_sub(segment.bytes);
        }
        let path = self.path_of(segment.index);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(AuditError::io("remove", path, e)),
            _ => Ok(()),
        }
    }
}

#[derive(Deserialize)]
struct IdOnly {
    id: Uuid,
}

/// Reads a segment back: its entries in order, and how many lines were corrupt.
pub(crate) fn read_segment(path: &Path) -> Result<(Vec<EncodedEntry>, u64), AuditError> {
    let data = Bytes::from(std::fs::read(path).map_err(|e| AuditError::io("read", path, e))?);
    let mut entries = Vec::new();
    let mut corrupt = 0;
    let mut start = 0;
    while start < data.len() {
        let Some(newline) = data[start..].iter().position(|&b| b == b'\n') else {
            // A partial last line: a write cut short.
            if !data[start..].trim_ascii().is_empty() {
                corrupt += 1;
            }
            break;
        };
        let end = start + newline;
        let json = &data[start..end];
        if !json.trim_ascii().is_empty() {
            match serde_json::from_slice::<IdOnly>(json) {
                Ok(IdOnly { id }) => {
                    entries.push(EncodedEntry::from_line(id, data.slice(start..=end)));
                }
                Err(_) => corrupt += 1,
            }
        }
        start = end + 1;
    }
    Ok((entries, corrupt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_are_strict() {
        assert_eq!(segment_index("00000000000000000042.jsonl"), Some(42));
        assert_eq!(segment_index("42.jsonl"), None);
        assert_eq!(segment_index("0000000000000000004x.jsonl"), None);
        assert_eq!(segment_index("00000000000000000042.jsonl.tmp"), None);
    }

    fn encoded(n: usize) -> EncodedEntry {
        let id = Uuid::now_v7();
        let line = format!("{{\"id\":\"{id}\",\"n\":\"{n:04}\"}}\n");
        EncodedEntry::from_line(id, Bytes::from(line))
    }

    #[test]
    fn segments_rotate_replay_in_order_and_the_cap_drops_only_the_excess() {
        let dir = tempfile::tempdir().unwrap();
        let line = encoded(0).line().len() as u64;
        // Room for 10 entries, 4 per segment.
        let mut spool = Spool::open(dir.path(), 10 * line, 4 * line).unwrap();
        let batch: Vec<_> = (0..12).map(encoded).collect();
        let appended = spool.append(&batch);
        assert_eq!((appended.written, appended.dropped), (10, 2));
        assert!(appended.error.is_none());
        assert_eq!(spool.total_bytes(), 10 * line);
        drop(spool);

        // A new spool over the same directory replays segments oldest first.
        let mut spool = Spool::open(dir.path(), 10 * line, 4 * line).unwrap();
        assert_eq!(spool.total_bytes(), 10 * line);
        let mut replayed = Vec::new();
        while let Some(segment) = spool.oldest().unwrap() {
            let (entries, corrupt) = read_segment(&spool.path_of(segment.index)).unwrap();
            assert_eq!(corrupt, 0);
            replayed.extend(entries.iter().map(EncodedEntry::id));
            spool.remove(segment).unwrap();
        }
        let expected: Vec<_> = batch[..10].iter().map(EncodedEntry::id).collect();
        assert_eq!(replayed, expected);
        assert_eq!(spool.total_bytes(), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Room again once replayed; the open segment is sealed for replay on demand.
        assert_eq!(spool.append(&batch[10..]).written, 2);
        let segment = spool.oldest().unwrap().unwrap();
        assert_eq!(segment.bytes, 2 * line);
    }

    #[test]
    fn corrupt_and_partial_lines_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000001.jsonl");
        let id = Uuid::now_v7();
        let text = format!("{{\"id\":\"{id}\"}}\n{{broken\n\n{{\"id\":\"{id}\"}}\n{{\"id\":\"");
        std::fs::write(&path, text).unwrap();
        let (entries, corrupt) = read_segment(&path).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(corrupt, 2);
        assert_eq!(entries[0].id(), id);
        assert_eq!(entries[0].json(), format!("{{\"id\":\"{id}\"}}").as_bytes());
    }
}
