//! The OpenAPI 3.1 document of the sidecar, assembled from the schemars schemas the
//! project already exports, so no bound is stated a second time.
//!
//! `GET /openapi.json` serves it and `cargo xtask schema` writes it to
//! `schemas/openapi.json` (drift-checked like the JSON Schemas).

use gateway_model::{ErrorBody, RouteOutcome, RouteRequest};
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Value, json};

/// The paths the sidecar serves, with their methods: the router and this document both
/// follow it, and a test sends a request to each.
pub const PATHS: &[(&str, &str)] = &[
    ("/v1/route", "post"),
    ("/metrics", "get"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/openapi.json", "get"),
];

/// The document as JSON.
///
/// ```
/// let doc = gateway_server::openapi::document();
/// assert_eq!(doc["openapi"], "3.1.0");
/// assert!(doc["paths"]["/v1/route"]["post"].is_object());
/// ```
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut schemas = settings.into_generator();
    let route_request = schemas.subschema_for::<RouteRequest>().to_value();
    let route_outcome = schemas.subschema_for::<RouteOutcome>().to_value();
    let error = error_schema(&mut schemas);
    let mut components = schemas.take_definitions(true);
    components.insert("ErrorBody".into(), error);
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "genesys-router sidecar",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Routes prompts to the Genesys Cloud AI Gateway: sticky model selection, temperature tuning, fallbacks, retries, metrics and an audit trail.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "paths": {
            "/v1/route": { "post": {
                "operationId": "route",
                "summary": "Route one prompt",
                "security": [{ "apiKey": [] }],
                "parameters": [request_id_header()],
                "requestBody": { "required": true, "content": { "application/json": { "schema": route_request } } },
                "responses": route_responses(&route_outcome)
            }},
            "/metrics": { "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": { "200": { "description": "Prometheus text exposition", "content": { "text/plain": { "schema": { "type": "string" } } } } }
            }},
            "/healthz": { "get": {
                "operationId": "healthz",
                "summary": "Liveness: 200 while the process runs",
                "responses": { "200": json_response("alive", &json!({ "type": "object", "properties": { "status": { "const": "ok" } }, "required": ["status"] })) }
            }},
            "/readyz": { "get": {
                "operationId": "readyz",
                "summary": "Readiness: 200 when a token can be had and the configured models are known",
                "responses": {
                    "200": json_response("ready", &readiness()),
                    "503": json_response("not ready (with Retry-After)", &readiness())
                }
            }},
            "/openapi.json": { "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": { "200": json_response("the OpenAPI document", &json!({ "type": "object" })) }
            }}
        },
        "components": {
            "schemas": components,
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer", "description": "An API key from the env var `[server] api_keys_env` names; required only when keys are configured." } }
        }
    })
}

/// The document as the exact text written to `schemas/openapi.json`.
pub fn document_json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

/// The error body, with the fields every error of the sidecar carries required.
fn error_schema(schemas: &mut SchemaGenerator) -> Value {
    let mut schema = ErrorBody::json_schema(schemas).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert("required".into(), json!(["message", "code", "status"]));
    }
    schema
}

fn request_id_header() -> Value {
    json!({
        "name": "x-request-id", "in": "header", "required": false,
        "description": "The caller's request id; echoed on the answer (one is made up when absent).",
        "schema": { "type": "string" }
    })
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
        ("400", "invalid request: every violation named in `details`"),
        ("401", "a missing or wrong API key"),
        ("403", "the OAuth client's roles do not allow it"),
        ("404", "unknown route"),
        ("408", "the request body did not arrive in time"),
        ("413", "the request body is too large"),
        ("422", "the gateway refused the request"),
        ("429", "rate limited (with Retry-After)"),
        ("502", "every model failed, or no token"),
        ("503", "overloaded or shutting down (with Retry-After)"),
        ("504", "the deadline passed"),
    ] {
        responses.insert(status.into(), json_response(what, &error));
    }
    Value::Object(responses)
}
