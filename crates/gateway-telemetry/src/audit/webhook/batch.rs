//! The webhook request body (`{"entries":[...]}`) and its message id.

use bytes::Bytes;
use gateway_model::AuditEntry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::EncodedEntry;

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

/// Concatenates already-encoded entries into a batch body, without re-encoding.
pub(crate) fn batch_body(entries: &[EncodedEntry]) -> Bytes {
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

/// `msg_` plus 32 hex digits of SHA-256 over the entry ids: distinct batches get distinct
/// ids, and resending the same batch reuses its id, as Standard Webhooks asks.
pub(crate) fn message_id(entries: &[EncodedEntry]) -> String {
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
