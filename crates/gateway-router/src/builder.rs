//! Building a [`Router`]: the config checked, the transport, token source, audit sinks
//! and fleet hooks set up, and the routes compiled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_audit::webhook::{WebhookOptions, WebhookSecret, WebhookSink};
use gateway_audit::{AuditError, AuditSink, FanOut, JsonlSink};
use gateway_auth::{ClientCredentials, Credentials};
use gateway_model::{ModelId, RouterConfig, Validate, ValidationErrors, WebhookConfig};
use gateway_telemetry::{ModelMetrics, Stats};
use gateway_transport::{TokenSource, Transport, TransportConfig, TransportError};

use crate::breaker::{CircuitBreaker, CoolDownRule};
use crate::catalogue::LastCheck;
use crate::compiled_route::CompiledRoute;
use crate::router::{Inner, ModelState, Router};

/// Why a router could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration breaks a rule.
    #[error("invalid configuration: {0}")]
    Config(#[source] ValidationErrors),
    /// The transport could not be set up (TLS roots, base URL).
    #[error("transport: {0}")]
    Transport(#[source] TransportError),
    /// The token source could not be set up (credentials, login URL).
    #[error("authentication: {0}")]
    Auth(#[from] gateway_auth::AuthError),
    /// An audit sink could not be opened.
    #[error("audit: {0}")]
    Audit(#[from] AuditError),
    /// The audit file the configuration names cannot be opened, or another sink holds it
    /// ([`AuditError::is_setting`] tells a setting to fix from a full disk).
    #[error("`audit.file`: {0}")]
    AuditFile(#[source] AuditError),
    /// The webhook's spool directory the configuration names cannot be created or
    /// written, or another sink holds it ([`AuditError::is_setting`] tells a setting to
    /// fix from a full disk).
    #[error("`audit.webhook.spool_dir`: {0}")]
    SpoolDir(#[source] AuditError),
    /// The configuration names models the gateway does not know.
    #[error("the gateway's catalogue does not list {}: check the route configuration", unknown.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "))]
    UnknownModels {
        /// The models not in the catalogue.
        unknown: Vec<ModelId>,
    },
    /// The catalogue could not be read to check the models.
    #[error("cannot check the models against the catalogue: {0}")]
    Catalogue(#[source] TransportError),
}

/// Configures a [`Router`].
#[must_use]
pub struct RouterBuilder {
    config: RouterConfig,
    tokens: Option<Arc<dyn TokenSource>>,
    token_layer: Option<TokenLayer>,
    rate_budget: Option<Arc<dyn gateway_transport::RateBudget>>,
    circuits: Option<Arc<dyn gateway_transport::SharedCircuits>>,
    credentials: Option<Credentials>,
    audit: AuditChoice,
    transport: Option<TransportConfig>,
    check_recorder: bool,
}

/// Wraps the router's token source (a fleet shares its tokens, say).
type TokenLayer = Box<dyn FnOnce(Arc<dyn TokenSource>) -> Arc<dyn TokenSource> + Send>;

/// Where a router's audit entries go.
enum AuditChoice {
    /// The sinks the config describes.
    FromConfig,
    /// A sink given to the builder.
    Sink(Arc<dyn AuditSink>),
    /// Nowhere.
    Off,
}

impl std::fmt::Debug for RouterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("routes", &self.config.routes.keys())
            .finish_non_exhaustive()
    }
}

impl RouterBuilder {
    /// Uses this token source instead of OAuth client credentials from the environment.
    pub fn token_source(self, source: impl TokenSource) -> Self {
        self.shared_token_source(Arc::new(source))
    }

    /// Like [`RouterBuilder::token_source`], for a source shared with other code.
    pub fn shared_token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.tokens = Some(source);
        self
    }

    /// Wraps the token source the router would use (its own OAuth client, or the one
    /// given) in `layer`: `gateway-fleet` shares one token across replicas this way.
    pub fn token_layer(
        mut self,
        layer: impl FnOnce(Arc<dyn TokenSource>) -> Arc<dyn TokenSource> + Send + 'static,
    ) -> Self {
        self.token_layer = Some(Box::new(layer));
        self
    }

    /// Paces calls by `budget` instead of `[limits] requests_per_minute` (a fleet's shared
    /// budget, say).
    pub fn rate_budget(mut self, budget: Arc<dyn gateway_transport::RateBudget>) -> Self {
        self.rate_budget = Some(budget);
        self
    }

    /// Shares circuit state through `circuits`: an open circuit at one replica is open
    /// at all, and one replica sends the half-open probe.
    pub fn shared_circuits(mut self, circuits: Arc<dyn gateway_transport::SharedCircuits>) -> Self {
        self.circuits = Some(circuits);
        self
    }

    /// Uses these client credentials instead of the env vars the config names.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Writes audit entries to `sink` instead of the sinks the config describes.
    pub fn audit_sink(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = AuditChoice::Sink(sink);
        self
    }

    /// Writes no audit entries (for tests and benchmarks of other parts).
    pub fn without_audit(mut self) -> Self {
        self.audit = AuditChoice::Off;
        self
    }

    /// Builds without the warning that no metrics recorder is installed: your own
    /// `metrics` recorder is in place (not set up by `gateway-telemetry`), or discarding
    /// the router's metrics is intended.
    pub fn without_recorder_check(mut self) -> Self {
        self.check_recorder = false;
        self
    }

    /// Uses this transport configuration instead of the one derived from the config.
    pub fn transport_config(mut self, config: TransportConfig) -> Self {
        self.transport = Some(config);
        self
    }

    /// Validates the config, sets up the transport, token source and audit sinks, and,
    /// if `environment.validate_models` is set, checks every model against the catalogue.
    ///
    /// Install a metrics recorder (`gateway_telemetry::install`) before building: the
    /// router registers its metric handles here, and a router built without one records
    /// nothing. So that this is never silent, `build` logs a warning when
    /// `gateway-telemetry` has installed no recorder (see
    /// [`RouterBuilder::without_recorder_check`]).
    pub async fn build(self) -> Result<Router, BuildError> {
        let config = self.config;
        config.validate().map_err(BuildError::Config)?;
        if self.check_recorder {
            warn_without_recorder();
        }
        let transport_config = match self.transport {
            Some(t) => t,
            None => TransportConfig::from_router_config(&config)
                .map_err(|kind| BuildError::Transport(TransportError::from(kind)))?,
        };
        let tokens = Tokens::choose(self.tokens, self.credentials, &config)?;
        let (bare, tokens) = tokens.start(transport_config, &config)?;
        let tokens = match self.token_layer {
            Some(layer) => layer(tokens),
            None => tokens,
        };
        let mut transport = bare.with_shared_token_source(Arc::clone(&tokens));
        if let Some(budget) = self.rate_budget {
            transport = transport.with_rate_budget(budget);
        }
        let audit = match self.audit {
            AuditChoice::Sink(sink) => Some(sink),
            AuditChoice::Off => None,
            AuditChoice::FromConfig => audit_from_config(&config)?,
        };
        let models = model_states(&config);
        let routes = compiled_routes(&config);
        let router = Router {
            inner: Arc::new(Inner {
                cool_down: CoolDownRule::from_config(&config),
                deadline: Duration::from_millis(config.limits.deadline_ms),
                routes,
                // Sorted, so `stats()` lists models in one order in every process.
                stats: Stats::new(config.all_models().into_iter().map(ModelId::as_str)),
                models,
                prompts_uri: transport
                    .url(&config.environment.prompts_path)
                    .map_err(BuildError::Transport)?,
                models_uri: transport
                    .url(&config.environment.models_path)
                    .map_err(BuildError::Transport)?
                    .to_string(),
                transport,
                tokens,
                audit,
                last_check: LastCheck::default(),
                circuits: self.circuits,
                config,
            }),
        };
        if router.inner.config.environment.validate_models {
            let check = router.check_models().await.map_err(BuildError::Catalogue)?;
            if !check.unknown.is_empty() {
                return Err(BuildError::UnknownModels {
                    unknown: check.unknown,
                });
            }
        }
        Ok(router)
    }
}

/// Says so loudly when no metrics recorder is installed: the handles the router
/// registers would record nothing.
fn warn_without_recorder() {
    if !gateway_telemetry::recorder_installed() {
        tracing::warn!(
            "no metrics recorder is installed: this router's metrics are discarded. Call \
             gateway_telemetry::install before building the router, or \
             RouterBuilder::without_recorder_check if your own recorder is installed or no \
             metrics are wanted"
        );
    }
}

/// Where a router's tokens come from.
enum Tokens {
    /// A token source given to the builder.
    Given(Arc<dyn TokenSource>),
    /// The router's own OAuth client, with these credentials.
    Own(Credentials),
}

impl Tokens {
    /// `given`, or the router's own client with `credentials`, or with those the config's
    /// env vars hold.
    fn choose(
        given: Option<Arc<dyn TokenSource>>,
        credentials: Option<Credentials>,
        config: &RouterConfig,
    ) -> Result<Self, BuildError> {
        Ok(match (given, credentials) {
            (Some(tokens), _) => Self::Given(tokens),
            (None, Some(credentials)) => Self::Own(credentials),
            (None, None) => Self::Own(Credentials::from_config(&config.credentials)?),
        })
    }
    /// The transport (knowing the secrets of the router's own client, if any) and the
    /// token source.
    fn start(
        self,
        mut transport_config: TransportConfig,
        config: &RouterConfig,
    ) -> Result<(Transport, Arc<dyn TokenSource>), BuildError> {
        if let Self::Own(credentials) = &self {
            // Never sent to the gateway, but a proxy in front of it may know and quote
            // them: kept out of errors as the request's token is, beside any secrets the
            // caller's transport config lists.
            let secrets = credentials.sent_secrets();
            transport_config.known_secrets = transport_config
                .known_secrets
                .extended(secrets.iter().map(|s| s.expose().to_owned()));
        }
        let bare = Transport::new(transport_config).map_err(BuildError::Transport)?;
        let tokens = match self {
            Self::Given(tokens) => tokens,
            Self::Own(credentials) => oauth_client(config, credentials, &bare)?,
        };
        Ok((bare, tokens))
    }
}

/// The router's own OAuth client with `credentials`, fetching tokens through
/// `transport`'s HTTP client.
fn oauth_client(
    config: &RouterConfig,
    credentials: Credentials,
    transport: &Transport,
) -> Result<Arc<dyn TokenSource>, BuildError> {
    let provider = ClientCredentials::from_router_config(config, credentials)?
        .http_client(transport.client().clone())
        .on_refresh(gateway_telemetry::token_refresh)
        .build()?;
    gateway_telemetry::register_token_refreshes();
    Ok(Arc::new(provider))
}

/// Every route of the config, compiled; their fallback series registered at zero.
fn compiled_routes(config: &RouterConfig) -> HashMap<String, CompiledRoute> {
    let routes: HashMap<_, _> = config
        .routes
        .iter()
        .map(|(name, r)| (name.clone(), CompiledRoute::new(r)))
        .collect();
    gateway_telemetry::register_fallbacks(
        routes
            .values()
            .flat_map(CompiledRoute::fallback_pairs)
            .map(|(from, to)| (from.as_str(), to.as_str())),
    );
    routes
}

/// Metric handles and a closed breaker for every model the config names.
fn model_states(config: &RouterConfig) -> HashMap<ModelId, ModelState> {
    config
        .all_models()
        .into_iter()
        .map(|m| {
            let state = ModelState {
                metrics: ModelMetrics::new(m.as_str()),
                breaker: CircuitBreaker::new(
                    config.circuit_breaker.failure_threshold,
                    Duration::from_millis(config.circuit_breaker.cooldown_ms),
                ),
            };
            (m.clone(), state)
        })
        .collect()
}

/// The audit sinks an [`gateway_model::AuditConfig`] describes.
fn audit_from_config(config: &RouterConfig) -> Result<Option<Arc<dyn AuditSink>>, BuildError> {
    let audit = &config.audit;
    if !audit.enabled {
        return Ok(None);
    }
    let file = JsonlSink::open(audit).map_err(BuildError::AuditFile)?;
    let Some(webhook) = &audit.webhook else {
        return Ok(Some(Arc::new(file)));
    };
    WebhookSink::check_spool_dir(&webhook.spool_dir).map_err(BuildError::SpoolDir)?;
    let secret = WebhookSecret::from_env(&webhook.secret_env).map_err(AuditError::from)?;
    let hook = start_webhook(config, webhook, secret)?;
    Ok(Some(Arc::new(FanOut::new(vec![
        Arc::new(file),
        Arc::new(hook),
    ]))))
}

/// Starts the audit webhook trusting what the config's gateway client trusts (`[tls]
/// roots` and `extra_ca_file`): a receiver on a private CA is reached like the gateway.
fn start_webhook(
    config: &RouterConfig,
    webhook: &WebhookConfig,
    secret: WebhookSecret,
) -> Result<WebhookSink, BuildError> {
    let transport = |kind| BuildError::Transport(TransportError::from(kind));
    let client = TransportConfig::from_router_config(config)
        .map_err(transport)?
        .client;
    let options = WebhookOptions {
        tls: Some(client.tls_config().map_err(transport)?),
        ..WebhookOptions::from_config(webhook)
    };
    // The spool's own failures name its setting; whether a restart may cure them
    // ([`AuditError::is_setting`]) is the caller's to ask.
    WebhookSink::start_with(webhook, secret, options).map_err(|e| match e {
        AuditError::Io { .. } | AuditError::InUse { .. } => BuildError::SpoolDir(e),
        e => BuildError::Audit(e),
    })
}

impl Router {
    /// Starts configuring a router for `config`.
    pub fn builder(config: RouterConfig) -> RouterBuilder {
        RouterBuilder {
            config,
            tokens: None,
            token_layer: None,
            rate_budget: None,
            circuits: None,
            credentials: None,
            audit: AuditChoice::FromConfig,
            transport: None,
            check_recorder: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_model::{AuditEntry, EnvironmentConfig};
    use gateway_sim::{Sim, TestPki};
    use tokio::time::Instant;

    fn entry(id: uuid::Uuid) -> AuditEntry {
        serde_json::from_value(serde_json::json!({
            "id": id, "timestamp": "2026-12-05T10:00:00Z",
            "route": "r", "requestId": "q", "correlationId": "c", "requestedModel": "m",
            "attempts": 1, "fallbacksUsed": 0, "modelsTried": [], "outcome": "success",
            "latencyUs": 1, "tuning": "default", "temperature": 0.2,
            "promptSha256": "0".repeat(64), "promptChars": 1 }))
        .unwrap()
    }

    /// A webhook receiver whose certificate a private CA signed is reached when `[tls]
    /// extra_ca_file` names that CA, as the gateway is (the simulator answers its POST
    /// 404, which leaves the entry spooled: the POST arriving is what counts here).
    #[tokio::test]
    async fn the_webhook_trusts_the_extra_ca_the_gateway_client_trusts() {
        let pki = TestPki::generate().unwrap();
        let sim = Sim::builder()
            .tls(pki.cert_pem, pki.key_pem)
            .start()
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("gateway-router-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let mut config = RouterConfig::new(EnvironmentConfig::at(sim.base_url()));
        config.tls.extra_ca_file = Some(ca);
        let webhook = WebhookConfig {
            url: format!("{}/audit", sim.base_url()),
            secret_env: "UNUSED_IN_THIS_TEST".into(),
            spool_dir: dir.join("spool"),
            batch_size: 10,
            queue_capacity: 100,
            request_timeout_ms: 10_000,
            max_spool_bytes: 1 << 30,
        };
        let secret = WebhookSecret::from_key(*b"a key for the audit webhook test").unwrap();
        let sink = start_webhook(&config, &webhook, secret).unwrap();

        let id = uuid::Uuid::now_v7();
        sink.record(&entry(id)).await.unwrap();
        // Settled once the first POST is answered (or failed) and its entry spooled.
        let deadline = Instant::now() + Duration::from_secs(10);
        sink.flush(deadline).await.unwrap();
        let posts: Vec<_> = sim
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/audit")
            .collect();
        sink.shutdown(deadline).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!posts.is_empty(), "no POST over TLS: {:?}", sink.report());
        assert!(posts[0].body.contains(&id.to_string()), "{}", posts[0].body);
    }
}
