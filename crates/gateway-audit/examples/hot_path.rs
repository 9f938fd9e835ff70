//! Measures the per-call cost of the router's hot path: metrics, stats, encoding an audit
//! entry, appending it to the JSONL file, and handing it to the webhook sink.
//!
//! Run with `cargo run --release -p gateway-audit --example hot_path`.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use gateway_audit::webhook::{WebhookOptions, WebhookSecret, WebhookSink};
use gateway_audit::{AuditSink, EncodedEntry, FanOut, JsonlOptions, JsonlSink, PromptDigest};
use gateway_model::{
    AuditEntry, FsyncPolicy, Metadata, ModelAttempt, ModelId, Outcome, Tuning, WebhookConfig,
};
use gateway_telemetry::{LocalMetrics, ModelMetrics, Stats};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use uuid::Uuid;

const N: u32 = 200_000;

fn entry(n: u32) -> AuditEntry {
    let digest = PromptDigest::of("Summarize this conversation in two sentences.");
    AuditEntry {
        id: Uuid::now_v7(),
        timestamp: Utc::now(),
        route: "summarize".into(),
        request_id: format!("req-{n:08}"),
        correlation_id: format!("corr-{n:08}"),
        upstream_correlation_id: Some("inin-1".into()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        caller_request_id: None,
        requested_model: ModelId::new("model-gen-4"),
        served_model: Some(ModelId::new("model-gen-4")),
        attempts: 1,
        fallbacks_used: 0,
        models_tried: vec![ModelAttempt {
            model_id: ModelId::new("model-gen-4"),
            request_id: format!("req-{n:08}"),
            attempts: 1,
            outcome: Outcome::Success,
            status: Some(200),
            error_code: None,
            upstream_correlation_id: Some("inin-1".into()),
            latency_us: 1234,
        }],
        outcome: Outcome::Success,
        status: Some(200),
        error_code: None,
        reason: None,
        latency_us: 1234,
        tuning: Tuning::Default,
        temperature: 0.3,
        safety_verdict: None,
        usage: None,
        prompt_sha256: digest.sha256,
        prompt_chars: digest.chars,
        metadata: Metadata::default(),
    }
}

fn report(what: &str, elapsed: Duration, n: u32) {
    println!(
        "{what:<48} {:>8.0} ns/call",
        elapsed.as_nanos() as f64 / f64::from(n)
    );
}

async fn accept_all(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(
                |request: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = request.into_body().collect().await;
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let metrics = LocalMetrics::new();
    let model = metrics.scope(|| ModelMetrics::new("model-gen-4"));
    let started = Instant::now();
    for i in 0..N {
        let _guard = model.in_flight();
        model.attempt();
        model.request(Outcome::Success, Duration::from_micros(u64::from(i % 5000)));
        model.overhead(Duration::from_nanos(u64::from(i % 9000)));
    }
    report(
        "ModelMetrics: in_flight+attempt+request+overhead",
        started.elapsed(),
        N,
    );
    metrics.handle().run_upkeep();

    let stats = Stats::new(["model-gen-4", "model-fallback-3"]);
    let started = Instant::now();
    for i in 0..N {
        stats.record(
            black_box("model-gen-4"),
            Outcome::Success,
            Duration::from_micros(u64::from(i)),
        );
    }
    report("Stats::record", started.elapsed(), N);

    let entries: Vec<AuditEntry> = (0..N).map(entry).collect();
    let started = Instant::now();
    let encoded: Vec<EncodedEntry> = entries
        .iter()
        .map(|e| EncodedEntry::encode(e).unwrap())
        .collect();
    report(
        &format!("EncodedEntry::encode ({} bytes)", encoded[0].line().len()),
        started.elapsed(),
        N,
    );

    let dir = tempfile::tempdir().unwrap();
    let options = JsonlOptions {
        fsync: FsyncPolicy::Interval,
        fsync_interval: Duration::from_secs(1),
        rotate_bytes: 64 << 20,
        keep_rotated: 10,
    };
    let jsonl = JsonlSink::open_with(dir.path().join("audit.jsonl"), options).unwrap();
    let started = Instant::now();
    for e in &encoded {
        jsonl.record_encoded(e).await.unwrap();
    }
    report(
        "JsonlSink::record_encoded (fsync interval)",
        started.elapsed(),
        N,
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(accept_all(listener));
    let config = WebhookConfig {
        url: format!("http://{addr}/audit"),
        secret_env: "UNUSED".into(),
        spool_dir: dir.path().join("spool"),
        batch_size: 500,
        queue_capacity: 100_000,
        request_timeout_ms: 10_000,
        max_spool_bytes: 1 << 30,
    };
    let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let webhook =
        Arc::new(WebhookSink::start_with(&config, secret, WebhookOptions::default()).unwrap());
    let fan_out = FanOut::new(vec![
        Arc::new(JsonlSink::open_with(dir.path().join("fan.jsonl"), options).unwrap()),
        webhook.clone(),
    ]);
    let started = Instant::now();
    for e in &entries {
        fan_out.record(e).await.unwrap();
    }
    let recorded = started.elapsed();
    report(
        "FanOut(JSONL + webhook)::record, encode included",
        recorded,
        N,
    );
    fan_out
        .flush(tokio::time::Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    let delivered = started.elapsed();
    let r = webhook.report();
    println!(
        "webhook: {} delivered, {} spooled, {} dropped; all settled after {delivered:?} ({:.0} entries/s)",
        r.delivered,
        r.spooled,
        r.dropped,
        f64::from(N) / delivered.as_secs_f64()
    );
    fan_out
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
}
