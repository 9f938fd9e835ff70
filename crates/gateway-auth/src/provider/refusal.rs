//! What a login host's refusal (a 400 or 401) says, read from its OAuth error body and
//! made fit to show: the credentials it may repeat redacted, control characters escaped,
//! each text cut.

use gateway_model::OneLine;
use gateway_model::redact::redact_json;
use serde::Deserialize;

/// Longest `error` or `description` kept from a refusal, in characters: it goes into
/// every error, log line and backoff message.
pub(super) const MAX_GRANT_ERROR_CHARS: usize = 256;

/// The login service's error shape.
#[derive(Deserialize)]
struct GrantError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The OAuth `error` (`unknown_error` if none can be read) and the `description` (or
/// `error_description`) of a refusal's `body`, with `secrets` redacted.
pub(super) fn read(body: &[u8], secrets: &[&str]) -> (String, Option<String>) {
    let body: Option<GrantError> = serde_json::from_slice(body).ok().and_then(|mut value| {
        redact_json(&mut value, secrets);
        serde_json::from_value(value).ok()
    });
    let (error, description) = body
        .map(|b| (b.error, b.description.or(b.error_description)))
        .unwrap_or_default();
    (
        error.map_or_else(|| "unknown_error".into(), |e| plain(&e)),
        description.as_deref().map(plain),
    )
}

/// `text` fit for one line of a log (control characters escaped: a newline or a terminal
/// escape cannot forge a line), cut to [`MAX_GRANT_ERROR_CHARS`].
fn plain(text: &str) -> String {
    OneLine::new(text, MAX_GRANT_ERROR_CHARS).to_string()
}
