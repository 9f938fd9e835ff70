//! Builds realistic audit entries for tests.

use chrono::Utc;
use gateway_audit::PromptDigest;
use gateway_model::{AuditEntry, Metadata, ModelAttempt, ModelId, Outcome, Tuning};
use uuid::Uuid;

/// A complete audit entry; `n` makes the request ids distinct and the prompt different.
pub fn entry(n: u64) -> AuditEntry {
    let digest = PromptDigest::of(&format!("Summarize conversation number {n}, please."));
    AuditEntry {
        id: Uuid::now_v7(),
        timestamp: Utc::now(),
        route: "summarize".into(),
        request_id: format!("req-{n:08}"),
        correlation_id: format!("corr-{n:08}"),
        upstream_correlation_id: Some(format!("inin-{n}")),
        trace_id: None,
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
            upstream_correlation_id: Some(format!("inin-{n}")),
            latency_us: 1234,
        }],
        outcome: Outcome::Success,
        status: Some(200),
        error_code: None,
        reason: None,
        latency_us: 1234 + n,
        tuning: Tuning::Default,
        temperature: 0.3,
        safety_verdict: None,
        usage: None,
        prompt_sha256: digest.sha256,
        prompt_chars: digest.chars,
        metadata: Metadata::default(),
    }
}
