//! Starting and stopping the simulator: the builder, the running handle, the accept loop.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use gateway_model::ModelEntity;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::behaviour::{Behaviour, RateLimit, Scripted, Target};
use crate::check::{self, InputError};
use crate::limit::{ClientLimits, Windows};
use crate::locks::{lock, write};
use crate::record::{Counters, LiveCounters, RecordedRequest, Recorder};
use crate::state::{Behaviours, Scripts, State};
use crate::{accept, catalogue};

/// The OAuth client id the simulator accepts unless told otherwise.
pub const DEFAULT_CLIENT_ID: &str = "sim-client";
/// The OAuth client secret the simulator accepts unless told otherwise.
pub const DEFAULT_CLIENT_SECRET: &str = "sim-secret";
/// The models in the catalogue unless told otherwise.
pub const DEFAULT_MODELS: &[&str] = &[
    "model-gen-4",
    "model-gen-5",
    "model-fallback-3",
    "model-small-1",
];
/// Requests kept in the log unless told otherwise (older ones are evicted).
pub const DEFAULT_RECORD_CAPACITY: usize = 10_000;

/// How many connections a simulator serves at once unless told otherwise: far more than
/// the benchmarks' 2,000 callers, few enough that a stuck client cannot take every file
/// descriptor.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// The simulator. Start one with [`Sim::builder`].
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// A builder with the defaults: `127.0.0.1:0`, seed `0x5EED`, client
    /// [`DEFAULT_CLIENT_ID`]/[`DEFAULT_CLIENT_SECRET`], 24-hour tokens, [`DEFAULT_MODELS`],
    /// no latency and no failures.
    pub fn builder() -> SimBuilder {
        SimBuilder {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 0x5EED,
            clients: Vec::new(),
            token_lifetime: Duration::from_secs(86_400),
            models: DEFAULT_MODELS
                .iter()
                .map(|m| catalogue::entity(m))
                .collect(),
            behaviours: Behaviours::default(),
            client_limits: ClientLimits::default(),
            scripts: Vec::new(),
            record_capacity: DEFAULT_RECORD_CAPACITY,
            tls: None,
            connection_timeout: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Configures a simulator before it starts.
#[derive(Debug)]
#[must_use]
pub struct SimBuilder {
    addr: SocketAddr,
    seed: u64,
    clients: Vec<(String, String)>,
    token_lifetime: Duration,
    models: Vec<ModelEntity>,
    behaviours: Behaviours,
    client_limits: ClientLimits,
    scripts: Vec<(Target, Vec<Scripted>)>,
    record_capacity: usize,
    tls: Option<(String, String)>,
    connection_timeout: Option<Duration>,
    max_connections: usize,
}

impl std::fmt::Debug for Behaviours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviours")
            .field("global", &self.global)
            .field("models", &self.models)
            .finish()
    }
}

impl SimBuilder {
    /// Listens on `addr` (default `127.0.0.1:0`, a free port).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Seeds every random choice (latency draws, error and drop rates, ids).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Accepts this OAuth client (the default client is accepted only if none is given).
    pub fn client(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.clients.push((id.into(), secret.into()));
        self
    }

    /// Lifetime of granted tokens (`expires_in`), clamped to 1 s to 48 h
    /// ([`MIN_TOKEN_LIFETIME`](crate::MIN_TOKEN_LIFETIME) to
    /// [`MAX_TOKEN_LIFETIME`](crate::MAX_TOKEN_LIFETIME)).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = check::clamp_token_lifetime(lifetime);
        self
    }

    /// Replaces the catalogue with these model ids.
    pub fn models<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.models = ids
            .into_iter()
            .map(|id| catalogue::entity(id.as_ref()))
            .collect();
        self
    }

    /// Adds (or replaces) one catalogue entry.
    pub fn model_entity(mut self, entity: ModelEntity) -> Self {
        self.models.retain(|m| m.id != entity.id);
        self.models.push(entity);
        self
    }

    /// The behaviour of every model without one of its own.
    pub fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviours.global = behaviour;
        self
    }

    /// The behaviour of one model; [`SimBuilder::start`] refuses a `model` that is not a
    /// model id ([`gateway_model::MODEL_ID_PATTERN`], 1 to 128 characters).
    pub fn model_behaviour(mut self, model: impl Into<String>, behaviour: Behaviour) -> Self {
        self.behaviours.models.insert(model.into(), behaviour);
        self
    }

    /// Limits prompt calls per OAuth client, across all of its tokens (off by default);
    /// [`SimBuilder::start`] refuses `allowed` 0 and a window outside 1 s to
    /// [`MAX_WINDOW_SECS`](crate::MAX_WINDOW_SECS).
    pub fn client_rate_limit(mut self, limit: RateLimit) -> Self {
        self.client_limits.requests = Some(limit);
        self
    }

    /// Limits tokens granted per OAuth client (off by default); checked like
    /// [`SimBuilder::client_rate_limit`].
    pub fn token_rate_limit(mut self, limit: RateLimit) -> Self {
        self.client_limits.tokens = Some(limit);
        self
    }

    /// Queues one-shot answers before the simulator starts.
    pub fn script(mut self, target: Target, answers: impl IntoIterator<Item = Scripted>) -> Self {
        self.scripts.push((target, answers.into_iter().collect()));
        self
    }

    /// Keeps at most `capacity` requests in the log, and at most [`MAX_RECORDED_BYTES`]
    /// of them (0 turns recording off; counters stay on).
    ///
    /// [`MAX_RECORDED_BYTES`]: crate::MAX_RECORDED_BYTES
    pub fn record_capacity(mut self, capacity: usize) -> Self {
        self.record_capacity = capacity;
        self
    }

    /// Serves https with this PEM certificate chain and PEM private key (HTTP/2 and
    /// HTTP/1.1 by ALPN).
    pub fn tls(mut self, cert_chain_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.tls = Some((cert_chain_pem.into(), key_pem.into()));
        self
    }

    /// Closes a connection that has not finished its TLS handshake, sent its first byte
    /// (in plain text), or sent its first request within `timeout` of connecting; one
    /// that takes that long over an HTTP/1.1 request's headers or waits that long for its
    /// next HTTP/1.1 request; and an HTTP/2 connection whose peer leaves a ping
    /// unanswered for `timeout` (pings go every `timeout`). An HTTP/2 connection that has
    /// served a request and still answers pings stays open. It also bounds the wait for a
    /// request's body once its headers are in (a 408 after it). Off by default: a test
    /// on tokio's paused clock would see its pooled connections closed as the clock
    /// jumps. [`start`](Self::start) refuses one outside 1 ms to
    /// [`MAX_CONNECTION_TIMEOUT`](crate::MAX_CONNECTION_TIMEOUT).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = Some(timeout);
        self
    }

    /// Serves at most `max` connections at once (at least 1; [`DEFAULT_MAX_CONNECTIONS`]
    /// by default): more wait in the kernel's accept queue until one closes.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// Checks the behaviours, the model ids they are set for, and the scripts
    /// ([`Behaviour::check`], [`Target::check`], [`Scripted::check_for`]), binds the
    /// address and starts serving in the background.
    pub async fn start(self) -> Result<SimHandle, SimError> {
        self.check()?;
        let tls = self
            .tls
            .as_ref()
            .map(|(cert, key)| tls_acceptor(cert, key))
            .transpose()?;
        let bind_error = |source| SimError::Bind {
            addr: self.addr,
            source,
        };
        let listener = TcpListener::bind(self.addr).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);

        let clients = accepted_clients(self.clients);
        let mut scripts = Scripts::default();
        for (target, answers) in self.scripts {
            scripts.push(target, answers);
        }
        let catalogue: BTreeMap<String, ModelEntity> = self
            .models
            .into_iter()
            .map(|m| (m.id.as_str().to_owned(), m))
            .collect();
        let state = Arc::new(State {
            seed: self.seed,
            started: tokio::time::Instant::now(),
            clients,
            token_lifetime: RwLock::new(self.token_lifetime),
            catalogue_delay: RwLock::new(Duration::ZERO),
            tokens: RwLock::new(HashMap::new()),
            catalogue: RwLock::new(catalogue.clone()),
            behaviours: RwLock::new(self.behaviours.clone()),
            scripts: Mutex::new(scripts),
            windows: Windows::default(),
            client_limits: RwLock::new(self.client_limits),
            client_windows: Windows::default(),
            token_windows: Windows::default(),
            recorder: Recorder::new(self.record_capacity),
            counters: LiveCounters::default(),
            seq: AtomicU64::new(0),
            shutdown: shutdown_rx.clone(),
            body_timeout: self.connection_timeout,
            initial_catalogue: catalogue,
            initial_behaviours: self.behaviours,
            initial_token_lifetime: self.token_lifetime,
            initial_client_limits: self.client_limits,
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(accept::accept_loop(
            listener,
            Arc::clone(&state),
            tls,
            accept::Limits {
                timeout: self.connection_timeout,
                max_connections: self.max_connections,
            },
            shutdown_rx,
        ));
        Ok(SimHandle {
            addr,
            scheme,
            state,
            shutdown: shutdown_tx,
            task: Some(task),
        })
    }
}

/// The OAuth clients the login service accepts: those given, or the default one.
fn accepted_clients(given: Vec<(String, String)>) -> HashMap<String, String> {
    let mut clients: HashMap<String, String> = given.into_iter().collect();
    if clients.is_empty() {
        clients.insert(
            DEFAULT_CLIENT_ID.to_owned(),
            DEFAULT_CLIENT_SECRET.to_owned(),
        );
    }
    clients
}

impl SimBuilder {
    fn check(&self) -> Result<(), SimError> {
        self.behaviours
            .global
            .check()
            .map_err(|e| e.within("behaviour"))?;
        for (model, b) in &self.behaviours.models {
            check::check_model_id("models", model)?;
            b.check()
                .map_err(|e| e.within(&format!("models.{model}")))?;
        }
        for (target, answers) in &self.scripts {
            check::check_scripts(target, answers).map_err(|e| e.within("script"))?;
        }
        if let Some(limit) = &self.client_limits.requests {
            check::check_rate_limit(limit).map_err(|e| e.within("clientRateLimit"))?;
        }
        if let Some(limit) = &self.client_limits.tokens {
            check::check_rate_limit(limit).map_err(|e| e.within("tokenRateLimit"))?;
        }
        if let Some(timeout) = self.connection_timeout {
            check::check_connection_timeout(timeout)?;
        }
        if self.max_connections == 0 {
            return Err(InputError {
                path: "maxConnections".into(),
                rule: "must be at least 1".into(),
            }
            .into());
        }
        Ok(())
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A behaviour or a script holds a value outside its range.
    #[error("invalid simulator set-up: {0}")]
    Invalid(#[from] InputError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error("cannot use the TLS certificate or key: {0}")]
    Tls(String),
}

/// A running simulator. Dropping it stops the server; [`SimHandle::shutdown`] also waits
/// for open connections to finish.
pub struct SimHandle {
    addr: SocketAddr,
    scheme: &'static str,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// The base URL for both the API and the login service, such as `http://127.0.0.1:41234`
    /// (`https://localhost:<port>` when serving TLS, matching a certificate for `localhost`).
    pub fn base_url(&self) -> String {
        match self.scheme {
            "https" => format!("https://localhost:{}", self.addr.port()),
            _ => format!("http://{}", self.addr),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the behaviour of every model without one of its own.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        write(&self.state.behaviours).global = behaviour;
    }

    /// Sets the behaviour of one model.
    pub fn set_model_behaviour(&self, model: impl Into<String>, behaviour: Behaviour) {
        write(&self.state.behaviours)
            .models
            .insert(model.into(), behaviour);
    }

    /// Queues one-shot answers: each is used once by the next matching call. An answer
    /// that [`Scripted::check_for`] refuses is still queued and answers a 500
    /// `sim.script.invalid` (or `sim.script.misuse`) naming the problem, and answers for
    /// a target [`Target::check`] refuses wait for a call that never comes: use
    /// [`SimHandle::try_script`] to be told at once.
    pub fn script(&self, target: Target, answers: impl IntoIterator<Item = Scripted>) {
        lock(&self.state.scripts).push(target, answers);
    }

    /// Queues one-shot answers if the target passes [`Target::check`] (path
    /// `target.model`) and every answer [`Scripted::check_for`] (path `[i]...`); otherwise
    /// queues none and names the first that fails.
    pub fn try_script(
        &self,
        target: Target,
        answers: impl IntoIterator<Item = Scripted>,
    ) -> Result<(), InputError> {
        let answers: Vec<Scripted> = answers.into_iter().collect();
        check::check_scripts(&target, &answers)?;
        lock(&self.state.scripts).push(target, answers);
        Ok(())
    }

    /// Scripted answers not used yet.
    pub fn pending_scripts(&self) -> usize {
        lock(&self.state.scripts).pending()
    }

    /// Every request in the log, oldest first (admin calls excluded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.recorder.snapshot()
    }

    /// The prompt calls in the log, oldest first.
    pub fn prompt_requests(&self) -> Vec<RecordedRequest> {
        let mut all = self.requests();
        all.retain(|r| r.path.starts_with("/api/v2/ai/gateway/prompts"));
        all
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.state.counters.snapshot(self.state.recorder.evicted())
    }

    /// Revokes every token granted so far; returns how many were still valid.
    pub fn revoke_tokens(&self) -> usize {
        self.state.revoke_all()
    }

    /// Sets the lifetime of tokens granted from now on, clamped to 1 s to 48 h
    /// ([`MIN_TOKEN_LIFETIME`](crate::MIN_TOKEN_LIFETIME) to
    /// [`MAX_TOKEN_LIFETIME`](crate::MAX_TOKEN_LIFETIME)).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *write(&self.state.token_lifetime) = check::clamp_token_lifetime(lifetime);
    }

    /// Holds back every catalogue page (`GET /api/v2/ai/models`) by `delay`, at most
    /// 600 s (for tests of a slow catalogue).
    pub fn set_catalogue_delay(&self, delay: Duration) {
        *write(&self.state.catalogue_delay) = delay.min(crate::state::MAX_CATALOGUE_DELAY);
    }

    /// Sets (or with `None` removes) the prompt-call limit per OAuth client, starting every
    /// client's window afresh. Unchecked: a window is clamped to 1 s to
    /// [`MAX_WINDOW_SECS`](crate::MAX_WINDOW_SECS) where it is used, and `allowed` 0
    /// refuses every call.
    pub fn set_client_rate_limit(&self, limit: Option<RateLimit>) {
        self.state.set_client_rate_limit(limit);
    }

    /// Sets (or with `None` removes) the token-grant limit per OAuth client, starting every
    /// client's window afresh; unchecked, like [`SimHandle::set_client_rate_limit`].
    pub fn set_token_rate_limit(&self, limit: Option<RateLimit>) {
        self.state.set_token_rate_limit(limit);
    }

    /// Adds a model to the catalogue.
    pub fn add_model(&self, id: &str) {
        write(&self.state.catalogue).insert(id.to_owned(), catalogue::entity(id));
    }

    /// Removes a model from the catalogue (calls to it then answer 404).
    pub fn remove_model(&self, id: &str) {
        write(&self.state.catalogue).remove(id);
    }

    /// Clears the log, counters, scripts and rate-limit windows, and restores the
    /// behaviours, client limits, catalogue (with no delay) and token lifetime the
    /// simulator started with.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops accepting, lets open connections finish (up to 5 s), and returns.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn tls_acceptor(cert_pem: &str, key_pem: &str) -> Result<tokio_rustls::TlsAcceptor, SimError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SimError::Tls(format!("certificate PEM: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| SimError::Tls(format!("key PEM: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SimError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| SimError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::MAX_LIVE_TOKENS;
    use crate::locks::read;

    #[tokio::test]
    async fn the_token_store_forgets_the_token_that_expires_first_when_full() {
        let sim = Sim::builder()
            .token_lifetime(Duration::from_secs(3600))
            .start()
            .await
            .unwrap();
        let state = &sim.state;
        let (first, _) = state.grant(0, DEFAULT_CLIENT_ID);
        // Tokens granted later live longer.
        *write(&state.token_lifetime) = Duration::from_secs(7200);
        let (second, _) = state.grant(1, DEFAULT_CLIENT_ID);
        for n in 2..MAX_LIVE_TOKENS {
            state.grant(n as u64, DEFAULT_CLIENT_ID);
        }
        assert_eq!(read(&state.tokens).len(), MAX_LIVE_TOKENS);
        let bearer = |token: &str| format!("Bearer {token}");
        assert!(state.check_bearer(Some(&bearer(&first))).is_ok());
        let (last, _) = state.grant(MAX_LIVE_TOKENS as u64, DEFAULT_CLIENT_ID);
        assert_eq!(read(&state.tokens).len(), MAX_LIVE_TOKENS);
        assert!(state.check_bearer(Some(&bearer(&first))).is_err());
        assert!(state.check_bearer(Some(&bearer(&second))).is_ok());
        assert!(state.check_bearer(Some(&bearer(&last))).is_ok());
        // Revoked tokens go first, and only the valid ones count as revoked.
        assert_eq!(sim.revoke_tokens(), MAX_LIVE_TOKENS);
        assert_eq!(sim.revoke_tokens(), 0);
        state.grant(u64::MAX, DEFAULT_CLIENT_ID);
        assert_eq!(read(&state.tokens).len(), 1);
        sim.shutdown().await;
    }
}
