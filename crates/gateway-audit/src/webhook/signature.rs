//! Standard Webhooks signatures: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::Sha256;

use crate::webhook::WebhookSecret;

/// Header carrying the message id.
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the signing time, in Unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the space-separated signatures, such as `v1,<base64>`.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// The tolerance receivers should allow between the signing time and their clock.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A required header is missing or not text.
    #[error("header `{0}` is missing or not text")]
    MissingHeader(&'static str),
    /// The timestamp is not a whole number of seconds.
    #[error("`webhook-timestamp` is not Unix seconds")]
    BadTimestamp,
    /// The timestamp is further from now than the tolerance allows (a replay, or a skewed clock).
    #[error("the timestamp {timestamp} is more than {tolerance_secs} s from now ({now})")]
    Stale {
        /// The signed timestamp.
        timestamp: i64,
        /// The receiver's time.
        now: i64,
        /// The tolerance, in seconds.
        tolerance_secs: u64,
    },
    /// No `v1` signature in the header matches the body.
    #[error("no v1 signature matches the message")]
    Mismatch,
}

fn mac(secret: &WebhookSecret, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.key())
        .expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for a message: `v1,<base64 HMAC-SHA256>`.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, id, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    let mut out = String::with_capacity(48);
    out.push_str("v1,");
    STANDARD.encode_string(tag, &mut out);
    out
}

/// Unix seconds of `time` (negative before 1970).
pub fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Checks a message's signature header against `secret`, and its timestamp against `now`
/// within `tolerance`.
pub fn verify(
    secret: &WebhookSecret,
    id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let timestamp = timestamp.trim();
    let signed_at: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let now = unix_seconds(now);
    let tolerance_secs = tolerance.as_secs();
    if signed_at.abs_diff(now) > tolerance_secs {
        return Err(SignatureError::Stale {
            timestamp: signed_at,
            now,
            tolerance_secs,
        });
    }
    let expected = mac(secret, id, timestamp, body);
    let matched = signature_header
        .split_ascii_whitespace()
        .filter_map(|candidate| candidate.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|tag| expected.clone().verify_slice(&tag).is_ok());
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// [`verify`] with the id, timestamp and signature read from request headers.
pub fn verify_headers(
    secret: &WebhookSecret,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(SignatureError::MissingHeader(name))
    };
    verify(
        secret,
        header(HEADER_ID)?,
        header(HEADER_TIMESTAMP)?,
        header(HEADER_SIGNATURE)?,
        body,
        now,
        tolerance,
    )
}
