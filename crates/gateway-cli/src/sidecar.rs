//! `genesys-router serve`: the router as a local HTTP sidecar.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `POST /v1/route` | a `RouteRequest` in, a `RouteOutcome` out; errors as a Genesys-style error body |
//! | `GET /metrics` | Prometheus text |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 when a token can be had and the configured models are known, else 503 |
//!
//! Shutdown is graceful: stop accepting, let in-flight calls finish (up to the drain
//! timeout), then flush the audit trail.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gateway_model::{ErrorBody, RouteRequest, from_json_slice};
use gateway_router::{RouteError, Router};
use gateway_telemetry::MetricsHandle;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// Largest request body the sidecar reads.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the sidecar serves with.
#[derive(Clone)]
struct App {
    router: Router,
    metrics: Option<MetricsHandle>,
    /// Routed calls run as tasks of their own, tracked so shutdown can wait for them.
    calls: TaskTracker,
}

/// A running sidecar.
pub struct Sidecar {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Sidecar {
    /// Binds `addr` and serves `router` (and `metrics`, if given) until shut down.
    pub async fn start(
        router: Router,
        metrics: Option<MetricsHandle>,
        addr: SocketAddr,
        drain: Duration,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        let app = App {
            router,
            metrics,
            calls: TaskTracker::new(),
        };
        let task = tokio::spawn(serve(listener, app, rx, drain));
        Ok(Self {
            addr,
            shutdown,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, drains in-flight calls, flushes the audit trail, and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops (after [`Sidecar::shutdown`] or a fatal error).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// A handle that triggers shutdown from elsewhere (a signal handler).
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

async fn serve(
    listener: TcpListener,
    app: App,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|down| *down) => break,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors, say: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle(&app, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(graceful.watch(conn));
    }
    drop(listener);
    app.calls.close();
    let drained = async {
        graceful.shutdown().await;
        app.calls.wait().await;
    };
    if tokio::time::timeout(drain, drained).await.is_err() {
        tracing::warn!(
            ?drain,
            "in-flight calls did not finish within the drain timeout"
        );
    }
    let deadline = tokio::time::Instant::now() + drain;
    if let Err(e) = app.router.shutdown(deadline).await {
        tracing::error!(error = %e, "the audit trail could not be flushed");
    }
}

async fn handle(app: &App, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/route") => route(app, req).await,
        (&Method::GET, "/metrics") => match &app.metrics {
            Some(m) => text(StatusCode::OK, "text/plain; version=0.0.4", m.render()),
            None => error(
                StatusCode::NOT_FOUND,
                "router.no.metrics",
                "no metrics recorder is installed",
                None,
            ),
        },
        (&Method::GET, "/healthz") => json_answer(StatusCode::OK, &json!({ "status": "ok" })),
        (&Method::GET, "/readyz") => ready(app).await,
        (_, "/v1/route" | "/metrics" | "/healthz" | "/readyz") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "router.method.not.allowed",
            "method not allowed",
            None,
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "router.not.found",
            "no such endpoint",
            None,
        ),
    }
}

async fn route(app: &App, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "router.body.too.large",
                "the request body exceeds 1 MiB",
                None,
            );
        }
    };
    let request: RouteRequest = match from_json_slice(&body) {
        Ok(request) => request,
        Err(errors) => {
            let details = errors
                .violations()
                .iter()
                .map(|v| json!({ "fieldName": v.path, "errorMessage": v.rule.to_string() }))
                .collect();
            return error(
                StatusCode::BAD_REQUEST,
                "router.invalid.request",
                &errors.to_string(),
                Some(details),
            );
        }
    };
    // A task of its own: a client that disconnects does not cancel the call (which may
    // already be at the gateway), so it still ends, and is audited, as it really ended.
    let router = app.router.clone();
    let call = app.calls.spawn(async move { router.route(request).await });
    match call.await {
        Ok(Ok(outcome)) => json_answer(StatusCode::OK, &outcome),
        Ok(Err(err)) => route_error(&err),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "router.internal",
            "the routed call failed unexpectedly",
            None,
        ),
    }
}

/// A route failure as a Genesys-style error body; `contextId` is the correlation id.
fn route_error(err: &RouteError) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let details = err.violations().map(|v| {
        v.violations()
            .iter()
            .map(|v| json!({ "fieldName": v.path, "errorMessage": v.rule.to_string() }))
            .collect()
    });
    let mut body = ErrorBody::new(
        status.as_u16(),
        err.code(),
        err.to_string(),
        err.correlation_id().unwrap_or(""),
    );
    if let Some(details) = details {
        body.details = details;
    }
    if let Some(trace) = err.trace() {
        body.extra.insert(
            "modelsTried".into(),
            serde_json::to_value(&trace.models_tried).unwrap_or_default(),
        );
    }
    let mut response = json_answer(status, &body);
    if let Some(after) = err.retry_after() {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

async fn ready(app: &App) -> Response<Full<Bytes>> {
    let token = app.router.token_ready().await;
    let models = match app.router.last_model_check() {
        Some(check) if !check.all_known() => Err(format!(
            "unknown models: {}",
            check
                .unknown
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => Ok(()),
    };
    let ok = token.is_ok() && models.is_ok();
    let body = json!({
        "ready": ok,
        "token": token.err().unwrap_or_else(|| "ok".into()),
        "models": models.err().unwrap_or_else(|| "ok".into()),
    });
    json_answer(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    )
}

fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    details: Option<Vec<serde_json::Value>>,
) -> Response<Full<Bytes>> {
    let mut body = ErrorBody::new(status.as_u16(), code, message, "");
    body.context_id = None;
    body.details = details.unwrap_or_default();
    json_answer(status, &body)
}

fn json_answer(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    text(status, "application/json", bytes)
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination() {
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
