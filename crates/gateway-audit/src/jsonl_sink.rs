//! `JsonlSink`: audit entries appended to a JSON Lines file, synced per policy, rotated by size.

mod failed_ranges;
mod file_identity;
mod group_commit;
mod jsonl_file;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gateway_model::{AuditConfig, EVERY_ENTRY_SYNC_WAIT, FsyncPolicy};
use gateway_telemetry::{AuditCounters, AuditEvent};
use tokio::time::Instant;

use crate::exclusive::ExclusiveUse;
use crate::{AuditError, AuditFuture, AuditSink, EncodedEntry};

use group_commit::{GroupCommit, Queued, Refused};
use jsonl_file::{JsonlFile, OsSync, SyncFile};

const SINK: &str = "jsonl";

/// How the JSONL file is synced and rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonlOptions {
    /// When the file is synced to disk.
    pub fsync: FsyncPolicy,
    /// Sync period for [`FsyncPolicy::Interval`] (at least 1 ms, whatever is set).
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

/// The writer role, held across a yield; dropping it writes whatever is queued.
struct Leadership<'a>(&'a JsonlSink);

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        self.0.write_queued();
    }
}

/// Appends audit entries to a JSON Lines file, one entry per line.
///
/// Lines are written with group commit: a caller queues its line and, if no one is
/// writing, writes every queued line itself in one `write` (it keeps going until the
/// queue is empty, so no line is left behind); callers who find a writer at work wait
/// for it. Concurrent callers never interleave, each line has reached the OS when its
/// `record` returns, and under load many lines share one system call (when lines come
/// close together, the writer first lets the tasks that are ready queue theirs; a lone
/// line is written at once). Syncing to disk happens on a dedicated thread that batches
/// requests (group commit): with [`FsyncPolicy::EveryEntry`] `record` waits for the sync
/// covering its entry (at most [`EVERY_ENTRY_SYNC_WAIT`], then it fails with
/// [`AuditError::Timeout`]); with [`FsyncPolicy::Interval`] the thread syncs at most every
/// interval; with [`FsyncPolicy::Never`] only an explicit
/// [`flush`](crate::AuditSink::flush) syncs.
/// Before an entry would take the file past `rotate_bytes`, the file becomes `name.1`
/// (older ones shift to `name.2` ... `name.N`, the oldest beyond `keep_rotated` is
/// deleted) and a new file is started. About once a second the sync thread checks that
/// the path still names the file being written (on Unix): a file removed, or renamed
/// away and replaced as logrotate's `create` does, is followed to the one at the path,
/// created if missing.
///
/// A failed sync fails everyone waiting on an entry it covered (with
/// [`FsyncPolicy::EveryEntry`], that entry's `record`; under any policy, the next
/// `flush`), however many syncs pass or fail after it.
pub struct JsonlSink {
    file: Arc<JsonlFile>,
    commit: GroupCommit,
    counters: AuditCounters,
    /// The last entry a completed flush answered for: the next one answers from there.
    flushed: AtomicU64,
    /// This sink's hold on the file (`<file>.lock`): no other sink writes it meanwhile.
    _claim: ExclusiveUse,
}

impl JsonlSink {
    /// Checks, creating nothing, that [`JsonlSink::open`] could keep a trail at `path`:
    /// it and its lock file (`<path>.lock`) are each absent, or a regular file this
    /// process may read and append to, and the nearest existing ancestor is a directory
    /// (`check-config` reports what the sink would later fail on).
    ///
    /// ```
    /// use gateway_audit::JsonlSink;
    /// let dir = std::env::temp_dir();
    /// assert!(JsonlSink::check_path(&dir.join("new/audit.jsonl")).is_ok());
    /// assert!(JsonlSink::check_path(&dir).is_err(), "a directory");
    /// ```
    pub fn check_path(path: &std::path::Path) -> Result<(), AuditError> {
        use crate::path_check::{Want, creatable};
        creatable(path, Want::File)?;
        // The lock file beside it, which the sink opens too.
        creatable(&crate::exclusive::lock_beside(path), Want::File)
    }

    /// Opens (creating it and its directory if needed) the file an [`AuditConfig`] names.
    pub fn open(config: &AuditConfig) -> Result<Self, AuditError> {
        Self::open_with(&config.file, JsonlOptions::from_config(config))
    }

    /// Opens (creating it and its directory if needed) `path` with `options`.
    ///
    /// If the file ends with a half-written line (a crash mid-write), a line break is
    /// appended first so the next entry starts on its own line.
    pub fn open_with(path: impl Into<PathBuf>, options: JsonlOptions) -> Result<Self, AuditError> {
        Self::open_with_sync(path.into(), options, Arc::new(OsSync))
    }

    /// [`open_with`](Self::open_with), syncing the file through `sync`.
    pub(crate) fn open_with_sync(
        path: PathBuf,
        options: JsonlOptions,
        sync: Arc<dyn SyncFile>,
    ) -> Result<Self, AuditError> {
        let (file, claim) = JsonlFile::open(path, options, sync)?;
        let file = Arc::new(file);
        let for_thread = Arc::clone(&file);
        std::thread::Builder::new()
            .name("audit-jsonl-sync".into())
            .spawn(move || for_thread.sync_loop())
            .map_err(|source| AuditError::Thread { sink: SINK, source })?;
        Ok(Self {
            file,
            commit: GroupCommit::new(),
            counters: AuditCounters::new(),
            flushed: AtomicU64::new(0),
            _claim: claim,
        })
    }

    /// The file entries are appended to.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The sync and rotation options.
    pub fn options(&self) -> JsonlOptions {
        self.file.options()
    }

    /// Appends one entry (synchronously, without waiting for a sync) and returns its
    /// sequence number in this sink. If another caller is writing it and has not done so
    /// within [`EVERY_ENTRY_SYNC_WAIT`] (its disk stopped answering, or it is an async
    /// caller no one polls), this fails with [`AuditError::Timeout`], as `record` does.
    pub fn append(&self, entry: &EncodedEntry) -> Result<u64, AuditError> {
        self.append_within(entry, EVERY_ENTRY_SYNC_WAIT)
    }

    /// [`append`](Self::append), waiting at most `wait` for another caller's write.
    fn append_within(&self, entry: &EncodedEntry, wait: Duration) -> Result<u64, AuditError> {
        let seq = self.enqueue(entry.line())?.seq;
        let started = std::time::Instant::now();
        let mut polls = 0u32;
        loop {
            if self.lead_if_free() {
                continue;
            }
            if let Some(outcome) = self.commit.outcome(seq) {
                return self.written(seq, outcome);
            }
            if started.elapsed() >= wait {
                return Err(AuditError::Timeout {
                    sink: SINK,
                    pending: 1,
                });
            }
            // Another caller is writing this line right now, which takes microseconds:
            // yield at first, then sleep, up to a millisecond, rather than spin.
            polls = polls.saturating_add(1);
            match polls {
                0..16 => std::thread::yield_now(),
                n => std::thread::sleep(Duration::from_micros(u64::from(n.min(1_000)))),
            }
        }
    }

    /// Appends one entry, waiting (asynchronously) if another caller is writing it.
    async fn append_async(&self, line: &[u8]) -> Result<u64, AuditError> {
        let mut rx = self.commit.subscribe();
        let Queued { seq, busy } = self.enqueue(line)?;
        if self.commit.claim() {
            // When lines come close together, let the tasks that are ready queue theirs
            // first, so they share this write; if this future is dropped meanwhile, the
            // guard writes them anyway. A lone line is written at once.
            let leadership = Leadership(self);
            if busy {
                tokio::task::yield_now().await;
            }
            drop(leadership);
        }
        // Another caller's write takes microseconds, but a disk that stops answering
        // holds it in its system call: then this gives up rather than wait forever (the
        // line may still be written later; reporting it failed is the safe side).
        let waited = async {
            loop {
                self.lead_if_free();
                let outcome = rx.borrow_and_update().outcome(seq);
                if let Some(outcome) = outcome {
                    return self.written(seq, outcome);
                }
                if rx.changed().await.is_err() {
                    return Err(AuditError::Closed { sink: SINK });
                }
            }
        };
        tokio::time::timeout(EVERY_ENTRY_SYNC_WAIT, waited)
            .await
            .unwrap_or(Err(AuditError::Timeout {
                sink: SINK,
                pending: 1,
            }))
    }

    /// Queues `line`; returns its sequence number and whether lines come close together.
    fn enqueue(&self, line: &[u8]) -> Result<Queued, AuditError> {
        self.commit.enqueue(line).map_err(|refused| match refused {
            Refused::Closed => AuditError::Closed { sink: SINK },
            Refused::Full { queued_bytes } => AuditError::Backlog {
                sink: SINK,
                queued_bytes,
            },
        })
    }

    /// If no one is writing and lines are queued, writes them all (synchronously, until
    /// the queue is empty). Returns whether this caller wrote anything.
    fn lead_if_free(&self) -> bool {
        if !self.commit.claim() {
            return false;
        }
        self.write_queued();
        true
    }

    /// Writes every queued line, then gives up the writer role (the caller holds it).
    fn write_queued(&self) {
        self.commit.write_queued(|buf, lens| {
            let result = self.file.write_lines(buf, lens);
            let whole = match &result {
                Ok(()) => lens.len(),
                Err((whole, _)) => *whole,
            };
            self.counters.add(AuditEvent::Written, whole as u64);
            result
        });
    }

    /// Line `seq`'s sequence number, or why writing it failed.
    fn written(&self, seq: u64, outcome: Result<(), Arc<str>>) -> Result<u64, AuditError> {
        outcome
            .map(|()| seq)
            .map_err(|message| self.append_failed(&message))
    }

    /// The error for a line whose write failed with `message`.
    fn append_failed(&self, message: &str) -> AuditError {
        AuditError::io(
            "append to",
            self.file.path(),
            std::io::Error::other(message.to_owned()),
        )
    }

    /// Lines written (or failed) but not yet through a sync, as last published.
    fn unsynced(&self) -> u64 {
        let written = self.commit.subscribe().borrow().through();
        written.saturating_sub(self.file.synced_so_far())
    }

    /// Waits until lines `first..=last` were written; `Err` if writing any of them failed.
    async fn wait_written_range(&self, first: u64, last: u64) -> Result<(), AuditError> {
        let mut rx = self.commit.subscribe();
        let appended = rx
            .wait_for(|a| a.through() >= last)
            .await
            .map_err(|_| AuditError::Closed { sink: SINK })?;
        match appended.failure_in(first, last) {
            Some(message) => Err(self.append_failed(message)),
            None => Ok(()),
        }
    }

    /// Waits until entry `seq` went through a sync; `Err` if that sync failed.
    async fn wait_synced(&self, seq: u64) -> Result<(), AuditError> {
        self.wait_synced_range(seq, seq).await
    }

    /// Waits until entries `first..=last` went through a sync; `Err` if a sync covering
    /// any of them failed.
    async fn wait_synced_range(&self, first: u64, last: u64) -> Result<(), AuditError> {
        let mut rx = self.file.progress();
        let progress = rx
            .wait_for(|p| p.through >= last)
            .await
            .map_err(|_| AuditError::Closed { sink: SINK })?;
        match progress.failure_in(first, last) {
            Some(message) => Err(AuditError::Sync {
                path: self.file.path().to_owned(),
                message: message.to_owned(),
            }),
            None => Ok(()),
        }
    }

    async fn flush_until(&self, deadline: Instant) -> Result<(), AuditError> {
        // The file's lock is held by a writer inside its system call: asked from the
        // blocking pool, a disk that stops answering cannot hold this past `deadline`
        // (nor block the runtime's thread).
        let file = Arc::clone(&self.file);
        let asked = tokio::task::spawn_blocking(move || file.request_sync());
        let target = match tokio::time::timeout_at(deadline, asked).await {
            Ok(Ok(Some(target))) => target,
            Ok(Ok(None)) => return Err(AuditError::Closed { sink: SINK }),
            Ok(Err(e)) => {
                return Err(AuditError::Task {
                    sink: SINK,
                    reason: format!("asking for a sync failed: {e}"),
                });
            }
            Err(_) => {
                return Err(AuditError::Timeout {
                    sink: SINK,
                    pending: self.unsynced(),
                });
            }
        };
        // A flush answers for everything written since the previous one, so a failed
        // write, or a failed periodic sync, is reported even when this flush's own sync
        // passes.
        let first = self.flushed.load(Ordering::Acquire) + 1;
        let waited = async {
            let written = self.wait_written_range(first, target).await;
            let synced = self.wait_synced_range(first, target).await;
            written.and(synced)
        };
        match tokio::time::timeout_at(deadline, waited).await {
            Ok(result) => {
                self.flushed.fetch_max(target, Ordering::AcqRel);
                result
            }
            Err(_) => Err(AuditError::Timeout {
                sink: SINK,
                pending: target.saturating_sub(self.file.synced_so_far()),
            }),
        }
    }

    fn close(&self) {
        self.commit.close();
        self.file.close();
    }

    /// Refuses lines from now on and waits (until `deadline`) for every line queued
    /// before to be written, writing them itself if no one is: a line whose writer is
    /// still waiting for company must not miss the shutdown's sync.
    async fn write_the_last_lines(&self, deadline: Instant) -> Result<(), AuditError> {
        let last = self.commit.close();
        self.lead_if_free();
        let mut rx = self.commit.subscribe();
        let written = tokio::time::timeout_at(deadline, rx.wait_for(|a| a.through() >= last))
            .await
            .map(|waited| waited.is_ok());
        match written {
            Ok(true) => Ok(()),
            Ok(false) => Err(AuditError::Closed { sink: SINK }),
            Err(_) => Err(AuditError::Timeout {
                sink: SINK,
                pending: last.saturating_sub(rx.borrow().through()),
            }),
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
            if self.file.options().fsync == FsyncPolicy::EveryEntry {
                tokio::time::timeout(EVERY_ENTRY_SYNC_WAIT, self.wait_synced(seq))
                    .await
                    .map_err(|_| AuditError::Timeout {
                        sink: SINK,
                        pending: seq.saturating_sub(self.file.synced_so_far()),
                    })??;
            }
            Ok(())
        })
    }

    /// Syncs everything written so far (whatever the policy) within `deadline`; `Err` if
    /// any sync of an entry written since the previous flush failed.
    fn flush(&self, deadline: Instant) -> AuditFuture<'_> {
        Box::pin(self.flush_until(deadline))
    }

    fn shutdown(&self, deadline: Instant) -> AuditFuture<'_> {
        Box::pin(async move {
            let flushed = match self.write_the_last_lines(deadline).await {
                Ok(()) => self.flush_until(deadline).await,
                Err(e) => Err(e),
            };
            self.close();
            match flushed {
                Err(AuditError::Closed { .. }) => Ok(()),
                other => other,
            }
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
            .field("path", &self.file.path())
            .field("options", &self.file.options())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
