//! The audit trail: one small async [`AuditSink`] trait, a JSONL file sink, a signed
//! webhook sink with a disk spool, and a [`FanOut`] that writes to several at once.

mod encoded_entry;
mod error;
mod fan_out;
mod jsonl_reader;
mod jsonl_sink;
mod prompt_digest;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;

use gateway_model::AuditEntry;
use tokio::time::Instant;

pub use encoded_entry::EncodedEntry;
pub use error::AuditError;
pub use fan_out::FanOut;
pub use jsonl_reader::{
    JsonlReader, MAX_LINE_BYTES, ReadReport, SkipReason, SkippedLine, read_jsonl,
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
