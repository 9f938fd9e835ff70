//! `EncodedEntry`: an audit entry serialised once, shared by every sink.

use bytes::Bytes;
use gateway_model::AuditEntry;
use uuid::Uuid;

use crate::error::AuditError;

/// An audit entry encoded once as one JSON line (JSON plus `\n`), cheap to clone and to
/// hand to several sinks.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedEntry {
    id: Uuid,
    line: Bytes,
}

impl EncodedEntry {
    /// Encodes `entry` as one compact JSON line.
    pub fn encode(entry: &AuditEntry) -> Result<Self, AuditError> {
        let mut line = Vec::with_capacity(1024);
        serde_json::to_writer(&mut line, entry).map_err(|source| AuditError::Encode {
            id: entry.id,
            source,
        })?;
        line.push(b'\n');
        Ok(Self {
            id: entry.id,
            line: Bytes::from(line),
        })
    }

    /// Wraps an already-encoded line (JSON followed by `\n`) whose entry id is `id`.
    pub(crate) fn from_line(id: Uuid, line: Bytes) -> Self {
        Self { id, line }
    }

    /// The entry's id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The JSON text, without the line terminator.
    pub fn json(&self) -> &[u8] {
        &self.line[..self.line.len() - 1]
    }

    /// The JSON text followed by `\n`.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    /// Decodes the entry back.
    pub fn decode(&self) -> Result<AuditEntry, serde_json::Error> {
        serde_json::from_slice(self.json())
    }
}

impl std::fmt::Debug for EncodedEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedEntry")
            .field("id", &self.id)
            .field("bytes", &self.line.len())
            .finish()
    }
}
