//! `RouterConfig`: where the gateway is, which routes exist, and how calls are limited,
//! retried, audited and measured. Written as TOML; secrets appear only as env var names.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::endpoint::check_url;
use crate::model_id::ModelId;
use crate::payload::{DEFAULT_MAX_TOKENS, DEFAULT_TOP_P, MAX_FALLBACKS, MAX_TOKENS_CAP, Metadata};
use crate::region::Region;
use crate::safety::SafetyFilter;
use crate::tuning::TemperatureMatrix;
use crate::validation::{Location, Rule, Validate, ValidationErrors, Violations, malformed};

/// The default path of the prompt endpoint.
pub const DEFAULT_PROMPTS_PATH: &str = "/api/v2/ai/gateway/prompts";
/// The default path of the model catalogue.
pub const DEFAULT_MODELS_PATH: &str = "/api/v2/ai/models";
/// The pattern route names match.
pub const ROUTE_NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_-]*$";
/// Longest route name.
pub const MAX_ROUTE_NAME_CHARS: usize = 64;
/// Most models one weighted split may name.
pub const MAX_SPLIT_ENTRIES: usize = 16;
/// Why `login_base` is refused next to `region`.
const LOGIN_BASE_WITH_REGION: &str =
    "`login_base` goes with `api_base` only: a `region` sets the login host itself";
/// The pattern env var names match.
pub const ENV_VAR_PATTERN: &str = "^[A-Z_][A-Z0-9_]*$";

/// The whole router configuration.
///
/// ```
/// let config = gateway_model::RouterConfig::from_toml_str(r#"
///     [environment]
///     region = "eu-west-1"
///
///     [routes.summarize]
///     model = "model-gen-4"
///     fallbacks = ["model-fallback-3"]
///     temperature = { low = 0.1, default = 0.3, high = 0.8 }
/// "#)?;
/// assert_eq!(config.routes["summarize"].fallbacks.len(), 1);
/// assert_eq!(config.environment.resolve()?.api_base, "https://api.mypurecloud.ie");
/// # Ok::<(), gateway_model::ValidationErrors>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Where Genesys Cloud (or a simulator, or a private gateway) is.
    pub environment: EnvironmentConfig,
    /// Which env vars hold the OAuth client credentials.
    #[serde(default)]
    pub credentials: CredentialsConfig,
    /// Named routes: what a caller asks for by name.
    #[schemars(extend(
        "minProperties" = 1,
        "propertyNames" = { "minLength": 1, "maxLength": MAX_ROUTE_NAME_CHARS, "pattern": ROUTE_NAME_PATTERN }
    ))]
    pub routes: BTreeMap<String, RouteConfig>,
    /// Concurrency, timeouts and size limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The HTTP sidecar (`serve`): connection timeouts, connection cap, drain, body size.
    #[serde(default)]
    pub server: ServerConfig,
    /// The retry policy.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The per-model circuit breaker.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// The audit trail.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Prometheus metrics.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// TLS trust.
    #[serde(default)]
    pub tls: TlsConfig,
}

/// Where the gateway is: a Genesys Cloud region, or explicit base URLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(extend(
    "oneOf" = [{ "required": ["region"] }, { "required": ["api_base"] }],
    "dependentSchemas" = { "region": { "properties": { "login_base": {
        "type": "null",
        "description": LOGIN_BASE_WITH_REGION,
    } } } },
))]
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
    /// Check at start-up that every configured model exists in the catalogue.
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

impl Validate for EnvironmentConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        self.resolve_into(at, out);
        for (name, path) in [
            ("prompts_path", &self.prompts_path),
            ("models_path", &self.models_path),
        ] {
            if !path.starts_with('/') || path.contains(char::is_whitespace) {
                out.push(
                    &at.key(name),
                    Rule::Pattern {
                        pattern: "^/[^\\s]*$",
                    },
                );
            }
        }
    }
}

/// Which env vars hold the OAuth client credentials. The secret is never written here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialsConfig {
    /// The OAuth client id itself (not a secret), if not taken from `client_id_env`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Env var holding the client id.
    #[schemars(regex(pattern = r"^[A-Z_][A-Z0-9_]*$"))]
    pub client_id_env: String,
    /// Env var holding the client secret.
    #[schemars(regex(pattern = r"^[A-Z_][A-Z0-9_]*$"))]
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

/// Whether `name` matches [`ENV_VAR_PATTERN`].
fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn check_env_var(at: &Location<'_>, name: &str, out: &mut Violations) {
    if !is_env_var_name(name) {
        out.push(
            at,
            Rule::Pattern {
                pattern: ENV_VAR_PATTERN,
            },
        );
    }
}

impl Validate for CredentialsConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        check_env_var(&at.key("client_id_env"), &self.client_id_env, out);
        check_env_var(&at.key("client_secret_env"), &self.client_secret_env, out);
        if let Some(id) = &self.client_id {
            out.check_chars(&at.key("client_id"), id, 1, 256);
        }
    }
}

/// A named route: which model (or weighted split), its fallbacks, and how to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(extend("oneOf" = [{ "required": ["model"] }, { "required": ["split"] }]))]
pub struct RouteConfig {
    /// The model, when the route has one. Excludes `split`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelId>,
    /// Weighted models, chosen sticky on the caller's key. Excludes `model`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("minItems" = 1, "maxItems" = MAX_SPLIT_ENTRIES))]
    pub split: Vec<SplitEntry>,
    /// Models tried in order when the chosen one fails; distinct, at most 5.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = MAX_FALLBACKS, "uniqueItems" = true))]
    pub fallbacks: Vec<ModelId>,
    /// Temperatures by tuning level.
    pub temperature: TemperatureMatrix,
    /// `maxTokens` for this route, 1 to 32768.
    #[schemars(range(min = 1, max = 32768))]
    pub max_tokens: u32,
    /// `topP` for this route: above 0, at most 1.
    #[schemars(range(max = 1.0), extend("exclusiveMinimum" = 0.0))]
    pub top_p: f64,
    /// Safety filters for this route.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true))]
    pub safety_filters: Vec<SafetyFilter>,
    /// Labels added to every payload of this route.
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            model: None,
            split: Vec::new(),
            fallbacks: Vec::new(),
            temperature: TemperatureMatrix::default(),
            max_tokens: DEFAULT_MAX_TOKENS,
            top_p: DEFAULT_TOP_P,
            safety_filters: Vec::new(),
            metadata: Metadata::new(),
        }
    }
}

impl RouteConfig {
    /// A route to one model with defaults for everything else.
    pub fn to_model(model: impl Into<ModelId>) -> Self {
        Self {
            model: Some(model.into()),
            ..Self::default()
        }
    }

    /// Every model selection may choose first (the model, or each split entry's model).
    pub fn primaries(&self) -> impl Iterator<Item = &ModelId> {
        self.model.iter().chain(self.split.iter().map(|s| &s.model))
    }
}

impl Validate for RouteConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        match (&self.model, self.split.is_empty()) {
            (Some(model), true) => model.collect_violations(&at.key("model"), out),
            (None, false) => {}
            (Some(_), false) => out.push(
                at,
                Rule::Conflict {
                    reason: "set either `model` or `split`, not both",
                },
            ),
            (None, true) => out.push(
                at,
                Rule::Conflict {
                    reason: "set `model` or a non-empty `split`",
                },
            ),
        }

        let split = at.key("split");
        out.check_max_items(&split, self.split.len(), MAX_SPLIT_ENTRIES);
        for (i, entry) in self.split.iter().enumerate() {
            let here = split.index(i);
            entry.collect_violations(&here, out);
            if self.split[..i].iter().any(|e| e.model == entry.model) {
                out.push(
                    &here.key("model"),
                    Rule::Duplicate {
                        value: entry.model.to_string(),
                    },
                );
            }
        }

        let fallbacks = at.key("fallbacks");
        out.check_max_items(&fallbacks, self.fallbacks.len(), MAX_FALLBACKS);
        for (i, model) in self.fallbacks.iter().enumerate() {
            let here = fallbacks.index(i);
            model.collect_violations(&here, out);
            if self.fallbacks[..i].contains(model) {
                out.push(
                    &here,
                    Rule::Duplicate {
                        value: model.to_string(),
                    },
                );
            } else if self.primaries().any(|p| p == model) {
                out.push(
                    &here,
                    Rule::FallbackIsPrimary {
                        model: model.to_string(),
                    },
                );
            }
        }

        self.temperature
            .collect_violations(&at.key("temperature"), out);
        if !(1..=MAX_TOKENS_CAP).contains(&self.max_tokens) {
            out.push(
                &at.key("max_tokens"),
                Rule::OutOfRange {
                    range: "1..=32768",
                    actual: f64::from(self.max_tokens),
                },
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            out.push(
                &at.key("top_p"),
                Rule::OutOfRange {
                    range: "(0.0, 1.0]",
                    actual: self.top_p,
                },
            );
        }
        let filters = at.key("safety_filters");
        for (i, filter) in self.safety_filters.iter().enumerate() {
            filter.collect_violations(&filters.index(i), out);
            if filter.is_known() && self.safety_filters[..i].contains(filter) {
                out.push(
                    &filters.index(i),
                    Rule::Duplicate {
                        value: filter.to_string(),
                    },
                );
            }
        }
        self.metadata.collect_violations(&at.key("metadata"), out);
    }
}

/// One model of a weighted split and its share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitEntry {
    /// The model.
    pub model: ModelId,
    /// Its relative weight, 1 to 10000 (shares are weight / sum of weights).
    #[schemars(range(min = 1, max = 10000))]
    pub weight: u32,
}

impl Validate for SplitEntry {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        self.model.collect_violations(&at.key("model"), out);
        if !(1..=10_000).contains(&self.weight) {
            out.push(
                &at.key("weight"),
                Rule::OutOfRange {
                    range: "1..=10000",
                    actual: f64::from(self.weight),
                },
            );
        }
    }
}

/// Concurrency, timeouts and size limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most requests in flight to the gateway at once.
    #[schemars(range(min = 1, max = 10000))]
    pub max_concurrency: u32,
    /// Longest wait for a concurrency slot before failing with a limiter timeout.
    #[schemars(range(min = 1, max = 600_000))]
    pub limiter_timeout_ms: u64,
    /// Timeout of one HTTP attempt.
    #[schemars(range(min = 1, max = 600_000))]
    pub attempt_timeout_ms: u64,
    /// Deadline of one whole call, retries and fallbacks included.
    #[schemars(range(min = 1, max = 3_600_000))]
    pub deadline_ms: u64,
    /// TCP + TLS connect timeout.
    #[schemars(range(min = 1, max = 600_000))]
    pub connect_timeout_ms: u64,
    /// Largest response body accepted.
    #[schemars(range(min = 1024, max = 67_108_864))]
    pub max_response_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 64,
            limiter_timeout_ms: 5_000,
            attempt_timeout_ms: 30_000,
            deadline_ms: 90_000,
            connect_timeout_ms: 5_000,
            max_response_bytes: 4 * 1024 * 1024,
        }
    }
}

fn check_int(
    at: &Location<'_>,
    out: &mut Violations,
    value: u64,
    min: u64,
    max: u64,
    range: &'static str,
) {
    if !(min..=max).contains(&value) {
        out.push(
            at,
            Rule::OutOfRange {
                range,
                actual: value as f64,
            },
        );
    }
}

impl Validate for LimitsConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        check_int(
            &at.key("max_concurrency"),
            out,
            self.max_concurrency.into(),
            1,
            10_000,
            "1..=10000",
        );
        check_int(
            &at.key("limiter_timeout_ms"),
            out,
            self.limiter_timeout_ms,
            1,
            600_000,
            "1..=600000",
        );
        check_int(
            &at.key("attempt_timeout_ms"),
            out,
            self.attempt_timeout_ms,
            1,
            600_000,
            "1..=600000",
        );
        check_int(
            &at.key("deadline_ms"),
            out,
            self.deadline_ms,
            1,
            3_600_000,
            "1..=3600000",
        );
        check_int(
            &at.key("connect_timeout_ms"),
            out,
            self.connect_timeout_ms,
            1,
            600_000,
            "1..=600000",
        );
        check_int(
            &at.key("max_response_bytes"),
            out,
            self.max_response_bytes,
            1024,
            67_108_864,
            "1024..=67108864",
        );
        if self.deadline_ms < self.attempt_timeout_ms {
            out.push(
                &at.key("deadline_ms"),
                Rule::Order {
                    expected: "attempt_timeout_ms <= deadline_ms",
                },
            );
        }
    }
}

/// Most connections the sidecar holds open by default: room for 2,000 concurrent
/// callers with keep-alive, plus headroom for probes and reconnects.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4_096;

/// The HTTP sidecar (`genesys-router serve`): how long a connection may take to send its
/// request, how long it may sit idle, how many may be open, how long shutdown drains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Longest wait for a request's complete headers, from its first byte.
    #[schemars(range(min = 100, max = 300_000))]
    pub header_read_timeout_ms: u64,
    /// Longest wait for a request's complete body, once its headers are in.
    #[schemars(range(min = 100, max = 600_000))]
    pub body_read_timeout_ms: u64,
    /// How long a keep-alive connection may wait for its next request before it is closed.
    #[schemars(range(min = 100, max = 3_600_000))]
    pub idle_timeout_ms: u64,
    /// Most connections open at once; beyond it new connections are refused at once.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_connections: u32,
    /// On shutdown, how long calls in flight may run before they are cancelled.
    #[schemars(range(min = 0, max = 3_600_000))]
    pub drain_timeout_ms: u64,
    /// Largest request body accepted; a larger one is answered with 413.
    #[schemars(range(min = 1024, max = 67_108_864))]
    pub request_body_max_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            drain_timeout_ms: 30_000,
            request_body_max_bytes: 1_048_576,
        }
    }
}

impl ServerConfig {
    /// [`Self::header_read_timeout_ms`] as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// [`Self::body_read_timeout_ms`] as a duration.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// [`Self::idle_timeout_ms`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// [`Self::drain_timeout_ms`] as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

impl Validate for ServerConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        check_int(
            &at.key("header_read_timeout_ms"),
            out,
            self.header_read_timeout_ms,
            100,
            300_000,
            "100..=300000",
        );
        check_int(
            &at.key("body_read_timeout_ms"),
            out,
            self.body_read_timeout_ms,
            100,
            600_000,
            "100..=600000",
        );
        check_int(
            &at.key("idle_timeout_ms"),
            out,
            self.idle_timeout_ms,
            100,
            3_600_000,
            "100..=3600000",
        );
        check_int(
            &at.key("max_connections"),
            out,
            self.max_connections.into(),
            1,
            1_000_000,
            "1..=1000000",
        );
        check_int(
            &at.key("drain_timeout_ms"),
            out,
            self.drain_timeout_ms,
            0,
            3_600_000,
            "0..=3600000",
        );
        check_int(
            &at.key("request_body_max_bytes"),
            out,
            self.request_body_max_bytes,
            1024,
            67_108_864,
            "1024..=67108864",
        );
    }
}

/// The retry policy: which failures are retried, how often, how long to wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Most HTTP attempts per model, the first included.
    #[schemars(range(min = 1, max = 10))]
    pub max_attempts: u32,
    /// First backoff cap; each retry doubles it (full jitter picks a wait below it).
    #[schemars(range(min = 1, max = 60_000))]
    pub base_delay_ms: u64,
    /// Largest backoff cap.
    #[schemars(range(min = 1, max = 600_000))]
    pub max_delay_ms: u64,
    /// A `Retry-After` longer than this is not waited out: the call fails at once.
    #[schemars(range(max = 3600))]
    pub max_retry_after_s: u64,
    /// Retries allowed as a fraction of recent requests (the retry budget).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub budget_ratio: f64,
    /// Retries per second always allowed, whatever the ratio.
    #[schemars(range(max = 10_000))]
    pub budget_min_per_s: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay_ms: 100,
            max_delay_ms: 10_000,
            max_retry_after_s: 180,
            budget_ratio: 0.2,
            budget_min_per_s: 10,
        }
    }
}

impl Validate for RetryConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        check_int(
            &at.key("max_attempts"),
            out,
            self.max_attempts.into(),
            1,
            10,
            "1..=10",
        );
        check_int(
            &at.key("base_delay_ms"),
            out,
            self.base_delay_ms,
            1,
            60_000,
            "1..=60000",
        );
        check_int(
            &at.key("max_delay_ms"),
            out,
            self.max_delay_ms,
            1,
            600_000,
            "1..=600000",
        );
        check_int(
            &at.key("max_retry_after_s"),
            out,
            self.max_retry_after_s,
            0,
            3600,
            "0..=3600",
        );
        out.check_range(
            &at.key("budget_ratio"),
            self.budget_ratio,
            0.0,
            1.0,
            "0.0..=1.0",
        );
        check_int(
            &at.key("budget_min_per_s"),
            out,
            self.budget_min_per_s.into(),
            0,
            10_000,
            "0..=10000",
        );
        if self.max_delay_ms < self.base_delay_ms {
            out.push(
                &at.key("max_delay_ms"),
                Rule::Order {
                    expected: "base_delay_ms <= max_delay_ms",
                },
            );
        }
    }
}

/// The per-model circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Consecutive failed calls that open a model's circuit.
    #[schemars(range(min = 1, max = 1000))]
    pub failure_threshold: u32,
    /// How long an open circuit stays open before one probe is let through.
    #[schemars(range(min = 1, max = 3_600_000))]
    pub cooldown_ms: u64,
    /// A 429 whose `Retry-After` is at least this long cools the model down for that long.
    #[schemars(range(min = 1, max = 3600))]
    pub cool_down_on_retry_after_s: u64,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown_ms: 30_000,
            cool_down_on_retry_after_s: 5,
        }
    }
}

impl Validate for CircuitBreakerConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        check_int(
            &at.key("failure_threshold"),
            out,
            self.failure_threshold.into(),
            1,
            1000,
            "1..=1000",
        );
        check_int(
            &at.key("cooldown_ms"),
            out,
            self.cooldown_ms,
            1,
            3_600_000,
            "1..=3600000",
        );
        check_int(
            &at.key("cool_down_on_retry_after_s"),
            out,
            self.cool_down_on_retry_after_s,
            1,
            3600,
            "1..=3600",
        );
    }
}

/// When the audit file is synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// After every entry (safest, slowest).
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
pub struct AuditConfig {
    /// Whether to write audit entries at all.
    pub enabled: bool,
    /// The JSONL file entries are appended to.
    pub file: PathBuf,
    /// When the file is synced to disk.
    pub fsync: FsyncPolicy,
    /// Sync interval for `fsync = "interval"`.
    #[schemars(range(min = 1, max = 3_600_000))]
    pub fsync_interval_ms: u64,
    /// Size at which the file is rotated.
    #[schemars(range(min = 4096))]
    pub rotate_bytes: u64,
    /// Rotated files kept.
    #[schemars(range(min = 1, max = 1000))]
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

impl Validate for AuditConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        if self.file.as_os_str().is_empty() {
            out.push(&at.key("file"), Rule::Required);
        }
        check_int(
            &at.key("fsync_interval_ms"),
            out,
            self.fsync_interval_ms,
            1,
            3_600_000,
            "1..=3600000",
        );
        check_int(
            &at.key("rotate_bytes"),
            out,
            self.rotate_bytes,
            4096,
            u64::MAX,
            "4096..",
        );
        check_int(
            &at.key("keep_rotated"),
            out,
            self.keep_rotated.into(),
            1,
            1000,
            "1..=1000",
        );
        if let Some(webhook) = &self.webhook {
            webhook.collect_violations(&at.key("webhook"), out);
        }
    }
}

/// A webhook that receives audit entries, signed per the Standard Webhooks specification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where entries are sent (HTTP POST): https, or http on loopback.
    pub url: String,
    /// Env var holding the signing secret (`whsec_` plus base64 of the key).
    #[schemars(regex(pattern = r"^[A-Z_][A-Z0-9_]*$"))]
    pub secret_env: String,
    /// Directory entries are spooled to while the endpoint is down.
    pub spool_dir: PathBuf,
    /// Entries per POST.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub batch_size: u32,
    /// Entries held in memory before spooling to disk.
    #[serde(default = "default_queue_capacity")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub queue_capacity: u32,
}

fn default_batch_size() -> u32 {
    100
}

fn default_queue_capacity() -> u32 {
    10_000
}

impl Validate for WebhookConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        if let Err(e) = check_url(&self.url, false) {
            out.push(
                &at.key("url"),
                Rule::Url {
                    reason: e.to_string(),
                },
            );
        }
        check_env_var(&at.key("secret_env"), &self.secret_env, out);
        if self.spool_dir.as_os_str().is_empty() {
            out.push(&at.key("spool_dir"), Rule::Required);
        }
        check_int(
            &at.key("batch_size"),
            out,
            self.batch_size.into(),
            1,
            1000,
            "1..=1000",
        );
        check_int(
            &at.key("queue_capacity"),
            out,
            self.queue_capacity.into(),
            1,
            1_000_000,
            "1..=1000000",
        );
    }
}

/// Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of a standalone `/metrics` listener, such as `127.0.0.1:9464`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

impl Validate for MetricsConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        if let Some(addr) = &self.listen
            && addr.parse::<std::net::SocketAddr>().is_err()
        {
            out.push(
                &at.key("listen"),
                Rule::Pattern {
                    pattern: "host:port, such as 127.0.0.1:9464",
                },
            );
        }
    }
}

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

impl Validate for RouterConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        self.environment
            .collect_violations(&at.key("environment"), out);
        self.credentials
            .collect_violations(&at.key("credentials"), out);
        let routes = at.key("routes");
        if self.routes.is_empty() {
            out.push(&routes, Rule::TooFew { min: 1, actual: 0 });
        }
        for (name, route) in &self.routes {
            let here = routes.key(name);
            let chars = name.chars().count();
            let well_formed = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if chars > MAX_ROUTE_NAME_CHARS {
                out.push(
                    &here,
                    Rule::TooLong {
                        max: MAX_ROUTE_NAME_CHARS,
                        actual: chars,
                    },
                );
            } else if !well_formed {
                out.push(
                    &here,
                    Rule::Pattern {
                        pattern: ROUTE_NAME_PATTERN,
                    },
                );
            }
            route.collect_violations(&here, out);
        }
        self.limits.collect_violations(&at.key("limits"), out);
        self.server.collect_violations(&at.key("server"), out);
        self.retry.collect_violations(&at.key("retry"), out);
        self.circuit_breaker
            .collect_violations(&at.key("circuit_breaker"), out);
        self.audit.collect_violations(&at.key("audit"), out);
        self.metrics.collect_violations(&at.key("metrics"), out);
    }
}

impl RouterConfig {
    /// A configuration with one environment and no routes yet, every other section at its default.
    pub fn new(environment: EnvironmentConfig) -> Self {
        Self {
            environment,
            credentials: CredentialsConfig::default(),
            routes: BTreeMap::new(),
            limits: LimitsConfig::default(),
            server: ServerConfig::default(),
            retry: RetryConfig::default(),
            circuit_breaker: CircuitBreakerConfig::default(),
            audit: AuditConfig::default(),
            metrics: MetricsConfig::default(),
            tls: TlsConfig::default(),
        }
    }

    /// Adds (or replaces) a route.
    #[must_use]
    pub fn with_route(mut self, name: impl Into<String>, route: RouteConfig) -> Self {
        self.routes.insert(name.into(), route);
        self
    }

    /// Parses TOML and validates the result; a syntax or type error names its path.
    pub fn from_toml_str(text: &str) -> Result<Self, ValidationErrors> {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ValidationErrors::single(
                "",
                Rule::Malformed {
                    message: e.to_string(),
                },
            )
        })?;
        let config: Self = serde_path_to_error::deserialize(de).map_err(malformed)?;
        config.validate()?;
        Ok(config)
    }

    /// Every model the routes name, primaries and fallbacks, each once, sorted.
    pub fn all_models(&self) -> Vec<&ModelId> {
        let mut models: Vec<&ModelId> = self
            .routes
            .values()
            .flat_map(|r| r.primaries().chain(r.fallbacks.iter()))
            .collect();
        models.sort();
        models.dedup();
        models
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> RouterConfig {
        RouterConfig::new(EnvironmentConfig::at("http://127.0.0.1:8080"))
            .with_route("summarize", RouteConfig::to_model("model-gen-4"))
    }

    #[test]
    fn minimal_config_is_valid() {
        minimal().validate().unwrap();
        let ep = minimal().environment.resolve().unwrap();
        assert_eq!(ep.login_base, "http://127.0.0.1:8080");
    }

    #[test]
    fn region_resolves_to_api_and_login_hosts() {
        let env = EnvironmentConfig {
            region: Some("mypurecloud.de".into()),
            ..EnvironmentConfig::default()
        };
        let ep = env.resolve().unwrap();
        assert_eq!(ep.api_base, "https://api.mypurecloud.de");
        assert_eq!(ep.login_base, "https://login.mypurecloud.de");
    }

    #[test]
    fn explicit_api_host_derives_login_host() {
        let ep = EnvironmentConfig::at("https://api.gateway.example.com/")
            .resolve()
            .unwrap();
        assert_eq!(ep.api_base, "https://api.gateway.example.com");
        assert_eq!(ep.login_base, "https://login.gateway.example.com");
    }

    #[test]
    fn unknown_region_lists_known_ones() {
        let mut c = minimal();
        c.environment = EnvironmentConfig {
            region: Some("moon-1".into()),
            ..EnvironmentConfig::default()
        };
        let err = c.validate().unwrap_err();
        assert_eq!(err.violations()[0].path, "/environment/region");
        assert!(err.to_string().contains("eu-central-2"), "{err}");
    }

    #[test]
    fn insecure_remote_http_is_refused_unless_allowed() {
        let mut c = minimal();
        c.environment = EnvironmentConfig::at("http://gateway.internal");
        assert!(c.validate().unwrap_err().has_path("/environment/api_base"));
        c.environment.allow_insecure_http = true;
        c.validate().unwrap();
    }

    #[test]
    fn route_rules_are_all_reported() {
        let route = RouteConfig {
            model: Some("a".into()),
            fallbacks: vec!["b".into(), "b".into(), "a".into()],
            temperature: TemperatureMatrix {
                low: 0.9,
                default: 0.5,
                high: 3.0,
            },
            safety_filters: vec!["pii".into(), "nope".into()],
            top_p: 0.0,
            ..RouteConfig::default()
        };
        let c = minimal().with_route("Bad Name", route);
        let err = c.validate().unwrap_err();
        let paths: Vec<_> = err.violations().iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/routes/Bad Name",
                "/routes/Bad Name/fallbacks/1",
                "/routes/Bad Name/fallbacks/2",
                "/routes/Bad Name/temperature/high",
                "/routes/Bad Name/top_p",
                "/routes/Bad Name/safety_filters/1",
            ]
        );
    }

    #[test]
    fn split_routes_exclude_model_and_check_weights() {
        let split = vec![
            SplitEntry {
                model: "a".into(),
                weight: 90,
            },
            SplitEntry {
                model: "a".into(),
                weight: 0,
            },
        ];
        let route = RouteConfig {
            model: None,
            split,
            fallbacks: vec!["a".into()],
            ..RouteConfig::default()
        };
        let err = minimal().with_route("ab", route).validate().unwrap_err();
        assert!(err.has_path("/routes/ab/split/1/weight"), "{err}");
        assert!(err.has_path("/routes/ab/split/1/model"), "{err}");
        assert!(err.has_path("/routes/ab/fallbacks/0"), "{err}");
        let both = RouteConfig {
            split: vec![SplitEntry {
                model: "b".into(),
                weight: 1,
            }],
            ..RouteConfig::to_model("a")
        };
        assert!(
            minimal()
                .with_route("x", both)
                .validate()
                .unwrap_err()
                .has_path("/routes/x")
        );
    }

    #[test]
    fn toml_type_errors_name_the_path() {
        let err = RouterConfig::from_toml_str(
            "[environment]\napi_base = \"http://127.0.0.1:1\"\n[routes.a]\nmodel = \"m\"\nmax_tokens = \"many\"\n",
        )
        .unwrap_err();
        assert_eq!(err.violations()[0].path, "/routes/a/max_tokens");
        let err = RouterConfig::from_toml_str(
            "[environment]\nregion = \"us-east-1\"\ncolour = 1\n[routes.a]\nmodel=\"m\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn limits_and_retry_orders() {
        let mut c = minimal();
        c.limits.deadline_ms = 10;
        c.limits.attempt_timeout_ms = 20;
        c.retry.base_delay_ms = 500;
        c.retry.max_delay_ms = 100;
        let err = c.validate().unwrap_err();
        assert!(
            err.has_path("/limits/deadline_ms") && err.has_path("/retry/max_delay_ms"),
            "{err}"
        );
    }

    #[test]
    fn webhook_must_be_https_unless_loopback() {
        let mut c = minimal();
        c.audit.webhook = Some(WebhookConfig {
            url: "http://audit.example.com/hook".into(),
            secret_env: "AUDIT_SECRET".into(),
            spool_dir: "spool".into(),
            batch_size: 10,
            queue_capacity: 10,
        });
        assert!(c.validate().unwrap_err().has_path("/audit/webhook/url"));
    }

    #[test]
    fn server_defaults_are_valid_and_leave_room_for_2000_callers() {
        let server = ServerConfig::default();
        server.validate().unwrap();
        assert!(server.max_connections >= 2_000);
        let c = RouterConfig::from_toml_str(
            "[environment]\nregion = \"us-east-1\"\n[routes.a]\nmodel = \"m\"\n",
        )
        .unwrap();
        assert_eq!(c.server, server);
    }

    #[test]
    fn server_bounds_are_enforced_at_both_ends() {
        type Set = fn(&mut ServerConfig, u64);
        let fields: [(&str, u64, u64, Set); 6] = [
            ("header_read_timeout_ms", 100, 300_000, |s, v| {
                s.header_read_timeout_ms = v;
            }),
            ("body_read_timeout_ms", 100, 600_000, |s, v| {
                s.body_read_timeout_ms = v;
            }),
            ("idle_timeout_ms", 100, 3_600_000, |s, v| {
                s.idle_timeout_ms = v;
            }),
            ("max_connections", 1, 1_000_000, |s, v| {
                s.max_connections = u32::try_from(v).unwrap();
            }),
            ("drain_timeout_ms", 0, 3_600_000, |s, v| {
                s.drain_timeout_ms = v;
            }),
            ("request_body_max_bytes", 1_024, 67_108_864, |s, v| {
                s.request_body_max_bytes = v;
            }),
        ];
        for (name, min, max, set) in fields {
            let path = format!("/server/{name}");
            for ok in [min, max] {
                let mut c = minimal();
                set(&mut c.server, ok);
                c.validate()
                    .unwrap_or_else(|e| panic!("{name} = {ok}: {e}"));
            }
            for bad in [min.checked_sub(1), Some(max + 1)].into_iter().flatten() {
                let mut c = minimal();
                set(&mut c.server, bad);
                let err = c.validate().unwrap_err();
                assert!(err.has_path(&path), "{name} = {bad}: {err}");
            }
        }
        let err = RouterConfig::from_toml_str(
            "[environment]\nregion = \"us-east-1\"\n[routes.a]\nmodel = \"m\"\n[server]\nidle_ms = 5\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("idle_ms"), "{err}");
    }

    #[test]
    fn login_base_next_to_region_is_refused() {
        let mut c = minimal();
        c.environment = EnvironmentConfig {
            region: Some("eu-west-1".into()),
            login_base: Some("https://login.example.com".into()),
            ..EnvironmentConfig::default()
        };
        let err = c.validate().unwrap_err();
        assert_eq!(err.violations().len(), 1, "{err}");
        assert_eq!(err.violations()[0].path, "/environment/login_base");
        assert!(
            err.to_string().contains("goes with `api_base` only"),
            "{err}"
        );
        assert!(c.environment.resolve().is_err());

        c.environment.region = None;
        c.environment.api_base = Some("https://api.example.com".into());
        let ep = c.environment.resolve().unwrap();
        assert_eq!(ep.login_base, "https://login.example.com");
    }

    #[test]
    fn metrics_listen_must_be_a_socket_address() {
        for ok in ["127.0.0.1:9464", "0.0.0.0:0", "[::1]:9464"] {
            let mut c = minimal();
            c.metrics.listen = Some(ok.into());
            c.validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "9464",
            "127.0.0.1",
            "127.0.0.1:65536",
            ":9464",
            "localhost:9464",
            "",
        ] {
            let mut c = minimal();
            c.metrics.listen = Some(bad.into());
            assert!(
                c.validate().unwrap_err().has_path("/metrics/listen"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn all_models_lists_each_once() {
        let c = minimal().with_route(
            "b",
            RouteConfig {
                fallbacks: vec!["model-gen-4".into()],
                ..RouteConfig::to_model("x")
            },
        );
        let models: Vec<_> = c.all_models().into_iter().map(ModelId::as_str).collect();
        assert_eq!(models, ["model-gen-4", "x"]);
    }
}
