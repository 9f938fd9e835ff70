//! `WebhookSecret`: the Standard Webhooks signing key, never printed.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Shortest accepted signing key, in bytes (the specification recommends 24 to 64).
pub const MIN_KEY_BYTES: usize = 16;

/// Longest accepted signing key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a webhook secret was refused. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The environment variable that should hold the secret is unset or not UTF-8.
    #[error("environment variable `{var}` (the webhook secret) {reason}")]
    MissingEnv {
        /// The variable's name.
        var: String,
        /// Why it gave no text.
        reason: gateway_model::EnvVarError,
    },
    /// The text after `whsec_` is not standard base64.
    #[error("the webhook secret is not `whsec_` followed by standard base64")]
    NotBase64,
    /// The decoded key is too short or too long.
    #[error(
        "the webhook secret's key is {bytes} bytes; it must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES}"
    )]
    KeyLength {
        /// The decoded key length.
        bytes: usize,
    },
    /// The environment variable holds no usable secret.
    #[error("environment variable `{var}` (the webhook secret): {reason}")]
    InEnv {
        /// The variable's name.
        var: String,
        /// What is wrong with its value.
        reason: Box<SecretError>,
    },
}

/// The HMAC key a webhook is signed with. `Debug` prints `<redacted>`; there is no
/// `Display`; the key bytes are overwritten when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Box<[u8]>,
}

impl WebhookSecret {
    /// Parses `whsec_<base64 key>` (the prefix is optional, as in the reference libraries).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.trim();
        let encoded = encoded.strip_prefix(SECRET_PREFIX).unwrap_or(encoded);
        // The decoder's own error names the offending character: do not pass it on.
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        Self::from_key(key)
    }

    /// Uses `key` as the HMAC key directly.
    pub fn from_key(key: impl Into<Vec<u8>>) -> Result<Self, SecretError> {
        let key = key.into();
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SecretError::KeyLength { bytes: key.len() });
        }
        Ok(Self {
            key: key.into_boxed_slice(),
        })
    }

    /// Reads and parses the secret from environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, SecretError> {
        let value = gateway_model::env_var(var).map_err(|reason| SecretError::MissingEnv {
            var: var.to_owned(),
            reason,
        })?;
        Self::parse(&value).map_err(|reason| SecretError::InEnv {
            var: var.to_owned(),
            reason: Box::new(reason),
        })
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl Drop for WebhookSecret {
    fn drop(&mut self) {
        for byte in &mut self.key {
            *byte = 0;
        }
        std::hint::black_box(&self.key);
    }
}
