//! The admin API under `/__admin/`: script behaviours, read what was received, reset.
//! Admin calls are neither recorded nor counted.

use std::time::Duration;

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::behaviour::{Behaviour, RateLimit, Scripted, Target};
use crate::catalogue;
use crate::check::{
    self, InputError, MAX_ADMIN_MODELS, MAX_PENDING_SCRIPT_BYTES, MAX_PENDING_SCRIPTS,
    MAX_TOKEN_LIFETIME, MIN_TOKEN_LIFETIME,
};
use crate::locks::{lock, read, write};
use crate::reply::{self, Answer, Received};
use crate::state::State;

/// Body of `POST /__admin/script`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ScriptRequest {
    target: Target,
    responses: Vec<Scripted>,
}

/// Body of `PUT /__admin/token-lifetime`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TokenLifetime {
    secs: u64,
}

/// Handles one admin call.
pub(crate) fn handle(state: &State, request: &Received) -> Answer {
    let seq = request.seq;
    let route = request
        .path
        .trim_start_matches("/__admin/")
        .trim_end_matches('/');
    let ok = |body: serde_json::Value| Ok(reply::json(state, seq, StatusCode::OK, &body));
    match (&request.method, route) {
        (&Method::GET, "health") => ok(json!({ "status": "ok" })),
        // Written straight from the log's copy, with no JSON tree between.
        (&Method::GET, "requests") => Ok(reply::json(
            state,
            seq,
            StatusCode::OK,
            &state.recorder.snapshot(),
        )),
        (&Method::GET, "counters") => ok(serde_json::to_value(
            state.counters.snapshot(state.recorder.evicted()),
        )
        .unwrap_or_default()),
        (&Method::POST, "reset") => {
            state.reset();
            ok(json!({ "reset": true }))
        }
        (_, "client-rate-limit" | "token-rate-limit") => client_limit(state, request, route),
        (&Method::POST, "tokens/revoke") => ok(json!({ "revoked": state.revoke_all() })),
        (&Method::PUT, "token-lifetime") => parse(state, request, check_token_lifetime)
            .map_or_else(Ok, |t: TokenLifetime| {
                *write(&state.token_lifetime) = Duration::from_secs(t.secs);
                ok(json!({ "secs": t.secs }))
            }),
        (&Method::PUT, "behaviour") => {
            parse(state, request, Behaviour::check).map_or_else(Ok, |b| {
                write(&state.behaviours).global = b;
                ok(json!({ "target": "global" }))
            })
        }
        (method, r) if r.starts_with("models/") => match (method, model_route(r)) {
            (_, ModelRoute::Malformed(id)) => Ok(malformed_model(state, seq, id)),
            (&Method::PUT, ModelRoute::Behaviour(model)) => {
                put_model_behaviour(state, request, model)
            }
            (&Method::PUT, ModelRoute::Model(model)) => Ok(put_model(state, seq, model)),
            (&Method::DELETE, ModelRoute::Model(model)) => {
                let removed = write(&state.catalogue).remove(model).is_some();
                ok(json!({ "removed": removed }))
            }
            _ => Ok(no_admin_route(state, request, route)),
        },
        (&Method::POST, "script") => post_script(state, request),
        _ => Ok(no_admin_route(state, request, route)),
    }
}

/// The 404 for a method and path the admin API does not serve.
fn no_admin_route(state: &State, request: &Received, route: &str) -> http::Response<reply::Body> {
    reply::error(
        state,
        request.seq,
        StatusCode::NOT_FOUND,
        gateway_model::CODE_NOT_FOUND,
        &format!("No admin route {} /__admin/{route}", request.method),
    )
}

/// What a path under `models/` names.
enum ModelRoute<'a> {
    /// `models/<id>`.
    Model(&'a str),
    /// `models/<id>/behaviour`.
    Behaviour(&'a str),
    /// An id that is not a model id (empty, a `/` in it, percent-encoded, ...).
    Malformed(&'a str),
}

/// Splits `models/<id>` or `models/<id>/behaviour`, checking the id against
/// [`gateway_model::MODEL_ID_PATTERN`].
fn model_route(route: &str) -> ModelRoute<'_> {
    let rest = route.strip_prefix("models/").unwrap_or(route);
    let (id, behaviour) = match rest.strip_suffix("/behaviour") {
        Some(id) => (id, true),
        None => (rest, false),
    };
    match (gateway_model::ModelId::is_well_formed(id), behaviour) {
        (false, _) => ModelRoute::Malformed(id),
        (true, true) => ModelRoute::Behaviour(id),
        (true, false) => ModelRoute::Model(id),
    }
}

/// The 400 for a model path whose id no model can have.
fn malformed_model(state: &State, seq: u64, id: &str) -> http::Response<reply::Body> {
    let mut shown = id.to_owned();
    gateway_model::cut_to(&mut shown, 64);
    reply::error(
        state,
        seq,
        StatusCode::BAD_REQUEST,
        gateway_model::CODE_BAD_REQUEST,
        &format!(
            "`{shown}` is not a model id: 1 to {} characters matching {}",
            gateway_model::MODEL_ID_MAX_LEN,
            gateway_model::MODEL_ID_PATTERN
        ),
    )
}

/// `PUT models/{model}/behaviour`: the model's own behaviour.
fn put_model_behaviour(state: &State, request: &Received, model: &str) -> Answer {
    parse(state, request, Behaviour::check).map_or_else(Ok, |b| {
        let mut behaviours = write(&state.behaviours);
        if behaviours.models.len() >= MAX_ADMIN_MODELS && !behaviours.models.contains_key(model) {
            let what = "models with a behaviour";
            return Ok(full(state, request.seq, what, MAX_ADMIN_MODELS));
        }
        behaviours.models.insert(model.to_owned(), b);
        let body = json!({ "target": { "model": model } });
        Ok(reply::json(state, request.seq, StatusCode::OK, &body))
    })
}

/// `PUT models/{model}`: adds the model to the catalogue.
fn put_model(state: &State, seq: u64, model: &str) -> http::Response<reply::Body> {
    let mut models = write(&state.catalogue);
    if models.len() >= MAX_ADMIN_MODELS && !models.contains_key(model) {
        return full(state, seq, "models in the catalogue", MAX_ADMIN_MODELS);
    }
    models.insert(model.to_owned(), catalogue::entity(model));
    reply::json(state, seq, StatusCode::OK, &json!({ "added": model }))
}

/// `POST script`: queues one-shot answers.
fn post_script(state: &State, request: &Received) -> Answer {
    parse(state, request, check_script).map_or_else(Ok, |s| {
        let n = s.responses.len();
        let bytes = s
            .responses
            .iter()
            .map(Scripted::weight)
            .fold(0, usize::saturating_add);
        let mut scripts = lock(&state.scripts);
        if scripts.pending().saturating_add(n) > MAX_PENDING_SCRIPTS {
            let what = "scripted answers pending";
            return Ok(full(state, request.seq, what, MAX_PENDING_SCRIPTS));
        }
        if scripts.pending_bytes().saturating_add(bytes) > MAX_PENDING_SCRIPT_BYTES {
            let what = "bytes of raw answers pending";
            return Ok(full(state, request.seq, what, MAX_PENDING_SCRIPT_BYTES));
        }
        scripts.push(s.target, s.responses);
        let body = json!({ "queued": n, "pending": scripts.pending() });
        Ok(reply::json(state, request.seq, StatusCode::OK, &body))
    })
}

/// The 400 for an admin call that would take the simulator past one of its bounds.
fn full(state: &State, seq: u64, what: &str, max: usize) -> http::Response<reply::Body> {
    reply::error(
        state,
        seq,
        StatusCode::BAD_REQUEST,
        gateway_model::CODE_BAD_REQUEST,
        &format!("at most {max} {what}: reset or remove some first"),
    )
}

/// `GET`, `PUT` (a [`RateLimit`]) or `DELETE` one of the limits per OAuth client:
/// `client-rate-limit` (prompt calls) or `token-rate-limit` (tokens granted). Setting or
/// removing a limit starts every client's window afresh.
fn client_limit(state: &State, request: &Received, route: &str) -> Answer {
    let calls = route == "client-rate-limit";
    let field = if calls {
        "clientRateLimit"
    } else {
        "tokenRateLimit"
    };
    let set = |limit: Option<RateLimit>| {
        if calls {
            state.set_client_rate_limit(limit);
        } else {
            state.set_token_rate_limit(limit);
        }
    };
    let ok = |limit: Option<RateLimit>| {
        Ok(reply::json(
            state,
            request.seq,
            StatusCode::OK,
            &json!({ field: limit }),
        ))
    };
    match request.method {
        Method::GET => {
            let limits = *read(&state.client_limits);
            ok(if calls {
                limits.requests
            } else {
                limits.tokens
            })
        }
        Method::PUT => parse(state, request, check::check_rate_limit).map_or_else(Ok, |limit| {
            set(Some(limit));
            ok(Some(limit))
        }),
        Method::DELETE => {
            set(None);
            ok(None)
        }
        _ => Ok(reply::error(
            state,
            request.seq,
            StatusCode::NOT_FOUND,
            gateway_model::CODE_NOT_FOUND,
            &format!("No admin route {} /__admin/{route}", request.method),
        )),
    }
}

/// Checks that a token lifetime is in range.
fn check_token_lifetime(t: &TokenLifetime) -> Result<(), InputError> {
    if (MIN_TOKEN_LIFETIME..=MAX_TOKEN_LIFETIME).contains(&Duration::from_secs(t.secs)) {
        Ok(())
    } else {
        Err(InputError {
            path: "secs".into(),
            rule: format!(
                "must be {} to {} seconds",
                MIN_TOKEN_LIFETIME.as_secs(),
                MAX_TOKEN_LIFETIME.as_secs()
            ),
        })
    }
}

/// Checks a script's target (path `target.model`) and its answers (`responses[0].ms`).
fn check_script(s: &ScriptRequest) -> Result<(), InputError> {
    s.target.check().map_err(|e| e.within("target"))?;
    check::check_answers(&s.target, &s.responses).map_err(|e| e.within("responses"))
}

/// Parses a JSON body into `T` and checks it with `check`, or gives the 400 answer
/// naming the problem. Every admin body goes through here.
#[allow(clippy::result_large_err)] // the error is the answer itself, built once
fn parse<T>(
    state: &State,
    request: &Received,
    check: impl FnOnce(&T) -> Result<(), InputError>,
) -> Result<T, http::Response<reply::Body>>
where
    T: serde::de::DeserializeOwned + Serialize,
{
    let bad = |path: &str, why: &dyn std::fmt::Display| {
        reply::error(
            state,
            request.seq,
            StatusCode::BAD_REQUEST,
            gateway_model::CODE_BAD_REQUEST,
            &format!("invalid admin body at `{path}`: {why}"),
        )
    };
    let value: Value = serde_json::from_slice(&request.body).map_err(|e| bad(".", &e))?;
    if !value.is_object() {
        return Err(bad(".", &"expected a JSON object"));
    }
    let parsed: T = serde_path_to_error::deserialize(&value)
        .map_err(|e| bad(&e.path().to_string(), e.inner()))?;
    // serde's derived impls also take a JSON array for a struct (the "sequence form"), and
    // an internally tagged enum as `[tag, fields...]`: refuse an array wherever the type
    // is written as an object.
    let written = serde_json::to_value(&parsed).unwrap_or(Value::Null);
    if let Some(path) = array_for_object(&value, &written, ".") {
        return Err(bad(&path, &"expected a JSON object, not an array"));
    }
    check(&parsed).map_err(|e| bad(&e.path, &e.rule))?;
    Ok(parsed)
}

/// The path of the first place where `input` holds an array and `written` (the parsed
/// value written back) an object.
fn array_for_object(input: &Value, written: &Value, path: &str) -> Option<String> {
    let join = |key: &dyn std::fmt::Display, index: bool| match (path, index) {
        (".", false) => key.to_string(),
        (".", true) => format!("[{key}]"),
        (_, false) => format!("{path}.{key}"),
        (_, true) => format!("{path}[{key}]"),
    };
    match (input, written) {
        (Value::Array(_), Value::Object(_)) => Some(path.to_owned()),
        (Value::Array(items), Value::Array(written)) => items
            .iter()
            .zip(written)
            .enumerate()
            .find_map(|(i, (a, b))| array_for_object(a, b, &join(&i, true))),
        (Value::Object(map), Value::Object(written)) => map.iter().find_map(|(k, a)| {
            written
                .get(k)
                .and_then(|b| array_for_object(a, b, &join(k, false)))
        }),
        _ => None,
    }
}
