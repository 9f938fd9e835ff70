//! The router handle: the state every call shares, set up once by the builder, and what
//! a caller can read of it. The call itself is `call.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_audit::{AuditError, AuditSink};
use gateway_model::{ModelId, RouterConfig};
use gateway_telemetry::{ModelMetrics, Stats};
use gateway_transport::{SharedCircuits, TokenError, TokenSource, Transport, TransportError};
use http::Uri;
use tokio::time::Instant;

use crate::breaker::{BreakerState, CircuitBreaker, CoolDownRule};
use crate::catalogue::{self, CatalogueCheck, LastCheck};
use crate::compiled_route::CompiledRoute;

/// Per-model state: metric handles and the circuit breaker.
pub(crate) struct ModelState {
    pub(crate) metrics: ModelMetrics,
    pub(crate) breaker: CircuitBreaker,
}

/// What every clone of a [`Router`] shares.
pub(crate) struct Inner {
    pub(crate) config: RouterConfig,
    pub(crate) routes: HashMap<String, CompiledRoute>,
    pub(crate) models: HashMap<ModelId, ModelState>,
    pub(crate) transport: Transport,
    pub(crate) prompts_uri: Uri,
    pub(crate) models_uri: String,
    pub(crate) tokens: Arc<dyn TokenSource>,
    pub(crate) stats: Stats,
    pub(crate) audit: Option<Arc<dyn AuditSink>>,
    pub(crate) cool_down: CoolDownRule,
    pub(crate) deadline: Duration,
    pub(crate) last_check: LastCheck,
    /// Circuit state shared with a fleet's other replicas, if any.
    pub(crate) circuits: Option<Arc<dyn SharedCircuits>>,
}

/// Routes prompts to the Genesys Cloud AI Gateway: picks a model (sticky on a key),
/// tunes the temperature, validates, sends with retries, walks the fallback chain, and
/// records metrics and one audit entry per call.
///
/// Cheap to clone; clones share everything.
///
/// ```no_run
/// use gateway_model::{RouteRequest, Tuning};
/// use gateway_router::{Router, load_config};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = load_config("router.toml".as_ref())?;
/// let router = Router::builder(config).build().await?; // credentials from GENESYS_CLIENT_ID/SECRET
/// let outcome = router
///     .route(RouteRequest::new("summarize", "Summarize this transcript").tuning(Tuning::Low).sticky_key("conv-7f3a"))
///     .await?;
/// println!("{} answered: {}", outcome.served_model, outcome.response.output);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Router {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes())
            .field("transport", &self.inner.transport)
            .field("audit", &self.inner.audit.is_some())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// The configuration the router runs with.
    pub fn config(&self) -> &RouterConfig {
        &self.inner.config
    }

    /// The route names, sorted.
    pub fn routes(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.inner.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The model a call to `route` with `key` starts with, or `None` for an unknown route.
    pub fn select(&self, route: &str, key: &str) -> Option<&ModelId> {
        self.inner
            .routes
            .get(route)
            .and_then(|r| r.selector.select(key))
    }

    /// Per-model statistics: requests, hit rate, latency percentiles, retries, fallbacks;
    /// models in id order.
    pub fn stats(&self) -> Vec<gateway_telemetry::ModelSnapshot> {
        self.inner.stats.snapshot()
    }

    /// The circuit breaker state of `model`.
    pub fn breaker_state(&self, model: &str) -> Option<BreakerState> {
        self.inner.models.get(model).map(|m| m.breaker.state())
    }

    /// The transport (for diagnostics and tests).
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// Whether a token can be had now (a readiness check); [`TokenError::retryable`]
    /// tells an unreachable login host from refused credentials.
    pub async fn token_ready(&self) -> Result<(), TokenError> {
        self.inner.tokens.token().await.map(drop)
    }

    /// Waits until every audit entry so far is written (and delivered or spooled); fails
    /// too when the webhook dropped entries since the last flush.
    pub async fn flush(&self, deadline: Instant) -> Result<(), AuditError> {
        match &self.inner.audit {
            Some(audit) => audit.flush(deadline).await,
            None => Ok(()),
        }
    }

    /// Flushes and closes the audit sinks; calls after this write no audit entries.
    pub async fn shutdown(&self, deadline: Instant) -> Result<(), AuditError> {
        match &self.inner.audit {
            Some(audit) => audit.shutdown(deadline).await,
            None => Ok(()),
        }
    }

    /// Reads the gateway's catalogue until every configured model is found, within one
    /// call's deadline (`[limits] deadline_ms`) for all its pages, and lists the
    /// configured models it lacks. The result is kept ([`Router::last_model_check`]).
    pub async fn check_models(&self) -> Result<CatalogueCheck, TransportError> {
        let inner = &*self.inner;
        let configured = inner.config.all_models();
        let deadline = gateway_transport::clock::from_now(inner.deadline);
        let check =
            catalogue::check(&inner.transport, &inner.models_uri, configured, deadline).await?;
        inner.last_check.set(check.clone());
        Ok(check)
    }

    /// The result of the last [`Router::check_models`], if one ran.
    pub fn last_model_check(&self) -> Option<CatalogueCheck> {
        self.inner.last_check.get()
    }
}
