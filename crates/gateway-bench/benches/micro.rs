//! Micro-benchmarks of the router's per-call work: building, validating and serialising a
//! payload; the compiled schema check; sticky model selection; recording one call's
//! metrics and audit entry.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_audit::{AuditSink, EncodedEntry, JsonlOptions, JsonlSink, PromptDigest};
use gateway_bench::micro_ids;
use gateway_model::{
    AuditEntry, GatewayPayload, ModelId, Outcome, SplitEntry, Tuning, Validate, payload_format,
};
use gateway_router::StickySelector;
use gateway_telemetry::{ModelMetrics, Stats};

const PROMPT: &str = "Summarize this transcript: the customer asks to move the delivery to Friday and to keep the same address.";

fn payload(c: &mut Criterion) {
    c.bench_function(micro_ids::PAYLOAD_BUILD, |b| {
        b.iter(|| {
            let payload = GatewayPayload::builder("model-gen-4", black_box(PROMPT))
                .fallbacks(["model-fallback-3"])
                .build()
                .expect("valid");
            serde_json::to_vec(&payload).expect("serialises")
        });
    });
    let value = serde_json::to_value(
        GatewayPayload::builder("model-gen-4", PROMPT)
            .build()
            .expect("valid"),
    )
    .expect("json");
    let _ = payload_format();
    c.bench_function(micro_ids::PAYLOAD_SCHEMA, |b| {
        b.iter(|| payload_format().check(black_box(&value)).is_ok());
    });
    let payload = GatewayPayload::builder("model-gen-4", PROMPT)
        .build()
        .expect("valid");
    c.bench_function(micro_ids::PAYLOAD_VALIDATE, |b| {
        b.iter(|| black_box(&payload).validate().is_ok());
    });
}

fn selection(c: &mut Criterion) {
    let selector = StickySelector::new(&[
        SplitEntry {
            model: "model-gen-4".into(),
            weight: 70,
        },
        SplitEntry {
            model: "model-gen-5".into(),
            weight: 20,
        },
        SplitEntry {
            model: "model-small-1".into(),
            weight: 10,
        },
    ]);
    c.bench_function(micro_ids::STICKY, |b| {
        b.iter(|| selector.select(black_box("conversation-7f3a9b")));
    });
}

fn recording(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = JsonlSink::open_with(dir.path().join("audit.jsonl"), JsonlOptions::default())
        .expect("sink");
    let metrics = ModelMetrics::new("model-gen-4");
    let stats = Stats::new(["model-gen-4"]);
    let entry = sample_entry();
    c.bench_function(micro_ids::METRICS_AND_AUDIT, |b| {
        b.iter(|| {
            let guard = metrics.in_flight();
            metrics.attempt();
            metrics.request(Outcome::Success, Duration::from_millis(40));
            metrics.overhead(Duration::from_micros(12));
            stats.record("model-gen-4", Outcome::Success, Duration::from_millis(40));
            drop(guard);
            let encoded = EncodedEntry::encode(black_box(&entry)).expect("encodes");
            runtime
                .block_on(sink.record_encoded(&encoded))
                .expect("written");
        });
    });
    c.bench_function(micro_ids::AUDIT_ENCODE, |b| {
        b.iter(|| EncodedEntry::encode(black_box(&entry)).expect("encodes"));
    });
    c.bench_function(micro_ids::PROMPT_DIGEST, |b| {
        b.iter(|| PromptDigest::of(black_box(PROMPT)));
    });
}

fn sample_entry() -> AuditEntry {
    let digest = PromptDigest::of(PROMPT);
    AuditEntry {
        id: uuid::Uuid::now_v7(),
        timestamp: chrono::Utc::now(),
        route: "summarize".into(),
        request_id: "5f0c4c8e-8f7e-4e52-9a0b-1c2d3e4f5a6b".into(),
        correlation_id: "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e".into(),
        upstream_correlation_id: Some("inin-77".into()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        caller_request_id: Some("caller-77".into()),
        requested_model: ModelId::new("model-gen-4"),
        served_model: Some(ModelId::new("model-gen-4")),
        attempts: 1,
        fallbacks_used: 0,
        models_tried: Vec::new(),
        outcome: Outcome::Success,
        status: Some(200),
        error_code: None,
        reason: None,
        latency_us: 41_000,
        tuning: Tuning::Default,
        temperature: 0.7,
        safety_verdict: None,
        usage: None,
        prompt_sha256: digest.sha256,
        prompt_chars: digest.chars,
        metadata: gateway_model::Metadata::new(),
    }
}

criterion_group!(benches, payload, selection, recording);
criterion_main!(benches);
