//! `[credentials]`: which env vars hold the OAuth client credentials.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bounds::{self, Bound, Bounded, Pattern, Text};
use crate::validation::{Location, Validate, Violations};

/// The pattern env var names match.
pub const ENV_VAR_PATTERN: &str = "^[A-Z_][A-Z0-9_]*$";
/// Longest OAuth client id, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 256;
/// The pattern an OAuth client id matches: visible ASCII, without a space or a `:` (the id
/// goes into HTTP Basic credentials, where a `:` would end it).
pub const CLIENT_ID_PATTERN: &str = "^[!-9;-~]+$";

/// Whether `id` is an OAuth client id: 1 to [`MAX_CLIENT_ID_CHARS`] characters matching
/// [`CLIENT_ID_PATTERN`]. Inline in a config or read from the environment, the rule is
/// this one.
///
/// ```
/// use gateway_model::is_client_id;
///
/// assert!(is_client_id("3f1c2d4e-0000-4000-8000-abcdefabcdef"));
/// assert!(!is_client_id("  ") && !is_client_id("a:b") && !is_client_id("a\u{0}b"));
/// ```
pub fn is_client_id(id: &str) -> bool {
    (1..=MAX_CLIENT_ID_CHARS).contains(&id.len()) && client_id_chars(id)
}

fn client_id_chars(id: &str) -> bool {
    id.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

const CLIENT_ID_CHARS: Pattern = Pattern::new(CLIENT_ID_PATTERN, client_id_chars);

/// An env var name: [`ENV_VAR_PATTERN`].
pub(crate) const ENV_VAR: Text = Text::non_empty().matching(&ENV_VAR_NAME);

const ENV_VAR_NAME: Pattern = Pattern::new(ENV_VAR_PATTERN, |name| {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
});

/// Which env vars hold the OAuth client credentials. The secret is never written here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(transform = bounds::state::<Self>)]
pub struct CredentialsConfig {
    /// The OAuth client id itself (not a secret), if not taken from `client_id_env`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Env var holding the client id.
    pub client_id_env: String,
    /// Env var holding the client secret.
    pub client_secret_env: String,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        Self {
            client_id: None,
            client_id_env: "GENESYS_CLIENT_ID".to_owned(),
            client_secret_env: "GENESYS_CLIENT_SECRET".to_owned(),
        }
    }
}

impl Bounded for CredentialsConfig {
    const BOUNDS: &'static [Bound<Self>] = &[
        bounds::text!(
            client_id,
            Text::chars(1, MAX_CLIENT_ID_CHARS).matching(&CLIENT_ID_CHARS)
        ),
        bounds::text!(client_id_env, ENV_VAR),
        bounds::text!(client_secret_env, ENV_VAR),
    ];
}

impl Validate for CredentialsConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        bounds::check(self, at, out);
    }
}
