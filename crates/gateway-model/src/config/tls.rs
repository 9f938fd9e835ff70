//! `[tls]`: which root certificates the client trusts, and which HTTP versions it offers.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::FILE_PATH;
use crate::bounds::{self, Bound, Bounded};
use crate::validation::{Location, Validate, Violations};

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

/// TLS trust settings and the HTTP versions offered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(transform = bounds::state::<Self>)]
pub struct TlsConfig {
    /// Root store.
    pub roots: TrustRoots,
    /// An extra CA certificate (PEM) to trust, for private gateways.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_ca_file: Option<PathBuf>,
    /// Offer only HTTP/1.1 to the gateway (ALPN). By default HTTP/2 is offered too: a
    /// gateway that takes it serves up to 100 calls at once on each connection (as
    /// many connections as `limits.max_concurrency` needs), a pool of HTTP/1.1
    /// connections otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub http1_only: bool,
}

impl Bounded for TlsConfig {
    const BOUNDS: &'static [Bound<Self>] = &[bounds::text!(extra_ca_file, FILE_PATH)];
}

impl Validate for TlsConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        bounds::check(self, at, out);
    }
}
