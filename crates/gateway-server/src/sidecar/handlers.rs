//! The sidecar's endpoints.

use gateway_model::{RouteRequest, from_json_slice};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::App;
use super::reply::{Reply, error, json, route_error, text, violation_details};
use crate::read_body;

pub(crate) async fn handle(app: &App, req: Request<Incoming>) -> Reply {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/route") => route(app, req).await,
        (&Method::GET, "/metrics") => metrics(app),
        (&Method::GET, "/healthz") => json(StatusCode::OK, &json!({ "status": "ok" })),
        (&Method::GET, "/readyz") => ready(app).await,
        (_, "/v1/route" | "/metrics" | "/healthz" | "/readyz") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "router.method.not.allowed",
            "method not allowed",
            None,
        ),
        _ => not_found(),
    }
}

/// The metrics listener's only endpoint (`[metrics] listen`).
pub(crate) fn handle_metrics_only(app: &App, req: &Request<Incoming>) -> Reply {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => metrics(app),
        (_, "/metrics") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "router.method.not.allowed",
            "method not allowed",
            None,
        ),
        _ => not_found(),
    }
}

fn not_found() -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "router.not.found",
        "no such endpoint",
        None,
    )
}

fn metrics(app: &App) -> Reply {
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

async fn route(app: &App, req: Request<Incoming>) -> Reply {
    let body = match read_body(
        req.into_body(),
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
    let request: RouteRequest = match from_json_slice(&body) {
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
    // A task of its own: a client that disconnects does not cancel the call (which may
    // already be at the gateway), so it still ends, and is audited, as it really ended.
    // Only the drain deadline of a shutdown stops it, with its reason.
    let router = app.router.clone();
    let stop = app.stop.clone();
    let drain = app.options.drain;
    let call = app.calls.spawn(async move {
        let reason = async move {
            stop.cancelled().await;
            format!("the sidecar shut down: its drain timeout of {drain:?} ended before the call")
        };
        router.route_until(request, reason).await
    });
    match call.await {
        Ok(Ok(outcome)) => json(StatusCode::OK, &outcome),
        Ok(Err(err)) => route_error(&err),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "router.internal",
            "the routed call failed unexpectedly",
            None,
        ),
    }
}

async fn ready(app: &App) -> Reply {
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
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &body)
}
