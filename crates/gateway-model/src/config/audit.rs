//! `[audit]`: the JSONL audit file and the optional signed webhook.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::FILE_PATH;
use super::credentials::ENV_VAR;
use crate::bounds::{self, Bound, Bounded};
use crate::endpoint::check_url;
use crate::validation::{Location, Rule, Validate, Violations};

/// How long a call waits for the sync covering its audit entry under
/// [`FsyncPolicy::EveryEntry`] (the entry has reached the OS by then): a disk that stops
/// answering fails the entry's write instead of holding the call forever.
pub const EVERY_ENTRY_SYNC_WAIT: Duration = Duration::from_secs(30);

/// When the audit file is synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// After every entry (safest, slowest); a call waits at most 30 s for its entry's sync.
    EveryEntry,
    /// At most every `fsync_interval_ms` (an entry is still flushed to the OS before the call returns).
    #[default]
    Interval,
    /// Never explicitly (the OS decides).
    Never,
}

/// The audit trail: a JSONL file and, optionally, a signed webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(transform = bounds::state::<Self>)]
pub struct AuditConfig {
    /// Whether to write audit entries at all.
    pub enabled: bool,
    /// The JSONL file entries are appended to (a regular file: not a device, pipe or socket).
    pub file: PathBuf,
    /// When the file is synced to disk.
    pub fsync: FsyncPolicy,
    /// Sync interval for `fsync = "interval"`.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub fsync_interval_ms: u64,
    /// Size at which the file is rotated.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub rotate_bytes: u64,
    /// Rotated files kept.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub keep_rotated: u32,
    /// An optional webhook receiving every entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            file: PathBuf::from("audit/genesys-router-audit.jsonl"),
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 1000,
            rotate_bytes: 64 * 1024 * 1024,
            keep_rotated: 10,
            webhook: None,
        }
    }
}

impl Bounded for AuditConfig {
    const BOUNDS: &'static [Bound<Self>] = &[
        bounds::text!(file, FILE_PATH),
        bounds::int!(fsync_interval_ms, 1, 3_600_000),
        bounds::int!(rotate_bytes, 4096, u64::MAX),
        bounds::int!(keep_rotated, 1, 1000),
    ];
}

impl Validate for AuditConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        bounds::check(self, at, out);
        if let Some(webhook) = &self.webhook {
            webhook.collect_violations(&at.key("webhook"), out);
        }
    }
}

/// Entries per POST unless configured.
const DEFAULT_WEBHOOK_BATCH_SIZE: u32 = 100;
/// Entries held in memory before spooling, unless configured.
const DEFAULT_WEBHOOK_QUEUE_CAPACITY: u32 = 10_000;
/// Default longest time for one POST to the webhook, in milliseconds.
pub const DEFAULT_WEBHOOK_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Default most bytes the webhook's spool holds (1 GiB).
pub const DEFAULT_WEBHOOK_MAX_SPOOL_BYTES: u64 = 1 << 30;

/// A webhook that receives audit entries, signed per the Standard Webhooks specification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = bounds::state::<Self>)]
pub struct WebhookConfig {
    /// Where entries are sent (HTTP POST): https, or http on loopback.
    pub url: String,
    /// Env var holding the signing secret (`whsec_` plus base64 of the key).
    pub secret_env: String,
    /// Directory entries are spooled to while the endpoint is down.
    pub spool_dir: PathBuf,
    /// Entries per POST.
    #[serde(
        default = "default_batch_size",
        deserialize_with = "crate::whole::deserialize"
    )]
    pub batch_size: u32,
    /// Entries held in memory before spooling to disk.
    #[serde(
        default = "default_queue_capacity",
        deserialize_with = "crate::whole::deserialize"
    )]
    pub queue_capacity: u32,
    /// Longest time one POST may take, connection included, in milliseconds: a receiver
    /// slower than this gets the message again later (it deduplicates by id).
    #[serde(
        default = "default_request_timeout_ms",
        deserialize_with = "crate::whole::deserialize"
    )]
    pub request_timeout_ms: u64,
    /// Most bytes the spool holds; past it new entries are dropped (and counted). A failed
    /// message is spooled whole (`batch_size` entries, about 1 KiB each), so keep this
    /// many batches large. The spool's `rejected/` directory has a cap of the same size.
    #[serde(
        default = "default_max_spool_bytes",
        deserialize_with = "crate::whole::deserialize"
    )]
    pub max_spool_bytes: u64,
}

fn default_request_timeout_ms() -> u64 {
    DEFAULT_WEBHOOK_REQUEST_TIMEOUT_MS
}

fn default_max_spool_bytes() -> u64 {
    DEFAULT_WEBHOOK_MAX_SPOOL_BYTES
}

fn default_batch_size() -> u32 {
    DEFAULT_WEBHOOK_BATCH_SIZE
}

fn default_queue_capacity() -> u32 {
    DEFAULT_WEBHOOK_QUEUE_CAPACITY
}

impl Bounded for WebhookConfig {
    const BOUNDS: &'static [Bound<Self>] = &[
        bounds::text!(secret_env, ENV_VAR),
        bounds::text!(spool_dir, FILE_PATH),
        bounds::int!(batch_size, 1, 1000),
        bounds::int!(queue_capacity, 1, 1_000_000),
        bounds::int!(request_timeout_ms, 100, 600_000),
        bounds::int!(max_spool_bytes, 65_536, 1 << 40),
    ];
}

impl Validate for WebhookConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        // Whether a URL is acceptable depends on its parsed host (https, or http on
        // loopback): a rule of Rust's alone.
        if let Err(e) = check_url(&self.url, false) {
            out.push(
                &at.key("url"),
                Rule::Url {
                    reason: e.to_string(),
                },
            );
        }
        bounds::check(self, at, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_every_entry_doc_states_the_sync_wait() {
        let schema = schemars::schema_for!(FsyncPolicy);
        let text = schema.as_value().to_string();
        let wait = format!("at most {} s", EVERY_ENTRY_SYNC_WAIT.as_secs());
        assert!(text.contains(&wait), "{text}");
    }
}
