//! The OpenAI-compatible door: existing OpenAI clients switch by changing a base URL.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `POST /v1/chat/completions` | a `chat.completion`, or with `stream: true` Server-Sent Events of `chat.completion.chunk` |
//! | `POST /v1/responses` | a `response` (OpenAI's Responses API, text only, nothing stored), or with `stream: true` its Server-Sent Events ([`responses`]) |
//! | `GET /v1/models` | the routes, as models |
//! | `GET /v1/models/{model}` | one route, as a model |
//!
//! `model` names a route; the conversation becomes the gateway prompt by the template of
//! [`request`]; `temperature` must lie in the route's band (or the extension `tuning`
//! picks it); `user` (or an `X-Sticky-Key` header) is the sticky key. Parameters the
//! gateway cannot honour are refused by name. The gateway answers whole, so a stream
//! carries the content in one delta, and an error found before the first byte is an
//! ordinary JSON error. Errors have OpenAI's shape ([`error`]).

mod call;
pub(crate) mod error;
mod json_values;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod responses;
mod route_error;
mod text_or_list;
mod unique_keys;

use axum::Router as Paths;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::routing::{get, post};
use gateway_model::{RouteOutcome, RouteRequest};
use http::header::{CACHE_CONTROL, HeaderValue};
use http::{HeaderMap, StatusCode};

use self::error::OpenAiError;
use self::request::ChatCall;
use self::response::{ChatCompletion, ModelCard, ModelList, event_stream, unix_now};
use self::responses::{CreateResponseRequest, ResponseObject, response_events};
use super::App;
use super::keys::{Denied, Keyed, KeyedRequest, Refusal};
use super::reply::{Reply, json, text};

/// The door's paths, each behind the API keys (when configured).
pub(crate) fn paths() -> Paths<App> {
    Paths::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/responses", post(create_response))
        .route("/v1/models", get(models))
        .route("/v1/models/{model}", get(model))
}

/// Whether `path` belongs to this door (its answers, 404s and 405s included, then take
/// OpenAI's error shape): every `/v1/` path but the sidecar's own `/v1/route`.
pub(crate) fn owns(path: &str) -> bool {
    path.starts_with("/v1/") && path != "/v1/route"
}

/// The door's 404 for a path it does not serve.
pub(crate) fn not_found(method: &http::Method, path: &str) -> Reply {
    let mut path = path.to_owned();
    gateway_model::cut_to(&mut path, 256);
    let message = if path.starts_with("/v1/responses/") {
        format!(
            "unknown request URL: {method} {path}: responses are not stored, so none can be fetched, listed or cancelled"
        )
    } else {
        format!("unknown request URL: {method} {path}")
    };
    OpenAiError::status(StatusCode::NOT_FOUND, "unknown_url", &message).into_reply()
}

/// The door's 405, keeping axum's `Allow`.
pub(crate) fn method_not_allowed() -> Reply {
    OpenAiError::status(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed",
    )
    .into_reply()
}

/// The door's 400 for a request without a usable `Host`.
pub(crate) fn bad_host(message: &str) -> Reply {
    OpenAiError::status(StatusCode::BAD_REQUEST, "invalid_host", message).into_reply()
}

/// The OpenAI-compatible door: its refusals have OpenAI's error shape.
pub(crate) enum OpenAiDoor {}

/// A request to the door that the API keys let through.
type OpenAiKey = Keyed<OpenAiDoor>;

/// [`OpenAiKey`], body and all.
type OpenAiRequest = KeyedRequest<OpenAiDoor>;

impl Refusal for OpenAiDoor {
    fn cross_origin() -> Reply {
        OpenAiError::status(
            StatusCode::FORBIDDEN,
            "cross_origin_request",
            super::keys::FROM_A_WEB_PAGE,
        )
        .into_reply()
    }

    fn unauthenticated(denied: Denied) -> Reply {
        OpenAiError::unauthenticated(denied.status, denied.message, denied.challenge).into_reply()
    }
}

/// How a door reads its request: the call for the router, and how to answer it.
type Parse = fn(&[u8], &HeaderMap) -> Result<(RouteRequest, ChatCall), OpenAiError>;

/// Reads and parses `request` by `parse`, then routes it: the outcome and how to answer
/// it, or the error's answer.
async fn routed(
    app: &App,
    request: Request<Body>,
    parse: Parse,
) -> Result<(RouteOutcome, ChatCall), Reply> {
    let slot = match app.call_slot() {
        Ok(slot) => slot,
        Err(err) => {
            app.discard_body(request).await;
            return Err(OpenAiError::failed(&err).into_reply());
        }
    };
    // The head and body are slices of the connection's read buffer: parsed into owned
    // values in this block, they let it go before the call rather than after.
    let (request, call) = {
        let (parts, body) = request.into_parts();
        let body = app
            .read_body(&parts.headers, body)
            .await
            .map_err(|e| OpenAiError::body(&e).into_reply())?;
        let (mut request, call) = parse(&body, &parts.headers).map_err(OpenAiError::into_reply)?;
        super::context::adopt(&parts.headers, &mut request);
        (request, call)
    };
    match app.route(request, slot).await {
        Ok(outcome) => Ok((outcome, call)),
        Err(err) => Err(super::name_route(
            OpenAiError::route(&err, &call).into_reply(),
            &err,
        )),
    }
}

/// An answer as Server-Sent Events.
fn events(stream: String) -> Reply {
    let mut reply = text(StatusCode::OK, "text/event-stream", stream);
    reply
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    reply
}

async fn chat_completions(
    State(app): State<App>,
    KeyedRequest(request, _): OpenAiRequest,
) -> Reply {
    let (outcome, call) = match routed(&app, request, ChatCall::parse).await {
        Ok(routed) => routed,
        Err(reply) => return reply,
    };
    let created = unix_now();
    let mut reply = if call.stream {
        events(event_stream(&outcome, created, call.include_usage))
    } else {
        json(StatusCode::OK, &ChatCompletion::new(&outcome, created))
    };
    super::describe(&mut reply, &outcome);
    reply
}

async fn create_response(State(app): State<App>, KeyedRequest(request, _): OpenAiRequest) -> Reply {
    let (outcome, call) = match routed(&app, request, CreateResponseRequest::parse).await {
        Ok(routed) => routed,
        Err(reply) => return reply,
    };
    let created = unix_now();
    let mut reply = if call.stream {
        events(response_events(&outcome, &call.echo, created))
    } else {
        json(
            StatusCode::OK,
            &ResponseObject::new(&outcome, &call.echo, created),
        )
    };
    super::describe(&mut reply, &outcome);
    reply
}

async fn models(_: OpenAiKey, State(app): State<App>) -> Reply {
    let cards = app
        .router
        .routes()
        .into_iter()
        .map(|name| ModelCard::new(name, app.started_unix))
        .collect();
    json(StatusCode::OK, &ModelList::new(cards))
}

async fn model(
    _: OpenAiKey,
    State(app): State<App>,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Reply {
    // A name that does not decode to text is no model either, in OpenAI's error shape
    // rather than axum's plain-text rejection.
    let Ok(Path(name)) = name else {
        return OpenAiError::invalid(
            Some("model".into()),
            "invalid_value",
            "the model name in the path is not percent-encoded UTF-8".into(),
        )
        .into_reply();
    };
    if app.router.routes().contains(&name.as_str()) {
        json(StatusCode::OK, &ModelCard::new(&name, app.started_unix))
    } else {
        let mut name = name;
        gateway_model::cut_to(&mut name, gateway_router::MAX_UNKNOWN_ROUTE_CHARS);
        OpenAiError::status(
            StatusCode::NOT_FOUND,
            "model_not_found",
            &format!("the model `{name}` does not exist: models are the configured routes"),
        )
        .with_param("model")
        .into_reply()
    }
}
