//! The ranges every scripted number must lie in, the checks the admin API and
//! [`SimBuilder::start`](crate::SimBuilder::start) run, and the clamps applied at use, so a
//! value set through the Rust API that the checks would refuse still cannot panic.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::behaviour::{Behaviour, Latency, RateLimit, RetryAfter, Scripted, SlowBody, Target};

/// The shortest token lifetime the simulator grants.
pub const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(1);
/// The longest token lifetime the simulator grants: 48 hours, Genesys Cloud's maximum.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(172_800);
/// The longest wait (latency, `delay`, a slow body's pause between parts, and all of a slow
/// body's pauses together), in milliseconds: one hour.
pub const MAX_WAIT_MS: u64 = 3_600_000;
/// The longest rate-limit window, in seconds: one day.
pub const MAX_WINDOW_SECS: u64 = 86_400;
/// The largest `oversized` body, in bytes: 64 MiB.
pub const MAX_OVERSIZED_BYTES: usize = 64 * 1024 * 1024;
/// The most one-shot answers the admin API keeps pending at once, over all targets.
pub const MAX_PENDING_SCRIPTS: usize = 10_000;
/// The most bytes of `raw` bodies and headers the admin API keeps pending at once, over
/// all targets: 64 MiB (each admin body may hold 512 KB, and 10,000 of them would not fit
/// in memory).
pub const MAX_PENDING_SCRIPT_BYTES: usize = 64 * 1024 * 1024;
/// The most headers of a `raw` answer.
pub const MAX_RAW_HEADERS: usize = 100;
/// The most entries of a behaviour's `errors` and `policyRules` lists, each.
pub const MAX_BEHAVIOUR_RULES: usize = 16;
/// The longest text of a policy rule's `contains` and `code`, and of `serveAs`, in bytes.
pub const MAX_BEHAVIOUR_TEXT: usize = 256;
/// The most models the admin API lets the catalogue hold, and the most models with a
/// behaviour of their own it keeps.
pub const MAX_ADMIN_MODELS: usize = 10_000;
/// The most tokens the simulator keeps: granting one more first forgets the expired and
/// revoked ones, then, if none were, the one that expires first.
pub const MAX_LIVE_TOKENS: usize = 100_000;
/// The latest `Retry-After` HTTP date: 9999-12-31 23:59:59 GMT (HTTP dates have four-digit
/// years), as seconds since the Unix epoch. Later dates are clamped to it.
pub const MAX_HTTP_DATE_SECS: u64 = 253_402_300_799;

/// Headers a [`Scripted::Raw`] answer may not set: the server frames the body itself, and
/// HTTP/2 forbids connection-specific headers.
const FRAMING_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A scripted value outside its documented range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}` {rule}")]
pub struct InputError {
    /// Where the value is, such as `responses[0].headers[1]` or `latency.ms`.
    pub path: String,
    /// The rule it breaks.
    pub rule: String,
}

impl InputError {
    fn new(path: impl fmt::Display, rule: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            rule: rule.into(),
        }
    }

    /// The same error with `prefix` in front of its path.
    pub(crate) fn within(mut self, prefix: &str) -> Self {
        self.path = if self.path.starts_with('[') {
            format!("{prefix}{}", self.path)
        } else {
            format!("{prefix}.{}", self.path)
        };
        self
    }
}

impl Behaviour {
    /// Checks every number against its documented range: latencies finite and 0 to
    /// [`MAX_WAIT_MS`] (a uniform minimum not above its maximum), rates 0 to 1, statuses
    /// 200 to 999, a rate limit allowing at least one call in a window of 1 to
    /// [`MAX_WINDOW_SECS`] s, a slow body of at least one part whose pauses take at most
    /// [`MAX_WAIT_MS`] in all; and its size: at most [`MAX_BEHAVIOUR_RULES`] error rates
    /// and policy rules, texts of at most [`MAX_BEHAVIOUR_TEXT`] bytes.
    pub fn check(&self) -> Result<(), InputError> {
        check_latency(&self.latency)?;
        for (path, len) in [
            ("errors", self.errors.len()),
            ("policyRules", self.policy_rules.len()),
        ] {
            if len > MAX_BEHAVIOUR_RULES {
                return Err(InputError::new(
                    path,
                    format!("holds at most {MAX_BEHAVIOUR_RULES} entries"),
                ));
            }
        }
        let texts = self.policy_rules.iter().enumerate().flat_map(|(i, rule)| {
            [
                (format!("policyRules[{i}].contains"), Some(&rule.contains)),
                (format!("policyRules[{i}].code"), rule.code.as_ref()),
            ]
        });
        for (path, text) in texts.chain([("serveAs".to_owned(), self.serve_as.as_ref())]) {
            if text.is_some_and(|t| t.len() > MAX_BEHAVIOUR_TEXT) {
                return Err(InputError::new(
                    path,
                    format!("is at most {MAX_BEHAVIOUR_TEXT} bytes"),
                ));
            }
        }
        for (i, e) in self.errors.iter().enumerate() {
            check_status(&format!("errors[{i}].status"), e.status)?;
            check_rate(&format!("errors[{i}].rate"), e.rate)?;
        }
        check_rate("dropRate", self.drop_rate)?;
        if let Some(limit) = &self.rate_limit {
            check_rate_limit(limit).map_err(|e| e.within("rateLimit"))?;
        }
        if let Some(slow) = &self.slow_body {
            check_slow_body(slow)?;
        }
        Ok(())
    }
}

impl Target {
    /// Checks that a model target names a model id: 1 to
    /// [`MODEL_ID_MAX_LEN`](gateway_model::MODEL_ID_MAX_LEN) characters matching
    /// [`MODEL_ID_PATTERN`](gateway_model::MODEL_ID_PATTERN), the rule of
    /// `/__admin/models/{id}` (no call can name another, so its script would never be used).
    pub fn check(&self) -> Result<(), InputError> {
        match self {
            Target::Model(id) => check_model_id("model", id),
            Target::Global | Target::Token => Ok(()),
        }
    }
}

impl Scripted {
    /// The bytes this answer holds beyond its fixed size: a `raw` answer's body and
    /// headers (each with the size of its pair of strings), a status's code.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Scripted::Raw { headers, body, .. } => headers
                .iter()
                .map(|(name, value)| {
                    name.len()
                        .saturating_add(value.len())
                        .saturating_add(std::mem::size_of::<(String, String)>())
                })
                .fold(body.len(), usize::saturating_add),
            Scripted::Status { code, .. } => code.as_ref().map_or(0, String::len),
            _ => 0,
        }
    }

    /// Checks the answer's numbers and headers: statuses 200 to 999, a `delay` up to
    /// [`MAX_WAIT_MS`], an `oversized` body up to [`MAX_OVERSIZED_BYTES`], `raw` header
    /// names and values that HTTP can carry (and no framing header such as
    /// `content-length`). `Retry-After` values are not limited: an HTTP date is clamped to
    /// [`MAX_HTTP_DATE_SECS`].
    pub fn check(&self) -> Result<(), InputError> {
        match self {
            Scripted::Status { status, .. } => check_status("status", *status),
            Scripted::Delay { ms } => check_wait_ms("ms", *ms),
            Scripted::Oversized { bytes } if *bytes > MAX_OVERSIZED_BYTES => Err(InputError::new(
                "bytes",
                format!("must be at most {MAX_OVERSIZED_BYTES}"),
            )),
            Scripted::Raw {
                status, headers, ..
            } => raw_parts(*status, headers).map(drop),
            _ => Ok(()),
        }
    }

    /// Checks the answer and that it fits `target` (`grant` answers only the token endpoint).
    pub fn check_for(&self, target: &Target) -> Result<(), InputError> {
        self.check()?;
        if matches!(self, Scripted::Grant { .. }) && *target != Target::Token {
            return Err(InputError::new(
                "kind",
                "`grant` is an answer of the token endpoint: use target `token`",
            ));
        }
        Ok(())
    }
}

/// Checks a script: its target ([`Target::check`], path `target.model`), then each answer
/// for it, naming the failing one by index (`[1].status`).
pub(crate) fn check_scripts(target: &Target, answers: &[Scripted]) -> Result<(), InputError> {
    target.check().map_err(|e| e.within("target"))?;
    check_answers(target, answers)
}

/// Checks a list of scripted answers for `target`, naming the failing one by index.
pub(crate) fn check_answers(target: &Target, answers: &[Scripted]) -> Result<(), InputError> {
    answers.iter().enumerate().try_for_each(|(i, answer)| {
        answer
            .check_for(target)
            .map_err(|e| e.within(&format!("[{i}]")))
    })
}

/// Checks a rate limit (a behaviour's per token, or one per OAuth client on calls or
/// tokens): at least 1 allowed per window (a limit that allows nothing is removed instead)
/// and a window of 1 to [`MAX_WINDOW_SECS`] s. Paths are the limit's own fields.
pub(crate) fn check_rate_limit(limit: &RateLimit) -> Result<(), InputError> {
    if limit.allowed == 0 {
        return Err(InputError::new(
            "allowed",
            "must be at least 1 (remove the limit to turn it off)",
        ));
    }
    check_window("windowSecs", limit.window_secs)
}

/// The longest connection timeout: an hour, as the `sim` command allows.
pub const MAX_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3_600);

/// Checks a connection timeout: 1 ms to [`MAX_CONNECTION_TIMEOUT`] (hyper's timers add
/// it to the clock, so a larger one panics in every connection; zero closes them all).
pub(crate) fn check_connection_timeout(timeout: Duration) -> Result<(), InputError> {
    if (Duration::from_millis(1)..=MAX_CONNECTION_TIMEOUT).contains(&timeout) {
        Ok(())
    } else {
        Err(InputError::new(
            "connectionTimeout",
            format!(
                "must be 1 millisecond to {} seconds",
                MAX_CONNECTION_TIMEOUT.as_secs()
            ),
        ))
    }
}

/// The statuses a script may answer with: final ones (a 1xx is not), up to HTTP's 999.
const FINAL_STATUSES: std::ops::RangeInclusive<u16> = 200..=999;

/// A scripted status as HTTP can answer it: 200 to 999, or 500 for anything else (a
/// 1xx is not a final answer, and only the Rust API can script one out of range).
pub(crate) fn final_status(status: u16) -> http::StatusCode {
    FINAL_STATUSES
        .contains(&status)
        .then(|| http::StatusCode::from_u16(status).ok())
        .flatten()
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
}

fn check_window(path: &str, secs: u64) -> Result<(), InputError> {
    if (1..=MAX_WINDOW_SECS).contains(&secs) {
        Ok(())
    } else {
        Err(InputError::new(
            path,
            format!("must be 1 to {MAX_WINDOW_SECS} seconds"),
        ))
    }
}

/// Checks a behaviour's slow body: at least one part, each pause up to [`MAX_WAIT_MS`],
/// and all the pauses (`chunks` × `chunkDelayMs`) up to [`MAX_WAIT_MS`] together.
fn check_slow_body(slow: &SlowBody) -> Result<(), InputError> {
    if slow.chunks == 0 {
        return Err(InputError::new("slowBody.chunks", "must be at least 1"));
    }
    check_wait_ms("slowBody.chunkDelayMs", slow.chunk_delay_ms)?;
    if u64::from(slow.chunks).saturating_mul(slow.chunk_delay_ms) > MAX_WAIT_MS {
        return Err(InputError::new(
            "slowBody",
            format!("`chunks` × `chunkDelayMs` must be at most {MAX_WAIT_MS} milliseconds"),
        ));
    }
    Ok(())
}

/// Checks that `id` is a model id ([`gateway_model::ModelId::is_well_formed`]), showing at
/// most 64 of its characters.
pub(crate) fn check_model_id(path: &str, id: &str) -> Result<(), InputError> {
    if gateway_model::ModelId::is_well_formed(id) {
        return Ok(());
    }
    let mut shown = id.to_owned();
    gateway_model::cut_to(&mut shown, 64);
    Err(InputError::new(
        path,
        format!(
            "must be a model id, 1 to {} characters matching {} (not `{shown}`)",
            gateway_model::MODEL_ID_MAX_LEN,
            gateway_model::MODEL_ID_PATTERN
        ),
    ))
}

fn check_latency(latency: &Latency) -> Result<(), InputError> {
    match *latency {
        Latency::None => Ok(()),
        Latency::Fixed { ms } => check_ms("latency.ms", ms),
        Latency::Exponential { mean_ms } => check_ms("latency.meanMs", mean_ms),
        Latency::Uniform { min_ms, max_ms } => {
            check_ms("latency.minMs", min_ms)?;
            check_ms("latency.maxMs", max_ms)?;
            if min_ms > max_ms {
                return Err(InputError::new(
                    "latency.minMs",
                    "must not be above `latency.maxMs`",
                ));
            }
            Ok(())
        }
    }
}

fn check_ms(path: &str, ms: f64) -> Result<(), InputError> {
    #[allow(clippy::cast_precision_loss)] // an hour in ms is exact in an f64
    let max = MAX_WAIT_MS as f64;
    if (0.0..=max).contains(&ms) {
        Ok(())
    } else {
        Err(InputError::new(
            path,
            format!("must be a number of milliseconds from 0 to {MAX_WAIT_MS}"),
        ))
    }
}

fn check_wait_ms(path: &str, ms: u64) -> Result<(), InputError> {
    if ms <= MAX_WAIT_MS {
        Ok(())
    } else {
        Err(InputError::new(
            path,
            format!("must be at most {MAX_WAIT_MS} milliseconds"),
        ))
    }
}

fn check_rate(path: &str, rate: f64) -> Result<(), InputError> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(InputError::new(path, "must be a fraction from 0 to 1"))
    }
}

fn check_status(path: &str, status: u16) -> Result<(), InputError> {
    if FINAL_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(InputError::new(
            path,
            "must be a final HTTP status, 200 to 999",
        ))
    }
}

/// The status and headers of a [`Scripted::Raw`] answer, or the first part HTTP cannot
/// carry.
pub(crate) fn raw_parts(
    status: u16,
    headers: &[(String, String)],
) -> Result<(StatusCode, HeaderMap), InputError> {
    check_status("status", status)?;
    let status = StatusCode::from_u16(status)
        .map_err(|_| InputError::new("status", "must be a final HTTP status, 200 to 999"))?;
    Ok((status, raw_headers(headers)?))
}

/// The headers of a [`Scripted::Raw`] answer, or the first one HTTP cannot carry; at
/// most [`MAX_RAW_HEADERS`].
fn raw_headers(headers: &[(String, String)]) -> Result<HeaderMap, InputError> {
    if headers.len() > MAX_RAW_HEADERS {
        return Err(InputError::new(
            "headers",
            format!("holds at most {MAX_RAW_HEADERS} headers"),
        ));
    }
    let mut map = HeaderMap::new();
    for (i, (name, value)) in headers.iter().enumerate() {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            InputError::new(
                format!("headers[{i}][0]"),
                "must be a header name (letters, digits and !#$%&'*+-.^_`|~)",
            )
        })?;
        if FRAMING_HEADERS.contains(&name.as_str()) {
            return Err(InputError::new(
                format!("headers[{i}][0]"),
                format!("`{name}` is set by the server and cannot be scripted"),
            ));
        }
        let value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
            InputError::new(
                format!("headers[{i}][1]"),
                "must be a header value (no control characters but tab)",
            )
        })?;
        // `HeaderMap` takes at most 32,768 names: more is an error here, not a panic.
        map.try_append(name, value).map_err(|_| {
            InputError::new(
                "headers",
                format!("holds at most {MAX_RAW_HEADERS} headers"),
            )
        })?;
    }
    Ok(map)
}

/// A wait of `ms` milliseconds as a `Duration`: NaN and negatives are 0, the rest is
/// capped at [`MAX_WAIT_MS`].
pub(crate) fn wait_from_ms(ms: f64) -> Duration {
    #[allow(clippy::cast_precision_loss)] // an hour in ms is exact in an f64
    let max = MAX_WAIT_MS as f64;
    if ms.is_nan() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(ms.clamp(0.0, max) / 1000.0)
}

/// A wait of `ms` milliseconds, capped at [`MAX_WAIT_MS`].
pub(crate) fn wait_from_millis(ms: u64) -> Duration {
    Duration::from_millis(ms.min(MAX_WAIT_MS))
}

/// A slow body's parts (at least 1) and the pause before each, cut so that all the pauses
/// take at most [`MAX_WAIT_MS`] together.
pub(crate) fn slow_body_parts(slow: &SlowBody) -> (u32, Duration) {
    let chunks = slow.chunks.max(1);
    let most_each = MAX_WAIT_MS / u64::from(chunks);
    (chunks, wait_from_millis(slow.chunk_delay_ms.min(most_each)))
}

/// A token lifetime within [`MIN_TOKEN_LIFETIME`]..=[`MAX_TOKEN_LIFETIME`].
pub(crate) fn clamp_token_lifetime(lifetime: Duration) -> Duration {
    lifetime.clamp(MIN_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME)
}

/// The `Retry-After` header value for `retry_after`, with an HTTP date clamped to
/// [`MAX_HTTP_DATE_SECS`].
pub(crate) fn retry_after_value(retry_after: RetryAfter) -> Option<HeaderValue> {
    let text = match retry_after {
        RetryAfter::Seconds(secs) => secs.to_string(),
        RetryAfter::HttpDate(secs) => {
            // A clock before 1970 counts as 1970: nothing here may panic.
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let at = now.saturating_add(secs).min(MAX_HTTP_DATE_SECS);
            httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(at))
        }
        RetryAfter::Absent => return None,
    };
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_stop_at_the_year_9999() {
        let far = retry_after_value(RetryAfter::HttpDate(u64::MAX)).unwrap();
        assert_eq!(far, "Fri, 31 Dec 9999 23:59:59 GMT");
        let near = retry_after_value(RetryAfter::HttpDate(0)).unwrap();
        assert!(httpdate::parse_http_date(near.to_str().unwrap()).is_ok());
        assert_eq!(
            retry_after_value(RetryAfter::Seconds(u64::MAX)).unwrap(),
            "18446744073709551615"
        );
    }

    #[test]
    fn waits_are_clamped_and_never_panic() {
        assert_eq!(wait_from_ms(f64::NAN), Duration::ZERO);
        assert_eq!(wait_from_ms(-5.0), Duration::ZERO);
        assert_eq!(wait_from_ms(f64::NEG_INFINITY), Duration::ZERO);
        assert_eq!(wait_from_ms(f64::INFINITY), Duration::from_secs(3600));
        assert_eq!(wait_from_ms(1e300), Duration::from_secs(3600));
        assert_eq!(wait_from_ms(250.0), Duration::from_millis(250));
        assert_eq!(wait_from_millis(u64::MAX), Duration::from_secs(3600));
        assert_eq!(
            clamp_token_lifetime(Duration::MAX),
            Duration::from_secs(172_800)
        );
        assert_eq!(clamp_token_lifetime(Duration::ZERO), Duration::from_secs(1));
    }

    #[test]
    fn raw_headers_must_be_ones_http_can_carry() {
        let ok = raw_headers(&[
            ("Retry-After".into(), "18446744073709551615".into()),
            ("x-twice".into(), "1".into()),
            ("x-twice".into(), "2".into()),
        ])
        .unwrap();
        assert_eq!(ok.get_all("x-twice").iter().count(), 2);
        let bad_name = raw_headers(&[("bad name".into(), "v".into())]).unwrap_err();
        assert_eq!(bad_name.path, "headers[0][0]");
        let bad_value = raw_headers(&[("x".into(), "a\nb".into())]).unwrap_err();
        assert_eq!(bad_value.path, "headers[0][1]");
        let framing = raw_headers(&[("Content-Length".into(), "5".into())]).unwrap_err();
        assert!(framing.rule.contains("content-length"), "{framing}");
    }
}
