//! The sidecar's paths, as an axum router, and their handlers.

use axum::Router as Paths;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::routing::{get, post};
use gateway_model::{RouteRequest, from_json_slice};
use http::StatusCode;
use http::header::HeaderValue;
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use super::App;
use super::keys::require_key;
use super::reply::{Reply, error, json, route_error, text, violation_details, with_retry_after};
use crate::read_body;

use super::context::{X_REQUEST_ID, has_usable_request_id};

/// Every path the sidecar serves (the OpenAPI document lists the same set).
pub(crate) fn paths(app: App) -> Paths {
    let metrics_open = app.options.metrics_open;
    let mut protected = Paths::new().route("/v1/route", post(route));
    let mut open = Paths::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/openapi.json", get(openapi));
    if metrics_open {
        open = open.route("/metrics", get(metrics));
    } else {
        protected = protected.route("/metrics", get(metrics));
    }
    let protected = protected.layer(middleware::from_fn_with_state(app.clone(), require_key));
    let door = super::openai::paths(&app);
    with_service_layers(open.merge(protected).merge(door).fallback(not_found), app)
}

/// The metrics listener's only path (`[metrics] listen`).
pub(crate) fn metrics_only(app: App) -> Paths {
    let paths = Paths::new().route("/metrics", get(metrics));
    let paths = if app.options.metrics_open {
        paths
    } else {
        paths.layer(middleware::from_fn_with_state(app.clone(), require_key))
    };
    with_service_layers(paths.fallback(not_found), app)
}

/// Request ids in and out, the access log, and the house rules for every answer.
fn with_service_layers(paths: Paths<App>, app: App) -> Paths {
    paths
        .layer(middleware::from_fn_with_state(app.clone(), access_log))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(
            X_REQUEST_ID.clone(),
            MakeRequestUuid,
        ))
        .layer(middleware::map_request(drop_unusable_request_id))
        .with_state(app)
}

/// A caller request id the audit trail could not keep (too long, not printable, given
/// twice) is replaced by one made up, so the id echoed is always the one audited.
async fn drop_unusable_request_id(mut request: Request) -> Request {
    if request.headers().contains_key(&X_REQUEST_ID) && !has_usable_request_id(request.headers()) {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    request
}

/// Gives axum's own answers (405 with `Allow`, extractor rejections) the sidecar's error
/// body, and every 429 and 503 a `Retry-After`.
fn conventions(openai: bool, response: Reply) -> Reply {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && response.headers().get(http::header::CONTENT_TYPE).is_none()
    {
        let allow = response.headers().get(http::header::ALLOW).cloned();
        let mut reply = if openai {
            super::openai::method_not_allowed()
        } else {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "router.method.not.allowed",
                "method not allowed",
                None,
            )
        };
        if let Some(allow) = allow {
            reply.headers_mut().insert(http::header::ALLOW, allow);
        }
        return reply;
    }
    with_retry_after(response)
}

/// One line per request (method, path, status, latency, request id; never a body) and
/// the HTTP metrics, around the house rules ([`conventions`]). Nothing is copied for the
/// line unless the access log is on.
async fn access_log(State(app): State<App>, request: Request, next: Next) -> Reply {
    let started = std::time::Instant::now();
    let path = request.uri().path();
    let label = path_label(path);
    let openai = super::openai::owns(path);
    let logged =
        tracing::enabled!(target: "genesys_router::access", tracing::Level::INFO).then(|| {
            // Copied, not cloned: a header value shares the connection's read buffer.
            let id = header_str(request.headers().get(&X_REQUEST_ID)).to_owned();
            (request.method().clone(), path.to_owned(), id)
        });
    let response = conventions(openai, next.run(request).await);
    let status = response.status().as_u16();
    app.http_metrics.record(label, status, started.elapsed());
    if let Some((method, path, request_id)) = logged {
        let latency_ms = started.elapsed().as_secs_f64() * 1_000.0;
        tracing::info!(
            target: "genesys_router::access",
            %method, %path, status, latency_ms,
            route = header_str(response.headers().get(&super::ROUTE_HEADER)),
            model = header_str(response.headers().get(&super::MODEL_HEADER)),
            request_id = %request_id,
            "request"
        );
    }
    response
}

/// A header's text, or "" (for the access log).
fn header_str(value: Option<&HeaderValue>) -> &str {
    value.and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Every path label of the HTTP metrics.
pub(crate) const PATH_LABELS: &[&str] = &[
    "/v1/route",
    "/metrics",
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/models",
    "/v1/models/{model}",
    "other",
];

/// A bounded metric label for a path: one of [`PATH_LABELS`].
fn path_label(path: &str) -> &'static str {
    match PATH_LABELS.iter().find(|label| **label == path) {
        Some(label) => label,
        None if path.starts_with("/v1/models/") => "/v1/models/{model}",
        None => "other",
    }
}

async fn not_found(request: Request) -> Reply {
    let path = request.uri().path();
    if super::openai::owns(path) {
        return super::openai::not_found(request.method(), path);
    }
    error(
        StatusCode::NOT_FOUND,
        "router.not.found",
        "no such endpoint",
        None,
    )
}

async fn healthz() -> Reply {
    json(StatusCode::OK, &json!({ "status": "ok" }))
}

async fn openapi() -> Reply {
    text(
        StatusCode::OK,
        "application/json",
        crate::openapi::document_json(),
    )
}

async fn metrics(State(app): State<App>) -> Reply {
    match &app.metrics {
        Some(m) => text(StatusCode::OK, "text/plain; version=0.0.4", m.render()),
        None => error(
            StatusCode::NOT_FOUND,
            "router.no.metrics",
            "no metrics recorder is installed",
            None,
        ),
    }
}

async fn route(State(app): State<App>, request: Request<Body>) -> Reply {
    // The head and body are slices of the connection's read buffer: parsed into owned
    // values in this block, they let it go before the call rather than after.
    let request = {
        let (parts, body) = request.into_parts();
        let body = match read_body(
            body,
            app.options.body_max_bytes,
            app.options.limits.body_read_timeout,
        )
        .await
        {
            Ok(body) => body,
            Err(e) => {
                let code = match e.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => "router.body.too.large",
                    StatusCode::REQUEST_TIMEOUT => "router.body.timeout",
                    _ => "router.body.unreadable",
                };
                return error(e.status(), code, &e.to_string(), None);
            }
        };
        let mut request: RouteRequest = match from_json_slice(&body) {
            Ok(request) => request,
            Err(errors) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "router.invalid.request",
                    &errors.to_string(),
                    Some(violation_details(&errors)),
                );
            }
        };
        super::context::adopt(&parts.headers, &mut request);
        request
    };
    match app.route(request).await {
        Ok(outcome) => {
            let mut reply = json(StatusCode::OK, &outcome);
            super::describe(&mut reply, &outcome);
            reply
        }
        Err(err) => super::name_route(route_error(&err), &err),
    }
}

/// How long `/readyz` waits for a token before it answers "not ready": a probe must
/// not hang on a login host that does not answer.
pub(crate) const READY_TOKEN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn ready(State(app): State<App>) -> Reply {
    let token = match tokio::time::timeout(READY_TOKEN_WAIT, app.router.token_ready()).await {
        Ok(ready) => ready.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "no token within {READY_TOKEN_WAIT:?}: the login host has not answered yet"
        )),
    };
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
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &body)
}
