//! `[tls]`: which root certificates the client trusts.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which root certificates to trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrustRoots {
    /// Mozilla's roots, compiled in (`webpki-roots`).
    #[default]
    Webpki,
    /// The operating system's store.
    Native,
}

/// TLS trust settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Root store.
    pub roots: TrustRoots,
    /// An extra CA certificate (PEM) to trust, for private gateways.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_ca_file: Option<PathBuf>,
}
