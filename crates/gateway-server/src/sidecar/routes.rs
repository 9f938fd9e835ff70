//! The sidecar's paths, as an axum router, and their handlers.

use std::sync::OnceLock;

use axum::Router as Paths;
use axum::extract::{Request, State};
use axum::routing::{get, post};
use bytes::Bytes;
use gateway_model::{RouteRequest, parse_json_slice};
use http::StatusCode;
use serde_json::json;

use super::App;
use super::context::X_REQUEST_ID;
use super::keys::{KeyedRequest, SidecarKey, SidecarRequest};
use super::reply::{Reply, error, json, route_error, text, violation_details};

/// Every path the sidecar serves (the OpenAPI document lists the same set).
pub(crate) fn paths(app: App) -> Paths {
    let metrics_open = app.options.metrics_open;
    let paths = Paths::new()
        .route("/v1/route", post(route))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/openapi.json", get(openapi));
    with_metrics(paths, metrics_open)
        .merge(super::openai::paths())
        .fallback(not_found)
        .with_state(app)
}

/// The metrics listener's only path (`[metrics] listen`).
pub(crate) fn metrics_only(app: App) -> Paths {
    let metrics_open = app.options.metrics_open;
    with_metrics(Paths::new(), metrics_open)
        .fallback(not_found)
        .with_state(app)
}

/// `paths` and `GET /metrics`, behind the API keys when `[server] metrics_require_key` is on.
fn with_metrics(paths: Paths<App>, open: bool) -> Paths<App> {
    if open {
        paths.route("/metrics", get(metrics))
    } else {
        paths.route("/metrics", get(keyed_metrics))
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

/// The OpenAPI document, built on its first request and shared by every later one.
async fn openapi() -> Reply {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    let document = DOCUMENT.get_or_init(|| Bytes::from(crate::openapi::document_json()));
    text(StatusCode::OK, "application/json", document.clone())
}

async fn keyed_metrics(_: SidecarKey, app: State<App>) -> Reply {
    metrics(app).await
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

async fn route(State(app): State<App>, KeyedRequest(request, _): SidecarRequest) -> Reply {
    let slot = match app.call_slot() {
        Ok(slot) => slot,
        Err(err) => {
            app.discard_body(request).await;
            return route_error(&err);
        }
    };
    // The head and body are slices of the connection's read buffer: parsed into owned
    // values in this block, they let it go before the call rather than after.
    let (request, echoed) = {
        let (parts, body) = request.into_parts();
        let body = match app.read_body(&parts.headers, body).await {
            Ok(body) => body,
            Err(e) => {
                let code = match e.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => "router.body.too.large",
                    StatusCode::REQUEST_TIMEOUT => "router.body.timeout",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "router.body.encoded",
                    _ => "router.body.unreadable",
                };
                return error(e.status(), code, &e.to_string(), None);
            }
        };
        // Read here, checked by the router, which audits a request it refuses, as it
        // does for every door.
        let mut request: RouteRequest = match parse_json_slice(&body) {
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
        let echoed = super::context::body_request_id(&mut request);
        super::context::adopt(&parts.headers, &mut request);
        (request, echoed)
    };
    let mut reply = match app.route(request, slot).await {
        Ok(outcome) => {
            let mut reply = json(StatusCode::OK, &outcome);
            super::describe(&mut reply, &outcome);
            reply
        }
        Err(err) => super::name_route(route_error(&err), &err),
    };
    if let Some(id) = echoed {
        reply.headers_mut().insert(X_REQUEST_ID.clone(), id);
    }
    reply
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
    // Without `validate_models` no check runs: the models are not known to be wrong, and
    // the answer says they were not checked rather than "ok".
    let models = match app.router.last_model_check() {
        None => Ok("not checked (validate_models is off)"),
        Some(check) if !check.all_known() => Err(format!(
            "unknown models: {}",
            check
                .unknown
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Some(_) => Ok("ok"),
    };
    let ok = token.is_ok() && models.is_ok();
    let models = match &models {
        Ok(said) => said,
        Err(unknown) => unknown.as_str(),
    };
    let body = json!({
        "ready": ok,
        "token": token.err().unwrap_or_else(|| "ok".into()),
        "models": models,
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &body)
}
