//! `[environment]`: where the gateway is, as a Genesys Cloud region or explicit base URLs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bounds::{self, Bound, Bounded, Pattern, Text};
use crate::endpoint::check_url;
use crate::region::Region;
use crate::validation::{Location, Rule, Validate, ValidationErrors, Violations};

/// The default path of the prompt endpoint.
pub const DEFAULT_PROMPTS_PATH: &str = "/api/v2/ai/gateway/prompts";
/// The default path of the model catalogue.
pub const DEFAULT_MODELS_PATH: &str = "/api/v2/ai/models";
/// The pattern endpoint paths match: a leading `/`, then only the characters RFC 3986
/// allows in a path (no space, control character, `?` or `#`; others percent-encoded).
pub const ENDPOINT_PATH_PATTERN: &str = "^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$";

/// The characters [`ENDPOINT_PATH_PATTERN`] allows after the leading `/`, besides ASCII
/// letters and digits.
const PATH_PUNCTUATION: &str = "._~!$&'()*+,;=:@%/-";

/// Why `login_base` is refused next to `region`.
const LOGIN_BASE_WITH_REGION: &str =
    "`login_base` goes with `api_base` only: a `region` sets the login host itself";

const ENDPOINT_PATH: Pattern = Pattern::new(ENDPOINT_PATH_PATTERN, |path| {
    path.strip_prefix('/').is_some_and(|rest| {
        rest.chars()
            .all(|c| c.is_ascii_alphanumeric() || PATH_PUNCTUATION.contains(c))
    })
});

/// Where the gateway is: a Genesys Cloud region, or explicit base URLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
// `null` reads as absent (serde's `Option`), so "set" means present and a string.
#[schemars(extend(
    "oneOf" = [
        { "required": ["region"], "properties": { "region": { "type": "string" } } },
        { "required": ["api_base"], "properties": { "api_base": { "type": "string" } } },
    ],
    "if" = { "required": ["region"], "properties": { "region": { "type": "string" } } },
    "then" = { "properties": { "login_base": {
        "type": "null",
        "description": LOGIN_BASE_WITH_REGION,
    } } },
))]
#[schemars(transform = bounds::state::<Self>)]
pub struct EnvironmentConfig {
    /// Region name (`eu-west-1`) or domain (`mypurecloud.ie`). Excludes `api_base`.
    #[schemars(extend("enum" = region_enum()))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Explicit API base URL (a simulator or a private gateway). Excludes `region`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    /// Explicit login base URL; by default `api_base` with `api.` replaced by `login.`,
    /// or `api_base` itself when its host does not start with `api.`. Goes with
    /// `api_base` only: with `region` it is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_base: Option<String>,
    /// Path of the prompt endpoint.
    pub prompts_path: String,
    /// Path of the model catalogue.
    pub models_path: String,
    /// Allow plain `http://` to hosts that are not loopback.
    pub allow_insecure_http: bool,
    /// Check at start-up that every configured model exists in the catalogue (every
    /// page read within one `[limits] deadline_ms`).
    pub validate_models: bool,
}

impl Default for EnvironmentConfig {
    fn default() -> Self {
        Self {
            region: None,
            api_base: None,
            login_base: None,
            prompts_path: DEFAULT_PROMPTS_PATH.to_owned(),
            models_path: DEFAULT_MODELS_PATH.to_owned(),
            allow_insecure_http: false,
            validate_models: false,
        }
    }
}

/// The base URLs an environment resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// API base URL without a trailing slash, such as `https://api.mypurecloud.ie`.
    pub api_base: String,
    /// Login base URL without a trailing slash, such as `https://login.mypurecloud.ie`.
    pub login_base: String,
}

impl EnvironmentConfig {
    /// An environment pointing at explicit base URLs (a simulator on loopback, say).
    pub fn at(api_base: impl Into<String>) -> Self {
        Self {
            api_base: Some(api_base.into()),
            ..Self::default()
        }
    }

    /// The API and login base URLs, checked.
    pub fn resolve(&self) -> Result<Endpoints, ValidationErrors> {
        let mut out = Violations::new();
        let resolved = self.resolve_into(&Location::ROOT, &mut out);
        out.finish()?;
        resolved.ok_or_else(|| ValidationErrors::single("", Rule::Required))
    }

    fn resolve_into(&self, at: &Location<'_>, out: &mut Violations) -> Option<Endpoints> {
        let resolved = self.resolve_bases(at, out);
        // A region fixes the login host, so a `login_base` next to it would be ignored.
        if self.region.is_some() && self.login_base.is_some() {
            out.push(
                &at.key("login_base"),
                Rule::Conflict {
                    reason: LOGIN_BASE_WITH_REGION,
                },
            );
            return None;
        }
        resolved
    }

    fn resolve_bases(&self, at: &Location<'_>, out: &mut Violations) -> Option<Endpoints> {
        match (&self.region, &self.api_base) {
            (Some(_), Some(_)) => {
                out.push(
                    at,
                    Rule::Conflict {
                        reason: "set either `region` or `api_base`, not both",
                    },
                );
                None
            }
            (None, None) => {
                out.push(
                    at,
                    Rule::Conflict {
                        reason: "set `region` (such as \"us-east-1\") or `api_base`",
                    },
                );
                None
            }
            (Some(region), None) => {
                let found = Region::lookup(region);
                if found.is_none() {
                    out.push(&at.key("region"), Region::unknown_rule(region));
                }
                found.map(|r| Endpoints {
                    api_base: r.api_base_url(),
                    login_base: r.login_base_url(),
                })
            }
            (None, Some(api)) => {
                let api_ok = self.check_base(&at.key("api_base"), api, out);
                let login = match &self.login_base {
                    Some(login) => self
                        .check_base(&at.key("login_base"), login, out)
                        .then(|| login.clone()),
                    None => Some(derive_login_base(api)),
                };
                let trim = |s: &str| s.trim_end_matches('/').to_owned();
                (api_ok && login.is_some()).then(|| Endpoints {
                    api_base: trim(api),
                    login_base: trim(&login.unwrap_or_default()),
                })
            }
        }
    }

    fn check_base(&self, at: &Location<'_>, url: &str, out: &mut Violations) -> bool {
        match check_url(url, self.allow_insecure_http) {
            Ok(uri) if uri.query().is_some() => {
                out.push(
                    at,
                    Rule::Url {
                        reason: "a base URL takes no query string".into(),
                    },
                );
                false
            }
            Ok(_) => true,
            Err(e) => {
                out.push(
                    at,
                    Rule::Url {
                        reason: e.to_string(),
                    },
                );
                false
            }
        }
    }
}

/// The region names and domains, plus `null` (the field is optional), for the schema.
fn region_enum() -> Vec<serde_json::Value> {
    let mut names: Vec<serde_json::Value> = Region::accepted_names()
        .into_iter()
        .map(Into::into)
        .collect();
    names.push(serde_json::Value::Null);
    names
}

/// `https://api.example.com` → `https://login.example.com`; other hosts are kept.
fn derive_login_base(api_base: &str) -> String {
    match api_base.split_once("://") {
        Some((scheme, rest)) if rest.starts_with("api.") => {
            format!("{scheme}://login.{}", &rest[4..])
        }
        _ => api_base.to_owned(),
    }
}

impl Bounded for EnvironmentConfig {
    const BOUNDS: &'static [Bound<Self>] = &[
        bounds::text!(prompts_path, Text::non_empty().matching(&ENDPOINT_PATH)),
        bounds::text!(models_path, Text::non_empty().matching(&ENDPOINT_PATH)),
    ];
}

impl Validate for EnvironmentConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        self.resolve_into(at, out);
        bounds::check(self, at, out);
    }
}
