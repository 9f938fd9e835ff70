//! The JSONL file itself: appending whole lines, rotating by size, and the thread that
//! syncs it to disk (group commit for syncs) and follows its path.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gateway_model::FsyncPolicy;
use tokio::sync::watch;

use crate::AuditError;
use crate::exclusive::{ExclusiveUse, lock_beside};
use crate::jsonl_sink::failed_ranges::FailedRanges;
use crate::jsonl_sink::file_identity::names_another_file;
use crate::jsonl_sink::{JsonlOptions, rotated_path};
use crate::path_check::{Want, creatable};
use crate::regular_file::ends_mid_line;

/// The shortest wait between interval syncs, whatever the options say.
const MIN_FSYNC_INTERVAL: Duration = Duration::from_millis(1);
/// Rotated files whose sync is still pending before one is synced inline.
const MAX_RETIRED: usize = 16;
/// How often the sync thread checks that the path still names the file being written.
const PATH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Makes a file's written data durable: `File::sync_data`, or a fault injector in tests
/// (a real file cannot be made to fail its sync on demand).
pub(crate) trait SyncFile: Send + Sync {
    /// Syncs the data written to `file` so far.
    fn sync_data(&self, file: &File) -> std::io::Result<()>;
}

/// The real sync: [`File::sync_data`].
pub(crate) struct OsSync;

impl SyncFile for OsSync {
    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        file.sync_data()
    }
}

/// How far syncing went, and which entries a failed sync covered.
#[derive(Clone, Default)]
pub(super) struct SyncProgress {
    /// Every entry up to this sequence number has been through a sync.
    pub(super) through: u64,
    /// The entries whose sync failed, every failed sync kept (not only the latest).
    failures: FailedRanges,
}

impl SyncProgress {
    /// Why a sync covering an entry in `first..=last` failed, if one did (once
    /// `through >= last`).
    pub(super) fn failure_in(&self, first: u64, last: u64) -> Option<&str> {
        self.failures.find(first, last).map(|message| &**message)
    }
}

/// A rotated file whose sync is pending.
struct Retired {
    file: Arc<File>,
    /// The sequence number of the last entry it holds.
    last: u64,
}

struct FileState {
    file: Arc<File>,
    /// The current file's real length.
    size: u64,
    /// The length past which the next entry rotates the file (pushed further after a
    /// failed rotation, never by pretending the file is smaller than it is).
    rotate_after: u64,
    written: u64,
    sync_wanted: u64,
    synced: u64,
    retired: Vec<Retired>,
    broken_tail: bool,
    /// A rotation renamed files since the directory was last synced.
    dir_unsynced: bool,
}

/// The audit file, its rotation, and the state the sync thread works from.
pub(super) struct JsonlFile {
    path: PathBuf,
    options: JsonlOptions,
    state: Mutex<FileState>,
    wake: Condvar,
    progress: watch::Sender<SyncProgress>,
    /// How many times the path was found naming another file, or none, and reopened.
    reopened: watch::Sender<u64>,
    /// The path names a file this sink cannot open (an error was logged).
    path_lost: AtomicBool,
    /// The sink was closed: the sync thread syncs what is due and ends. Kept out of
    /// the file's lock, which a write stuck on a disk that stopped answering holds.
    closed: AtomicBool,
    sync: Arc<dyn SyncFile>,
}

/// `Ok` for a file that was not there to remove or rename.
fn ignore_missing(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Syncs the directory holding `path` (its names: renames and new files).
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Where a rotation creates the next file before it takes `path`'s place.
fn rotating_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".rotating");
    PathBuf::from(name)
}

fn open_append(path: &Path) -> Result<(File, u64, bool), AuditError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(|e| AuditError::io("open", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| AuditError::io("inspect", path, e))?
        .len();
    let unterminated =
        ends_mid_line(&file).map_err(|e| AuditError::io("read the end of", path, e))?;
    Ok((file, size, unterminated))
}

impl JsonlFile {
    /// Opens (creating it and its directory if needed) `path`; a half-written last line
    /// (a crash mid-write) gets a line break so the next entry starts on its own line.
    pub(super) fn open(
        path: PathBuf,
        options: JsonlOptions,
        sync: Arc<dyn SyncFile>,
    ) -> Result<(Self, ExclusiveUse), AuditError> {
        creatable(&path, Want::File)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| AuditError::io("create directory", dir, e))?;
        }
        let claim = ExclusiveUse::claim(lock_beside(&path), &path)?;
        let (file, mut size, unterminated) = open_append(&path)?;
        if unterminated {
            (&file)
                .write_all(b"\n")
                .map_err(|e| AuditError::io("terminate the last line of", &path, e))?;
            size += 1;
        }
        let opened = Self {
            path,
            options,
            state: Mutex::new(FileState {
                file: Arc::new(file),
                size,
                rotate_after: options.rotate_bytes,
                written: 0,
                sync_wanted: 0,
                synced: 0,
                retired: Vec::new(),
                broken_tail: false,
                dir_unsynced: false,
            }),
            wake: Condvar::new(),
            progress: watch::Sender::new(SyncProgress::default()),
            reopened: watch::Sender::new(0),
            path_lost: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            sync,
        };
        Ok((opened, claim))
    }

    fn lock(&self) -> MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The file entries are appended to.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The sync and rotation options.
    pub(super) fn options(&self) -> JsonlOptions {
        self.options
    }

    /// Writes consecutive lines (`buf`, split by `lens`), rotating at line boundaries
    /// as the options say, with as few `write` calls as rotation allows. The lines take
    /// the next sequence numbers, failed or not. A failure comes with how many lines
    /// were written whole before it: those are in a file, only the rest failed.
    pub(super) fn write_lines(
        &self,
        buf: &[u8],
        lens: &[usize],
    ) -> Result<(), (usize, AuditError)> {
        let mut st = self.lock();
        let mut result = Ok(());
        if st.broken_tail {
            match (&*st.file).write_all(b"\n") {
                Ok(()) => {
                    st.broken_tail = false;
                    st.size = st.size.saturating_add(1);
                }
                // Lines glued to a broken one would not read back: fail them instead.
                Err(e) => {
                    let e = AuditError::io("terminate the last line of", &self.path, e);
                    result = Err((0, e));
                }
            }
        }
        let mut start = 0;
        let mut lines = 0;
        while result.is_ok() && start < buf.len() {
            let (end, taken) = Self::run_before_rotation(&st, &lens[lines..], start);
            if st.size > 0 && st.size + (end - start) as u64 > st.rotate_after {
                // The lines written so far, this call's included, stay in the old file.
                let last = st.written + lines as u64;
                self.rotate_or_postpone(&mut st, last);
            }
            if let Err(e) = (&*st.file).write_all(&buf[start..end]) {
                // A partial write stays, never cut off: the file may have grown by other
                // hands too (a second writer, an operator's `>>`), and cutting back to our
                // own count would take their lines, or ours before them, with it. The
                // next line starts on a fresh one instead, so the torn one reads back as
                // one skipped line.
                if let Ok(meta) = st.file.metadata() {
                    st.broken_tail |= meta.len() != st.size;
                    st.size = meta.len();
                } else {
                    st.broken_tail = true;
                }
                result = Err((lines, AuditError::io("append to", &self.path, e)));
                break;
            }
            st.size += (end - start) as u64;
            start = end;
            lines += taken;
        }
        // Failed lines count as written too, so sequence numbers stay aligned.
        st.written += lens.len() as u64;
        if self.options.fsync == FsyncPolicy::EveryEntry {
            st.sync_wanted = st.written;
            drop(st);
            self.wake.notify_one();
        }
        result
    }

    /// The longest run of `lens` (starting at byte `start`) that fits before the next
    /// rotation, at least one line: its end byte and its number of lines.
    fn run_before_rotation(st: &FileState, lens: &[usize], start: usize) -> (usize, usize) {
        let mut end = start;
        let mut taken = 0;
        for len in lens {
            let grown = st.size + (end - start + len) as u64;
            if taken > 0 && grown > st.rotate_after {
                break;
            }
            end += len;
            taken += 1;
        }
        (end, taken)
    }

    fn rotate_or_postpone(&self, st: &mut FileState, last: u64) {
        if let Err(e) = self.rotate(st, last) {
            tracing::warn!(error = %e, "audit file rotation failed; still appending to the current file");
            // Try again after another `rotate_bytes`.
            // `rotate_bytes` has no upper bound in the config: saturate.
            st.rotate_after = st.size.saturating_add(self.options.rotate_bytes);
        }
    }

    /// Starts a new file; the old one, holding entries up to `last`, is synced later
    /// (under `fsync = "never"` only by a flush, or once too many wait).
    ///
    /// The new file is created first, under a temporary name, so a rotation that cannot
    /// create it (no file descriptor left, a full disk) has moved nothing and is tried
    /// again later; one rename then puts it at the path, so the path always names the file
    /// being written, and no failed rotation can shift or delete the rotated files.
    fn rotate(&self, st: &mut FileState, last: u64) -> Result<(), AuditError> {
        let path = &self.path;
        let fresh_path = rotating_path(path);
        ignore_missing(std::fs::remove_file(&fresh_path))
            .map_err(|e| AuditError::io("rotate (remove)", &fresh_path, e))?;
        let fresh = OpenOptions::new()
            .create_new(true)
            .append(true)
            .read(true)
            .open(&fresh_path)
            .map_err(|e| AuditError::io("rotate (create)", &fresh_path, e))?;
        if let Err(e) = self.move_current_aside() {
            let _ = std::fs::remove_file(&fresh_path);
            return Err(e);
        }
        // With no file kept, this replaces the current one in the same step.
        if let Err(e) = std::fs::rename(&fresh_path, path) {
            if self.options.keep_rotated > 0 {
                let _ = std::fs::rename(rotated_path(path, 1), path);
            }
            let _ = std::fs::remove_file(&fresh_path);
            return Err(AuditError::io("rotate (rename)", &fresh_path, e));
        }
        self.replace_file(st, fresh, 0, last);
        Ok(())
    }

    /// Makes `fresh` (`size` bytes long) the file written from now on; the old one,
    /// holding entries up to `last`, waits for its sync as a rotated file.
    fn replace_file(&self, st: &mut FileState, fresh: File, size: u64, last: u64) {
        let old = std::mem::replace(&mut st.file, Arc::new(fresh));
        st.size = size;
        st.broken_tail = false;
        st.dir_unsynced = true;
        st.rotate_after = self.options.rotate_bytes;
        if st.retired.len() >= MAX_RETIRED {
            let oldest = st.retired.remove(0);
            self.sync_retired_inline(st, &oldest);
        }
        st.retired.push(Retired { file: old, last });
        if self.options.fsync != FsyncPolicy::Never {
            st.sync_wanted = st.sync_wanted.max(st.written);
            self.wake.notify_one();
        }
    }

    /// Shifts the rotated files up by one, dropping the oldest only when every name up to
    /// `<path>.<keep>` is taken, then renames the current file to `<path>.1` (nothing when
    /// no rotated file is kept). A current file removed from under the sink is passed
    /// over: the new one takes its place.
    ///
    /// A rotation that failed after its shift (its last rename, or one of the shift's)
    /// left a free name below the oldest: the next one shifts into it instead of dropping
    /// another rotated file for each try.
    fn move_current_aside(&self) -> Result<(), AuditError> {
        let path = &self.path;
        let keep = self.options.keep_rotated;
        if keep == 0 {
            return Ok(());
        }
        let free = (1..=keep).find(|&n| std::fs::symlink_metadata(rotated_path(path, n)).is_err());
        let top = if let Some(free) = free {
            free
        } else {
            let oldest = rotated_path(path, keep);
            ignore_missing(std::fs::remove_file(&oldest))
                .map_err(|e| AuditError::io("rotate (remove)", &oldest, e))?;
            keep
        };
        for n in (1..top).rev() {
            let from = rotated_path(path, n);
            ignore_missing(std::fs::rename(&from, rotated_path(path, n + 1)))
                .map_err(|e| AuditError::io("rotate (rename)", &from, e))?;
        }
        ignore_missing(std::fs::rename(path, rotated_path(path, 1)))
            .map_err(|e| AuditError::io("rotate (rename)", path, e))
    }

    /// Syncs a rotated file on the writer's thread (too many are waiting). A failure
    /// fails every entry not yet synced up to the file's last: a superset of its own,
    /// which waiters will see because it is published before the sync thread, which
    /// needs the lock held here, can move `through` past them.
    fn sync_retired_inline(&self, st: &FileState, retired: &Retired) {
        if let Err(e) = self.sync.sync_data(&retired.file) {
            tracing::error!(path = %self.path.display(), error = %e, "could not sync a rotated audit file");
            let message: Arc<str> = e.to_string().into();
            let first = st.synced + 1;
            self.progress
                .send_modify(|p| p.failures.add(first, retired.last, message));
        }
    }

    /// Asks for a sync of everything written so far; returns the sequence number it
    /// covers, or `None` once closed.
    pub(super) fn request_sync(&self) -> Option<u64> {
        let target = {
            let mut st = self.lock();
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            st.sync_wanted = st.sync_wanted.max(st.written);
            st.written
        };
        self.wake.notify_one();
        Some(target)
    }

    /// Every entry up to this sequence number has been through a sync, as last
    /// published (read without the file's lock, which a stuck write may hold).
    pub(super) fn synced_so_far(&self) -> u64 {
        self.progress.borrow().through
    }

    /// Follows how far syncing goes.
    pub(super) fn progress(&self) -> watch::Receiver<SyncProgress> {
        self.progress.subscribe()
    }

    /// Lets the sync thread finish: it syncs what is due, then ends.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Taking the lock a moment orders this with a sync thread about to wait, so the
        // wake-up is not lost; a lock held (by a write stuck in its system call) is not
        // waited for: the sync thread's wait ends within `PATH_CHECK_INTERVAL` anyway.
        drop(self.state.try_lock());
        self.wake.notify_one();
    }

    /// The sync thread: waits until a sync is due (per the policy), syncs, publishes;
    /// every [`PATH_CHECK_INTERVAL`] it also follows the path ([`Self::follow_path`]).
    pub(super) fn sync_loop(&self) {
        let policy = self.options.fsync;
        // At least a millisecond: `JsonlOptions` is public, and a zero interval would spin
        // this thread at full speed. One too long to add to a clock means never.
        let interval = self.options.fsync_interval.max(MIN_FSYNC_INTERVAL);
        let start = Instant::now();
        let mut next_sync = (policy == FsyncPolicy::Interval)
            .then(|| start.checked_add(interval))
            .flatten();
        let mut next_path_check = start + PATH_CHECK_INTERVAL;
        let mut st = self.lock();
        loop {
            let wake_at = next_sync.map_or(next_path_check, |at| at.min(next_path_check));
            let (guard, due) = self.wait_due(st, wake_at);
            st = guard;
            let now = Instant::now();
            if due || next_sync.is_some_and(|at| now >= at) {
                let target = if policy == FsyncPolicy::Never {
                    st.sync_wanted
                } else {
                    st.written
                };
                let closing = self.closed.load(Ordering::Acquire);
                if target > st.synced || (policy != FsyncPolicy::Never && !st.retired.is_empty()) {
                    st = self.sync_through(st, target);
                }
                // Counted from the sync's end: a slow disk's syncs do not run back to back.
                next_sync = next_sync.and_then(|_| Instant::now().checked_add(interval));
                if closing && (policy == FsyncPolicy::Never || st.synced >= st.written) {
                    break;
                }
            }
            if now >= next_path_check {
                st = self.follow_path(st);
                next_path_check = Instant::now() + PATH_CHECK_INTERVAL;
            }
        }
    }

    /// Waits until a sync is due or `wake_at` comes; returns whether a sync is due.
    fn wait_due<'a>(
        &'a self,
        st: MutexGuard<'a, FileState>,
        wake_at: Instant,
    ) -> (MutexGuard<'a, FileState>, bool) {
        // Under `never`, rotated files wait for a requested sync (a flush).
        let retired_due = self.options.fsync != FsyncPolicy::Never;
        let due = |s: &mut FileState| {
            self.closed.load(Ordering::Acquire)
                || s.sync_wanted > s.synced
                || (retired_due && !s.retired.is_empty())
        };
        let timeout = wake_at.saturating_duration_since(Instant::now());
        let (mut st, _) = self
            .wake
            .wait_timeout_while(st, timeout, |s| !due(s))
            .unwrap_or_else(PoisonError::into_inner);
        let is_due = due(&mut st);
        (st, is_due)
    }

    /// Follows the path: when it names another file, or none (the file was removed, or
    /// renamed and replaced, as logrotate's `create` does), the next entries go to the
    /// file at the path, created if missing, and the old file, which keeps what it holds,
    /// is synced as a rotated one. A file cut short in place (logrotate's
    /// `copytruncate`) has its size read again, so the next rotation counts from there.
    fn follow_path<'a>(&'a self, mut st: MutexGuard<'a, FileState>) -> MutexGuard<'a, FileState> {
        if let Ok(meta) = st.file.metadata() {
            st.size = st.size.min(meta.len());
        }
        let current = Arc::clone(&st.file);
        drop(st);
        if !names_another_file(&self.path, &current) {
            return self.lock();
        }
        // What the sink opens at the start, it opens again: a regular file, created if
        // missing (its directory is not: a directory gone may be a volume unmounted).
        let reopened = creatable(&self.path, Want::File).and_then(|()| open_append(&self.path));
        let mut st = self.lock();
        match reopened {
            // Checked again under the lock, which a rotation holds: one under way may
            // have had the path empty a moment, then put its own new file there.
            Ok((fresh, ..))
                if !names_another_file(&self.path, &st.file)
                    || names_another_file(&self.path, &fresh) => {}
            Ok((fresh, size, unterminated)) => {
                let last = st.written;
                self.replace_file(&mut st, fresh, size, last);
                st.broken_tail = unterminated;
                self.path_lost.store(false, Ordering::Relaxed);
                tracing::warn!(
                    path = %self.path.display(),
                    "the audit file was removed or replaced (by logrotate?); appending to the file now at its path"
                );
                self.reopened.send_modify(|n| *n += 1);
            }
            Err(e) => {
                if !self.path_lost.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        path = %self.path.display(),
                        error = %e,
                        "the audit file was removed or replaced, and no file can be opened at its path; entries still go to the old file"
                    );
                }
            }
        }
        st
    }

    /// Follows the path now, as the sync thread does every [`PATH_CHECK_INTERVAL`].
    #[cfg(test)]
    pub(super) fn follow_path_now(&self) {
        drop(self.follow_path(self.lock()));
    }

    /// Counts the times the path was reopened ([`Self::follow_path`]).
    #[cfg(test)]
    pub(super) fn reopened(&self) -> watch::Receiver<u64> {
        self.reopened.subscribe()
    }

    /// Syncs the retired files and the current one (without holding the lock), then
    /// publishes that entries up to `target` went through that sync.
    fn sync_through<'a>(
        &'a self,
        mut st: MutexGuard<'a, FileState>,
        target: u64,
    ) -> MutexGuard<'a, FileState> {
        let retired = std::mem::take(&mut st.retired);
        let file = Arc::clone(&st.file);
        let from = st.synced + 1;
        let renamed = std::mem::take(&mut st.dir_unsynced);
        drop(st);
        // After a rotation the directory is synced too, so the renames that put the
        // synced files under their names survive a power loss with them.
        let result = retired
            .iter()
            .try_for_each(|r| self.sync.sync_data(&r.file))
            .and_then(|()| self.sync.sync_data(&file))
            .and_then(|()| {
                if renamed {
                    sync_parent(&self.path)
                } else {
                    Ok(())
                }
            });
        drop(retired);
        let mut st = self.lock();
        st.synced = st.synced.max(target);
        if let Err(e) = &result {
            tracing::error!(path = %self.path.display(), error = %e, "audit file sync failed");
        }
        self.progress.send_modify(|p| {
            p.through = p.through.max(target);
            if let Err(e) = result {
                p.failures.add(from, target, e.to_string().into());
            }
        });
        st
    }
}
