//! Sync failures, injected through the [`SyncFile`] seam: a real file cannot be made to
//! fail its sync on demand.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway_model::FsyncPolicy;
use tokio::time::Instant;
use uuid::Uuid;

use super::jsonl_file::SyncFile;
use super::{JsonlOptions, JsonlSink};
use crate::{AuditError, AuditSink, EncodedEntry};

/// What the injected sync does on one call.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Syncs the file.
    Pass,
    /// Fails with this message, without syncing.
    Fail(&'static str),
    /// Waits for [`ScriptedSync::release`], then syncs the file.
    Hold,
}

#[derive(Default)]
struct Script {
    steps: VecDeque<Step>,
    calls: usize,
    released: bool,
}

/// A sync that follows a script, then passes every call.
#[derive(Default)]
struct ScriptedSync {
    script: Mutex<Script>,
    changed: Condvar,
}

impl ScriptedSync {
    fn new(steps: &[Step]) -> Arc<Self> {
        let sync = Self::default();
        sync.script.lock().unwrap().steps = steps.iter().copied().collect();
        Arc::new(sync)
    }

    /// Blocks until `n` syncs have begun.
    fn wait_for_calls(&self, n: usize) {
        let script = self.script.lock().unwrap();
        let _unused = self.changed.wait_while(script, |s| s.calls < n).unwrap();
    }

    fn calls(&self) -> usize {
        self.script.lock().unwrap().calls
    }

    /// Lets held syncs finish.
    fn release(&self) {
        self.script.lock().unwrap().released = true;
        self.changed.notify_all();
    }
}

impl SyncFile for ScriptedSync {
    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        let step = {
            let mut script = self.script.lock().unwrap();
            script.calls += 1;
            self.changed.notify_all();
            script.steps.pop_front().unwrap_or(Step::Pass)
        };
        match step {
            Step::Pass => file.sync_data(),
            Step::Fail(message) => Err(std::io::Error::other(message)),
            Step::Hold => {
                let script = self.script.lock().unwrap();
                drop(self.changed.wait_while(script, |s| !s.released).unwrap());
                file.sync_data()
            }
        }
    }
}

fn options(fsync: FsyncPolicy, rotate_bytes: u64) -> JsonlOptions {
    JsonlOptions {
        fsync,
        fsync_interval: Duration::from_millis(10),
        rotate_bytes,
        keep_rotated: 20,
    }
}

fn open(dir: &tempfile::TempDir, options: JsonlOptions, sync: &Arc<ScriptedSync>) -> JsonlSink {
    let sync: Arc<dyn SyncFile> = Arc::clone(sync) as Arc<dyn SyncFile>;
    JsonlSink::open_with_sync(dir.path().join("audit.jsonl"), options, sync).unwrap()
}

fn entry() -> EncodedEntry {
    let id = Uuid::now_v7();
    EncodedEntry::from_line(id, Bytes::from(format!("{{\"id\":\"{id}\"}}\n")))
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// Waits until entries up to `seq` have been through a sync, whatever its outcome.
async fn synced_through(sink: &JsonlSink, seq: u64) {
    let mut progress = sink.file.progress();
    progress.wait_for(|p| p.through >= seq).await.unwrap();
}

fn assert_sync_error(result: Result<(), AuditError>, expected: &str) {
    match result {
        Err(AuditError::Sync { message, .. }) if message.contains(expected) => {}
        other => panic!("expected a sync error saying {expected:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_sync_fails_the_records_it_covered_and_no_others() {
    let dir = tempfile::tempdir().unwrap();
    let sync = ScriptedSync::new(&[Step::Fail("the disk said no")]);
    let sink = open(&dir, options(FsyncPolicy::EveryEntry, u64::MAX), &sync);
    assert_sync_error(sink.record_encoded(&entry()).await, "the disk said no");
    sink.record_encoded(&entry()).await.unwrap();
    // The next flush answers for both entries: one of them is not known to be on disk.
    assert_sync_error(sink.flush(soon()).await, "the disk said no");
    sink.shutdown(soon()).await.unwrap();
}

#[tokio::test]
async fn a_waiter_whose_sync_failed_gets_its_error_after_a_later_sync_failed_too() {
    let dir = tempfile::tempdir().unwrap();
    let sync = ScriptedSync::new(&[Step::Fail("first sync failed"), Step::Fail("second")]);
    let sink = open(&dir, options(FsyncPolicy::EveryEntry, u64::MAX), &sync);
    let first = sink.append(&entry()).unwrap();
    synced_through(&sink, first).await;
    let second = sink.append(&entry()).unwrap();
    synced_through(&sink, second).await;
    assert_eq!(sync.calls(), 2);
    // The first entry's waiter looks only now, after both syncs failed.
    assert_sync_error(sink.wait_synced(first).await, "first sync failed");
    assert_sync_error(sink.wait_synced(second).await, "second");
    // Later syncs pass, and so do the records they cover.
    sink.record_encoded(&entry()).await.unwrap();
}

#[tokio::test]
async fn flush_reports_a_failed_interval_sync_though_its_own_sync_passed() {
    let dir = tempfile::tempdir().unwrap();
    let sync = ScriptedSync::new(&[Step::Fail("the interval sync failed")]);
    let sink = open(&dir, options(FsyncPolicy::Interval, u64::MAX), &sync);
    let first = sink.append(&entry()).unwrap();
    // The periodic sync covers the first entry, and fails.
    synced_through(&sink, first).await;
    sink.append(&entry()).unwrap();
    assert_sync_error(sink.flush(soon()).await, "the interval sync failed");
    // Reported once: nothing failed since that flush.
    sink.flush(soon()).await.unwrap();
}

#[tokio::test]
async fn a_failed_inline_sync_of_a_rotated_file_fails_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let sync = ScriptedSync::new(&[Step::Hold, Step::Fail("the rotated file failed")]);
    // Every line rotates the file.
    let sink = open(&dir, options(FsyncPolicy::EveryEntry, 1), &sync);
    let first = sink.append(&entry()).unwrap();
    // The sync thread is stuck syncing the first file while 17 rotations retire it and
    // 16 more; with that many retired files waiting, the oldest (the first file) is
    // synced inline, and that sync fails.
    sync.wait_for_calls(1);
    let mut last = first;
    for _ in 0..17 {
        last = sink.append(&entry()).unwrap();
    }
    assert_eq!(sync.calls(), 2);
    sync.release();
    synced_through(&sink, last).await;
    assert_sync_error(sink.wait_synced(first).await, "the rotated file failed");
    sink.wait_synced(first + 1).await.unwrap();
    sink.wait_synced(last).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_every_entry_record_stops_waiting_for_a_sync_that_never_ends() {
    let dir = tempfile::tempdir().unwrap();
    let sync = ScriptedSync::new(&[Step::Hold]);
    let sink = open(&dir, options(FsyncPolicy::EveryEntry, u64::MAX), &sync);
    let started = Instant::now();
    let waited = gateway_model::EVERY_ENTRY_SYNC_WAIT;
    let recorded = tokio::time::timeout(waited * 2, sink.record_encoded(&entry()))
        .await
        .expect("the record is still waiting for its sync");
    assert!(
        matches!(recorded, Err(AuditError::Timeout { pending: 1, .. })),
        "{recorded:?}"
    );
    assert_eq!(started.elapsed(), waited);
    // The sync that was stuck answers for the entry once the disk comes back (on the
    // real clock: the paused one would jump past a deadline while the thread syncs).
    tokio::time::resume();
    sync.release();
    sink.flush(soon()).await.unwrap();
    sink.shutdown(soon()).await.unwrap();
}

fn line_count(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

/// A rotation that cannot create the next file (here a directory squats on its
/// temporary name, as no file descriptor or no disk space left would stop it) moves
/// nothing: the entries stay in the file at the path, and the next rotation after the
/// cause is gone works. It once renamed the current file away first, then failed to
/// open a new one, and later rotations deleted the file being written.
#[tokio::test]
async fn a_rotation_that_cannot_create_the_next_file_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sync = ScriptedSync::new(&[]);
    // Every line but the first tries to rotate the file.
    let sink = open(&dir, options(FsyncPolicy::Interval, 1), &sync);
    let path = dir.path().join("audit.jsonl");
    let squatter = dir.path().join("audit.jsonl.rotating");
    std::fs::create_dir(&squatter).unwrap();
    for _ in 0..3 {
        sink.record_encoded(&entry()).await.unwrap();
    }
    assert_eq!(line_count(&path), 3);
    assert!(
        !super::rotated_path(&path, 1).exists(),
        "nothing was rotated"
    );

    std::fs::remove_dir(&squatter).unwrap();
    sink.record_encoded(&entry()).await.unwrap();
    sink.flush(soon()).await.unwrap();
    assert_eq!(line_count(&super::rotated_path(&path, 1)), 3);
    assert_eq!(line_count(&path), 1);
    assert!(!squatter.exists(), "the temporary name is gone");
}

/// `fsync = "never"` syncs nothing by itself, but a flush syncs everything written so
/// far, the files rotated since the last flush included (it once synced only the
/// current file).
#[tokio::test]
async fn a_flush_under_never_syncs_the_files_rotated_since_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let sync = ScriptedSync::new(&[]);
    let sink = open(&dir, options(FsyncPolicy::Never, 1), &sync);
    for _ in 0..3 {
        sink.record_encoded(&entry()).await.unwrap();
    }
    assert_eq!(sync.calls(), 0, "never syncs by itself");
    sink.flush(soon()).await.unwrap();
    assert_eq!(sync.calls(), 3, "two rotated files and the current one");
}

/// A disk that stops answering inside a writer's system call (here the inline sync of a
/// rotated file, held, with the file's lock) holds neither another caller's record
/// forever nor a flush or a shutdown past its deadline, and blocks no runtime thread.
#[tokio::test]
async fn a_stuck_writer_holds_no_record_flush_or_shutdown_forever() {
    let dir = tempfile::tempdir().unwrap();
    let sync = ScriptedSync::new(&[Step::Hold, Step::Hold]);
    let sink = Arc::new(open(&dir, options(FsyncPolicy::EveryEntry, 1), &sync));
    sink.append(&entry()).unwrap();
    sync.wait_for_calls(1);
    // 17 rotations while the sync thread is stuck: the last syncs the oldest retired
    // file inline, and that sync is held too.
    let writer = {
        let sink = Arc::clone(&sink);
        std::thread::spawn(move || {
            for _ in 0..17 {
                let _ = sink.append(&entry());
            }
        })
    };
    sync.wait_for_calls(2);

    // The record's bound is 30 s: on a paused clock, which jumps to it.
    tokio::time::pause();
    let recorded = sink.record_encoded(&entry()).await;
    assert!(
        matches!(recorded, Err(AuditError::Timeout { pending: 1, .. })),
        "{recorded:?}"
    );
    // The flush asks for its sync from the blocking pool, which holds a paused clock
    // still while it waits: this part runs on the real one.
    tokio::time::resume();
    let flushed = sink
        .flush(Instant::now() + Duration::from_millis(200))
        .await;
    assert!(
        matches!(flushed, Err(AuditError::Timeout { .. })),
        "{flushed:?}"
    );
    // Closing, as a shutdown and a drop do, does not wait for the stuck write either: it
    // once took the file's lock, so a stop signal could not end the process.
    let (closed, was_closed) = std::sync::mpsc::channel();
    let closer = {
        let sink = Arc::clone(&sink);
        std::thread::spawn(move || {
            sink.file.close();
            let _ = closed.send(());
        })
    };
    was_closed
        .recv_timeout(Duration::from_secs(10))
        .expect("closed while a write is stuck");
    let shut = sink
        .shutdown(Instant::now() + Duration::from_millis(200))
        .await;
    assert!(matches!(shut, Err(AuditError::Timeout { .. })), "{shut:?}");
    sync.release();
    writer.join().unwrap();
    closer.join().unwrap();
}

/// A line queued just before the shutdown, whose writer has not written it yet (it waits
/// for company), is written and synced by the shutdown; it once missed both.
#[tokio::test]
async fn a_line_queued_before_shutdown_is_written_and_synced_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let sync = ScriptedSync::new(&[]);
    let sink = open(&dir, options(FsyncPolicy::Never, u64::MAX), &sync);
    let line = entry();
    let seq = sink.enqueue(line.line()).unwrap().seq;
    sink.shutdown(soon()).await.unwrap();
    let written = std::fs::read(dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(written, line.line());
    assert!(
        sink.file.synced_so_far() >= seq,
        "the shutdown's sync covers it"
    );
    assert_eq!(sync.calls(), 1);
}

/// Logrotate's `create` renames the file away and creates a new one at the path: the
/// entries after it go to the new file, and the renamed one keeps those before it. They
/// once went on into the renamed file until the sink's own next rotation.
#[tokio::test]
async fn a_file_renamed_away_is_followed_to_the_new_one_at_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let sync = ScriptedSync::new(&[]);
    let sink = open(&dir, options(FsyncPolicy::EveryEntry, 1 << 20), &sync);
    let path = dir.path().join("audit.jsonl");
    let renamed = dir.path().join("audit.jsonl-20261207");
    sink.record_encoded(&entry()).await.unwrap();
    std::fs::rename(&path, &renamed).unwrap();
    std::fs::File::create(&path).unwrap();

    sink.file.follow_path_now();
    sink.record_encoded(&entry()).await.unwrap();
    sink.record_encoded(&entry()).await.unwrap();
    sink.flush(soon()).await.unwrap();
    assert_eq!(line_count(&renamed), 1);
    assert_eq!(line_count(&path), 2);
    assert_eq!(*sink.file.reopened().borrow(), 1);
    sink.file.follow_path_now();
    assert_eq!(
        *sink.file.reopened().borrow(),
        1,
        "the new file is followed once"
    );
}

/// A file removed from under the sink is created again at its path, and the sink's own
/// rotation goes on from the new file.
#[tokio::test]
async fn a_removed_file_is_created_again_and_rotated_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let sync = ScriptedSync::new(&[]);
    // Two lines fit before a rotation.
    let line = entry().line().len() as u64;
    let sink = open(&dir, options(FsyncPolicy::Interval, 2 * line), &sync);
    let path = dir.path().join("audit.jsonl");
    sink.record_encoded(&entry()).await.unwrap();
    std::fs::remove_file(&path).unwrap();

    sink.file.follow_path_now();
    for _ in 0..3 {
        sink.record_encoded(&entry()).await.unwrap();
    }
    sink.flush(soon()).await.unwrap();
    assert_eq!(line_count(&super::rotated_path(&path, 1)), 2);
    assert_eq!(line_count(&path), 1);
}

/// Logrotate's `copytruncate` empties the file in place: the next rotation counts from
/// the new size, not from the bytes written before the cut.
#[tokio::test]
async fn a_file_cut_short_in_place_rotates_by_its_new_size() {
    let dir = tempfile::tempdir().unwrap();
    let sync = ScriptedSync::new(&[]);
    let line = entry().line().len() as u64;
    let sink = open(&dir, options(FsyncPolicy::Interval, 3 * line), &sync);
    let path = dir.path().join("audit.jsonl");
    for _ in 0..2 {
        sink.record_encoded(&entry()).await.unwrap();
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();

    sink.file.follow_path_now();
    for _ in 0..3 {
        sink.record_encoded(&entry()).await.unwrap();
    }
    sink.flush(soon()).await.unwrap();
    assert!(!super::rotated_path(&path, 1).exists(), "no rotation yet");
    assert_eq!(line_count(&path), 3);
}

/// The sync thread follows the path by itself, about once a second, under any policy.
#[tokio::test]
async fn the_sync_thread_follows_the_path_by_itself() {
    for fsync in [FsyncPolicy::Never, FsyncPolicy::EveryEntry] {
        let dir = tempfile::tempdir().unwrap();
        let sync = ScriptedSync::new(&[]);
        let sink = open(&dir, options(fsync, 1 << 20), &sync);
        let path = dir.path().join("audit.jsonl");
        let mut reopened = sink.file.reopened();
        std::fs::rename(&path, dir.path().join("audit.jsonl.old")).unwrap();

        tokio::time::timeout(Duration::from_secs(10), reopened.wait_for(|n| *n == 1))
            .await
            .expect("reopened within 10 s")
            .unwrap();
        sink.record_encoded(&entry()).await.unwrap();
        assert_eq!(line_count(&path), 1, "{fsync:?}");
    }
}

/// Regression: the synchronous `append` waited without bound, at full CPU, for another
/// caller's write of its line. Here the writer took the role and never writes (its disk
/// stopped answering, or it is an async caller no one polls): `append` gives up, as
/// `record` does.
#[test]
fn a_sync_append_stops_waiting_for_a_writer_that_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(
        JsonlSink::open_with(dir.path().join("a.jsonl"), JsonlOptions::default()).unwrap(),
    );
    sink.enqueue(entry().line()).unwrap();
    assert!(sink.commit.claim(), "the writer's role, held");
    let appending = Arc::clone(&sink);
    let waited =
        std::thread::spawn(move || appending.append_within(&entry(), Duration::from_millis(200)))
            .join()
            .unwrap();
    assert!(
        matches!(waited, Err(AuditError::Timeout { .. })),
        "{waited:?}"
    );
    // The writer comes back: both lines are written.
    sink.write_queued();
}
