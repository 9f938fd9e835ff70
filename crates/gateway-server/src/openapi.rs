//! The OpenAPI 3.1 document of the sidecar, assembled from the schemars schemas the
//! project already exports, so no bound is stated a second time.
//!
//! `GET /openapi.json` serves it and `cargo xtask schema` writes it to
//! `schemas/openapi.json` (drift-checked like the JSON Schemas).

use gateway_model::{ErrorBody, RouteOutcome, RouteRequest};
use serde_json::{Value, json};

use crate::sidecar::openai::error::OpenAiErrorBody;
use crate::sidecar::openai::request::ChatCompletionRequest;
use crate::sidecar::openai::response::{ChatCompletion, ChatCompletionChunk, ModelCard, ModelList};
use crate::sidecar::openai::responses::{
    CreateResponseRequest, ResponseObject, ResponseStreamEvent,
};

/// The document as JSON.
///
/// ```
/// let doc = gateway_server::openapi::document();
/// assert_eq!(doc["openapi"], "3.1.0");
/// assert!(doc["paths"]["/v1/route"]["post"].is_object());
/// ```
pub fn document() -> Value {
    let mut settings = gateway_model::schema::settings();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut schemas = settings.into_generator();
    let route_request = schemas.subschema_for::<RouteRequest>().to_value();
    let route_outcome = schemas.subschema_for::<RouteOutcome>().to_value();
    // Into the components; its schema requires `message`, `code` and `status` itself.
    schemas.subschema_for::<ErrorBody>();
    let chat_request = schemas.subschema_for::<ChatCompletionRequest>().to_value();
    let chat_completion = schemas.subschema_for::<ChatCompletion>().to_value();
    let chat_chunk = schemas
        .subschema_for::<ChatCompletionChunk<'static>>()
        .to_value();
    let responses = [
        schemas.subschema_for::<CreateResponseRequest>().to_value(),
        schemas.subschema_for::<ResponseObject>().to_value(),
        schemas
            .subschema_for::<ResponseStreamEvent<'static>>()
            .to_value(),
    ];
    let model_list = schemas.subschema_for::<ModelList>().to_value();
    let model_card = schemas.subschema_for::<ModelCard>().to_value();
    let openai_error = schemas.subschema_for::<OpenAiErrorBody>().to_value();
    let mut components = schemas.take_definitions(true);
    require_every_field(&mut components, "OpenAiErrorDetail");
    let mut paths = service_paths(&route_request, &route_outcome);
    describe_headers(&mut paths["/v1/route"]["post"]["responses"], false);
    if let (Value::Object(all), Value::Object(openai)) = (
        &mut paths,
        openai_paths(
            &chat_request,
            &chat_completion,
            &chat_chunk,
            &model_list,
            &model_card,
            &openai_error,
        ),
    ) {
        all.extend(openai);
        all.insert(
            "/v1/responses".into(),
            responses_path(&responses, &openai_error),
        );
    }
    for path in ["/v1/chat/completions", "/v1/responses"] {
        describe_headers(&mut paths[path]["post"]["responses"], true);
    }
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "genesys-router sidecar",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Routes prompts to the Genesys Cloud AI Gateway: sticky model selection, temperature tuning, fallbacks, retries, metrics and an audit trail. On every path, an HTTP/1.1 request without exactly one valid `Host` is refused with 400 (`router.host.invalid`; `invalid_host` on the OpenAI paths), as RFC 9112 asks.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "headers": header_components(),
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer", "description": "An API key from the env var `[server] api_keys_env` names; required only when keys are configured." } }
        }
    })
}

/// The native door and the operational endpoints.
fn service_paths(route_request: &Value, route_outcome: &Value) -> Value {
    json!({
        "/v1/route": { "post": {
            "operationId": "route",
            "summary": "Route one prompt",
            "security": [{ "apiKey": [] }],
            "parameters": [request_id_header()],
            "requestBody": { "required": true, "content": { "application/json": { "schema": route_request } } },
            "responses": route_responses(route_outcome)
        }},
        "/metrics": { "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "security": [{}, { "apiKey": [] }],
            "responses": {
                "200": { "description": "Prometheus text exposition", "content": { "text/plain": { "schema": { "type": "string" } } } },
                "400": json_response("more than one `Authorization` header (code `router.invalid.request`), when `/metrics` asks for a key", &json!({ "$ref": "#/components/schemas/ErrorBody" })),
                "401": json_response("a missing or wrong API key, when API keys are configured and `[server] metrics_require_key` is on (it is off by default: `/metrics` is open)", &json!({ "$ref": "#/components/schemas/ErrorBody" })),
                "403": json_response("a web page's request (with `Origin`) while `[server] metrics_require_key` is on and no API keys are configured (code `router.cross.origin`)", &json!({ "$ref": "#/components/schemas/ErrorBody" })),
                "404": json_response("no metrics recorder is installed (a sidecar built by a library user without one; code `router.no.metrics`)", &json!({ "$ref": "#/components/schemas/ErrorBody" })),
                "405": method_not_allowed()
            }
        }},
        "/healthz": { "get": {
            "operationId": "healthz",
            "summary": "Liveness: 200 while the process runs",
            "responses": {
                "200": json_response("alive", &json!({ "type": "object", "properties": { "status": { "const": "ok" } }, "required": ["status"] })),
                "405": method_not_allowed()
            }
        }},
        "/readyz": { "get": {
            "operationId": "readyz",
            "summary": "Readiness: 200 when a token can be had and no configured model is missing from the catalogue (checked with validate_models; `models` says `not checked` without it)",
            "responses": {
                "200": json_response("ready", &readiness()),
                "503": json_response("not ready (with Retry-After)", &readiness()),
                "405": method_not_allowed()
            }
        }},
        "/openapi.json": { "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {
                "200": json_response("the OpenAPI document", &json!({ "type": "object" })),
                "405": method_not_allowed()
            }
        }}
    })
}

/// The OpenAI-compatible door.
fn openai_paths(
    chat_request: &Value,
    chat_completion: &Value,
    chat_chunk: &Value,
    model_list: &Value,
    model_card: &Value,
    openai_error: &Value,
) -> Value {
    json!({
        "/v1/chat/completions": { "post": {
            "operationId": "createChatCompletion",
            "summary": "OpenAI-compatible chat completion through a route",
            "description": "`model` names a route. The messages are rendered into the gateway prompt: one user message is its text; otherwise each message is `System|User|Assistant[ (name)]: text`, joined by blank lines. Parameters the gateway cannot honour are refused by name (400 `unsupported_parameter`); at their \"off\" value (`tools: []`, `tool_choice: \"none\"`, `response_format: {\"type\": \"text\"}`, `stop: []`, `n: 1`, ...) they are accepted. With `stream: true` the answer is Server-Sent Events of `chat.completion.chunk` ending in `data: [DONE]`; the gateway answers whole, so the content arrives as one delta.",
            "tags": ["openai"],
            "security": [{ "apiKey": [] }],
            "parameters": [request_id_header(), sticky_key_header()],
            "requestBody": { "required": true, "content": { "application/json": { "schema": chat_request } } },
            "responses": with_body_timeout(openai_responses(
                json!({ "description": "the answer (a `chat.completion`, or with `stream: true` an event stream of `chat.completion.chunk`)", "content": {
                    "application/json": { "schema": chat_completion },
                    "text/event-stream": { "schema": { "type": "string", "description": "`data: <chunk>` events, then `data: [DONE]`" }, "x-chunk-schema": chat_chunk }
                } }),
                openai_error
            ), openai_error)
        }},
        "/v1/models": { "get": {
            "operationId": "listModels",
            "summary": "The routes, as OpenAI models",
            "tags": ["openai"],
            "security": [{ "apiKey": [] }],
            "responses": openai_responses(json_response("the routes", model_list), openai_error)
        }},
        "/v1/models/{model}": { "get": {
            "operationId": "retrieveModel",
            "summary": "One route, as an OpenAI model",
            "tags": ["openai"],
            "security": [{ "apiKey": [] }],
            "parameters": [{ "name": "model", "in": "path", "required": true, "description": "A route name.", "schema": { "type": "string" } }],
            "responses": openai_responses(json_response("the route", model_card), openai_error)
        }}
    })
}

/// `POST /v1/responses`: `[request, response, event]` schemas.
fn responses_path([request, response, event]: &[Value; 3], openai_error: &Value) -> Value {
    json!({ "post": {
        "operationId": "createResponse",
        "summary": "OpenAI Responses API through a route (text only; nothing is stored)",
        "description": "`model` names a route. `input` (a string, or `message` items) and `instructions` are rendered into the gateway prompt by the chat completions template, `instructions` first as a `System` turn. Other item types, non-text parts, `tools`, `previous_response_id`, `store: true` and a `text.format` other than `text` are refused by name (400). With `stream: true` the answer is Server-Sent Events (`event:` and `data:` lines) from `response.created` to `response.completed` or `response.incomplete`; the gateway answers whole, so the text arrives as one delta.",
        "tags": ["openai"],
        "security": [{ "apiKey": [] }],
        "parameters": [request_id_header(), sticky_key_header()],
        "requestBody": { "required": true, "content": { "application/json": { "schema": request } } },
        "responses": with_body_timeout(openai_responses(
            json!({ "description": "the answer (a `response`, or with `stream: true` its event stream)", "content": {
                "application/json": { "schema": response },
                "text/event-stream": { "schema": { "type": "string", "description": "`event: <type>` and `data: <event>` pairs" }, "x-event-schema": event }
            } }),
            openai_error
        ), openai_error)
    }})
}

/// The headers a routed call's answers carry, as components.
fn header_components() -> Value {
    let text = json!({ "type": "string" });
    let count = json!({ "type": "integer", "minimum": 0 });
    json!({
        "RequestId": { "description": "The request id the audit entry keeps: the caller's `x-request-id`, a `/v1/route` body's `callerRequestId`, or one made up.", "schema": text },
        "Route": { "description": "The route that served the call, or that a failed call reached (absent when it reached none).", "schema": text },
        "Model": { "description": "The model that answered.", "schema": text },
        "Fallbacks": { "description": "How many times the call moved on to the next model.", "schema": count },
        "RetryAfter": { "description": "Seconds to wait before trying again: always on a 429 and a 503, on a 502 when the gateway or the login host said when.", "schema": count },
        "ShouldRetry": { "description": "Whether OpenAI's SDKs should send the request again: `false` when it would not help, or when the wait asked for is longer than the SDKs honour (60 s).", "schema": { "enum": ["true", "false"] } }
    })
}

/// Adds the headers a routed call's answers carry to each of `responses` (the OpenAI
/// door's also say `x-should-retry` on a failed call).
fn describe_headers(responses: &mut Value, openai: bool) {
    let Some(responses) = responses.as_object_mut() else {
        return;
    };
    let header = |name: &str| json!({ "$ref": format!("#/components/headers/{name}") });
    for (status, response) in responses.iter_mut() {
        let mut headers = serde_json::Map::new();
        headers.insert("x-request-id".into(), header("RequestId"));
        match status.as_str() {
            "200" => {
                headers.insert("x-genesys-router-route".into(), header("Route"));
                headers.insert("x-genesys-router-model".into(), header("Model"));
                headers.insert("x-genesys-router-fallbacks".into(), header("Fallbacks"));
            }
            "400" | "403" | "422" | "429" | "502" | "503" | "504" => {
                headers.insert("x-genesys-router-route".into(), header("Route"));
            }
            _ => {}
        }
        if matches!(status.as_str(), "429" | "502" | "503") {
            headers.insert("retry-after".into(), header("RetryAfter"));
        }
        if openai && matches!(status.as_str(), "403" | "429" | "502" | "503" | "504") {
            headers.insert("x-should-retry".into(), header("ShouldRetry"));
        }
        if let Some(response) = response.as_object_mut() {
            response.insert("headers".into(), Value::Object(headers));
        }
    }
}

/// The document as the exact text written to `schemas/openapi.json`.
pub fn document_json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

/// Marks every property of the component `name` required (fields always written, null
/// where empty, as OpenAI's clients expect).
fn require_every_field(components: &mut serde_json::Map<String, Value>, name: &str) {
    if let Some(object) = components.get_mut(name).and_then(Value::as_object_mut) {
        let keys: Vec<Value> = object
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().map(Value::String).collect())
            .unwrap_or_default();
        object.insert("required".into(), Value::Array(keys));
    }
}

fn sticky_key_header() -> Value {
    json!({
        "name": "x-sticky-key", "in": "header", "required": false,
        "description": "The sticky key (such as a conversation id); wins over `user`. Sent once and not empty, or the request is refused (400).",
        "schema": { "type": "string" }
    })
}

/// The OpenAI door's answers: `ok` and its errors, all in OpenAI's error shape.
/// `responses` with the 408 of a request body that did not arrive in time, in the order
/// of their statuses.
fn with_body_timeout(responses: Value, error: &Value) -> Value {
    let Value::Object(map) = responses else {
        return responses;
    };
    let timeout = json_response("the request body did not arrive in time", error);
    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
    entries.push(("408".into(), timeout));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Object(entries.into_iter().collect())
}

fn openai_responses(ok: Value, error: &Value) -> Value {
    let mut responses = serde_json::Map::new();
    responses.insert("200".into(), ok);
    for (status, what) in [
        (
            "400",
            "invalid or unsupported parameter (`param` names it), a content policy refusal, a request every model of the route refused, or more than one `Authorization` header (code `invalid_request`)",
        ),
        ("401", "a missing or wrong API key"),
        (
            "403",
            "the OAuth client's roles do not allow it, every model of the route is restricted for the organisation, or a web page's request (with `Origin`) while no API keys are configured",
        ),
        ("404", "unknown model (`model_not_found`)"),
        ("405", "another method than the path's (with Allow)"),
        ("413", "the request body is too large"),
        (
            "415",
            "the request body is sent with a `Content-Encoding` other than identity",
        ),
        ("429", "rate limited (with Retry-After)"),
        ("502", FAILED),
        ("503", UNAVAILABLE),
        ("504", "the deadline passed"),
    ] {
        responses.insert(status.into(), json_response(what, error));
    }
    Value::Object(responses)
}

/// The 502 of both doors.
const FAILED: &str = "every model sent to failed (not by refusing the request), or no token; with Retry-After when the gateway's last answers said when to come back, or when the login host will be asked again";

/// The 503 of both doors.
const UNAVAILABLE: &str = "overloaded, shutting down, or every model of the route skipped on an open circuit (nothing sent); with Retry-After: for open circuits, until the first lets a call through";

fn request_id_header() -> Value {
    json!({
        "name": "x-request-id", "in": "header", "required": false,
        "description": "The caller's request id; echoed on the answer, which carries the id the audit entry keeps: a `/v1/route` body's `callerRequestId` over this header, one made up when neither is given.",
        "schema": { "type": "string" }
    })
}

/// The 405 of the sidecar's own paths.
fn method_not_allowed() -> Value {
    json_response(
        "another method than the path's (with Allow; code `router.method.not.allowed`)",
        &json!({ "$ref": "#/components/schemas/ErrorBody" }),
    )
}

fn json_response(description: &str, schema: &Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn readiness() -> Value {
    json!({
        "type": "object",
        "properties": { "ready": { "type": "boolean" }, "token": { "type": "string" }, "models": { "type": "string" } },
        "required": ["ready", "token", "models"]
    })
}

fn route_responses(outcome: &Value) -> Value {
    let error = json!({ "$ref": "#/components/schemas/ErrorBody" });
    let mut responses = serde_json::Map::new();
    responses.insert(
        "200".into(),
        json_response("the answer, with the model that gave it", outcome),
    );
    for (status, what) in [
        (
            "400",
            "invalid request: every violation named in `details` (the first 64; the message counts the rest), or more than one `Authorization` header (code `router.invalid.request`, no details), or a body that broke off (code `router.body.unreadable`)",
        ),
        ("401", "a missing or wrong API key"),
        (
            "403",
            "the OAuth client's roles do not allow it, every model of the route is restricted for the organisation, or a web page's request (with `Origin`) while no API keys are configured",
        ),
        ("404", "unknown route"),
        ("405", "another method than the path's (with Allow)"),
        ("408", "the request body did not arrive in time"),
        ("413", "the request body is too large"),
        (
            "415",
            "the request body is sent with a `Content-Encoding` other than identity",
        ),
        (
            "422",
            "the gateway refused the request, or every model of the route refused it (a content policy, or restricted for some and a policy for the others)",
        ),
        ("429", "rate limited (with Retry-After)"),
        ("502", FAILED),
        ("503", UNAVAILABLE),
        ("504", "the deadline passed"),
    ] {
        responses.insert(status.into(), json_response(what, &error));
    }
    Value::Object(responses)
}
