//! The webhook spool: a directory of numbered segment files, appended and synced,
//! replayed oldest first and deleted once delivered.
//!
//! A segment holds one record per line. A loose entry (never attempted) is its JSON
//! line. A message (attempted at least once, so its id and body are fixed) is
//! `{webhook-id} {entry count} {body}`; the body is compact JSON, so it has no line break.
//! Before a segment is replayed, its loose entries are formed into messages and the
//! segment is atomically rewritten as messages only, so a restart resends the same ids
//! and bodies.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::exclusive::ExclusiveUse;
use crate::regular_file::{append_to, ends_mid_line, is_regular, own_directory};
use crate::webhook::batch::Message;
use crate::{AuditError, EncodedEntry};

mod append;

use append::OpenSegment;

/// One line of a segment.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    /// An entry not yet sent in any message.
    Entry(EncodedEntry),
    /// A message as first formed, to be resent as it is.
    Message(Message),
}

impl Record {
    /// How many audit entries the record holds.
    pub(crate) fn entries(&self) -> u64 {
        match self {
            Record::Entry(_) => 1,
            Record::Message(message) => message.entries(),
        }
    }

    /// The record as one spool line, `\n` included.
    fn line(&self) -> Cow<'_, [u8]> {
        match self {
            Record::Entry(entry) => Cow::Borrowed(entry.line()),
            Record::Message(message) => Cow::Owned(message_line(message)),
        }
    }
}

fn message_line(message: &Message) -> Vec<u8> {
    let count = message.entries().to_string();
    let mut line = Vec::with_capacity(message.id().len() + count.len() + message.body().len() + 3);
    line.extend_from_slice(message.id().as_bytes());
    line.push(b' ');
    line.extend_from_slice(count.as_bytes());
    line.push(b' ');
    line.extend_from_slice(message.body());
    line.push(b'\n');
    line
}

/// A sealed segment waiting for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) index: u64,
    pub(crate) bytes: u64,
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
    /// What this sink keeps in `rejected/`.
    rejected: RejectedFiles,
    /// This spool's hold on the directory ([`LOCK_FILE`]): no other spool replays or
    /// rewrites its segments meanwhile.
    _claim: ExclusiveUse,
}

/// The files of `rejected/` this sink appends to, counted against a cap of their own as
/// large as the spool's (a receiver that refuses every entry fills it, as an outage
/// fills the spool).
#[derive(Debug, Default)]
struct RejectedFiles {
    /// Bytes of the `.jsonl` and `.unreadable` files there (counted at open, then as
    /// this sink appends).
    bytes: u64,
    /// The index of the file refused messages go to, and its size: an index this spool
    /// took from its own count, so no segment, of this run or a later one, is named
    /// like it, and moving it back into the spool directory overwrites nothing.
    current: Option<(u64, u64)>,
}

/// The lock file inside a spool directory.
pub(crate) const LOCK_FILE: &str = "spool.lock";

/// The spool's subdirectory for messages the receiver refused on their own.
pub(crate) const REJECTED_DIR: &str = "rejected";

/// The most bytes one record may take past a segment's `segment_bytes`. A segment is
/// closed once it reaches `segment_bytes`, so one this sink wrote holds at most that
/// plus one record; a file named like a segment and larger than `segment_bytes` plus
/// this is not read (it could be larger than memory): it is moved to `rejected/` as
/// `{index}.oversized`, logged, and no longer counts against the spool's cap.
pub(crate) const MAX_RECORD_BYTES: u64 = 64 << 20;

/// The highest segment index taken from a file name: the spool counts on by one from
/// the highest it finds, and from here that cannot overflow in any spool's life. A
/// larger number (say `18446744073709551615.jsonl`, which overflowed the count) is not
/// a segment this spool wrote, and is left alone.
const MAX_SEGMENT_INDEX: u64 = 1 << 62;

fn segment_index(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".jsonl")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
        .filter(|index| *index <= MAX_SEGMENT_INDEX)
}

/// Where a segment is rewritten before it replaces the original.
fn rewrite_path(segment: &Path) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
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

/// The bytes of the files in `rejected/` a sink appends to (`.jsonl`, `.unreadable`),
/// and the highest index among its `.jsonl` files, which a later segment must not take.
fn scan_rejected(dir: &Path) -> (u64, Option<u64>) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return (0, None);
    };
    let (mut bytes, mut highest) = (0u64, None);
    for item in listing.flatten() {
        let name = item.file_name();
        let name = name.to_str().unwrap_or_default();
        let index = segment_index(name);
        if index.is_none() && !name.ends_with(".unreadable") {
            continue;
        }
        highest = highest.max(index);
        // `DirEntry::metadata` does not follow a link.
        bytes = bytes.saturating_add(item.metadata().map_or(0, |meta| meta.len()));
    }
    (bytes, highest)
}

impl Spool {
    /// Opens (creating) `dir`; segments left by an earlier run are queued for replay.
    pub(crate) fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir).map_err(|e| AuditError::io("create directory", dir, e))?;
        let claim = ExclusiveUse::claim(dir.join(LOCK_FILE), dir)?;
        let mut sealed = Vec::new();
        // Named like segments, but links, FIFOs or directories: set aside, never read.
        let mut unfit = Vec::new();
        let listing = std::fs::read_dir(dir).map_err(|e| AuditError::io("list", dir, e))?;
        for item in listing {
            let item = item.map_err(|e| AuditError::io("list", dir, e))?;
            let name = item.file_name();
            let name = name.to_str().unwrap_or_default();
            if name.strip_suffix(".tmp").and_then(segment_index).is_some() {
                // A rewrite cut short: the original segment is still whole.
                let _ = std::fs::remove_file(item.path());
                continue;
            }
            let Some(index) = segment_index(name) else {
                continue;
            };
            if !is_regular(&item).map_err(|e| AuditError::io("inspect", item.path(), e))? {
                unfit.push(index);
                continue;
            }
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
        let (rejected_bytes, rejected_highest) = scan_rejected(&dir.join(REJECTED_DIR));
        let highest = sealed
            .iter()
            .map(|s| s.index)
            .chain(unfit.iter().copied())
            .chain(rejected_highest)
            .max();
        let mut spool = Self {
            dir: dir.to_owned(),
            next_index: highest.map_or(1, |index| index.saturating_add(1)),
            // Sizes of files this sink may not have written: they may add up past u64.
            total_bytes: sealed.iter().fold(0, |sum, s| sum.saturating_add(s.bytes)),
            sealed: sealed.into(),
            current: None,
            max_bytes,
            segment_bytes: segment_bytes.max(1),
            rejected: RejectedFiles {
                bytes: rejected_bytes,
                current: None,
            },
            _claim: claim,
        };
        for index in unfit {
            spool.set_aside_unread(Segment { index, bytes: 0 }, "not-a-file");
        }
        spool.set_aside_oversized();
        Ok(spool)
    }

    /// The most bytes a segment this sink wrote can hold: `segment_bytes` plus
    /// [`MAX_RECORD_BYTES`].
    pub(crate) fn read_bound(&self) -> u64 {
        self.segment_bytes.saturating_add(MAX_RECORD_BYTES)
    }

    /// Moves every sealed segment over `segment_bytes` plus [`MAX_RECORD_BYTES`] to
    /// `rejected/`, unread, and forgets it (if the move fails it stays where it is,
    /// forgotten until the next start tries again).
    fn set_aside_oversized(&mut self) {
        let bound = self.read_bound();
        let oversized: Vec<Segment> = self
            .sealed
            .iter()
            .filter(|s| s.bytes > bound)
            .copied()
            .collect();
        for segment in oversized {
            self.set_aside_unread(segment, "oversized");
        }
    }

    /// Moves `segment`'s file to `rejected/{index}.{suffix}` unread (a link is moved as
    /// a link) and forgets it. If the move fails it stays where it is, forgotten until
    /// the next start tries again.
    pub(crate) fn set_aside_unread(&mut self, segment: Segment, suffix: &str) {
        if let Some(pos) = self.sealed.iter().position(|s| s.index == segment.index) {
            let bytes = self.sealed.remove(pos).map_or(0, |s| s.bytes);
            self.total_bytes = self.total_bytes.saturating_sub(bytes);
        }
        let from = self.path_of(segment.index);
        let dir = self.dir.join(REJECTED_DIR);
        // Indices start again at 1 once the spool empties: an earlier run's file of the
        // same name is kept, and this one takes the next free name.
        let base = format!("{:020}.{suffix}", segment.index);
        let to = (0..1_000)
            .map(|n| match n {
                0 => dir.join(&base),
                n => dir.join(format!("{base}.{n}")),
            })
            .find(|to| std::fs::symlink_metadata(to).is_err())
            .unwrap_or_else(|| dir.join(&base));
        let moved = own_directory(&dir)
            .and_then(|()| std::fs::rename(&from, &to))
            .map_err(|e| AuditError::io("move aside", &from, e));
        let bound = self.read_bound();
        match moved {
            Ok(()) => tracing::error!(
                path = %to.display(), kind = suffix, bound,
                "an audit spool file the sink cannot have written (larger than it writes, or \
                 not a regular file) was set aside unread"
            ),
            Err(e) => tracing::error!(
                error = %e, kind = suffix, bound,
                "an audit spool file the sink cannot have written is skipped unread"
            ),
        }
    }

    pub(crate) fn path_of(&self, index: u64) -> PathBuf {
        self.dir.join(format!("{index:020}.jsonl"))
    }

    /// Keeps a message the receiver refused on its own in `rejected/`, in a file named
    /// like a segment under an index no segment takes (the same line format: moved back
    /// into the spool directory, it is replayed), synced before this returns. `None`
    /// when `rejected/` has no room left under its cap.
    pub(crate) fn set_aside(&mut self, message: &Message) -> Result<Option<PathBuf>, AuditError> {
        let index = match self.rejected.current {
            Some((index, bytes)) if bytes < self.segment_bytes => index,
            _ => {
                let index = self.next_index;
                self.next_index = self.next_index.saturating_add(1);
                self.rejected.current = Some((index, 0));
                index
            }
        };
        let kept =
            self.append_rejected(&format!("{index:020}.jsonl"), &[&message_line(message)])?;
        if let (Some((_, bytes)), Some((_, added))) = (&mut self.rejected.current, &kept) {
            *bytes = bytes.saturating_add(*added);
        }
        Ok(kept.map(|(path, _)| path))
    }

    /// Keeps the lines of segment `segment` that could not be read in
    /// `rejected/{segment}.unreadable`, synced before this returns: they are not sent,
    /// but what the spool held is not lost either. `None` when `rejected/` has no room.
    pub(crate) fn set_aside_unreadable(
        &mut self,
        segment: u64,
        lines: &[Bytes],
    ) -> Result<Option<PathBuf>, AuditError> {
        let lines: Vec<&[u8]> = lines.iter().map(|line| &line[..]).collect();
        let kept = self.append_rejected(&format!("{segment:020}.unreadable"), &lines)?;
        Ok(kept.map(|(path, _)| path))
    }

    /// Appends `lines` to the file `name` of `rejected/` (after ending a line a crash
    /// cut short there) and syncs it and the directory; returns its path and the bytes
    /// added, or `None` if they would take `rejected/` past its cap.
    fn append_rejected(
        &mut self,
        name: &str,
        lines: &[&[u8]],
    ) -> Result<Option<(PathBuf, u64)>, AuditError> {
        let len = lines.iter().fold(0u64, |sum, line| {
            sum.saturating_add(u64::try_from(line.len()).unwrap_or(u64::MAX))
        });
        // One byte more, for a line break a crash may have left out.
        if self.rejected.bytes.saturating_add(len).saturating_add(1) > self.max_bytes {
            return Ok(None);
        }
        let dir = self.dir.join(REJECTED_DIR);
        own_directory(&dir).map_err(|e| AuditError::io("create directory", &dir, e))?;
        let path = dir.join(name);
        let mut file = append_to(&path).map_err(|e| AuditError::io("create", &path, e))?;
        let cut_short = ends_mid_line(&file).map_err(|e| AuditError::io("read", &path, e))?;
        let added = len.saturating_add(u64::from(cut_short));
        let before = file.metadata().map(|m| m.len());
        let ended = if cut_short { &b"\n"[..] } else { &[] };
        let written = std::iter::once(ended)
            .chain(lines.iter().copied())
            .try_for_each(|line| file.write_all(line))
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            // A write that fails half-way still takes what it wrote; one that wrote
            // nothing (a full disk, retried until it frees) must not fill the cap.
            let grown = match (before, file.metadata().map(|m| m.len())) {
                (Ok(before), Ok(after)) => after.saturating_sub(before),
                _ => added,
            };
            self.rejected.bytes = self.rejected.bytes.saturating_add(grown);
            return Err(AuditError::io("write", &path, e));
        }
        self.rejected.bytes = self.rejected.bytes.saturating_add(added);
        sync_dir(&dir)?;
        Ok(Some((path, added)))
    }

    /// Bytes waiting in the spool.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The oldest segment to replay, sealing the current one if nothing else waits.
    pub(crate) fn oldest(&mut self) -> Result<Option<Segment>, AuditError> {
        if self.sealed.is_empty() && self.current.as_ref().is_some_and(|c| !c.is_empty()) {
            self.sync_current()?;
            self.seal();
        }
        self.set_aside_oversized();
        Ok(self.sealed.front().copied())
    }

    /// Records the new size of a sealed segment after [`rewrite_segment`].
    pub(crate) fn resize(&mut self, index: u64, bytes: u64) {
        if let Some(segment) = self.sealed.iter_mut().find(|s| s.index == index) {
            self.total_bytes = self
                .total_bytes
                .saturating_sub(segment.bytes)
                .saturating_add(bytes);
            segment.bytes = bytes;
        }
    }

    /// Forgets a replayed segment and deletes its file. If the file cannot be deleted it
    /// is still forgotten (so it is not replayed in a loop); a restart replays it once
    /// more, with the same message ids, which receivers deduplicate.
    pub(crate) fn remove(&mut self, segment: Segment) -> Result<(), AuditError> {
        if let Some(pos) = self.sealed.iter().position(|s| s.index == segment.index) {
            let bytes = self.sealed.remove(pos).map_or(0, |s| s.bytes);
            self.total_bytes = self.total_bytes.saturating_sub(bytes);
        }
        let path = self.path_of(segment.index);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(AuditError::io("remove", path, e)),
            _ => Ok(()),
        }
    }
}

/// A segment's records as messages, oldest first: a message stays as it was first
/// formed, and each run of loose entries is cut into new messages of up to `batch_size`
/// entries. Returns whether any new message was formed.
pub(crate) fn into_messages(records: Vec<Record>, batch_size: usize) -> (Vec<Message>, bool) {
    fn form(loose: &mut Vec<EncodedEntry>, messages: &mut Vec<Message>) -> bool {
        if loose.is_empty() {
            return false;
        }
        messages.push(Message::of(loose));
        loose.clear();
        true
    }
    let batch_size = batch_size.max(1);
    let mut messages = Vec::new();
    let mut loose = Vec::new();
    let mut formed = false;
    for record in records {
        match record {
            Record::Entry(entry) => loose.push(entry),
            Record::Message(message) => {
                formed |= form(&mut loose, &mut messages);
                messages.push(message);
            }
        }
        if loose.len() >= batch_size {
            formed |= form(&mut loose, &mut messages);
        }
    }
    formed |= form(&mut loose, &mut messages);
    (messages, formed)
}

/// Replaces a sealed segment's file with `messages` (written, synced, then renamed over
/// it, so a crash leaves either the old file or the new one). Returns the new size.
pub(crate) fn rewrite_segment(path: &Path, messages: &[Message]) -> Result<u64, AuditError> {
    let temporary = rewrite_path(path);
    let write = || -> std::io::Result<u64> {
        // Created anew: whatever was left at that name (a link too) is not written through.
        let _ = std::fs::remove_file(&temporary);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        let mut bytes = 0;
        for message in messages {
            let line = message_line(message);
            out.write_all(&line)?;
            bytes += line.len() as u64;
        }
        out.into_inner()
            .map_err(std::io::IntoInnerError::into_error)?
            .sync_data()?;
        Ok(bytes)
    };
    let written = write()
        .map_err(|e| AuditError::io("write", &temporary, e))
        .and_then(|bytes| {
            std::fs::rename(&temporary, path)
                .map_err(|e| AuditError::io("replace", path, e))
                .map(|()| bytes)
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    let bytes = written?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::test_entry::encoded;
    use crate::webhook::segment_read::{SegmentFile, SegmentRead, read_segment};

    #[test]
    fn segment_names_are_strict() {
        assert_eq!(segment_index("00000000000000000042.jsonl"), Some(42));
        assert_eq!(segment_index("42.jsonl"), None);
        assert_eq!(segment_index("0000000000000000004x.jsonl"), None);
        assert_eq!(segment_index("00000000000000000042.jsonl.tmp"), None);
        assert_eq!(
            segment_index("04611686018427387904.jsonl"),
            Some(MAX_SEGMENT_INDEX)
        );
        assert_eq!(segment_index("04611686018427387905.jsonl"), None);
    }

    /// Regression: a record went into the segment's buffer and was counted written
    /// before it reached the disk, so a full disk (here, a file-size limit of zero) lost
    /// it with nothing dropped or reported, and sealed a segment whose bytes never came.
    /// Run in a child process, where every write to a file fails (and the signal it
    /// would raise is ignored).
    #[test]
    fn records_a_full_disk_refuses_count_as_dropped_and_leave_nothing_to_replay() {
        const CHILD: &str = "GATEWAY_AUDIT_TEST_NO_ROOM";
        if std::env::var_os(CHILD).is_none() {
            let name = "webhook::spool::tests::\
                        records_a_full_disk_refuses_count_as_dropped_and_leave_nothing_to_replay";
            let status = std::process::Command::new("sh")
                .args(["-c", r#"trap "" XFSZ; ulimit -f 0; exec "$0" "$@""#])
                .arg(std::env::current_exe().unwrap())
                .args([name, "--exact", "--test-threads=1"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&status.stdout);
            assert!(
                status.status.success(),
                "the test failed in its child: {said}"
            );
            assert!(said.contains("1 passed"), "the child ran it: {said}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        let appended = spool.append(&loose(&[encoded(1), encoded(2)]));
        assert_eq!((appended.written, appended.dropped), (0, 2));
        assert!(appended.error.is_some());
        assert_eq!(spool.total_bytes(), 0);
        assert_eq!(spool.oldest().unwrap(), None, "nothing to replay");
    }

    #[test]
    fn a_segment_numbered_at_the_end_of_the_count_neither_panics_nor_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let foreign = dir.path().join(format!("{}.jsonl", u64::MAX));
        std::fs::write(&foreign, "{\"x\":1}\n").unwrap();
        let last = dir.path().join(format!("{MAX_SEGMENT_INDEX:020}.jsonl"));
        let line = encoded(0).line().to_vec();
        std::fs::write(&last, &line).unwrap();

        let mut spool = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        let appended = spool.append(&loose(&[encoded(1)]));
        assert!(appended.error.is_none(), "{:?}", appended.error);
        assert_eq!(appended.written, 1);
        assert_eq!(spool.oldest().unwrap().unwrap().index, MAX_SEGMENT_INDEX);
        assert!(spool.path_of(MAX_SEGMENT_INDEX + 1).exists());
        assert_eq!(
            std::fs::read(&last).unwrap(),
            line,
            "the last segment is kept"
        );
        assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "{\"x\":1}\n");
    }

    /// Reads a segment a test wrote, which must be fit to read.
    fn read_fit(path: &Path) -> SegmentRead {
        match read_segment(path, u64::MAX).unwrap() {
            SegmentFile::Read(read) => read,
            SegmentFile::Unfit(why) => panic!("{} is {why}", path.display()),
        }
    }

    fn loose(entries: &[EncodedEntry]) -> Vec<Record> {
        entries.iter().cloned().map(Record::Entry).collect()
    }

    /// Reads and removes every segment, oldest first, none corrupt: the ids of their
    /// entries, in order.
    fn replay_all(spool: &mut Spool) -> Vec<Uuid> {
        let mut replayed = Vec::new();
        while let Some(segment) = spool.oldest().unwrap() {
            let SegmentRead {
                records, corrupt, ..
            } = read_fit(&spool.path_of(segment.index));
            assert_eq!(corrupt, 0);
            replayed.extend(entries_of(records).iter().map(EncodedEntry::id));
            spool.remove(segment).unwrap();
        }
        replayed
    }

    fn entries_of(records: Vec<Record>) -> Vec<EncodedEntry> {
        records
            .into_iter()
            .map(|record| match record {
                Record::Entry(entry) => entry,
                Record::Message(message) => panic!("a message: {message:?}"),
            })
            .collect()
    }

    #[test]
    fn segments_rotate_replay_in_order_and_the_cap_drops_only_the_excess() {
        let dir = tempfile::tempdir().unwrap();
        let line = encoded(0).line().len() as u64;
        // Room for 10 entries, 4 per segment.
        let mut spool = Spool::open(dir.path(), 10 * line, 4 * line).unwrap();
        let batch: Vec<_> = (0..12).map(encoded).collect();
        let appended = spool.append(&loose(&batch));
        assert_eq!((appended.written, appended.dropped), (10, 2));
        assert!(appended.error.is_none());
        assert_eq!(spool.total_bytes(), 10 * line);
        drop(spool);

        // A new spool over the same directory replays segments oldest first.
        let mut spool = Spool::open(dir.path(), 10 * line, 4 * line).unwrap();
        assert_eq!(spool.total_bytes(), 10 * line);
        let replayed = replay_all(&mut spool);
        let expected: Vec<_> = batch[..10].iter().map(EncodedEntry::id).collect();
        assert_eq!(replayed, expected);
        assert_eq!(spool.total_bytes(), 0);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [LOCK_FILE], "no segment left");
        // Room again once replayed; the open segment is sealed for replay on demand.
        assert_eq!(spool.append(&loose(&batch[10..])).written, 2);
        let segment = spool.oldest().unwrap().unwrap();
        assert_eq!(segment.bytes, 2 * line);
    }

    #[test]
    fn a_segment_larger_than_the_sink_writes_is_set_aside_unread() {
        let dir = tempfile::tempdir().unwrap();
        let segment_bytes = 1024;
        let first = encoded(0);
        let last = encoded(2);
        std::fs::write(dir.path().join(format!("{:020}.jsonl", 1)), first.line()).unwrap();
        std::fs::write(dir.path().join(format!("{:020}.jsonl", 3)), last.line()).unwrap();
        // Sparse: reading it would allocate 64 MiB and more.
        let huge = dir.path().join(format!("{:020}.jsonl", 2));
        let huge_len = segment_bytes + MAX_RECORD_BYTES + 1;
        File::create(&huge).unwrap().set_len(huge_len).unwrap();

        let mut spool = Spool::open(dir.path(), 1 << 30, segment_bytes).unwrap();
        let line = |e: &EncodedEntry| e.line().len() as u64;
        assert_eq!(spool.total_bytes(), line(&first) + line(&last));
        let replayed = replay_all(&mut spool);
        assert_eq!(replayed, [first.id(), last.id()]);
        assert!(!huge.exists());
        let aside = dir
            .path()
            .join(REJECTED_DIR)
            .join(format!("{:020}.oversized", 2));
        assert_eq!(std::fs::metadata(aside).unwrap().len(), huge_len);
    }

    #[test]
    fn corrupt_partial_and_foreign_lines_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000001.jsonl");
        let (first, second) = (encoded(1), encoded(2));
        let line = |e: &EncodedEntry| String::from_utf8(e.line().to_vec()).unwrap();
        // JSON that has an id but is not an audit entry is as corrupt as broken JSON:
        // it must not be signed and sent as one of ours.
        let foreign = format!("{{\"id\":\"{}\",\"note\":\"not ours\"}}", Uuid::now_v7());
        let text = format!(
            "{}{{broken\n\n{foreign}\n{}{{\"id\":\"",
            line(&first),
            line(&second)
        );
        std::fs::write(&path, text).unwrap();
        let read = read_fit(&path);
        assert_eq!(read.corrupt, 3);
        assert_eq!(entries_of(read.records), [first, second]);
        // Each unreadable line is kept as it was, the cut-short last one completed.
        let kept: Vec<_> = read.unreadable.iter().map(|l| &l[..]).collect();
        let foreign_line = format!("{foreign}\n");
        let expected = [&b"{broken\n"[..], foreign_line.as_bytes(), b"{\"id\":\"\n"];
        assert_eq!(kept, expected);
    }

    #[test]
    fn messages_come_back_byte_for_byte_and_loose_entries_are_grouped_once() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<_> = (0..12).map(encoded).collect();
        let first = Message::of(&entries[0..3]);
        let second = Message::of(&entries[8..10]);
        let mut records = vec![Record::Message(first.clone())];
        records.extend(loose(&entries[3..8]));
        records.push(Record::Message(second.clone()));
        records.extend(loose(&entries[10..12]));
        let mut spool = Spool::open(dir.path(), u64::MAX, u64::MAX).unwrap();
        let appended = spool.append(&records);
        assert_eq!((appended.written, appended.dropped), (12, 0));
        let segment = spool.oldest().unwrap().unwrap();
        let path = spool.path_of(segment.index);

        let SegmentRead {
            records: read,
            corrupt,
            ..
        } = read_fit(&path);
        assert_eq!((read.len(), corrupt), (9, 0));
        let (messages, formed) = into_messages(read, 2);
        assert!(formed);
        let expected = vec![
            first,
            Message::of(&entries[3..5]),
            Message::of(&entries[5..7]),
            Message::of(&entries[7..8]),
            second,
            Message::of(&entries[10..12]),
        ];
        assert_eq!(messages, expected);

        // Rewritten as messages only, the segment reads back as the same messages, even
        // with another batch size.
        let bytes = rewrite_segment(&path, &messages).unwrap();
        spool.resize(segment.index, bytes);
        assert_eq!(spool.total_bytes(), bytes);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes);
        assert!(!rewrite_path(&path).exists());
        let SegmentRead {
            records: read,
            corrupt,
            ..
        } = read_fit(&path);
        assert_eq!(corrupt, 0);
        assert_eq!(into_messages(read, 100), (expected, false));
    }

    #[test]
    fn damaged_message_lines_count_their_entries_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000001.jsonl");
        let message = Message::of(&[encoded(0), encoded(1), encoded(2)]);
        let whole = String::from_utf8(message_line(&message)).unwrap();
        let id = message.id();
        let cut = &whole[..whole.len() / 2];
        let foreign = r#"{"entries":[{"id":"0190f0b8-3c4e-7a6b-8c3d-2e1f0a9b8c7d"}]}"#;
        let text = format!(
            "{whole}{cut}\n{id} 2 {}\nmsg_nothex 1 {{\"entries\":[]}}\n{id} 99999999999 {{}}\n\
             {id} 1 {foreign}\n",
            String::from_utf8_lossy(message.body()),
        );
        std::fs::write(&path, text).unwrap();
        let SegmentRead {
            records,
            corrupt,
            unreadable,
        } = read_fit(&path);
        assert_eq!(unreadable.len(), 5);
        // The cut line loses its 3 entries, the wrong count the 2 it claims, the bad id
        // one line, the absurd count no more than its body could hold, and the body
        // whose entry is not an audit entry its one.
        assert_eq!(corrupt, 3 + 2 + 1 + 1 + 1);
        assert_eq!(records.len(), 1);
        assert!(matches!(&records[0], Record::Message(m) if *m == message));
    }
}
