//! `genesys-router serve`: the router as a local HTTP sidecar.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `POST /v1/route` | a `RouteRequest` in, a `RouteOutcome` out; errors as a Genesys-style error body |
//! | `GET /metrics` | Prometheus text (also on `[metrics] listen`, if set) |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 when a token can be had and the configured models are known (or not checked, without `validate_models`), else 503 |
//! | `POST /v1/chat/completions`, `POST /v1/responses`, `GET /v1/models` | the OpenAI-compatible door (`sidecar/openai/`) |
//!
//! Shutdown takes at most `drain + 2 × ANSWER_GRACE + FLUSH_BOUND`: stop accepting and let
//! calls in flight finish for up to the drain timeout (or until
//! [`Sidecar::hurry_trigger`] ends the drain early); then cancel what is left (each
//! such call is audited as `cancelled` with the reason and, where its connection is
//! still open, answered 503 with `Retry-After`) and give those answers up to
//! [`ANSWER_GRACE`]; then close every connection, give the cancelled calls up to
//! [`ANSWER_GRACE`] again to write their audit entries, and flush the audit trail for up
//! to [`FLUSH_BOUND`].

mod context;
mod house_rules;
mod keys;
pub(crate) mod openai;
mod reply;
mod routes;

pub use keys::{ApiKeys, MIN_API_KEY_CHARS};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway_router::Router;
use gateway_telemetry::MetricsHandle;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{ConnectionLimits, Server};

/// After the drain timeout, how long cancelled calls get to send their 503s.
pub const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// How long a shutdown waits for the audit trail to flush.
pub const FLUSH_BOUND: Duration = Duration::from_secs(5);

/// The most connections `[metrics] listen` serves at once (at most `max_connections`):
/// scrapers need a few, and an open metrics port must not take the descriptors the
/// routing port was given room for.
pub const MAX_METRICS_CONNECTIONS: usize = 64;

/// How the sidecar serves: connection limits, body cap, drain, extra listeners.
#[derive(Debug, Clone)]
pub struct SidecarOptions {
    /// Per-connection timeouts and the connection cap.
    pub limits: ConnectionLimits,
    /// Most routed calls in flight, counting those whose caller hung up; beyond it a
    /// call is refused at once, before its body is read (503 `router.overloaded`).
    pub max_calls: usize,
    /// Largest request body read, in bytes.
    pub body_max_bytes: usize,
    /// How long calls in flight may run on after a shutdown begins.
    pub drain: Duration,
    /// A second address serving only `GET /metrics` (`[metrics] listen`).
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer keys callers must present (none: every caller is let in).
    pub api_keys: ApiKeys,
    /// Whether `/metrics` is served without a key when keys are configured.
    pub metrics_open: bool,
    /// Sockets the router may hold to the gateway at once (one per call in flight over
    /// HTTP/1.1: its `[limits] max_concurrency`), which
    /// [`fit_open_file_limit`](Self::fit_open_file_limit) keeps free of accepted
    /// connections.
    pub upstream_connections: usize,
}

impl Default for SidecarOptions {
    /// [`ConnectionLimits::default`], 1 MiB bodies, a 30 s drain, no metrics listener,
    /// room for the default `max_concurrency` of upstream sockets.
    fn default() -> Self {
        Self {
            limits: ConnectionLimits::default(),
            max_calls: ConnectionLimits::default().max_connections,
            body_max_bytes: 1024 * 1024,
            drain: Duration::from_secs(30),
            metrics_listen: None,
            api_keys: ApiKeys::default(),
            metrics_open: true,
            upstream_connections: usize::try_from(
                gateway_model::LimitsConfig::default().max_concurrency,
            )
            .unwrap_or(usize::MAX),
        }
    }
}

impl SidecarOptions {
    /// The options a configuration's `[server]` and `[metrics]` sections state.
    ///
    /// A `[metrics] listen` that is not a socket address, or an `api_keys_env` that is
    /// unset or empty, is an error naming the key.
    pub fn from_config(config: &gateway_model::RouterConfig) -> Result<Self, String> {
        let server = &config.server;
        let metrics_listen = match &config.metrics.listen {
            Some(text) => Some(text.parse().map_err(|e| {
                format!("[metrics] listen = {text:?} is not a socket address: {e}")
            })?),
            None => None,
        };
        Ok(Self {
            limits: ConnectionLimits {
                header_read_timeout: server.header_read_timeout(),
                body_read_timeout: server.body_read_timeout(),
                idle_timeout: server.idle_timeout(),
                max_connections: usize::try_from(server.max_connections).unwrap_or(usize::MAX),
            },
            max_calls: usize::try_from(server.call_limit()).unwrap_or(usize::MAX),
            body_max_bytes: usize::try_from(server.request_body_max_bytes).unwrap_or(usize::MAX),
            drain: server.drain_timeout(),
            metrics_listen,
            api_keys: match &server.api_keys_env {
                Some(name) => {
                    ApiKeys::from_env(name).map_err(|e| format!("[server] api_keys_env: {e}"))?
                }
                None => ApiKeys::default(),
            },
            metrics_open: !server.metrics_require_key,
            upstream_connections: usize::try_from(config.limits.max_concurrency)
                .unwrap_or(usize::MAX),
        })
    }
}

/// What the handlers serve with: one shared state, so the clone axum makes for every
/// request is one reference count, not a copy of every field.
#[derive(Clone)]
pub(crate) struct App(Arc<AppState>);

impl std::ops::Deref for App {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.0
    }
}

/// The state behind [`App`].
pub(crate) struct AppState {
    router: Router,
    metrics: Option<MetricsHandle>,
    options: SidecarOptions,
    /// Routed calls run as tasks of their own, tracked so shutdown can wait for them.
    calls: TaskTracker,
    /// One permit per routed call in flight, held by its task (`options.max_calls`).
    call_slots: Arc<Semaphore>,
    /// Cancelled when the drain ends: calls still running stop then.
    stop: CancellationToken,
    /// Cancelled to end a shutdown's drain before its timeout.
    hurry: CancellationToken,
    /// When the sidecar started, in Unix seconds (the `created` of its models).
    started_unix: u64,
    /// The HTTP service's metric handles, kept for every request.
    http_metrics: gateway_telemetry::HttpMetrics,
}

/// The route an answer went through (both doors).
pub(crate) static ROUTE_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-genesys-router-route");
/// The model that answered.
pub(crate) static MODEL_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-genesys-router-model");
/// How many fallbacks the call used.
pub(crate) static FALLBACKS_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-genesys-router-fallbacks");

/// Says on a failed call's answer which route it went through, when it reached one
/// (for the access log, as [`describe`] does for an answered one).
pub(crate) fn name_route(
    mut reply: reply::Reply,
    err: &gateway_router::RouteError,
) -> reply::Reply {
    if let Some(value) = err
        .trace()
        .and_then(|trace| http::HeaderValue::from_str(&trace.route).ok())
    {
        reply.headers_mut().insert(ROUTE_HEADER.clone(), value);
    }
    reply
}

/// Says on an answer which route and model served it.
pub(crate) fn describe(reply: &mut reply::Reply, outcome: &gateway_model::RouteOutcome) {
    let headers = reply.headers_mut();
    for (name, value) in [
        (&ROUTE_HEADER, outcome.route.as_str()),
        (&MODEL_HEADER, outcome.served_model.as_str()),
    ] {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(name.clone(), value);
        }
    }
    headers.insert(
        FALLBACKS_HEADER.clone(),
        http::HeaderValue::from(outcome.fallbacks_used),
    );
}

/// A held slot of `server.max_calls`; dropping it frees the slot.
pub(crate) struct CallSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl App {
    /// A door's request body, read as every door reads one: unencoded, within the
    /// body cap and the body-read timeout.
    pub(crate) async fn read_body(
        &self,
        headers: &http::HeaderMap,
        body: axum::body::Body,
    ) -> Result<bytes::Bytes, crate::BodyError> {
        crate::check_content_encoding(headers)?;
        let limits = &self.options;
        crate::read_body(body, limits.body_max_bytes, limits.limits.body_read_timeout).await
    }

    /// Drops a refused request's body as it arrives (within the body cap and the
    /// body-read timeout), keeping none of it, so its refusal reaches the client. A
    /// client waiting for `100 Continue` is not invited to upload a body no one wants:
    /// its body is left unread, which it has not sent.
    pub(crate) async fn discard_body<B>(&self, request: http::Request<B>)
    where
        B: http_body::Body<Data = bytes::Bytes> + Unpin,
    {
        let expects_continue = request
            .headers()
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects_continue {
            return;
        }
        let limits = &self.options;
        crate::body::discard_body(
            request.into_body(),
            limits.body_max_bytes,
            limits.limits.body_read_timeout,
        )
        .await;
    }

    /// One of the `max_calls` slots of calls in flight, taken before the request's body
    /// is read, so the slots bound the bodies held as well as the calls. None free: the
    /// request is refused at once, unread (so, like one over the connection cap, it is
    /// not a call and leaves no audit entry), naming the setting.
    pub(crate) fn call_slot(&self) -> Result<CallSlot, gateway_router::RouteError> {
        Arc::clone(&self.call_slots)
            .try_acquire_owned()
            .map(|permit| CallSlot { _permit: permit })
            .map_err(|_| {
                gateway_router::RouteErrorKind::AtCapacity {
                    limit: self.options.max_calls,
                    setting: "server.max_calls",
                }
                .into()
            })
    }

    /// Routes `request`, holding `slot` until the call ends, in a task of its own: a
    /// client that disconnects does not cancel the call (which may already be at the
    /// gateway), so it still ends, and is audited, as it really ended. Only the drain
    /// deadline of a shutdown stops it, with its reason.
    pub(crate) async fn route(
        &self,
        request: gateway_model::RouteRequest,
        slot: CallSlot,
    ) -> Result<gateway_model::RouteOutcome, gateway_router::RouteError> {
        let app = self.clone();
        let call = self.calls.spawn(async move {
            let _slot = slot;
            let drain = app.options.drain;
            let reason = async {
                app.stop.cancelled().await;
                if app.hurry.is_cancelled() {
                    "the sidecar shut down: its drain was ended early, before the call finished".to_owned()
                } else {
                    format!(
                        "the sidecar shut down: its drain timeout of {drain:?} ended before the call finished"
                    )
                }
            };
            app.router.route_until(request, reason).await
        });
        match call.await {
            Ok(result) => result,
            Err(join) => Err(gateway_router::RouteErrorKind::Cancelled {
                reason: format!("the routed call's task ended unexpectedly: {join}"),
            }
            .into()),
        }
    }
}

/// A running sidecar.
pub struct Sidecar {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    hurry: CancellationToken,
    task: JoinHandle<Result<(), gateway_router::AuditError>>,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar")
            .field("addr", &self.addr)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl Sidecar {
    /// Binds `addr` and serves `router` (and `metrics`, if given) until shut down, with
    /// the default options and a drain timeout of `drain`.
    pub async fn start(
        router: Router,
        metrics: Option<MetricsHandle>,
        addr: SocketAddr,
        drain: Duration,
    ) -> std::io::Result<Self> {
        let options = SidecarOptions {
            drain,
            ..SidecarOptions::default()
        };
        Self::start_with(router, metrics, addr, options).await
    }

    /// Whether serving `options` on `addr` would let anyone on the network route prompts:
    /// a non-loopback address without API keys. `serve` refuses that unless told
    /// `--allow-unauthenticated`.
    pub fn is_open_to_the_network(addr: SocketAddr, options: &SidecarOptions) -> bool {
        !addr.ip().is_loopback() && options.api_keys.is_empty()
    }

    /// Binds `addr` (and `options.metrics_listen`) and serves until shut down.
    pub async fn start_with(
        router: Router,
        metrics: Option<MetricsHandle>,
        addr: SocketAddr,
        options: SidecarOptions,
    ) -> std::io::Result<Self> {
        gateway_telemetry::build_info("genesys-router", env!("CARGO_PKG_VERSION"));
        // Each bind error names its address and setting: there are two.
        let named = |what: &str, at: SocketAddr, e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("cannot listen on {at} ({what}): {e}"))
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| named("the service", addr, e))?;
        let metrics_listener = match options.metrics_listen {
            Some(at) => Some(
                TcpListener::bind(at)
                    .await
                    .map_err(|e| named("[metrics] listen", at, e))?,
            ),
            None => None,
        };
        let app = App(Arc::new(AppState {
            router,
            metrics,
            http_metrics: gateway_telemetry::HttpMetrics::new(house_rules::PATH_LABELS),
            calls: TaskTracker::new(),
            call_slots: Arc::new(Semaphore::new(
                options.max_calls.clamp(1, Semaphore::MAX_PERMITS),
            )),
            stop: CancellationToken::new(),
            hurry: CancellationToken::new(),
            started_unix: openai::response::unix_now(),
            options,
        }));
        let main = Server::serve(listener, app.options.limits, service(&app, false))?;
        let extra = match metrics_listener {
            Some(l) => {
                let limits = ConnectionLimits {
                    max_connections: app
                        .options
                        .limits
                        .max_connections
                        .min(MAX_METRICS_CONNECTIONS),
                    ..app.options.limits
                };
                Some(Server::serve(l, limits, service(&app, true))?)
            }
            None => None,
        };
        let (shutdown, rx) = watch::channel(false);
        let addr = main.local_addr();
        let metrics_addr = extra.as_ref().map(Server::local_addr);
        let hurry = app.hurry.clone();
        let task = tokio::spawn(run(main, extra, app, rx));
        Ok(Self {
            addr,
            metrics_addr,
            shutdown,
            hurry,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics listener's bound address, if one was asked for.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops accepting, drains in-flight calls, flushes the audit trail, and returns;
    /// `Err` if the audit trail could not be flushed (entries may be lost).
    pub async fn shutdown(self) -> Result<(), gateway_router::AuditError> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Waits until the server stops (after [`Sidecar::shutdown`] or its trigger);
    /// `Err` if the audit trail could not be flushed (entries may be lost).
    pub async fn wait(self) -> Result<(), gateway_router::AuditError> {
        match self.task.await {
            Ok(flushed) => flushed,
            Err(e) => Err(gateway_router::AuditError::Task {
                sink: "sidecar",
                reason: format!("the sidecar's task ended before flushing: {e}"),
            }),
        }
    }

    /// A handle that triggers shutdown from elsewhere (a signal handler).
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// A handle that ends a shutdown's drain at once, as a second stop signal does:
    /// calls still running are cancelled (audited, answered 503), then the audit trail is
    /// flushed. Cancelled before the shutdown begins, the drain is skipped.
    ///
    /// ```no_run
    /// # async fn run(sidecar: gateway_server::Sidecar) {
    /// let (stop, hurry) = (sidecar.shutdown_trigger(), sidecar.hurry_trigger());
    /// let _ = stop.send(true); // first signal: drain
    /// hurry.cancel(); // second signal: stop the calls still running now
    /// let flushed = sidecar.wait().await;
    /// # drop(flushed);
    /// # }
    /// ```
    pub fn hurry_trigger(&self) -> CancellationToken {
        self.hurry.clone()
    }
}

/// The paths of the main listener, or of the metrics listener, under the house rules.
fn service(
    app: &App,
    metrics_only: bool,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = reply::Reply,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let paths = if metrics_only {
        routes::metrics_only(app.clone())
    } else {
        routes::paths(app.clone())
    };
    house_rules::around(paths, app.clone())
}

/// Serves until the shutdown signal, then shuts down in the documented steps; the
/// audit trail's flush is the last, and its result is the run's.
async fn run(
    main: Server,
    extra: Option<Server>,
    app: App,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), gateway_router::AuditError> {
    let _ = shutdown.wait_for(|down| *down).await;
    let servers: Vec<&Server> = std::iter::once(&main).chain(extra.as_ref()).collect();
    for server in &servers {
        server.stop_accepting();
    }
    app.calls.close();
    let drain = app.options.drain;
    // Connections first: a request whose body is still arriving starts its call only
    // then, and that call must be waited for too. Once every connection has ended, no
    // call can start.
    let finished = async {
        for server in &servers {
            server.drained().await;
        }
        app.calls.wait().await;
    };
    let cut = tokio::select! {
        () = finished => false,
        () = tokio::time::sleep(drain) => true,
        () = app.hurry.cancelled() => true,
    };
    if cut {
        let left = app.calls.len();
        if app.hurry.is_cancelled() {
            tracing::warn!(
                calls = left,
                "the drain was ended early: calls still running are cancelled"
            );
        } else {
            tracing::warn!(
                ?drain,
                calls = left,
                "calls still running at the drain timeout are cancelled"
            );
        }
        app.stop.cancel();
        let answered = async {
            for server in &servers {
                server.drained().await;
            }
            app.calls.wait().await;
        };
        if tokio::time::timeout(ANSWER_GRACE, answered).await.is_err() {
            for server in &servers {
                server.close_all();
            }
            // Cancelled, the calls left end at once; each writes its audit entry before
            // the trail is closed.
            let _ = tokio::time::timeout(ANSWER_GRACE, app.calls.wait()).await;
        }
    }
    let deadline = gateway_transport::clock::from_now(FLUSH_BOUND);
    app.router.shutdown(deadline).await
}
