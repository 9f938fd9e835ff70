//! `EncodedEntry`: an audit entry serialised once, shared by every sink.

use bytes::Bytes;
use gateway_model::AuditEntry;
use uuid::Uuid;

use crate::error::AuditError;

/// The scratch buffer's usual size, and the most it keeps after an unusually long entry.
const SCRATCH_BYTES: usize = 2048;
const MAX_SCRATCH_BYTES: usize = 64 * 1024;

thread_local! {
    /// Where entries are encoded before their line is copied out.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(SCRATCH_BYTES));
}

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
        // Encoded in this thread's scratch buffer, then copied once into a buffer of the
        // line's exact size (one allocation, not a growing one and a sharing one).
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            buf.clear();
            let line = serde_json::to_writer(&mut *buf, entry).map(|()| {
                buf.push(b'\n');
                Bytes::copy_from_slice(&buf)
            });
            if buf.capacity() > MAX_SCRATCH_BYTES {
                *buf = Vec::with_capacity(SCRATCH_BYTES);
            }
            let line = line.map_err(|source| AuditError::Encode {
                id: entry.id,
                source,
            })?;
            Ok(Self { id: entry.id, line })
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
