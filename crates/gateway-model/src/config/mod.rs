//! `RouterConfig`: where the gateway is, which routes exist, and how calls are limited,
//! retried, audited and measured. Written as TOML; secrets appear only as env var names.
//!
//! One module per section; each section states its bounds once, in its
//! [`Bounded`](crate::bounds::Bounded) table.

mod audit;
mod circuit_breaker;
mod credentials;
mod environment;
mod fleet;
mod limits;
mod metrics;
mod retry;
mod routes;
mod server;
mod tls;
mod toml_text;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use audit::{
    AuditConfig, DEFAULT_WEBHOOK_MAX_SPOOL_BYTES, DEFAULT_WEBHOOK_REQUEST_TIMEOUT_MS,
    EVERY_ENTRY_SYNC_WAIT, FsyncPolicy, WebhookConfig,
};
pub use circuit_breaker::CircuitBreakerConfig;
pub use credentials::{
    CLIENT_ID_PATTERN, CredentialsConfig, ENV_VAR_PATTERN, MAX_CLIENT_ID_CHARS, is_client_id,
};
pub use environment::{
    DEFAULT_MODELS_PATH, DEFAULT_PROMPTS_PATH, ENDPOINT_PATH_PATTERN, Endpoints, EnvironmentConfig,
};
pub use fleet::{FleetConfig, KEY_PREFIX_PATTERN, MAX_KEY_PREFIX_CHARS};
pub use limits::LimitsConfig;
pub use metrics::MetricsConfig;
pub use retry::RetryConfig;
pub use routes::{MAX_SPLIT_ENTRIES, MAX_SPLIT_WEIGHT, RouteConfig, SplitEntry};
pub use server::{DEFAULT_MAX_CONNECTIONS, ServerConfig};
pub use tls::{TlsConfig, TrustRoots};

use crate::bounds::{Pattern, Text};
use crate::model_id::ModelId;
use crate::validation::{Location, Rule, Validate, Violations};

/// The pattern route names match.
pub const ROUTE_NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_-]*$";
/// Longest route name.
pub const MAX_ROUTE_NAME_CHARS: usize = 64;

/// A route name: 1 to [`MAX_ROUTE_NAME_CHARS`] characters matching [`ROUTE_NAME_PATTERN`].
pub(crate) const ROUTE_NAME: Text =
    Text::chars(1, MAX_ROUTE_NAME_CHARS).matching(&ROUTE_NAME_CHARS);

/// The pattern file and directory paths match: no NUL character, which no operating
/// system takes in a path.
pub const FILE_PATH_PATTERN: &str = r"^[^\u0000]*$";

/// A file or directory path: at least one character, none of them NUL.
pub(crate) const FILE_PATH: Text = Text::non_empty().matching(&FILE_PATH_CHARS);

const FILE_PATH_CHARS: Pattern = Pattern::new(FILE_PATH_PATTERN, |path| !path.contains('\0'));

const ROUTE_NAME_CHARS: Pattern = Pattern::new(ROUTE_NAME_PATTERN, |name| {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
});

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
    #[schemars(extend("minProperties" = 1, "propertyNames" = ROUTE_NAME.schema()))]
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
    /// Fleet mode: replicas sharing one token, rate budget and circuits through Redis.
    /// Absent: nothing connects to Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetConfig>,
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
            ROUTE_NAME.check(&here, name, out);
            route.collect_violations(&here, out);
        }
        self.limits.collect_violations(&at.key("limits"), out);
        self.server.collect_violations(&at.key("server"), out);
        self.retry.collect_violations(&at.key("retry"), out);
        self.circuit_breaker
            .collect_violations(&at.key("circuit_breaker"), out);
        self.audit.collect_violations(&at.key("audit"), out);
        self.metrics.collect_violations(&at.key("metrics"), out);
        self.tls.collect_violations(&at.key("tls"), out);
        if let Some(fleet) = &self.fleet {
            let here = at.key("fleet");
            fleet.collect_violations(&here, out);
            // A lease shorter than a login (with the Redis commands around it) lets a
            // second replica take the lock and log in while the first still waits.
            let needed = self
                .limits
                .login_timeout_ms
                .saturating_add(fleet.command_timeout_ms.saturating_mul(2));
            if fleet.token_lock_ms < needed {
                out.push(
                    &here.key("token_lock_ms"),
                    Rule::Order {
                        expected: "limits.login_timeout_ms + 2 * command_timeout_ms <= token_lock_ms",
                    },
                );
            }
        }
        self.env_vars_are_distinct(at, out);
    }
}

/// What a config must not do with the env vars it names.
const ONE_VALUE_PER_ENV_VAR: &str = "names an env var another setting already reads; each \
     holds one value (a secret read as a client id, an API key or a URL would be sent or \
     shown as one)";

/// Records [`ONE_VALUE_PER_ENV_VAR`] at `keys` under `at`.
fn push_under(at: &Location<'_>, keys: &[&str], out: &mut Violations) {
    match keys {
        [] => out.push(
            at,
            Rule::Conflict {
                reason: ONE_VALUE_PER_ENV_VAR,
            },
        ),
        [first, rest @ ..] => push_under(&at.key(first), rest, out),
    }
}

impl RouterConfig {
    /// Every env var the config reads a value from, with the keys leading to its
    /// setting, in the order the sections are listed.
    fn env_vars(&self) -> Vec<(&str, &'static [&'static str])> {
        let mut vars = Vec::new();
        if self.credentials.client_id.is_none() {
            vars.push((
                self.credentials.client_id_env.as_str(),
                &["credentials", "client_id_env"][..],
            ));
        }
        vars.push((
            self.credentials.client_secret_env.as_str(),
            &["credentials", "client_secret_env"],
        ));
        if let Some(keys) = &self.server.api_keys_env {
            vars.push((keys.as_str(), &["server", "api_keys_env"]));
        }
        if let Some(webhook) = &self.audit.webhook {
            vars.push((
                webhook.secret_env.as_str(),
                &["audit", "webhook", "secret_env"],
            ));
        }
        if let Some(fleet) = &self.fleet {
            vars.push((fleet.redis_url_env.as_str(), &["fleet", "redis_url_env"]));
        }
        vars
    }

    /// Refuses a config that reads two values from one env var, at the later setting.
    fn env_vars_are_distinct(&self, at: &Location<'_>, out: &mut Violations) {
        let vars = self.env_vars();
        for (i, (name, keys)) in vars.iter().enumerate() {
            if vars[..i].iter().any(|(earlier, _)| earlier == name) {
                push_under(at, keys, out);
            }
        }
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
            fleet: None,
        }
    }

    /// Adds (or replaces) a route.
    #[must_use]
    pub fn with_route(mut self, name: impl Into<String>, route: RouteConfig) -> Self {
        self.routes.insert(name.into(), route);
        self
    }

    /// The longest a router keeps a model's circuit open: its cool-down after failures
    /// (`circuit_breaker.cooldown_ms`) or a `Retry-After` (at most
    /// `retry.max_retry_after_s`), whichever is longer.
    pub fn longest_circuit_opening(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.circuit_breaker.cooldown_ms)
            .max(std::time::Duration::from_secs(self.retry.max_retry_after_s))
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
    use crate::TemperatureMatrix;
    use crate::payload::{MAX_METADATA_ENTRIES, Metadata};

    fn minimal() -> RouterConfig {
        RouterConfig::new(EnvironmentConfig::at("http://127.0.0.1:8080"))
            .with_route("summarize", RouteConfig::to_model("model-gen-4"))
    }

    #[test]
    fn a_parse_error_quotes_no_more_than_its_bound_of_a_long_line() {
        for text in [
            format!("[environment]\nregion = \"{}", "x".repeat(300_000)),
            format!("[environment]\nregion = [{}", "1,".repeat(150_000)),
            format!("[environment]\n{} = 1", "unknown".repeat(50_000)),
        ] {
            let errors = RouterConfig::from_toml_str(&text).unwrap_err();
            let shown = errors.to_string();
            assert!(shown.chars().count() < 1_200, "{} characters", shown.len());
        }
    }

    /// Regression: the error quoted the line at fault, so a secret written into the file
    /// by mistake reached the terminal, logs and CI output.
    #[test]
    fn a_parse_error_says_where_without_quoting_the_line() {
        for (text, words) in [
            (
                "[environment]\nregion = \"us-east-1\"\nclient_secret = \"hunter2-SECRET\"\n",
                "unknown field `client_secret`",
            ),
            ("[environment]\nregion = \"hunter2-SECRET", "line 2"),
            (
                "[environment]\nregion = \"us-east-1\"\n[routes]\nclient_secret = \"hunter2-SECRET\"\n",
                "invalid type: string \"…\"",
            ),
            // A value where a name from a list belongs (a review found it quoted).
            (
                "[environment]\nregion = \"us-east-1\"\n[tls]\nroots = \"hunter2-SECRET\"\n",
                "unknown variant `…`, expected `webpki` or `native`",
            ),
        ] {
            let shown = RouterConfig::from_toml_str(text).unwrap_err().to_string();
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains(words), "{shown}");
            assert!(shown.contains("(line "), "{shown}");
        }
        // A missing table is named as missing, as in a JSON document.
        let missing = RouterConfig::from_toml_str("[routes.a]\nmodel = \"m\"\n").unwrap_err();
        assert_eq!(missing.violations()[0].path, "/environment", "{missing}");
        assert_eq!(missing.violations()[0].rule, Rule::Missing, "{missing}");
    }

    /// Regression: serde reads a struct from a list too, by position, so a section or
    /// route written as a list was taken (`limits = []` as every default), where the
    /// schema wants a table.
    #[test]
    fn a_list_where_a_table_belongs_is_refused_by_name() {
        let route = "[routes.a]\nmodel = \"m\"\n";
        for (text, path) in [
            (
                format!("environment = [\"eu-west-1\"]\n{route}"),
                "/environment",
            ),
            (
                format!("limits = []\n[environment]\nregion = \"eu-west-1\"\n{route}"),
                "/limits",
            ),
            (
                "[environment]\nregion = \"eu-west-1\"\n[routes]\na = [\"m\"]\n".to_owned(),
                "/routes/a",
            ),
            (
                format!(
                    "[environment]\nregion = \"eu-west-1\"\n{route}temperature = [0.1, 0.2, 0.3]\n"
                ),
                "/routes/a/temperature",
            ),
        ] {
            let err = RouterConfig::from_toml_str(&text).unwrap_err();
            assert!(err.has_path(path), "{path}: {err}");
            assert!(!err.to_string().contains("eu-west-1\""), "{err}");
        }
        let fine = format!("[environment]\nregion = \"eu-west-1\"\n{route}");
        RouterConfig::from_toml_str(&fine).unwrap();
    }

    #[test]
    fn endpoint_paths_hold_only_path_characters() {
        let check = |path: &str| {
            let mut config = RouterConfig::new(EnvironmentConfig::at("https://api.example.com"))
                .with_route("a", RouteConfig::to_model("m"));
            config.environment.prompts_path = path.to_owned();
            config
                .validate()
                .map_err(|e| e.violations()[0].path.clone())
        };
        for good in ["/api/v2/ai/gateway/prompts", "/a%20b/~x/(1);v=2:@x", "/"] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in [
            "api/v2",
            "/a b",
            "/a\u{1}b",
            "/a\u{7f}b",
            "/a?x=1",
            "/a#f",
            "/café",
        ] {
            assert_eq!(
                check(bad).unwrap_err(),
                "/environment/prompts_path",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn file_paths_hold_no_nul_character() {
        let text = |audit_file: &str, ca_file: &str, spool_dir: &str| {
            format!(
                "[environment]\nregion = \"eu-west-1\"\n[routes.a]\nmodel = \"m\"\n\
                 [audit]\nfile = \"{audit_file}\"\n\
                 [audit.webhook]\nurl = \"https://audit.example.com/hook\"\n\
                 secret_env = \"AUDIT_WEBHOOK_SECRET\"\nspool_dir = \"{spool_dir}\"\n\
                 [tls]\nextra_ca_file = \"{ca_file}\"\n"
            )
        };
        let paths = |text: String| -> Vec<String> {
            match RouterConfig::from_toml_str(&text) {
                Ok(_) => Vec::new(),
                Err(errors) => errors.violations().iter().map(|v| v.path.clone()).collect(),
            }
        };
        assert!(paths(text("audit/a.jsonl", "ca.pem", "spool")).is_empty());
        // TOML's \u0000 escape puts a NUL into the string.
        assert_eq!(
            paths(text(
                "audit/a\\u0000.jsonl",
                "ca\\u0000.pem",
                "sp\\u0000ool"
            )),
            [
                "/audit/file",
                "/audit/webhook/spool_dir",
                "/tls/extra_ca_file"
            ]
        );
        assert_eq!(
            paths(text("audit/a.jsonl", "", "spool")),
            ["/tls/extra_ca_file"]
        );
    }

    #[test]
    fn an_inline_client_id_meets_the_client_id_rule() {
        for bad in ["  ", "a:b", "sim\u{1}client", "café"] {
            let mut config = minimal();
            config.credentials.client_id = Some(bad.into());
            let errors = config.validate().unwrap_err();
            assert_eq!(
                errors.violations()[0].path,
                "/credentials/client_id",
                "{bad:?}"
            );
        }
        let mut config = minimal();
        config.credentials.client_id = Some("3f1c2d4e-0000-4000-8000-abcdefabcdef".into());
        config.validate().unwrap();
    }

    #[test]
    fn one_env_var_is_never_read_for_two_values() {
        let paths = |text: &str| -> Vec<String> {
            RouterConfig::from_toml_str(text).map_or_else(
                |e| e.violations().iter().map(|v| v.path.clone()).collect(),
                |_| Vec::new(),
            )
        };
        let routes = "[environment]\nregion = \"us-east-1\"\n[routes.a]\nmodel = \"m\"\n";
        assert_eq!(
            paths(&format!(
                "{routes}[credentials]\nclient_id_env = \"S\"\nclient_secret_env = \"S\"\n"
            )),
            ["/credentials/client_secret_env"]
        );
        assert_eq!(
            paths(&format!(
                "{routes}[server]\napi_keys_env = \"GENESYS_CLIENT_SECRET\"\n\
                 [audit.webhook]\nurl = \"https://hooks.example.com\"\n\
                 secret_env = \"GENESYS_CLIENT_SECRET\"\nspool_dir = \"spool\"\n"
            )),
            ["/server/api_keys_env", "/audit/webhook/secret_env"]
        );
        // An inline client id reads no env var, so its env var name is free.
        assert!(
            paths(&format!(
                "{routes}[credentials]\nclient_id = \"c\"\nclient_id_env = \"S\"\nclient_secret_env = \"S\"\n"
            ))
            .is_empty()
        );
        assert!(paths(routes).is_empty(), "the defaults are distinct");
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

    /// A route whose labels fit on their own but not with the two every payload
    /// carries once passed validation, and then every call of it was refused.
    #[test]
    fn a_routes_labels_fit_a_payload_with_the_two_every_payload_carries() {
        let labels = |n: usize, extra: &[(&str, &str)]| {
            let mut m: Metadata = (0..n).map(|i| (format!("k{i:02}"), "v")).collect();
            for (k, v) in extra {
                m.insert(*k, *v);
            }
            m
        };
        let with = |metadata: Metadata| {
            let mut c = minimal();
            c.routes.get_mut("summarize").unwrap().metadata = metadata;
            c.validate()
        };
        with(labels(MAX_METADATA_ENTRIES - 2, &[])).unwrap();
        let err = with(labels(MAX_METADATA_ENTRIES - 1, &[])).unwrap_err();
        assert!(err.has_path("/routes/summarize/metadata"), "{err}");
        assert!(err.to_string().contains("dispatchSource"), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("more than {MAX_METADATA_ENTRIES}")),
            "{err}"
        );
        // A route that sets one of the two itself has room for one more.
        with(labels(MAX_METADATA_ENTRIES - 2, &[("routingVersion", "3")])).unwrap();
        // Past 32 on their own, one violation says so.
        let err = with(labels(MAX_METADATA_ENTRIES + 1, &[])).unwrap_err();
        assert_eq!(err.violations().len(), 1, "{err}");
    }

    #[test]
    fn the_fleets_token_lock_outlasts_a_login() {
        let mut c = minimal();
        c.fleet = Some(FleetConfig::default());
        c.validate().unwrap();
        c.limits.login_timeout_ms = 14_500;
        c.validate().unwrap();
        c.limits.login_timeout_ms = 14_501;
        let err = c.validate().unwrap_err();
        assert!(err.has_path("/fleet/token_lock_ms"), "{err}");
        assert!(err.to_string().contains("login_timeout_ms"), "{err}");
        c.fleet = None;
        c.validate().unwrap();
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
            request_timeout_ms: 10_000,
            max_spool_bytes: 1 << 30,
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
