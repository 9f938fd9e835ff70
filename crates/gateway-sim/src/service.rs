//! Request dispatch: every request read, recorded, handed to its endpoint, and its
//! answer counted.

use std::sync::Arc;

use gateway_model::{CODE_NOT_FOUND, CODE_REQUEST_TOO_LARGE, MAX_REQUEST_BYTES};
use http::header::HeaderValue;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::locks::read;
use crate::record::{LiveCounters, RecordedRequest};
use crate::reply::{Answer, Dropped, Received, error};
use crate::state::State;
use crate::{admin, catalogue, oauth, prompts};

/// The error code of a 408 for a body that did not arrive in time.
const CODE_REQUEST_TIMEOUT: &str = "request.timeout";

/// Entry point for every request.
pub(crate) async fn handle(state: Arc<State>, req: Request<Incoming>) -> Answer {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let is_admin = path.starts_with("/__admin/");
    // Admin calls take no number: the seeded draws of the calls under test, and the
    // recorded order, do not depend on how often a test looked at the simulator.
    let seq = if is_admin { 0 } else { state.next_seq() };

    // Genesys refuses bodies over 512,000 bytes. A body not all in within the connection
    // timeout of its headers, when there is one, is given up on.
    let collected = Limited::new(body, MAX_REQUEST_BYTES).collect();
    let collected = match state.body_timeout {
        Some(timeout) => tokio::time::timeout(timeout, collected).await,
        None => Ok(collected.await),
    };
    let Ok(collected) = collected else {
        let answer = error(
            &state,
            seq,
            StatusCode::REQUEST_TIMEOUT,
            CODE_REQUEST_TIMEOUT,
            "The request body did not arrive in time",
        );
        return finish(&state, is_admin, Ok(answer));
    };
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            let answer = error(
                &state,
                seq,
                StatusCode::PAYLOAD_TOO_LARGE,
                CODE_REQUEST_TOO_LARGE,
                "The request body exceeds 512000 bytes",
            );
            return finish(&state, is_admin, Ok(answer));
        }
        Err(_) => return Err(Dropped),
    };

    let request = Received {
        seq,
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
    };
    if !is_admin {
        record(&state, &request);
    }

    let answer = dispatch(&state, &request).await;
    finish(&state, is_admin, answer)
}

/// The endpoint's answer to `request`.
async fn dispatch(state: &State, request: &Received) -> Answer {
    match (&request.method, request.path.as_str()) {
        (_, p) if p.starts_with("/__admin/") => admin::handle(state, request),
        (&Method::POST, "/oauth/token") => {
            LiveCounters::bump(&state.counters.token_requests);
            oauth::token(state, request).await
        }
        (&Method::POST, "/api/v2/ai/gateway/prompts") => {
            LiveCounters::bump(&state.counters.prompt_requests);
            let _in_flight = state.counters.enter();
            prompts::prompt(state, request).await
        }
        (&Method::GET, "/api/v2/ai/models") => {
            LiveCounters::bump(&state.counters.model_requests);
            let delay = *read(&state.catalogue_delay);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(catalogue::list(state, request))
        }
        (&Method::GET, p) if p.starts_with("/api/v2/ai/models/") => {
            LiveCounters::bump(&state.counters.model_requests);
            Ok(catalogue::get(
                state,
                request,
                &p["/api/v2/ai/models/".len()..],
            ))
        }
        _ => {
            LiveCounters::bump(&state.counters.other_requests);
            Ok(error(
                state,
                request.seq,
                StatusCode::NOT_FOUND,
                CODE_NOT_FOUND,
                "No such resource",
            ))
        }
    }
}

/// Counts the answer's status (or the dropped connection).
fn finish(state: &State, is_admin: bool, answer: Answer) -> Answer {
    if !is_admin {
        match &answer {
            Ok(response) => state.counters.status(response.status().as_u16()),
            Err(Dropped) => LiveCounters::bump(&state.counters.dropped_connections),
        }
    }
    answer
}

fn record(state: &State, request: &Received) {
    if !state.recorder.enabled() {
        return;
    }
    let path = match &request.query {
        Some(q) => format!("{}?{q}", request.path),
        None => request.path.clone(),
    };
    state.recorder.push(RecordedRequest {
        seq: request.seq,
        at_ms: state.elapsed_ms(),
        method: request.method.to_string(),
        path,
        headers: request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), recorded_value(n, v)))
            .collect(),
        body: String::from_utf8_lossy(&request.body).into_owned(),
    });
}

/// A header value as the log keeps it: credentials are reduced to their scheme and a
/// short fingerprint (enough to tell tokens apart), so the admin API never hands out a
/// usable token or client secret.
fn recorded_value(name: &http::HeaderName, value: &HeaderValue) -> String {
    let text = String::from_utf8_lossy(value.as_bytes());
    if name != http::header::AUTHORIZATION {
        return text.into_owned();
    }
    let (scheme, secret) = text.split_once(' ').unwrap_or(("", &text));
    let fingerprint = secret.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{scheme} <redacted {:08x}>", fingerprint >> 32)
}
