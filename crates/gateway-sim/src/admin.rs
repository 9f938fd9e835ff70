//! The admin API under `/__admin/`: script behaviours, read what was received, reset.
//! Admin calls are neither recorded nor counted.

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::behaviour::{Behaviour, Scripted, Target};
use crate::catalogue;
use crate::service::{self, Answer, Incoming2};
use crate::state::{State, lock, write};

/// Body of `POST /__admin/script`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptRequest {
    target: Target,
    responses: Vec<Scripted>,
}

/// Body of `PUT /__admin/token-lifetime`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenLifetime {
    secs: u64,
}

/// Handles one admin call.
pub(crate) fn handle(state: &State, request: &Incoming2) -> Answer {
    let seq = request.seq;
    let route = request
        .path
        .trim_start_matches("/__admin/")
        .trim_end_matches('/');
    let ok = |body: serde_json::Value| Ok(service::json(state, seq, StatusCode::OK, &body));
    match (&request.method, route) {
        (&Method::GET, "health") => ok(json!({ "status": "ok" })),
        (&Method::GET, "requests") => {
            ok(serde_json::to_value(state.recorder.snapshot()).unwrap_or_default())
        }
        (&Method::GET, "counters") => ok(serde_json::to_value(
            state.counters.snapshot(state.recorder.evicted()),
        )
        .unwrap_or_default()),
        (&Method::POST, "reset") => {
            state.reset();
            ok(json!({ "reset": true }))
        }
        (&Method::POST, "tokens/revoke") => ok(json!({ "revoked": state.revoke_all() })),
        (&Method::PUT, "token-lifetime") => {
            parse::<TokenLifetime>(state, request).map_or_else(Ok, |t| {
                *write(&state.token_lifetime) = std::time::Duration::from_secs(t.secs);
                ok(json!({ "secs": t.secs }))
            })
        }
        (&Method::PUT, "behaviour") => parse::<Behaviour>(state, request).map_or_else(Ok, |b| {
            write(&state.behaviours).global = b;
            ok(json!({ "target": "global" }))
        }),
        (&Method::PUT, r) if r.starts_with("models/") && r.ends_with("/behaviour") => {
            let model = &r["models/".len()..r.len() - "/behaviour".len()];
            parse::<Behaviour>(state, request).map_or_else(Ok, |b| {
                write(&state.behaviours).models.insert(model.to_owned(), b);
                ok(json!({ "target": { "model": model } }))
            })
        }
        (&Method::PUT, r) if r.starts_with("models/") => {
            let model = &r["models/".len()..];
            write(&state.catalogue).insert(model.to_owned(), catalogue::entity(model));
            ok(json!({ "added": model }))
        }
        (&Method::DELETE, r) if r.starts_with("models/") => {
            let model = &r["models/".len()..];
            let removed = write(&state.catalogue).remove(model).is_some();
            ok(json!({ "removed": removed }))
        }
        (&Method::POST, "script") => parse::<ScriptRequest>(state, request).map_or_else(Ok, |s| {
            let n = s.responses.len();
            let mut scripts = lock(&state.scripts);
            scripts.push(s.target, s.responses);
            ok(json!({ "queued": n, "pending": scripts.pending() }))
        }),
        _ => Ok(service::error(
            state,
            seq,
            StatusCode::NOT_FOUND,
            gateway_model::CODE_NOT_FOUND,
            &format!("No admin route {} /__admin/{route}", request.method),
        )),
    }
}

/// Parses a JSON body, or gives the 400 answer naming the problem.
#[allow(clippy::result_large_err)] // the error is the answer itself, built once
fn parse<T: serde::de::DeserializeOwned>(
    state: &State,
    request: &Incoming2,
) -> Result<T, http::Response<service::Body>> {
    let mut de = serde_json::Deserializer::from_slice(&request.body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        service::error(
            state,
            request.seq,
            StatusCode::BAD_REQUEST,
            gateway_model::CODE_BAD_REQUEST,
            &format!("invalid admin body at `{path}`: {}", e.inner()),
        )
    })
}
