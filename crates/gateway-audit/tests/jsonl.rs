//! The JSONL audit file: crash recovery, rotation, concurrent writers, sync policies.

#[path = "support/entries.rs"]
mod entries;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gateway_audit::{
    AuditError, AuditSink, EncodedEntry, JsonlOptions, JsonlSink, MAX_SKIPPED_LISTED, SkipReason,
    SkippedLine, read_jsonl, rotated_path,
};
use gateway_model::{AuditConfig, FsyncPolicy};
use gateway_telemetry::LocalMetrics;
use gateway_telemetry::exposition::{parse, series};
use gateway_telemetry::metric_names::AUDIT_ENTRIES_TOTAL;
use tokio::time::Instant;
use uuid::Uuid;

fn options(fsync: FsyncPolicy, rotate_bytes: u64, keep_rotated: u32) -> JsonlOptions {
    JsonlOptions {
        fsync,
        fsync_interval: Duration::from_millis(50),
        rotate_bytes,
        keep_rotated,
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn ids_in(path: &Path) -> Vec<Uuid> {
    let report = read_jsonl(path).unwrap();
    assert!(
        report.skipped.is_empty(),
        "{}: {:?}",
        path.display(),
        report.skipped
    );
    report.entries.iter().map(|e| e.id).collect()
}

/// [`ids_in`] for a file others are still appending to: its last line may be one whose
/// write has not ended yet.
fn ids_in_live(path: &Path) -> Vec<Uuid> {
    let report = read_jsonl(path).unwrap();
    let cut_last = matches!(
        report.skipped.as_slice(),
        [SkippedLine {
            reason: SkipReason::Truncated { .. },
            ..
        }]
    );
    assert!(
        report.skipped.is_empty() || cut_last,
        "{}: {:?}",
        path.display(),
        report.skipped
    );
    report.entries.iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn a_crash_mid_line_loses_only_that_line() {
    let dir = tempfile::tempdir().unwrap();
    // The parent directories do not exist yet.
    let path = dir.path().join("nested/audit/trail.jsonl");
    let sink = JsonlSink::open_with(&path, options(FsyncPolicy::EveryEntry, u64::MAX, 1)).unwrap();
    let mut written = Vec::new();
    for n in 0..100 {
        let entry = entries::entry(n);
        written.push(entry.id);
        sink.record(&entry).await.unwrap();
    }
    drop(sink);

    // Simulate a crash half-way through writing the last line.
    let text = std::fs::read(&path).unwrap();
    let last_start = text[..text.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let cut = last_start + (text.len() - last_start) / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();

    let report = read_jsonl(&path).unwrap();
    let ids: Vec<_> = report.entries.iter().map(|e| e.id).collect();
    assert_eq!(ids, written[..99]);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].line, 100);
    assert!(
        matches!(report.skipped[0].reason, SkipReason::Truncated { .. }),
        "{}",
        report.skipped[0]
    );

    // Reopening terminates the broken line; new entries are intact after it.
    let sink = JsonlSink::open_with(&path, options(FsyncPolicy::EveryEntry, u64::MAX, 1)).unwrap();
    for n in 100..110 {
        let entry = entries::entry(n);
        written.push(entry.id);
        sink.record(&entry).await.unwrap();
    }
    sink.shutdown(soon()).await.unwrap();
    let report = read_jsonl(&path).unwrap();
    let ids: Vec<_> = report.entries.iter().map(|e| e.id).collect();
    let mut expected = written[..99].to_vec();
    expected.extend_from_slice(&written[100..]);
    assert_eq!(ids, expected);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].line, 100);
    assert!(matches!(
        report.skipped[0].reason,
        SkipReason::Malformed { .. }
    ));
}

#[tokio::test]
async fn rotation_happens_at_the_configured_size_and_keeps_n_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let rotate_bytes = 4096;
    let keep = 3;
    let sink =
        JsonlSink::open_with(&path, options(FsyncPolicy::Interval, rotate_bytes, keep)).unwrap();
    let mut written = Vec::new();
    let mut line_len = std::collections::HashMap::new();
    for n in 0..100 {
        let entry = EncodedEntry::encode(&entries::entry(n)).unwrap();
        line_len.insert(entry.id(), entry.line().len() as u64);
        written.push(entry.id());
        sink.record_encoded(&entry).await.unwrap();
    }
    sink.shutdown(soon()).await.unwrap();

    // Oldest first: name.3, name.2, name.1, name.
    let files: Vec<_> = (1..=keep)
        .rev()
        .map(|n| rotated_path(&path, n))
        .chain([path.clone()])
        .collect();
    let contents: Vec<Vec<Uuid>> = files.iter().map(|f| ids_in(f)).collect();
    for (i, file) in files.iter().enumerate() {
        let size = std::fs::metadata(file).unwrap().len();
        let lines: u64 = contents[i].iter().map(|id| line_len[id]).sum();
        assert_eq!(size, lines, "{file:?} holds whole lines only");
        assert!(size <= rotate_bytes, "{file:?} is {size} bytes");
        if let Some(next) = contents.get(i + 1).and_then(|c| c.first()) {
            // Rotated exactly when the next entry would not have fit.
            assert!(
                size + line_len[next] > rotate_bytes,
                "{file:?} rotated early"
            );
        }
    }
    assert!(
        !rotated_path(&path, keep + 1).exists(),
        "only {keep} rotated files kept"
    );
    // Together they are exactly the newest entries, in order; older ones were dropped.
    let kept: Vec<Uuid> = contents.concat();
    assert!(kept.len() < written.len());
    assert_eq!(kept, written[written.len() - kept.len()..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_interleave_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    // Every-entry sync (group commit) and rotation, both under contention.
    let sink = Arc::new(
        JsonlSink::open_with(&path, options(FsyncPolicy::EveryEntry, 64 * 1024, 1000)).unwrap(),
    );
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let sink = Arc::clone(&sink);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..500 {
                let entry = entries::entry(t * 1000 + n);
                ids.push(entry.id);
                sink.record(&entry).await.unwrap();
            }
            ids
        }));
    }
    let mut written = HashSet::new();
    for task in tasks {
        written.extend(task.await.unwrap());
    }
    sink.shutdown(soon()).await.unwrap();

    let mut read = Vec::new();
    let mut files = 1;
    read.extend(ids_in(&path));
    while rotated_path(&path, files).exists() {
        read.extend(ids_in(&rotated_path(&path, files)));
        files += 1;
    }
    assert!(files > 2, "rotation happened ({files} files)");
    assert_eq!(read.len(), 4000);
    assert_eq!(read.into_iter().collect::<HashSet<_>>(), written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_is_in_the_file_when_record_returns_alone_or_in_company() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sink =
        Arc::new(JsonlSink::open_with(&path, options(FsyncPolicy::Never, u64::MAX, 1)).unwrap());
    // A lone line is written at once, without waiting for company.
    let lone = entries::entry(1);
    sink.record(&lone).await.unwrap();
    assert_eq!(ids_in(&path), vec![lone.id]);
    // Lines that come together share writes; each is still in the file when its
    // record returns.
    let mut tasks = Vec::new();
    for t in 1..=8u64 {
        let sink = Arc::clone(&sink);
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..25 {
                let entry = entries::entry(t * 1000 + n);
                sink.record(&entry).await.unwrap();
                assert!(
                    ids_in_live(&path).contains(&entry.id),
                    "task {t}, entry {n}"
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(ids_in(&path).len(), 1 + 8 * 25);
}

#[tokio::test]
async fn every_policy_flushes_and_shutdown_closes() {
    let dir = tempfile::tempdir().unwrap();
    for policy in [
        FsyncPolicy::EveryEntry,
        FsyncPolicy::Interval,
        FsyncPolicy::Never,
    ] {
        let path = dir.path().join(format!("{policy:?}.jsonl"));
        let config = AuditConfig {
            file: path.clone(),
            fsync: policy,
            fsync_interval_ms: 3_600_000,
            ..AuditConfig::default()
        };
        let sink = JsonlSink::open(&config).unwrap();
        for n in 0..20 {
            sink.record(&entries::entry(n)).await.unwrap();
        }
        // With an hour-long interval, only an explicit flush can sync in time.
        sink.flush(soon()).await.unwrap();
        // Written to the OS before record returned: readable right away.
        assert_eq!(ids_in(&path).len(), 20, "{policy:?}");
        sink.shutdown(soon()).await.unwrap();
        let err = sink.record(&entries::entry(99)).await.unwrap_err();
        assert!(matches!(err, AuditError::Closed { sink: "jsonl" }), "{err}");
        assert_eq!(ids_in(&path).len(), 20);
    }
}

#[test]
fn a_file_of_garbage_is_listed_up_to_a_bound_and_counted_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut text = serde_json::to_string(&entries::entry(1)).unwrap();
    text.push('\n');
    text.push_str(&"x\n".repeat(MAX_SKIPPED_LISTED + 5_000));
    text.push_str(&serde_json::to_string(&entries::entry(2)).unwrap());
    text.push('\n');
    std::fs::write(&path, text).unwrap();

    let report = read_jsonl(&path).unwrap();
    assert_eq!(
        report.entries.len(),
        2,
        "entries on both sides of the garbage"
    );
    assert_eq!(report.skipped.len(), MAX_SKIPPED_LISTED);
    assert_eq!(report.skipped[0].line, 2);
    assert_eq!(report.skipped_unlisted, 5_000);
}

#[test]
fn an_unwritable_path_is_a_typed_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"file").unwrap();
    let err =
        JsonlSink::open_with(blocker.join("audit.jsonl"), JsonlOptions::default()).unwrap_err();
    assert!(matches!(err, AuditError::Io { .. }), "{err}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    assert!(matches!(
        read_jsonl(dir.path().join("missing.jsonl")),
        Err(AuditError::Io { .. })
    ));
}

#[tokio::test]
async fn a_failed_rotation_keeps_every_entry_and_retries_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    // A non-empty directory where the next file is made before it takes the path:
    // rotation fails.
    let blocker = dir.path().join("audit.jsonl.rotating");
    std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
    let line = EncodedEntry::encode(&entries::entry(0))
        .unwrap()
        .line()
        .len() as u64;
    let sink = JsonlSink::open_with(&path, options(FsyncPolicy::Never, 3 * line, 10)).unwrap();

    let mut written = Vec::new();
    for n in 0..8 {
        let entry = entries::entry(n);
        written.push(entry.id);
        sink.record(&entry).await.unwrap();
    }
    // Nothing was lost or truncated: every entry is still in the one file.
    assert_eq!(ids_in(&path), written);

    // Once the obstacle is gone, rotation resumes after another `rotate_bytes`.
    std::fs::remove_dir_all(&blocker).unwrap();
    for n in 8..12 {
        let entry = entries::entry(n);
        written.push(entry.id);
        sink.record(&entry).await.unwrap();
    }
    // Oldest rotated file first, the current file last.
    let mut all = Vec::new();
    for n in (1..=10).rev() {
        let rotated = rotated_path(&path, n);
        if rotated.exists() {
            all.extend(ids_in(&rotated));
        }
    }
    let current = ids_in(&path);
    assert!(current.len() < written.len(), "the file was rotated again");
    all.extend(current);
    assert_eq!(all, written);
    sink.shutdown(soon()).await.unwrap();
}

/// The sink counts each line it writes in the recorder that was current when it was
/// built, wherever it writes afterwards (as the Prometheus text of the router shows).
#[test]
fn written_lines_are_counted_in_the_recorder_the_sink_was_built_under() {
    let metrics = LocalMetrics::new();
    let other = LocalMetrics::new();
    let dir = tempfile::tempdir().unwrap();
    let sink = metrics.scope(|| {
        JsonlSink::open_with(dir.path().join("audit.jsonl"), JsonlOptions::default()).unwrap()
    });
    other.scope(|| {
        for n in 0..3 {
            sink.append(&EncodedEntry::encode(&entries::entry(n)).unwrap())
                .unwrap();
        }
    });
    let written = series(AUDIT_ENTRIES_TOTAL, &[("event", "written")]);
    let counted = parse(&metrics.render()).unwrap();
    assert_eq!(counted.get(&written), Some(&3.0), "{counted:?}");
    assert_eq!(
        counted.get(&series(AUDIT_ENTRIES_TOTAL, &[("event", "dropped")])),
        Some(&0.0)
    );
    assert_eq!(parse(&other.render()).unwrap().get(&written), None);
}

/// One sink at a time writes a file: a second (another replica on a shared volume, say)
/// would rotate the first one's file away, so it is refused, naming the file, until the
/// first is dropped; the lock file stands beside the trail and holds nothing.
#[test]
fn a_second_sink_on_one_file_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let first = JsonlSink::open_with(&path, JsonlOptions::default()).unwrap();
    let err = JsonlSink::open_with(&path, JsonlOptions::default()).unwrap_err();
    assert!(matches!(err, AuditError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("audit.jsonl"), "{err}");
    drop(first);
    let again = JsonlSink::open_with(&path, JsonlOptions::default()).unwrap();
    drop(again);
    let lock = dir.path().join("audit.jsonl.lock");
    assert_eq!(std::fs::metadata(lock).unwrap().len(), 0);
}

/// Regression: a write that failed part way (a full disk) was undone by cutting the
/// file back to the sink's own count of its bytes. Lines another process had appended
/// (a second writer, an operator's `>>`) are not in that count, so the cut took the
/// sink's own lines before the failure, already reported written. This test runs
/// itself again under a file-size limit to make a write fail part way.
#[test]
fn a_failed_write_cuts_off_no_line_before_it_even_one_another_process_wrote() {
    use std::io::Write as _;

    const CHILD: &str = "GATEWAY_AUDIT_TEST_LIMITED_FILE";
    const NAME: &str = "a_failed_write_cuts_off_no_line_before_it_even_one_another_process_wrote";
    let line_of = |entry: &gateway_model::AuditEntry| EncodedEntry::encode(entry).unwrap();
    if let Some(path) = std::env::var_os(CHILD) {
        let sink = JsonlSink::open_with(&path, options(FsyncPolicy::Never, 1 << 30, 1)).unwrap();
        let first = entries::entry(1);
        sink.append(&line_of(&first)).unwrap();
        println!("written {}", first.id);
        // Another writer's whole line, which the sink's own count does not know of.
        let other = entries::entry(2);
        let mut line = serde_json::to_string(&other).unwrap();
        line.push('\n');
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
        println!("written {}", other.id);
        for n in 3..1_000 {
            let entry = entries::entry(n);
            if sink.append(&line_of(&entry)).is_err() {
                println!("failed");
                return;
            }
            println!("written {}", entry.id);
        }
        panic!("the file-size limit never stopped a write");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let output = std::process::Command::new("sh")
        .args(["-c", r#"trap "" XFSZ; ulimit -f 8; exec "$0" "$@""#])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
        .env(CHILD, &path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && said.contains("failed"),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written: Vec<Uuid> = said
        .lines()
        // libtest may print the test's name on the same line as its first output.
        .filter_map(|l| l.split_once("written ").map(|(_, id)| id.trim()))
        .map(|id| id.parse().unwrap())
        .collect();
    assert!(written.len() >= 3, "{said}");
    let report = read_jsonl(&path).unwrap();
    let read: Vec<Uuid> = report.entries.iter().map(|e| e.id).collect();
    assert_eq!(read, written, "every line reported written is in the file");
    // The torn line is one skipped line at the end, at most.
    assert!(report.skipped.len() <= 1, "{:?}", report.skipped);
}

/// A rotation that failed after shifting the rotated files up (its last rename) leaves
/// `<file>.1` free: the next one shifts into that name instead of dropping the oldest
/// file again, which each retry once did.
#[tokio::test]
async fn a_rotation_after_a_failed_one_drops_no_rotated_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    // What a rotation whose last rename failed leaves: `.2` to `.10` taken, `.1` free.
    for n in 2..=10 {
        std::fs::write(rotated_path(&path, n), format!("rotated {n}\n")).unwrap();
    }
    let line = EncodedEntry::encode(&entries::entry(0))
        .unwrap()
        .line()
        .len() as u64;
    let sink = JsonlSink::open_with(&path, options(FsyncPolicy::Never, 2 * line, 10)).unwrap();
    let mut written = Vec::new();
    for n in 0..3 {
        let entry = entries::entry(n);
        written.push(entry.id);
        sink.record(&entry).await.unwrap();
    }
    sink.shutdown(soon()).await.unwrap();
    for n in 2..=10 {
        let kept = std::fs::read_to_string(rotated_path(&path, n)).unwrap();
        assert_eq!(kept, format!("rotated {n}\n"), "`.{n}` was kept as it was");
    }
    let mut all = ids_in(&rotated_path(&path, 1));
    all.extend(ids_in(&path));
    assert_eq!(all, written);
}
