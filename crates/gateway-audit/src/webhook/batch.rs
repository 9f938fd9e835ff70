//! The webhook request body (`{"entries":[...]}`) and the message that carries it.

use bytes::Bytes;
use gateway_model::AuditEntry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::EncodedEntry;

/// The JSON body of one webhook POST: `{"entries": [AuditEntry, ...]}`, in spool order.
///
/// Each entry carries its unique `id`; deliveries are at least once, so receivers
/// deduplicate on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookBatch {
    /// The entries, oldest first.
    pub entries: Vec<AuditEntry>,
}

impl WebhookBatch {
    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

/// One webhook message: its `webhook-id` and its exact body bytes.
///
/// Both are fixed when the message is formed, before its first attempt, and never change
/// until a receiver accepts it: a refused message is spooled and resent as it is (Standard
/// Webhooks asks a retried message to keep its id, and receivers dedupe on it). Only the
/// timestamp and signature are made afresh per attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    id: String,
    body: Bytes,
    entries: u64,
}

impl Message {
    /// Forms a new message from entries, oldest first (at least one).
    pub(crate) fn of(entries: &[EncodedEntry]) -> Self {
        Self {
            id: message_id(entries),
            body: batch_body(entries),
            entries: entries.len() as u64,
        }
    }

    /// A message read back from the spool, as it was first formed.
    pub(crate) fn from_parts(id: String, body: Bytes, entries: u64) -> Self {
        Self { id, body, entries }
    }

    /// The `webhook-id`.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The body, byte for byte as signed on every attempt.
    pub(crate) fn body(&self) -> &Bytes {
        &self.body
    }

    /// How many audit entries the body holds.
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    /// The same entries as messages of one entry each, in order; `None` if the body
    /// cannot be read back as entries (a damaged spool line).
    pub(crate) fn split(&self) -> Option<Vec<Message>> {
        let batch = WebhookBatch::parse(&self.body).ok()?;
        batch
            .entries
            .iter()
            .map(|entry| {
                let encoded = EncodedEntry::encode(entry).ok()?;
                Some(Message::of(std::slice::from_ref(&encoded)))
            })
            .collect()
    }
}

/// Concatenates already-encoded entries into a batch body, without re-encoding.
fn batch_body(entries: &[EncodedEntry]) -> Bytes {
    let len = 14 + entries.iter().map(|e| e.json().len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"{\"entries\":[");
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(entry.json());
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// `msg_` plus 32 hex digits of SHA-256 over the entry ids: distinct messages get
/// distinct ids (each entry goes into one message only).
fn message_id(entries: &[EncodedEntry]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hasher = Sha256::new();
    for entry in entries {
        hasher.update(entry.id().as_bytes());
    }
    let digest = hasher.finalize();
    let mut id = String::with_capacity(36);
    id.push_str("msg_");
    for byte in &digest[..16] {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}
