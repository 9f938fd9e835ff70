//! Appending to the spool's open segment. Records go through a buffer and count as
//! written only once the segment is synced: a write or sync that fails (a full disk, an
//! I/O error) counts every record since the last sync dropped, and cuts the file back to
//! what was synced, so no entry is counted spooled that never reached the disk, and no
//! torn line is left to replay.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};

use super::{Record, Segment, Spool, sync_dir};
use crate::AuditError;

/// The segment being appended to.
#[derive(Debug)]
pub(super) struct OpenSegment {
    index: u64,
    file: BufWriter<File>,
    /// Bytes written to it, buffered or not.
    bytes: u64,
    /// Bytes of it synced to disk.
    synced: u64,
}

impl OpenSegment {
    /// Whether it holds anything.
    pub(super) fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

/// What one append did.
#[derive(Debug, Default)]
pub(crate) struct Appended {
    /// Entries written and synced.
    pub(crate) written: u64,
    /// Entries not written: the spool was full, or writing or syncing failed.
    pub(crate) dropped: u64,
    /// Why writing or syncing failed, if it did.
    pub(crate) error: Option<AuditError>,
}

impl Spool {
    /// Appends `records` and syncs them to disk; records past the size cap are dropped,
    /// and so are those a failed write or sync leaves off the disk. The counts are of
    /// audit entries.
    pub(crate) fn append(&mut self, records: &[Record]) -> Appended {
        let mut done = Appended::default();
        // Entries written since the last sync.
        let mut unsynced = 0;
        for (i, record) in records.iter().enumerate() {
            let line = record.line();
            let len = line.len() as u64;
            let buffered = self.current.as_ref().map_or(0, |c| c.bytes - c.synced);
            if self.total_bytes + buffered + len > self.max_bytes {
                done.dropped += record.entries();
                continue;
            }
            let written = self.start_segment().and_then(|segment| {
                segment.file.write_all(&line).map_err(|e| {
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
                    unsynced += record.entries();
                    if segment_bytes >= self.segment_bytes {
                        self.commit(&mut unsynced, &mut done);
                        self.seal();
                    }
                }
                Err(e) => {
                    let rest = records[i..].iter().map(Record::entries).sum::<u64>();
                    done.dropped += unsynced + rest;
                    done.error = Some(e);
                    self.cut_back();
                    return done;
                }
            }
        }
        if unsynced > 0 {
            self.commit(&mut unsynced, &mut done);
        }
        done
    }

    /// Syncs the open segment: the `unsynced` entries written since the last sync count
    /// as written, or, if the sync fails, as dropped, and the segment is cut back.
    fn commit(&mut self, unsynced: &mut u64, done: &mut Appended) {
        let entries = std::mem::take(unsynced);
        match self.sync_current() {
            Ok(()) => done.written += entries,
            Err(e) => {
                done.dropped += entries;
                done.error = Some(e);
                self.cut_back();
            }
        }
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
            self.next_index = self.next_index.saturating_add(1);
            sync_dir(&self.dir)?;
            self.current = Some(OpenSegment {
                index,
                file: BufWriter::with_capacity(64 * 1024, file),
                bytes: 0,
                synced: 0,
            });
        }
        Ok(self.current.as_mut().expect("just opened"))
    }

    /// Flushes and syncs the open segment, and counts what it synced in the spool's size.
    pub(super) fn sync_current(&mut self) -> Result<(), AuditError> {
        if let Some(current) = &mut self.current {
            let path = self.dir.join(format!("{:020}.jsonl", current.index));
            current
                .file
                .flush()
                .and_then(|()| current.file.get_ref().sync_data())
                .map_err(|e| AuditError::io("sync", path, e))?;
            self.total_bytes += current.bytes - current.synced;
            current.synced = current.bytes;
        }
        Ok(())
    }

    /// Closes the current segment, synced (it becomes replayable).
    pub(super) fn seal(&mut self) {
        self.close_current(false);
    }

    /// Closes the current segment after a failed write or sync: what is buffered is
    /// discarded and the file cut back to its synced length, so a line whose entries
    /// were counted dropped is neither replayed nor left torn. If the cut fails too (the
    /// disk is failing), such lines may be replayed: delivered though counted dropped,
    /// or set aside as unreadable.
    fn cut_back(&mut self) {
        self.close_current(true);
    }

    /// Closes the current segment at its synced length, cutting the file back to it
    /// first if `cut`. Nothing buffered is written: after a sync the buffer is empty,
    /// and after a failure what it holds was counted dropped.
    fn close_current(&mut self, cut: bool) {
        let Some(OpenSegment {
            index,
            file,
            synced,
            ..
        }) = self.current.take()
        else {
            return;
        };
        let (file, _unwritten) = file.into_parts();
        if cut && let Err(e) = file.set_len(synced).and_then(|()| file.sync_data()) {
            tracing::error!(error = %e, segment = index, "could not cut a spool segment back to what was synced");
        }
        drop(file);
        self.close_segment(index, synced);
    }

    /// Queues segment `index`, of `bytes` synced bytes, for replay; removes it if empty.
    fn close_segment(&mut self, index: u64, bytes: u64) {
        if bytes > 0 {
            self.sealed.push_back(Segment { index, bytes });
        } else {
            let _ = std::fs::remove_file(self.path_of(index));
        }
    }
}
