//! The audit trail for AI governance: one entry per routed call, written to a JSONL file
//! and delivered to a signed webhook, losing nothing while the receiver is down.
//!
//! - [`AuditSink`] is the small async trait every sink implements; [`FanOut`] writes to
//!   several at once. [`EncodedEntry`] serialises an entry once for every sink.
//! - [`PromptDigest`] fills the prompt fields of an [`AuditEntry`]: SHA-256 and length,
//!   never the prompt itself.
//! - [`JsonlSink`] appends one line per entry with group commit (the line has reached the
//!   OS when `record` returns), syncs on a dedicated thread per [`FsyncPolicy`], and rotates
//!   by size. A failed sync fails every waiter whose entry it covered, and each `flush`
//!   answers for everything written since the previous one. [`read_jsonl`] reads a file
//!   back, skipping and reporting broken lines.
//! - [`webhook::WebhookSink`] posts signed batches per Standard Webhooks from a background
//!   task, spools what the receiver refuses, and resends each message with the same id and
//!   body until it is delivered; receivers check signatures with
//!   [`webhook::verify_headers`].
//!
//! The sinks count what happens to entries in `gateway-telemetry`'s
//! `genesys_router_audit_entries_total` counter, bound to the metrics recorder that is
//! current when the sink is built.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use gateway_audit::{AuditSink, FanOut, JsonlOptions, JsonlSink, PromptDigest, read_jsonl};
//! # use gateway_model::{AuditEntry, Metadata, ModelId, Outcome, Tuning};
//! # fn entry(digest: PromptDigest) -> AuditEntry {
//! #     AuditEntry {
//! #         id: uuid::Uuid::now_v7(),
//! #         timestamp: chrono::Utc::now(),
//! #         route: "summarize".into(),
//! #         request_id: "req-1".into(),
//! #         correlation_id: "corr-1".into(),
//! #         upstream_correlation_id: None,
//! #         trace_id: None,
//! #         caller_request_id: None,
//! #         requested_model: ModelId::new("model-gen-4"),
//! #         served_model: Some(ModelId::new("model-gen-4")),
//! #         attempts: 1,
//! #         fallbacks_used: 0,
//! #         models_tried: Vec::new(),
//! #         outcome: Outcome::Success,
//! #         status: Some(200),
//! #         error_code: None,
//! #         reason: None,
//! #         latency_us: 1234,
//! #         tuning: Tuning::Default,
//! #         temperature: 0.3,
//! #         safety_verdict: None,
//! #         usage: None,
//! #         prompt_sha256: digest.sha256,
//! #         prompt_chars: digest.chars,
//! #         metadata: Metadata::default(),
//! #     }
//! # }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let dir = tempfile::tempdir()?;
//!     let path = dir.path().join("audit.jsonl");
//!     let file = JsonlSink::open_with(&path, JsonlOptions::default())?;
//!     let trail = FanOut::new(vec![Arc::new(file)]);
//!
//!     trail.record(&entry(PromptDigest::of("Summarize this transcript"))).await?;
//!     trail.shutdown(tokio::time::Instant::now() + Duration::from_secs(5)).await?;
//!
//!     let report = read_jsonl(&path)?;
//!     assert_eq!(report.entries.len(), 1);
//!     assert_eq!(report.entries[0].prompt_chars, 25);
//!     assert!(report.skipped.is_empty());
//!     Ok(())
//! }
//! ```
//!
//! [`AuditEntry`]: gateway_model::AuditEntry
//! [`FsyncPolicy`]: gateway_model::FsyncPolicy

mod encoded_entry;
mod error;
mod exclusive;
mod fan_out;
mod jsonl_reader;
mod jsonl_sink;
mod path_check;
mod prompt_digest;
mod regular_file;
#[cfg(test)]
mod test_entry;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;

use gateway_model::AuditEntry;
use tokio::time::Instant;

pub use encoded_entry::EncodedEntry;
pub use error::AuditError;
pub use fan_out::FanOut;
pub use jsonl_reader::{
    JsonlReader, MAX_LINE_BYTES, MAX_SKIPPED_LISTED, ReadReport, SkipReason, SkippedLine,
    read_jsonl,
};
pub use jsonl_sink::{JsonlOptions, JsonlSink, rotated_path};
pub use prompt_digest::PromptDigest;

/// The future an [`AuditSink`] method returns.
pub type AuditFuture<'a> = Pin<Box<dyn Future<Output = Result<(), AuditError>> + Send + 'a>>;

/// Somewhere audit entries go. Object safe, so sinks can be mixed in a [`FanOut`].
///
/// Implementors write [`record_encoded`](AuditSink::record_encoded); callers usually use
/// [`record`](AuditSink::record), which encodes once.
pub trait AuditSink: Send + Sync {
    /// A short name for errors and logs, such as `"jsonl"` or `"webhook"`.
    fn name(&self) -> &'static str;

    /// Takes one already-encoded entry; when this resolves `Ok`, the sink answers for it.
    ///
    /// A caller may drop the future after its first poll (a call cancelled while its
    /// entry is written): a sink must take the entry in that first poll, as the
    /// built-in ones do (the JSONL sink queues its line, the webhook its entry), or the
    /// entry can be lost.
    fn record_encoded<'a>(&'a self, entry: &'a EncodedEntry) -> AuditFuture<'a>;

    /// Takes one entry (encodes it, then [`record_encoded`](AuditSink::record_encoded)).
    fn record<'a>(&'a self, entry: &'a AuditEntry) -> AuditFuture<'a> {
        match EncodedEntry::encode(entry) {
            Ok(encoded) => Box::pin(async move { self.record_encoded(&encoded).await }),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    /// Makes everything recorded so far durable or delivered, waiting at most until `deadline`.
    fn flush(&self, deadline: Instant) -> AuditFuture<'_>;

    /// Flushes, then stops taking entries; later records fail with [`AuditError::Closed`].
    fn shutdown(&self, deadline: Instant) -> AuditFuture<'_>;
}
