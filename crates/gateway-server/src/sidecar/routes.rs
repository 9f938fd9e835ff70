//! The sidecar's paths, as an axum router, and their handlers.

use axum::Router as Paths;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::routing::{get, post};
use gateway_model::{RouteRequest, from_json_slice};
use http::header::HeaderName;
use http::{HeaderMap, StatusCode};
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use super::App;
use super::keys::require_key;
use super::reply::{Reply, error, json, route_error, text, violation_details, with_retry_after};
use crate::read_body;

use super::context::X_REQUEST_ID;

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
        .layer(middleware::from_fn(conventions))
        .layer(middleware::from_fn(access_log))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(
            X_REQUEST_ID.clone(),
            MakeRequestUuid,
        ))
        .with_state(app)
}

/// Gives axum's own answers (405 with `Allow`, extractor rejections) the sidecar's error
/// body, and every 429 and 503 a `Retry-After`.
async fn conventions(request: Request, next: Next) -> Reply {
    let openai = super::openai::owns(request.uri().path());
    let response = next.run(request).await;
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

/// One line per request: method, path, status, latency, request id; never a body.
async fn access_log(request: Request, next: Next) -> Reply {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = header_text(request.headers(), &X_REQUEST_ID);
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let route = header_text(response.headers(), &super::ROUTE_HEADER);
    let model = header_text(response.headers(), &super::MODEL_HEADER);
    let latency_ms = started.elapsed().as_secs_f64() * 1_000.0;
    gateway_telemetry::http_request(&path_label(&path), status, started.elapsed());
    tracing::info!(
        target: "genesys_router::access",
        %method, %path, status, latency_ms, route, model, request_id,
        "request"
    );
    response
}

/// A bounded metric label for a path: the known ones, else `other`.
fn path_label(path: &str) -> String {
    match path {
        "/v1/route"
        | "/metrics"
        | "/healthz"
        | "/readyz"
        | "/openapi.json"
        | "/v1/chat/completions"
        | "/v1/models" => path.to_owned(),
        _ if path.starts_with("/v1/models/") => "/v1/models/{model}".to_owned(),
        _ => "other".to_owned(),
    }
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
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
    match app.route(request).await {
        Ok(outcome) => {
            let mut reply = json(StatusCode::OK, &outcome);
            super::describe(&mut reply, &outcome);
            reply
        }
        Err(err) => route_error(&err),
    }
}

async fn ready(State(app): State<App>) -> Reply {
    let token = app.router.token_ready().await.map_err(|e| e.to_string());
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
