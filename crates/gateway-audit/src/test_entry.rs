//! Real audit entries for the crate's unit tests.

use gateway_model::AuditEntry;
use uuid::Uuid;

use crate::EncodedEntry;

/// A real audit entry, encoded, with a fresh id; `n` is its route's number.
pub(crate) fn encoded(n: usize) -> EncodedEntry {
    let entry: AuditEntry = serde_json::from_value(serde_json::json!({
        "id": Uuid::now_v7(), "timestamp": "2026-12-06T10:00:00Z",
        "route": format!("r{n:04}"), "requestId": "q", "correlationId": "c",
        "requestedModel": "m", "attempts": 1, "fallbacksUsed": 0, "modelsTried": [],
        "outcome": "upstream_error", "latencyUs": 1, "tuning": "default",
        "temperature": 0.2, "promptSha256": "0".repeat(64), "promptChars": 1,
    }))
    .unwrap();
    EncodedEntry::encode(&entry).unwrap()
}
