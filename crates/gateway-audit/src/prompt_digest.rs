//! The prompt fields of an audit entry: SHA-256 and length, never the text.

use sha2::{Digest, Sha256};

/// What the audit trail keeps of a prompt: its SHA-256 and its length.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PromptDigest {
    /// Lowercase hex SHA-256 of the prompt's UTF-8 bytes (64 characters).
    pub sha256: String,
    /// Length in characters (Unicode scalar values), saturating at `u32::MAX`.
    pub chars: u32,
}

impl PromptDigest {
    /// Digests `prompt`.
    ///
    /// ```
    /// let d = gateway_audit::PromptDigest::of("héllo");
    /// assert_eq!(d.chars, 5);
    /// assert_eq!(d.sha256.len(), 64);
    /// ```
    pub fn of(prompt: &str) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(prompt.as_bytes());
        let mut sha256 = String::with_capacity(64);
        for byte in &digest {
            sha256.push(char::from(HEX[usize::from(byte >> 4)]));
            sha256.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        Self {
            sha256,
            chars: u32::try_from(prompt.chars().count()).unwrap_or(u32::MAX),
        }
    }

    /// Sets `entry.prompt_sha256` and `entry.prompt_chars`.
    pub fn apply_to(self, entry: &mut gateway_model::AuditEntry) {
        entry.prompt_sha256 = self.sha256;
        entry.prompt_chars = self.chars;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            PromptDigest::of("").sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let abc = PromptDigest::of("abc");
        assert_eq!(
            abc.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(abc.chars, 3);
        // Characters, not bytes: 4 scalar values, 8 bytes.
        assert_eq!(PromptDigest::of("é😀ab").chars, 4);
    }
}
