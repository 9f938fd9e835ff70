//! At-least-once webhook delivery against a real HTTP receiver on loopback: bulk
//! delivery, an outage with a restart in the middle, a full queue, a misconfigured receiver,
//! and messages that keep their `webhook-id` and body through refusals and restarts.

#[path = "support/entries.rs"]
mod entries;
#[path = "support/receiver.rs"]
mod receiver;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use gateway_audit::webhook::{WebhookBatch, WebhookOptions, WebhookSecret, WebhookSink};
use gateway_audit::{AuditError, AuditSink};
use gateway_model::WebhookConfig;
use gateway_telemetry::LocalMetrics;
use http::StatusCode;
use tokio::time::Instant;
use uuid::Uuid;

use receiver::{Mode, Receiver};

const SECRET: &str = "whsec_dGVzdCBrZXkgZm9yIHRoZSBhdWRpdCB3ZWJob29r";

fn secret() -> WebhookSecret {
    WebhookSecret::parse(SECRET).unwrap()
}

fn config(
    receiver: &Receiver,
    spool: &Path,
    batch_size: u32,
    queue_capacity: u32,
) -> WebhookConfig {
    WebhookConfig {
        url: receiver.url(),
        secret_env: "AUDIT_WEBHOOK_SECRET".into(),
        spool_dir: spool.to_owned(),
        batch_size,
        queue_capacity,
        request_timeout_ms: 10_000,
        max_spool_bytes: 1 << 30,
    }
}

fn fast_retries() -> WebhookOptions {
    WebhookOptions {
        retry_base: Duration::from_millis(10),
        retry_max: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        ..WebhookOptions::default()
    }
}

fn in_secs(s: u64) -> Instant {
    Instant::now() + Duration::from_secs(s)
}

async fn record_many(sink: &WebhookSink, from: u64, count: u64) -> HashSet<Uuid> {
    let mut ids = HashSet::new();
    for n in from..from + count {
        let entry = entries::entry(n);
        ids.insert(entry.id);
        sink.record(&entry).await.unwrap();
    }
    ids
}

fn spool_segments(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |listing| {
        listing
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
            })
            .count()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_entries_arrive_and_deduplicate_to_ten_thousand() {
    let receiver = Receiver::start(secret()).await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = LocalMetrics::new();
    let sink = metrics.scope(|| {
        WebhookSink::start_with(
            &config(&receiver, &dir.path().join("spool"), 100, 10_000),
            secret(),
            fast_retries(),
        )
        .unwrap()
    });

    let started = std::time::Instant::now();
    let sent = record_many(&sink, 0, 10_000).await;
    let recorded = started.elapsed();
    receiver
        .wait_until("10,000 unique ids", Duration::from_secs(30), |s| {
            s.unique() == 10_000
        })
        .await;
    let delivered = started.elapsed();
    eprintln!("recorded 10,000 entries in {recorded:?}; all delivered after {delivered:?}");

    assert_eq!(receiver.state.ids(), sent);
    let state = &receiver.state;
    assert!(state.entries_received.load(Ordering::SeqCst) >= 10_000);
    assert_eq!(state.bad_signatures.load(Ordering::SeqCst), 0);
    sink.shutdown(in_secs(10)).await.unwrap();
    let report = sink.report();
    assert_eq!(report.accepted, 10_000);
    assert_eq!(report.delivered, 10_000);
    assert_eq!((report.dropped, report.in_memory), (0, 0));
    let text = metrics.render();
    assert!(
        text.contains(r#"genesys_router_audit_entries_total{event="delivered"} 10000"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_through_an_outage_and_a_restart() {
    let mut receiver = Receiver::start(secret()).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let config = config(&receiver, &spool, 50, 1_000);
    let mut sent = HashSet::new();

    // Phase 1: the receiver is up.
    let sink = WebhookSink::start_with(&config, secret(), fast_retries()).unwrap();
    sent.extend(record_many(&sink, 0, 500).await);
    sink.flush(in_secs(10)).await.unwrap();
    receiver
        .wait_until("phase 1", Duration::from_secs(10), |s| s.unique() == 500)
        .await;

    // Phase 2: the receiver answers 500; flush means "delivered or spooled".
    receiver.set_mode(Mode::Fail(StatusCode::INTERNAL_SERVER_ERROR));
    sent.extend(record_many(&sink, 1_000, 500).await);
    sink.flush(in_secs(10)).await.unwrap();
    assert!(receiver.state.failed_requests.load(Ordering::SeqCst) > 0);
    assert_eq!(sink.report().spooled, 500);

    // Phase 3: the receiver is gone; connections are refused.
    receiver.stop().await;
    sent.extend(record_many(&sink, 2_000, 500).await);
    sink.flush(in_secs(10)).await.unwrap();
    // "Restart": shut down, drop, start a new sink over the same spool directory.
    sink.shutdown(in_secs(10)).await.unwrap();
    let report = sink.report();
    assert_eq!(
        (report.accepted, report.in_memory, report.dropped),
        (1_500, 0, 0)
    );
    assert_eq!(report.delivered + report.spooled, 1_500);
    assert!(report.retried > 0);
    drop(sink);
    assert!(spool_segments(&spool) > 0);

    let sink = WebhookSink::start_with(&config, secret(), fast_retries()).unwrap();
    sent.extend(record_many(&sink, 3_000, 500).await);
    sink.flush(in_secs(10)).await.unwrap();

    // Phase 4: the receiver comes back on the same port.
    receiver.set_mode(Mode::Accept);
    receiver.restart().await;
    receiver
        .wait_until("every id", Duration::from_secs(30), |s| s.unique() == 2_000)
        .await;
    assert_eq!(receiver.state.ids(), sent);
    assert_eq!(receiver.state.bad_signatures.load(Ordering::SeqCst), 0);
    sink.shutdown(in_secs(10)).await.unwrap();
    let report = sink.report();
    assert_eq!(report.replayed, 1_500, "{report:?}");
    assert_eq!((report.dropped, report.spool_bytes), (0, 0), "{report:?}");
    assert_eq!(spool_segments(&spool), 0, "replayed segments are deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_spills_to_the_spool_and_is_replayed() {
    let receiver = Receiver::start(secret()).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start_with(
        &config(&receiver, &dir.path().join("spool"), 10, 4),
        secret(),
        fast_retries(),
    )
    .unwrap();
    let sent = record_many(&sink, 0, 2_000).await;
    receiver
        .wait_until("2,000 unique ids", Duration::from_secs(30), |s| {
            s.unique() == 2_000
        })
        .await;
    assert_eq!(receiver.state.ids(), sent);
    sink.shutdown(in_secs(10)).await.unwrap();
    let report = sink.report();
    assert!(report.spooled > 0, "the tiny queue overflowed: {report:?}");
    assert_eq!(report.dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misconfigured_receiver_keeps_entries_spooled_until_fixed() {
    let receiver = Receiver::start(secret()).await;
    receiver.set_mode(Mode::Fail(StatusCode::NOT_FOUND));
    let dir = tempfile::tempdir().unwrap();
    let metrics = LocalMetrics::new();
    let sink = metrics.scope(|| {
        WebhookSink::start_with(
            &config(&receiver, &dir.path().join("spool"), 20, 100),
            secret(),
            fast_retries(),
        )
        .unwrap()
    });
    // The spool's size as the metrics show it.
    let gauge = || {
        let samples = gateway_telemetry::exposition::parse(&metrics.render()).unwrap();
        samples[&gateway_telemetry::exposition::series("genesys_router_webhook_spool_bytes", &[])]
    };
    assert_eq!(gauge(), 0.0);
    let sent = record_many(&sink, 0, 200).await;
    sink.flush(in_secs(10)).await.unwrap();
    // Several attempts are refused, nothing is dropped.
    receiver
        .wait_until("three refused attempts", Duration::from_secs(10), |s| {
            s.failed_requests.load(Ordering::SeqCst) >= 3
        })
        .await;
    let report = sink.report();
    assert_eq!((report.spooled, report.dropped), (200, 0), "{report:?}");
    assert!(report.spool_bytes > 0, "{report:?}");
    // The size changes once more when the spooled entries are formed into messages.
    assert!(gauge() > 0.0);
    receiver.set_mode(Mode::Accept);
    receiver
        .wait_until("every id", Duration::from_secs(30), |s| s.unique() == 200)
        .await;
    assert_eq!(receiver.state.ids(), sent);
    sink.shutdown(in_secs(10)).await.unwrap();
    assert_eq!(
        gauge(),
        0.0,
        "the spool is empty once every entry is delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused_by_the_receiver_and_nothing_is_lost() {
    let receiver = Receiver::start(secret()).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let wrong = WebhookSecret::from_key(*b"a different key, 32 bytes long!!").unwrap();
    let sink = WebhookSink::start_with(&config(&receiver, &spool, 10, 100), wrong, fast_retries())
        .unwrap();
    let sent = record_many(&sink, 0, 30).await;
    sink.flush(in_secs(10)).await.unwrap();
    receiver
        .wait_until("a refused signature", Duration::from_secs(10), |s| {
            s.bad_signatures.load(Ordering::SeqCst) >= 1
        })
        .await;
    sink.shutdown(in_secs(10)).await.unwrap();
    assert_eq!(receiver.state.unique(), 0);
    // Until it is dropped, the first sink holds the spool directory.
    let second = WebhookSink::start_with(
        &config(&receiver, &spool, 10, 100),
        secret(),
        fast_retries(),
    );
    assert!(matches!(second, Err(AuditError::InUse { .. })));
    drop(sink);
    // With the right secret, a new sink delivers what the first one spooled.
    let sink = WebhookSink::start_with(
        &config(&receiver, &spool, 10, 100),
        secret(),
        fast_retries(),
    )
    .unwrap();
    receiver
        .wait_until("every id", Duration::from_secs(30), |s| s.unique() == 30)
        .await;
    assert_eq!(receiver.state.ids(), sent);
    sink.shutdown(in_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_spools_within_its_deadline_when_the_receiver_hangs() {
    // A receiver that accepts connections and never answers.
    let (hanging_addr, holder) = hanging_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let config = WebhookConfig {
        url: format!("http://{hanging_addr}/audit"),
        batch_size: 25,
        queue_capacity: 1_000,
        ..config_at(&spool)
    };
    let options = WebhookOptions {
        request_timeout: Duration::from_secs(60),
        ..fast_retries()
    };
    let sink = WebhookSink::start_with(&config, secret(), options).unwrap();
    let sent = record_many(&sink, 0, 100).await;

    // Nothing can be delivered or spooled while the first POST hangs: flush times out.
    let err = sink
        .flush(Instant::now() + Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(err, gateway_audit::AuditError::Timeout { pending: 100, .. }),
        "{err}"
    );
    // Shutdown cuts the hanging POST off half-way to its deadline and spools everything.
    let started = std::time::Instant::now();
    sink.shutdown(in_secs(4)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
    let report = sink.report();
    assert_eq!(
        (report.spooled, report.in_memory, report.dropped),
        (100, 0, 0),
        "{report:?}"
    );
    drop(sink);
    holder.abort();

    // The next start delivers it all to a receiver that answers.
    let receiver = Receiver::start(secret()).await;
    let sink = WebhookSink::start_with(
        &WebhookConfig {
            url: receiver.url(),
            ..config
        },
        secret(),
        fast_retries(),
    )
    .unwrap();
    receiver
        .wait_until("every id", Duration::from_secs(30), |s| s.unique() == 100)
        .await;
    assert_eq!(receiver.state.ids(), sent);
    sink.shutdown(in_secs(10)).await.unwrap();
    assert_eq!(sink.report().replayed, 100);
    assert_eq!(spool_segments(&spool), 0);
}

/// Checks that every message was immutable: one `webhook-id` never carried two different
/// bodies, and each entry travelled under one `webhook-id` only (never regrouped).
fn assert_messages_are_immutable(messages: &[(String, Bytes)]) {
    let mut bodies: HashMap<&str, &Bytes> = HashMap::new();
    let mut message_of: HashMap<Uuid, &str> = HashMap::new();
    for (id, body) in messages {
        assert!(id.starts_with("msg_"), "webhook-id {id:?}");
        if let Some(first) = bodies.insert(id, body) {
            assert_eq!(first, body, "webhook-id {id} was sent with two bodies");
        }
        for entry in WebhookBatch::parse(body).unwrap().entries {
            if let Some(earlier) = message_of.insert(entry.id, id) {
                assert_eq!(
                    earlier, id,
                    "entry {} was sent under two webhook-ids",
                    entry.id
                );
            }
        }
    }
}

/// Records 3 entries and waits for a refused delivery (with an empty spool, of a message
/// holding some of them), then records 25 more and flushes: they are spooled.
async fn record_while_refused(receiver: &Receiver, sink: &WebhookSink, from: u64) -> HashSet<Uuid> {
    let before = receiver.state.failed_requests.load(Ordering::SeqCst);
    let mut sent = record_many(sink, from, 3).await;
    receiver
        .wait_until("a refused delivery", Duration::from_secs(10), |s| {
            s.failed_requests.load(Ordering::SeqCst) > before
        })
        .await;
    sent.extend(record_many(sink, from + 100, 25).await);
    sink.flush(in_secs(10)).await.unwrap();
    sent
}

/// Waits for two more refused deliveries than so far.
async fn two_more_refusals(receiver: &Receiver) {
    let refused = receiver.state.failed_requests.load(Ordering::SeqCst);
    receiver
        .wait_until(
            "two more refused deliveries",
            Duration::from_secs(10),
            |s| s.failed_requests.load(Ordering::SeqCst) >= refused + 2,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_is_resent_with_its_id_and_body() {
    let receiver = Receiver::start(secret()).await;
    receiver.set_mode(Mode::Fail(StatusCode::SERVICE_UNAVAILABLE));
    let dir = tempfile::tempdir().unwrap();
    let config = config(&receiver, &dir.path().join("spool"), 10, 1_000);
    let sink = WebhookSink::start_with(&config, secret(), fast_retries()).unwrap();
    let sent = record_while_refused(&receiver, &sink, 0).await;
    two_more_refusals(&receiver).await;

    receiver.set_mode(Mode::Accept);
    receiver
        .wait_until("every id", Duration::from_secs(30), |s| s.unique() == 28)
        .await;
    sink.shutdown(in_secs(10)).await.unwrap();
    assert_eq!(receiver.state.ids(), sent);
    assert_eq!(receiver.state.bad_signatures.load(Ordering::SeqCst), 0);
    assert_messages_are_immutable(&receiver.state.messages());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_keeps_its_id_and_body_across_a_restart() {
    let receiver = Receiver::start(secret()).await;
    receiver.set_mode(Mode::Fail(StatusCode::SERVICE_UNAVAILABLE));
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let config = config(&receiver, &spool, 10, 1_000);
    let sink = WebhookSink::start_with(&config, secret(), fast_retries()).unwrap();
    let mut sent = record_while_refused(&receiver, &sink, 0).await;
    // The refused message is accepted on replay; the next one, formed from spooled
    // entries, is refused.
    receiver.set_mode(Mode::AcceptThenFail(1, StatusCode::SERVICE_UNAVAILABLE));
    two_more_refusals(&receiver).await;
    assert!(receiver.state.unique() > 0);
    sink.shutdown(in_secs(10)).await.unwrap();
    drop(sink);
    assert!(spool_segments(&spool) > 0);
    assert_messages_are_immutable(&receiver.state.messages());

    // A new sink over the same spool, with another batch size (the config changed): its
    // replays are refused too, then accepted. What was sent before is resent as it was.
    let config = WebhookConfig {
        batch_size: 7,
        ..config
    };
    let sink = WebhookSink::start_with(&config, secret(), fast_retries()).unwrap();
    sent.extend(record_while_refused(&receiver, &sink, 1_000).await);
    two_more_refusals(&receiver).await;
    receiver.set_mode(Mode::Accept);
    receiver
        .wait_until("every id", Duration::from_secs(30), |s| s.unique() == 56)
        .await;
    sink.shutdown(in_secs(10)).await.unwrap();
    assert_eq!(receiver.state.ids(), sent);
    assert_eq!(spool_segments(&spool), 0);
    assert_messages_are_immutable(&receiver.state.messages());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_refused_as_too_large_is_set_aside_and_the_rest_flow_on() {
    let receiver = Receiver::start(secret()).await;
    let one = gateway_audit::EncodedEntry::encode(&entries::entry(0))
        .unwrap()
        .json()
        .len();
    // Room for two entries a message: a batch of ten is refused, each entry on its own
    // is taken, except one whose `reason` alone is over the limit.
    receiver.set_mode(Mode::RefuseOver(2 * one + 100));
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let config = config(&receiver, &spool, 10, 1_000);
    let metrics = LocalMetrics::new();
    let sink =
        metrics.scope(|| WebhookSink::start_with(&config, secret(), fast_retries()).unwrap());

    let mut sent = record_many(&sink, 0, 5).await;
    let mut huge = entries::entry(5);
    huge.reason = Some("x".repeat(4 * one));
    sink.record(&huge).await.unwrap();
    sent.extend(record_many(&sink, 6, 5).await);
    receiver
        .wait_until("the ten others", Duration::from_secs(30), |s| {
            s.unique() == 10
        })
        .await;
    assert_eq!(receiver.state.ids(), sent, "every other entry arrives");
    sink.shutdown(in_secs(10)).await.unwrap();
    let report = sink.report();
    assert_eq!((report.rejected, report.dropped), (1, 0), "{report:?}");
    assert!(
        metrics
            .render()
            .contains(r#"genesys_router_audit_entries_total{event="rejected"} 1"#)
    );
    drop(sink);

    // The refused entry is kept, in the spool's line format.
    let rejected = spool.join("rejected");
    let files: Vec<_> = std::fs::read_dir(&rejected)
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let kept = std::fs::read_to_string(&files[0]).unwrap();
    assert!(kept.contains(&huge.id.to_string()), "{kept}");
    assert_eq!(spool_segments(&spool), 0, "nothing else waits in the spool");

    // Moved back into the spool once the receiver takes larger bodies, it is delivered.
    receiver.set_mode(Mode::Accept);
    let name = files[0].file_name().unwrap();
    std::fs::rename(&files[0], spool.join(name)).unwrap();
    let sink = WebhookSink::start_with(&config, secret(), fast_retries()).unwrap();
    receiver
        .wait_until("the refused entry", Duration::from_secs(30), |s| {
            s.unique() == 11
        })
        .await;
    sink.shutdown(in_secs(10)).await.unwrap();
    assert_eq!(sink.report().replayed, 1);
}

/// A spool line that is JSON with an `id` but not an audit entry (put there by hand or by
/// another program) is not signed and sent as one: it is kept in `rejected/`, counted
/// dropped, and the entries around it are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_line_in_the_spool_is_kept_aside_not_sent() {
    let receiver = Receiver::start(secret()).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let (first, second) = (entries::entry(0), entries::entry(1));
    let line = |e: &gateway_model::AuditEntry| {
        String::from_utf8(
            gateway_audit::EncodedEntry::encode(e)
                .unwrap()
                .line()
                .to_vec(),
        )
        .unwrap()
    };
    let foreign = format!(
        "{{\"id\":\"{}\",\"note\":\"not an entry\"}}\n",
        Uuid::now_v7()
    );
    let segment = "00000000000000000001";
    std::fs::write(
        spool.join(format!("{segment}.jsonl")),
        format!("{}{foreign}{}", line(&first), line(&second)),
    )
    .unwrap();
    // An earlier run's copy of such lines, cut short by a crash: kept apart from the new.
    let kept = spool.join("rejected").join(format!("{segment}.unreadable"));
    std::fs::create_dir_all(spool.join("rejected")).unwrap();
    std::fs::write(&kept, "{\"cut").unwrap();

    let config = config(&receiver, &spool, 10, 1_000);
    let sink = WebhookSink::start_with(&config, secret(), fast_retries()).unwrap();
    receiver
        .wait_until("the two entries", Duration::from_secs(30), |s| {
            s.unique() == 2
        })
        .await;
    sink.shutdown(in_secs(10)).await.unwrap();
    assert_eq!(receiver.state.ids(), HashSet::from([first.id, second.id]));
    let report = sink.report();
    assert_eq!((report.replayed, report.dropped), (2, 1), "{report:?}");
    assert_eq!(
        std::fs::read_to_string(kept).unwrap(),
        format!("{{\"cut\n{foreign}")
    );
    assert_eq!(spool_segments(&spool), 0, "the replayed segment is deleted");
}

/// Files named like segments that this sink cannot have written are set aside unread: a
/// link (here to a file of "secrets" outside the spool, which was read through the link
/// and copied into `rejected/`) and a FIFO (which blocked the reader for good). The
/// entries of the real segment around them are delivered.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_and_fifos_named_like_segments_are_set_aside_unread() {
    let receiver = Receiver::start(secret()).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let secret_file = dir.path().join("secret.txt");
    std::fs::write(&secret_file, "secret-line\n").unwrap();
    std::os::unix::fs::symlink(&secret_file, spool.join("00000000000000000001.jsonl")).unwrap();
    let fifo = spool.join("00000000000000000002.jsonl");
    let fifo_made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    let entry = entries::entry(0);
    let line = gateway_audit::EncodedEntry::encode(&entry).unwrap();
    std::fs::write(spool.join("00000000000000000003.jsonl"), line.line()).unwrap();

    let config = config(&receiver, &spool, 10, 1_000);
    let sink = WebhookSink::start_with(&config, secret(), fast_retries()).unwrap();
    receiver
        .wait_until("the entry", Duration::from_secs(30), |s| s.unique() == 1)
        .await;
    // The sink writes its own segments after the highest index it found.
    let later = entries::entry(1);
    sink.record(&later).await.unwrap();
    sink.shutdown(in_secs(10)).await.unwrap();
    assert_eq!(receiver.state.ids(), HashSet::from([entry.id, later.id]));
    assert_eq!(
        std::fs::read_to_string(&secret_file).unwrap(),
        "secret-line\n"
    );
    let rejected = spool.join("rejected");
    let aside = |name: &str| std::fs::symlink_metadata(rejected.join(name)).unwrap();
    assert!(aside("00000000000000000001.not-a-file").is_symlink());
    if fifo_made {
        use std::os::unix::fs::FileTypeExt as _;
        assert!(
            aside("00000000000000000002.not-a-file")
                .file_type()
                .is_fifo()
        );
    }
    for file in std::fs::read_dir(&rejected).unwrap() {
        let file = file.unwrap();
        if file.file_type().unwrap().is_file() {
            let text = std::fs::read_to_string(file.path()).unwrap();
            assert!(!text.contains("secret-line"), "{}", file.path().display());
        }
    }
}

/// Nor is `rejected/` written through what someone planted there: a link in place of
/// the directory (lines set aside landed in the directory it named), or a FIFO where a
/// segment's unreadable lines go (opening it waited for a reader, holding the spool, so
/// nothing was delivered again).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_planted_in_rejected_is_written_through() {
    for planted in ["a link to a directory", "a FIFO"] {
        let receiver = Receiver::start(secret()).await;
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let rejected = spool.join("rejected");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        if planted == "a FIFO" {
            std::fs::create_dir_all(&rejected).unwrap();
            let fifo = rejected.join("00000000000000000001.unreadable");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if !made.is_ok_and(|s| s.success()) {
                eprintln!("skipped: no mkfifo");
                continue;
            }
        } else {
            std::fs::create_dir_all(&spool).unwrap();
            std::os::unix::fs::symlink(&elsewhere, &rejected).unwrap();
        }
        let entry = entries::entry(0);
        let line = gateway_audit::EncodedEntry::encode(&entry).unwrap();
        let mut segment = b"not an audit entry\n".to_vec();
        segment.extend_from_slice(line.line());
        std::fs::write(spool.join("00000000000000000001.jsonl"), segment).unwrap();

        let config = config(&receiver, &spool, 10, 1_000);
        let sink = WebhookSink::start_with(&config, secret(), fast_retries()).unwrap();
        receiver
            .wait_until(planted, Duration::from_secs(30), |s| s.unique() == 1)
            .await;
        sink.shutdown(in_secs(10)).await.unwrap();
        assert_eq!(receiver.state.ids(), HashSet::from([entry.id]), "{planted}");
        assert_eq!(
            std::fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "{planted}: nothing was written elsewhere"
        );
    }
}

/// A request timeout past the clock's range counts as the longest one honoured instead
/// of overflowing the deadline (a panic in the delivery task, so nothing arrived).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_request_timeout_still_delivers() {
    let receiver = Receiver::start(secret()).await;
    let dir = tempfile::tempdir().unwrap();
    let options = WebhookOptions {
        request_timeout: Duration::MAX,
        ..fast_retries()
    };
    let sink = WebhookSink::start_with(
        &config(&receiver, &dir.path().join("spool"), 10, 100),
        secret(),
        options,
    )
    .unwrap();
    let sent = record_many(&sink, 0, 3).await;
    receiver
        .wait_until("3 unique ids", Duration::from_secs(10), |s| s.unique() == 3)
        .await;
    assert_eq!(receiver.state.ids(), sent);
    sink.shutdown(in_secs(10)).await.unwrap();
    assert_eq!(sink.report().delivered, 3);
}

/// A loopback receiver that accepts connections and never answers, and the task that
/// holds them (abort it to close them).
async fn hanging_receiver() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hanging.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hanging.accept().await {
            held.push(stream);
        }
    });
    (addr, holder)
}

/// A loopback address nothing listens on: every POST to it fails at once.
async fn closed_port() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A sink in `dir` whose receiver refuses every connection and whose spool is too small
/// for any entry: each entry is dropped, queued or spilled straight to the spool.
async fn sink_that_keeps_nothing(dir: &Path, batch_size: u32, queue_capacity: u32) -> WebhookSink {
    let config = WebhookConfig {
        url: format!("http://{}/audit", closed_port().await),
        batch_size,
        queue_capacity,
        ..config_at(&dir.join("spool"))
    };
    let options = WebhookOptions {
        max_spool_bytes: 1,
        ..fast_retries()
    };
    WebhookSink::start_with(&config, secret(), options).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_the_delivery_task_could_not_spool_fail_the_next_flush_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink_that_keeps_nothing(dir.path(), 10, 1_000).await;
    record_many(&sink, 0, 30).await;
    let err = sink.flush(in_secs(10)).await.unwrap_err();
    assert!(matches!(err, AuditError::Lost { entries: 30, .. }), "{err}");
    // Reported once: the next flush has nothing new to tell.
    sink.flush(in_secs(10)).await.unwrap();
    record_many(&sink, 30, 20).await;
    let err = sink.shutdown(in_secs(10)).await.unwrap_err();
    assert!(matches!(err, AuditError::Lost { entries: 20, .. }), "{err}");
    assert_eq!(sink.report().dropped, 50);
}

/// Regression: an entry spilled straight to the spool (the queue full) whose caller's
/// future was dropped while it was written was lost without a word when the spool could
/// not take it: its caller never heard, and no flush reported it. Every entry dropped is
/// now told once: to its caller, or by the next flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_dropped_for_a_caller_gone_meanwhile_fail_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    // A queue of one: most entries spill straight to the spool.
    let sink = sink_that_keeps_nothing(dir.path(), 1, 1).await;
    let (mut told, mut gone) = (0u64, 0u64);
    for n in 0..200 {
        let entry = entries::entry(n);
        // Polled once: a spilled entry's write has started; then its caller goes.
        let mut recording = std::pin::pin!(sink.record(&entry));
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(recording.as_mut().poll(cx))).await;
        match polled {
            std::task::Poll::Ready(Ok(())) => {}
            std::task::Poll::Ready(Err(_)) => told += 1,
            std::task::Poll::Pending => gone += 1,
        }
    }
    assert!(
        gone > 0,
        "no caller went away while its entry was written: told {told}"
    );
    let lost = match sink.flush(in_secs(10)).await {
        Ok(()) => 0,
        Err(AuditError::Lost { entries, .. }) => entries,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(sink.report().dropped, 200);
    assert_eq!(told + lost, 200, "told {told}, lost {lost}, gone {gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_waits_for_queued_entries_while_newer_ones_spill_to_the_spool() {
    // A receiver that accepts connections and never answers: nothing queued settles.
    let (hanging_addr, holder) = hanging_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let config = WebhookConfig {
        url: format!("http://{hanging_addr}/audit"),
        batch_size: 1,
        queue_capacity: 4,
        ..config_at(&dir.path().join("spool"))
    };
    let options = WebhookOptions {
        request_timeout: Duration::from_secs(60),
        ..fast_retries()
    };
    let sink = WebhookSink::start_with(&config, secret(), options).unwrap();
    record_many(&sink, 0, 10).await;
    // The flush counts what is pending when it starts; entries recorded meanwhile spill
    // straight to the spool (the queue is full) and settle at once, but they are not the
    // ones it waits for.
    let (flushed, _) = tokio::join!(
        sink.flush(Instant::now() + Duration::from_secs(1)),
        record_many(&sink, 10, 20)
    );
    let err = flushed.unwrap_err();
    assert!(matches!(err, AuditError::Timeout { .. }), "{err}");
    assert!(sink.report().in_memory > 0, "{:?}", sink.report());
    drop(sink);
    holder.abort();
}

/// An entry the receiver refuses on its own, sized so the spool can hold one at a time.
fn refused_entry(n: u64, reason_bytes: usize) -> gateway_model::AuditEntry {
    let mut entry = entries::entry(n);
    entry.reason = Some("x".repeat(reason_bytes));
    entry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_aside_file_moved_back_overwrites_no_later_segment() {
    let receiver = Receiver::start(secret()).await;
    receiver.set_mode(Mode::RefuseOver(4_096));
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let sink = WebhookSink::start_with(
        &config(&receiver, &spool, 1, 1_000),
        secret(),
        fast_retries(),
    )
    .unwrap();
    sink.record(&refused_entry(0, 8_192)).await.unwrap();
    // Delivered in order: once the entry behind it arrives, the refused one is aside.
    record_many(&sink, 1, 1).await;
    receiver
        .wait_until("the entry behind", Duration::from_secs(30), |s| {
            s.unique() == 1
        })
        .await;
    sink.shutdown(in_secs(10)).await.unwrap();
    assert_eq!(sink.report().rejected, 1);
    drop(sink);
    let rejected: Vec<String> = std::fs::read_dir(spool.join("rejected"))
        .unwrap()
        .map(|f| f.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");

    // The spool is empty, and the next run spools while the receiver is down: its
    // segments are not named like the file set aside.
    let down = WebhookConfig {
        url: format!("http://{}/audit", closed_port().await),
        ..config(&receiver, &spool, 1, 1_000)
    };
    let sink = WebhookSink::start_with(&down, secret(), fast_retries()).unwrap();
    record_many(&sink, 2, 3).await;
    sink.shutdown(in_secs(10)).await.unwrap();
    assert!(sink.report().spooled >= 3, "{:?}", sink.report());
    assert!(
        !spool.join(&rejected[0]).exists(),
        "a segment took the set-aside file's name {}",
        rejected[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_entries_past_the_spool_cap_are_dropped_not_kept() {
    let receiver = Receiver::start(secret()).await;
    receiver.set_mode(Mode::RefuseOver(4_096));
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // Room for one refused entry at a time in the spool, and for one in `rejected/`.
    let options = WebhookOptions {
        max_spool_bytes: 30_000,
        ..fast_retries()
    };
    let sink =
        WebhookSink::start_with(&config(&receiver, &spool, 1, 1_000), secret(), options).unwrap();
    // Delivered in order: once the entry behind a refused one arrives, it was handled.
    for n in [0, 2] {
        sink.record(&refused_entry(n, 20_000)).await.unwrap();
        record_many(&sink, n + 1, 1).await;
        receiver
            .wait_until("the entry behind", Duration::from_secs(30), |s| {
                s.unique() == (n / 2 + 1) as usize
            })
            .await;
    }
    assert_eq!(sink.report().dropped, 1, "{:?}", sink.report());
    // Accepted, then lost with no caller told: the shutdown says so.
    let err = sink.shutdown(in_secs(10)).await.unwrap_err();
    assert!(matches!(err, AuditError::Lost { entries: 1, .. }), "{err}");
    assert_eq!(sink.report().rejected, 1, "{:?}", sink.report());
}

/// `request_timeout_ms` from the config bounds each POST: a receiver that never answers
/// has the entries spooled after it, not after the 10 s default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configs_request_timeout_bounds_each_post() {
    let (hanging_addr, holder) = hanging_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let config = WebhookConfig {
        url: format!("http://{hanging_addr}/audit"),
        request_timeout_ms: 300,
        ..config_at(&dir.path().join("spool"))
    };
    let sink = WebhookSink::start(&config, secret()).unwrap();
    record_many(&sink, 0, 5).await;
    sink.flush(in_secs(5)).await.unwrap();
    assert_eq!(sink.report().spooled, 5, "{:?}", sink.report());
    drop(sink);
    holder.abort();
}

/// A webhook config at `spool` with the defaults a config file gets.
fn config_at(spool: &Path) -> WebhookConfig {
    serde_json::from_value(serde_json::json!({
        "url": "http://127.0.0.1:9/audit",
        "secret_env": "AUDIT_WEBHOOK_SECRET",
        "spool_dir": spool,
    }))
    .unwrap()
}
