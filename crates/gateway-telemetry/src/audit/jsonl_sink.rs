//! `JsonlSink`: audit entries appended to a JSON Lines file, synced per policy, rotated by size.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gateway_model::{AuditConfig, FsyncPolicy};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::audit::{AuditError, AuditFuture, AuditSink, EncodedEntry};
use crate::recording::{AuditCounters, AuditEvent};

const SINK: &str = "jsonl";

/// Rotated files whose sync is still pending before one is synced inline.
const MAX_RETIRED: usize = 16;

/// How the JSONL file is synced and rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonlOptions {
    /// When the file is synced to disk.
    pub fsync: FsyncPolicy,
    /// Sync period for [`FsyncPolicy::Interval`].
    pub fsync_interval: Duration,
    /// The file is rotated before an entry would take it past this size.
    pub rotate_bytes: u64,
    /// Rotated files kept, as `name.1` (newest) to `name.N`.
    pub keep_rotated: u32,
}

impl JsonlOptions {
    /// The options an [`AuditConfig`] states.
    pub fn from_config(config: &AuditConfig) -> Self {
        Self {
            fsync: config.fsync,
            fsync_interval: Duration::from_millis(config.fsync_interval_ms.max(1)),
            rotate_bytes: config.rotate_bytes,
            keep_rotated: config.keep_rotated,
        }
    }
}

impl Default for JsonlOptions {
    fn default() -> Self {
        Self::from_config(&AuditConfig::default())
    }
}

/// The path of the `n`-th rotated file: `name.n` next to `path`.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

#[derive(Clone, Default)]
struct SyncProgress {
    /// Every entry up to this sequence number has been through a sync.
    through: u64,
    /// The latest failed sync, if any.
    failure: Option<SyncFailure>,
}

#[derive(Clone)]
struct SyncFailure {
    from: u64,
    through: u64,
    message: Arc<str>,
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
    retired: Vec<Arc<File>>,
    closed: bool,
    broken_tail: bool,
}

/// Lines waiting to be written by whichever caller leads the next write.
#[derive(Default)]
struct Queue {
    /// The waiting lines, back to back.
    buf: Vec<u8>,
    /// The length of each waiting line, in order.
    lens: Vec<usize>,
    /// The sequence number of the last line queued.
    queued: u64,
    /// Whether a caller is writing queued lines now.
    leader: bool,
    /// Whether the sink was closed (kept here so queueing never waits on a write).
    closed: bool,
}

/// How far the written lines go, and which lines failed.
#[derive(Clone, Default)]
struct Appended {
    /// Every line up to this sequence number has been written (or has failed).
    through: u64,
    /// Recent write failures: `(first, last, message)`, oldest first.
    failures: Vec<(u64, u64, Arc<str>)>,
}

/// The writer role, held across a yield; dropping it writes whatever is queued.
struct Leadership<'a>(&'a JsonlSink);

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        self.0.write_queued();
    }
}

/// Failures remembered for waiting callers (older ones have long been reported).
const FAILURES_KEPT: usize = 16;

struct Shared {
    path: PathBuf,
    options: JsonlOptions,
    state: Mutex<FileState>,
    wake: Condvar,
    progress: watch::Sender<SyncProgress>,
    queue: Mutex<Queue>,
    appended: watch::Sender<Appended>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Appends audit entries to a JSON Lines file, one entry per line.
///
/// Lines are written with group commit: a caller queues its line and, if no one is
/// writing, writes every queued line itself in one `write` (it keeps going until the
/// queue is empty, so no line is left behind); callers who find a writer at work wait
/// for it. Concurrent callers never interleave, each line has reached the OS when its
/// `record` returns, and under load many lines share one system call. Syncing to disk happens
/// on a dedicated thread that batches requests (group commit): with
/// [`FsyncPolicy::EveryEntry`] `record` waits for the sync covering its entry; with
/// [`FsyncPolicy::Interval`] the thread syncs at most every interval; with
/// [`FsyncPolicy::Never`] only an explicit [`flush`](crate::AuditSink::flush) syncs.
/// Before an entry would take the file past `rotate_bytes`, the file becomes `name.1`
/// (older ones shift to `name.2` ... `name.N`, the oldest beyond `keep_rotated` is
/// deleted) and a new file is started.
pub struct JsonlSink {
    shared: Arc<Shared>,
    counters: AuditCounters,
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
    let mut unterminated = false;
    if size > 0 {
        let mut last = [0u8; 1];
        let mut reader = &file;
        reader
            .seek(SeekFrom::End(-1))
            .and_then(|_| reader.read_exact(&mut last))
            .map_err(|e| AuditError::io("read the end of", path, e))?;
        unterminated = last[0] != b'\n';
    }
    Ok((file, size, unterminated))
}

impl JsonlSink {
    /// Opens (creating it and its directory if needed) the file an [`AuditConfig`] names.
    pub fn open(config: &AuditConfig) -> Result<Self, AuditError> {
        Self::open_with(&config.file, JsonlOptions::from_config(config))
    }

    /// Opens (creating it and its directory if needed) `path` with `options`.
    ///
    /// If the file ends with a half-written line (a crash mid-write), a line break is
    /// appended first so the next entry starts on its own line.
    pub fn open_with(path: impl Into<PathBuf>, options: JsonlOptions) -> Result<Self, AuditError> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| AuditError::io("create directory", dir, e))?;
        }
        let (file, mut size, unterminated) = open_append(&path)?;
        if unterminated {
            (&file)
                .write_all(b"\n")
                .map_err(|e| AuditError::io("terminate the last line of", &path, e))?;
            size += 1;
        }
        let shared = Arc::new(Shared {
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
                closed: false,
                broken_tail: false,
            }),
            wake: Condvar::new(),
            progress: watch::Sender::new(SyncProgress::default()),
            queue: Mutex::new(Queue::default()),
            appended: watch::Sender::new(Appended::default()),
        });
        let for_thread = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("audit-jsonl-sync".into())
            .spawn(move || sync_loop(&for_thread))
            .map_err(|source| AuditError::Thread { sink: SINK, source })?;
        Ok(Self {
            shared,
            counters: AuditCounters::new(),
        })
    }

    /// The file entries are appended to.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The sync and rotation options.
    pub fn options(&self) -> JsonlOptions {
        self.shared.options
    }

    /// Appends one entry (synchronously, without waiting for a sync) and returns its
    /// sequence number in this sink.
    pub fn append(&self, entry: &EncodedEntry) -> Result<u64, AuditError> {
        let seq = self.enqueue(entry.line())?;
        loop {
            if self.lead_if_free() {
                continue;
            }
            let appended = self.shared.appended.borrow().clone();
            if appended.through >= seq {
                return Self::outcome(&appended, seq, &self.shared.path);
            }
            // Another caller is writing this line right now: it takes microseconds.
            std::thread::yield_now();
        }
    }

    /// Appends one entry, waiting (asynchronously) if another caller is writing it.
    async fn append_async(&self, line: &[u8]) -> Result<u64, AuditError> {
        let mut rx = self.shared.appended.subscribe();
        let seq = self.enqueue(line)?;
        if self.claim() {
            // Let the tasks that are ready queue their lines first, so they share this
            // write. If this future is dropped meanwhile, the guard writes them anyway.
            let leadership = Leadership(self);
            tokio::task::yield_now().await;
            drop(leadership);
        }
        loop {
            self.lead_if_free();
            let appended = rx.borrow_and_update().clone();
            if appended.through >= seq {
                return Self::outcome(&appended, seq, &self.shared.path);
            }
            if rx.changed().await.is_err() {
                return Err(AuditError::Closed { sink: SINK });
            }
        }
    }

    /// Queues `line`; returns its sequence number.
    fn enqueue(&self, line: &[u8]) -> Result<u64, AuditError> {
        let mut q = self.shared.queue();
        if q.closed {
            return Err(AuditError::Closed { sink: SINK });
        }
        q.buf.extend_from_slice(line);
        q.lens.push(line.len());
        q.queued += 1;
        Ok(q.queued)
    }

    /// Becomes the writer if no one is writing and lines are queued.
    fn claim(&self) -> bool {
        let mut q = self.shared.queue();
        if q.leader || q.lens.is_empty() {
            return false;
        }
        q.leader = true;
        true
    }

    /// If no one is writing and lines are queued, writes them all (synchronously, until
    /// the queue is empty). Returns whether this caller wrote anything.
    fn lead_if_free(&self) -> bool {
        if !self.claim() {
            return false;
        }
        self.write_queued();
        true
    }

    /// Writes every queued line, then gives up the writer role (the caller holds it).
    fn write_queued(&self) {
        let (mut buf, mut lens, mut through) = {
            let mut q = self.shared.queue();
            (
                std::mem::take(&mut q.buf),
                std::mem::take(&mut q.lens),
                q.queued,
            )
        };
        loop {
            let first = through - lens.len() as u64 + 1;
            let result = self.write_lines(&buf, &lens);
            self.shared.appended.send_modify(|a| {
                a.through = through;
                if let Err(e) = &result {
                    if a.failures.len() == FAILURES_KEPT {
                        a.failures.remove(0);
                    }
                    a.failures.push((first, through, e.to_string().into()));
                }
            });
            let mut q = self.shared.queue();
            if q.lens.is_empty() {
                q.leader = false;
                // Keep the (now empty) buffers' capacity for the next batch.
                buf.clear();
                lens.clear();
                q.buf = buf;
                q.lens = lens;
                return;
            }
            buf.clear();
            lens.clear();
            std::mem::swap(&mut buf, &mut q.buf);
            std::mem::swap(&mut lens, &mut q.lens);
            through = q.queued;
        }
    }

    /// Whether line `seq` was written, given how far writing went.
    fn outcome(appended: &Appended, seq: u64, path: &Path) -> Result<u64, AuditError> {
        match appended
            .failures
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&seq))
        {
            Some((_, _, message)) => Err(AuditError::io(
                "append to",
                path,
                std::io::Error::other(message.to_string()),
            )),
            None => Ok(seq),
        }
    }

    /// Writes consecutive lines (`buf`, split by `lens`), rotating at line boundaries
    /// as the options say, with as few `write` calls as rotation allows.
    fn write_lines(&self, buf: &[u8], lens: &[usize]) -> Result<(), AuditError> {
        let shared = &*self.shared;
        let mut st = shared.lock();
        if st.broken_tail && (&*st.file).write_all(b"\n").is_ok() {
            st.broken_tail = false;
            st.size += 1;
        }
        let mut start = 0;
        let mut lines = 0u64;
        let mut result = Ok(());
        while start < buf.len() {
            // The longest run of lines that fits before the next rotation (at least one).
            let mut end = start;
            let mut taken = 0;
            for len in &lens[usize::try_from(lines).unwrap_or(usize::MAX)..] {
                let grown = st.size + (end - start + len) as u64;
                if taken > 0 && grown > st.rotate_after {
                    break;
                }
                end += len;
                taken += 1;
            }
            if st.size > 0
                && st.size + (end - start) as u64 > st.rotate_after
                && let Err(e) = self.rotate(&mut st)
            {
                tracing::warn!(error = %e, "audit file rotation failed; still appending to the current file");
                // Try again after another `rotate_bytes`.
                st.rotate_after = st.size + shared.options.rotate_bytes;
            }
            if let Err(e) = (&*st.file).write_all(&buf[start..end]) {
                // Undo a partial write so the next entry is not glued to it.
                let size = st.size;
                if st.file.set_len(size).is_err() {
                    st.broken_tail = true;
                }
                result = Err(AuditError::io("append to", &shared.path, e));
                break;
            }
            st.size += (end - start) as u64;
            start = end;
            lines += taken;
        }
        // Failed lines count as written too, so sequence numbers stay aligned.
        st.written += lens.len() as u64;
        let written = st.written;
        if shared.options.fsync == FsyncPolicy::EveryEntry {
            st.sync_wanted = written;
            drop(st);
            shared.wake.notify_one();
        }
        if result.is_ok() {
            self.counters.add(AuditEvent::Written, lens.len() as u64);
        }
        result
    }

    fn rotate(&self, st: &mut FileState) -> Result<(), AuditError> {
        let path = &self.shared.path;
        let keep = self.shared.options.keep_rotated;
        let ignore_missing = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        if keep == 0 {
            ignore_missing(std::fs::remove_file(path))
                .map_err(|e| AuditError::io("rotate (remove)", path, e))?;
        } else {
            let oldest = rotated_path(path, keep);
            ignore_missing(std::fs::remove_file(&oldest))
                .map_err(|e| AuditError::io("rotate (remove)", &oldest, e))?;
            for n in (1..keep).rev() {
                let from = rotated_path(path, n);
                ignore_missing(std::fs::rename(&from, rotated_path(path, n + 1)))
                    .map_err(|e| AuditError::io("rotate (rename)", &from, e))?;
            }
            std::fs::rename(path, rotated_path(path, 1))
                .map_err(|e| AuditError::io("rotate (rename)", path, e))?;
        }
        let (file, size, _) = open_append(path)?;
        let old = std::mem::replace(&mut st.file, Arc::new(file));
        st.size = size;
        st.rotate_after = self.shared.options.rotate_bytes;
        if self.shared.options.fsync != FsyncPolicy::Never {
            if st.retired.len() >= MAX_RETIRED {
                let oldest = st.retired.remove(0);
                if let Err(e) = oldest.sync_data() {
                    tracing::warn!(error = %e, "could not sync a rotated audit file");
                }
            }
            st.retired.push(old);
            st.sync_wanted = st.sync_wanted.max(st.written);
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    async fn wait_synced(&self, seq: u64) -> Result<(), AuditError> {
        let mut rx = self.shared.progress.subscribe();
        let progress = rx
            .wait_for(|p| p.through >= seq)
            .await
            .map_err(|_| AuditError::Closed { sink: SINK })?;
        match &progress.failure {
            Some(f) if (f.from..=f.through).contains(&seq) => Err(AuditError::Sync {
                path: self.shared.path.clone(),
                message: f.message.to_string(),
            }),
            _ => Ok(()),
        }
    }

    async fn flush_until(&self, deadline: Instant) -> Result<(), AuditError> {
        let target = {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(AuditError::Closed { sink: SINK });
            }
            st.sync_wanted = st.sync_wanted.max(st.written);
            st.written
        };
        self.shared.wake.notify_one();
        match tokio::time::timeout_at(deadline, self.wait_synced(target)).await {
            Ok(result) => result,
            Err(_) => Err(AuditError::Timeout {
                sink: SINK,
                pending: target.saturating_sub(self.shared.lock().synced),
            }),
        }
    }

    fn close(&self) {
        self.shared.queue().closed = true;
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

fn sync_loop(shared: &Shared) {
    let policy = shared.options.fsync;
    let mut st = shared.lock();
    loop {
        let due = |s: &mut FileState| s.closed || s.sync_wanted > s.synced || !s.retired.is_empty();
        st = if policy == FsyncPolicy::Interval {
            shared
                .wake
                .wait_timeout_while(st, shared.options.fsync_interval, |s| !due(s))
                .unwrap_or_else(PoisonError::into_inner)
                .0
        } else {
            shared
                .wake
                .wait_while(st, |s| !due(s))
                .unwrap_or_else(PoisonError::into_inner)
        };
        let target = if policy == FsyncPolicy::Never {
            st.sync_wanted
        } else {
            st.written
        };
        let closing = st.closed;
        if target > st.synced || !st.retired.is_empty() {
            let retired = std::mem::take(&mut st.retired);
            let file = Arc::clone(&st.file);
            let from = st.synced + 1;
            drop(st);
            let result = retired
                .iter()
                .try_for_each(|f| f.sync_data())
                .and_then(|()| file.sync_data());
            drop(retired);
            st = shared.lock();
            st.synced = st.synced.max(target);
            if let Err(e) = &result {
                tracing::error!(path = %shared.path.display(), error = %e, "audit file sync failed");
            }
            shared.progress.send_modify(|p| {
                p.through = p.through.max(target);
                if let Err(e) = result {
                    p.failure = Some(SyncFailure {
                        from,
                        through: target,
                        message: e.to_string().into(),
                    });
                }
            });
        }
        if closing && (policy == FsyncPolicy::Never || st.synced >= st.written) {
            break;
        }
    }
}

impl AuditSink for JsonlSink {
    fn name(&self) -> &'static str {
        SINK
    }

    fn record_encoded<'a>(&'a self, entry: &'a EncodedEntry) -> AuditFuture<'a> {
        Box::pin(async move {
            let seq = self.append_async(entry.line()).await?;
            if self.shared.options.fsync == FsyncPolicy::EveryEntry {
                self.wait_synced(seq).await?;
            }
            Ok(())
        })
    }

    /// Syncs everything written so far (whatever the policy) within `deadline`.
    fn flush(&self, deadline: Instant) -> AuditFuture<'_> {
        Box::pin(self.flush_until(deadline))
    }

    fn shutdown(&self, deadline: Instant) -> AuditFuture<'_> {
        Box::pin(async move {
            let flushed = match self.flush_until(deadline).await {
                Err(AuditError::Closed { .. }) => Ok(()),
                other => other,
            };
            self.close();
            flushed
        })
    }
}

impl Drop for JsonlSink {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for JsonlSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlSink")
            .field("path", &self.shared.path)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}
