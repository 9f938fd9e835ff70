//! `POST /api/v2/ai/gateway/prompts`: authenticate, validate, apply scripts and
//! behaviours, answer.

use std::time::Duration;

use bytes::Bytes;
use gateway_model::{
    CODE_AUTHENTICATION_REQUIRED, CODE_BAD_CREDENTIALS, CODE_BAD_REQUEST, CODE_MISSING_PERMISSIONS,
    CODE_MODEL_RESTRICTED, CODE_NOT_FOUND, CODE_POLICY_VIOLATION, CODE_TOO_MANY_REQUESTS,
    FinishReason, GatewayPayload, GatewayResponse, RateLimitInfo, SafetyReport, SafetyVerdict,
    Usage, ValidationErrors, from_json_slice,
};
use http::header::RETRY_AFTER;
use http::{Response, StatusCode};
use http_body_util::Either;
use http_body_util::channel::Channel;

use crate::behaviour::{Latency, RetryAfter, Scripted};
use crate::check::{self, MAX_OVERSIZED_BYTES};
use crate::limit::Verdict;
use crate::locks::{lock, read};
use crate::record::LiveCounters;
use crate::reply::{self, Answer, Body, Dropped, Received};
use crate::state::{State, TokenProblem};

/// The `limit.key` of a 429 from the limit per bearer token.
const KEY_PER_TOKEN: &str = "ai.gateway.prompts.per.token";
/// The `limit.key` of a 429 from the limit per OAuth client.
const KEY_PER_CLIENT: &str = "ai.gateway.prompts.per.client";

/// Random-draw streams, so each decision uses its own independent draw.
const STREAM_LATENCY: u64 = 101;
const STREAM_DROP: u64 = 103;
const STREAM_ERRORS: u64 = 107;

/// What the standing behaviour decided for one call.
#[derive(Default)]
struct Plan {
    restricted: bool,
    latency: Duration,
    policy_code: Option<String>,
    error_status: Option<u16>,
    drop: bool,
    slow_body: Option<(u32, Duration)>,
    serve_as: Option<String>,
    rate_limit: Option<Verdict>,
}

/// Handles one prompt call.
pub(crate) async fn prompt(state: &State, request: &Received) -> Answer {
    let seq = request.seq;
    let bearer = match state.check_bearer(request.header("authorization")) {
        Ok(bearer) => bearer,
        Err(problem) => return Ok(unauthorized(state, seq, &problem)),
    };
    // The client's limit counts every authenticated call, before the payload is read or a
    // script is used, as Genesys counts calls at its edge before the service sees them.
    let client_limit = read(&state.client_limits).requests;
    let client = client_limit.map(|limit| state.client_windows.hit(&bearer.client_id, &limit));
    if let Some(limit) = client.as_ref().filter(|l| l.exceeded()) {
        LiveCounters::bump(&state.counters.client_rate_limited);
        return Ok(rate_limited(state, seq, limit, KEY_PER_CLIENT));
    }
    let payload: GatewayPayload = match from_json_slice(&request.body) {
        Ok(payload) => payload,
        Err(errors) => return Ok(bad_request(state, seq, &errors)),
    };
    let model = payload.model_id.as_str();
    let max_output = match read(&state.catalogue).get(model) {
        Some(entity) => entity.max_output_tokens,
        None => {
            return Ok(reply::error(
                state,
                seq,
                StatusCode::NOT_FOUND,
                CODE_NOT_FOUND,
                &format!("Model {model} was not found"),
            ));
        }
    };
    if let Some(max) = max_output.filter(|max| payload.parameters.max_tokens > *max) {
        let message = format!(
            "maxTokens {} exceeds the model's limit of {max}",
            payload.parameters.max_tokens
        );
        return Ok(reply::error(
            state,
            seq,
            StatusCode::BAD_REQUEST,
            CODE_BAD_REQUEST,
            &message,
        ));
    }

    let scripted = lock(&state.scripts).next_for_model(model);
    if let Some(script) = scripted {
        return match script {
            Scripted::Ok => Ok(success(state, seq, &payload, None)),
            Scripted::Delay { ms } => {
                tokio::time::sleep(check::wait_from_millis(ms)).await;
                Ok(success(state, seq, &payload, None))
            }
            Scripted::Drop => Err(Dropped),
            Scripted::Stall => {
                state.shutting_down().await;
                Err(Dropped)
            }
            other => Ok(scripted_failure(state, seq, &other)),
        };
    }

    behave(state, seq, &payload, &bearer.token, client.as_ref()).await
}

/// Answers a call no script took, as the standing behaviour says; the rate-limit headers
/// are the token's limit's, else the client's.
async fn behave(
    state: &State,
    seq: u64,
    payload: &GatewayPayload,
    token: &str,
    client: Option<&Verdict>,
) -> Answer {
    let plan = plan(state, seq, payload, token);
    if plan.restricted {
        let model = payload.model_id.as_str();
        let message = format!("Model {model} is restricted for this organization");
        return Ok(reply::error(
            state,
            seq,
            StatusCode::FORBIDDEN,
            CODE_MODEL_RESTRICTED,
            &message,
        ));
    }
    if let Some(limit) = plan.rate_limit.as_ref().filter(|l| l.exceeded()) {
        return Ok(rate_limited(state, seq, limit, KEY_PER_TOKEN));
    }
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    let mut response = if let Some(code) = &plan.policy_code {
        policy_violation(state, seq, code)
    } else if let Some(status) = plan.error_status {
        status_error(state, seq, status, None)
    } else if plan.drop {
        return Err(Dropped);
    } else {
        let mut response = success(state, seq, payload, plan.serve_as.as_deref());
        if let Some((chunks, delay)) = plan.slow_body {
            response = slow(response, chunks, delay).await;
        }
        response
    };
    if let Some(limit) = plan.rate_limit.as_ref().or(client) {
        limit.add_headers(response.headers_mut());
    }
    Ok(response)
}

/// Draws every random decision for one call under the read lock, so the lock is never
/// held across an await.
fn plan(state: &State, seq: u64, payload: &GatewayPayload, token: &str) -> Plan {
    let behaviours = read(&state.behaviours);
    let b = behaviours.for_model(payload.model_id.as_str());
    let mut plan = Plan {
        restricted: b.restricted,
        serve_as: b.serve_as.clone(),
        ..Plan::default()
    };

    let draw = state.unit(seq, STREAM_LATENCY);
    let ms = match b.latency {
        Latency::None => 0.0,
        Latency::Fixed { ms } => ms,
        Latency::Uniform { min_ms, max_ms } => min_ms + (max_ms - min_ms) * draw,
        Latency::Exponential { mean_ms } => -mean_ms * (1.0 - draw).ln(),
    };
    plan.latency = check::wait_from_ms(ms);

    plan.policy_code = b
        .policy_rules
        .iter()
        .find(|rule| payload.prompt.contains(&rule.contains))
        .map(|rule| {
            rule.code
                .clone()
                .unwrap_or_else(|| CODE_POLICY_VIOLATION.to_owned())
        });

    // One draw picks at most one error status: the rates stack up from 0.
    let draw = state.unit(seq, STREAM_ERRORS);
    let mut acc = 0.0;
    plan.error_status = b.errors.iter().find_map(|e| {
        acc += e.rate;
        (draw < acc).then_some(e.status)
    });
    plan.drop = state.unit(seq, STREAM_DROP) < b.drop_rate;
    plan.slow_body = b.slow_body.as_ref().map(check::slow_body_parts);

    // A model's own limit keeps windows of its own; models under the global behaviour
    // share the token's.
    plan.rate_limit = b.rate_limit.map(|limit| {
        let model = payload.model_id.as_str();
        if behaviours.models.contains_key(model) {
            state.windows.hit(&format!("{token} {model}"), &limit)
        } else {
            state.windows.hit(token, &limit)
        }
    });
    plan
}

/// The `200` answer: deterministic text and token counts derived from the payload.
fn success(
    state: &State,
    seq: u64,
    payload: &GatewayPayload,
    serve_as: Option<&str>,
) -> Response<Body> {
    LiveCounters::bump(&state.counters.prompt_successes);
    let served = serve_as.unwrap_or(payload.model_id.as_str());
    let excerpt: String = payload.prompt.chars().take(64).collect();
    let mut output = format!(
        "[{served} t={:.2}] {excerpt}",
        payload.parameters.temperature
    );
    let prompt_tokens =
        u32::try_from(payload.prompt.chars().count().div_ceil(4)).unwrap_or(u32::MAX);
    let mut completion_tokens =
        u32::try_from(output.chars().count().div_ceil(4)).unwrap_or(u32::MAX);
    let mut finish = FinishReason::Stop;
    if completion_tokens > payload.parameters.max_tokens {
        completion_tokens = payload.parameters.max_tokens;
        output = output
            .chars()
            .take(usize::try_from(completion_tokens).map_or(usize::MAX, |n| n.saturating_mul(4)))
            .collect();
        finish = FinishReason::Length;
    }
    let response = GatewayResponse {
        id: format!("cmpl-{seq}"),
        model_id: served.into(),
        output,
        usage: Some(Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            extra: serde_json::Map::new(),
        }),
        finish_reason: Some(finish),
        safety: Some(SafetyReport {
            verdict: SafetyVerdict::Passed,
            triggered: Vec::new(),
            extra: serde_json::Map::new(),
        }),
        extra: serde_json::Map::new(),
    };
    reply::json(state, seq, StatusCode::OK, &response)
}

/// Re-sends `response`'s body in `chunks` parts, `delay` apart.
async fn slow(response: Response<Body>, chunks: u32, delay: Duration) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Either::Left(full) => http_body_util::BodyExt::collect(full)
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default(),
        Either::Right(_) => Bytes::new(),
    };
    let (mut sender, channel) = Channel::<Bytes>::new(1);
    tokio::spawn(async move {
        let size = bytes.len().div_ceil(chunks as usize).max(1);
        for chunk in bytes.chunks(size) {
            tokio::time::sleep(delay).await;
            if sender
                .send_data(Bytes::copy_from_slice(chunk))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Response::from_parts(parts, Either::Right(channel))
}

/// An answer for a scripted failure (also used by the token endpoint).
pub(crate) fn scripted_failure(state: &State, seq: u64, script: &Scripted) -> Response<Body> {
    match script {
        Scripted::Status { status, code } => status_error(state, seq, *status, code.as_deref()),
        Scripted::TooManyRequests { retry_after } => {
            too_many_requests(state, seq, *retry_after, 300, 60, KEY_PER_TOKEN)
        }
        Scripted::PolicyViolation => policy_violation(state, seq, CODE_POLICY_VIOLATION),
        Scripted::Oversized { bytes } => {
            let bytes = (*bytes).min(MAX_OVERSIZED_BYTES);
            let mut response = reply::json(state, seq, StatusCode::OK, &serde_json::json!({}));
            *response.body_mut() =
                Either::Left(http_body_util::Full::new(Bytes::from(vec![b' '; bytes])));
            response
        }
        Scripted::Raw { .. } => raw(state, seq, script),
        // Callers handle the rest before getting here; a grant answers only the token
        // endpoint.
        Scripted::Ok
        | Scripted::Drop
        | Scripted::Stall
        | Scripted::Delay { .. }
        | Scripted::Grant { .. } => status_error(state, seq, 500, Some("sim.script.misuse")),
    }
}

/// A [`Scripted::Raw`] answer: its status, headers and body and nothing else; a 500
/// `sim.script.invalid` naming the problem if HTTP cannot carry them (only the Rust API
/// can queue such a script: the admin API refuses it).
fn raw(state: &State, seq: u64, script: &Scripted) -> Response<Body> {
    let Scripted::Raw {
        status,
        headers,
        body,
    } = script
    else {
        return status_error(state, seq, 500, Some("sim.script.misuse"));
    };
    match check::raw_parts(*status, headers) {
        Ok((status, headers)) => {
            let mut response = Response::new(Either::Left(http_body_util::Full::new(Bytes::from(
                body.clone(),
            ))));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(e) => reply::error(
            state,
            seq,
            StatusCode::INTERNAL_SERVER_ERROR,
            "sim.script.invalid",
            &format!("invalid raw script: {e}"),
        ),
    }
}

/// A Genesys error answer for `status`, with a default code per status.
fn status_error(state: &State, seq: u64, status: u16, code: Option<&str>) -> Response<Body> {
    // 1xx is not a final answer (hyper would turn it into a 500 or an upgrade).
    let status = check::final_status(status);
    let default_code = match status.as_u16() {
        400 => CODE_BAD_REQUEST,
        401 => CODE_BAD_CREDENTIALS,
        403 => CODE_MISSING_PERMISSIONS,
        404 => CODE_NOT_FOUND,
        422 => CODE_POLICY_VIOLATION,
        429 => CODE_TOO_MANY_REQUESTS,
        502 => "bad.gateway",
        503 => "service.unavailable",
        504 => "gateway.timeout",
        _ => "internal.server.error",
    };
    let message = format!("Simulated {}", status.canonical_reason().unwrap_or("error"));
    reply::error(state, seq, status, code.unwrap_or(default_code), &message)
}

fn policy_violation(state: &State, seq: u64, code: &str) -> Response<Body> {
    reply::error(
        state,
        seq,
        StatusCode::UNPROCESSABLE_ENTITY,
        code,
        "The prompt was refused by a content policy",
    )
}

/// The 429 for a call beyond a standing limit, with its `inin-ratelimit-*` headers.
fn rate_limited(state: &State, seq: u64, limit: &Verdict, key: &str) -> Response<Body> {
    let mut response = too_many_requests(
        state,
        seq,
        limit.retry_after(),
        limit.allowed,
        limit.window_secs,
        key,
    );
    limit.add_headers(response.headers_mut());
    response
}

/// A 429 with `Retry-After` and Genesys' rate-limit body naming the limit `key`.
fn too_many_requests(
    state: &State,
    seq: u64,
    retry_after: RetryAfter,
    allowed: u32,
    window: u64,
    key: &str,
) -> Response<Body> {
    let mut body = reply::error_body(
        state,
        seq,
        StatusCode::TOO_MANY_REQUESTS,
        CODE_TOO_MANY_REQUESTS,
        &format!("Rate limit exceeded the maximum. [{allowed}] requests for {window} seconds"),
    );
    body.limit = Some(RateLimitInfo {
        key: Some(key.into()),
        namespace: Some("ai.gateway".into()),
        value: Some(i64::from(allowed)),
    });
    let mut response = reply::json(state, seq, StatusCode::TOO_MANY_REQUESTS, &body);
    if let Some(v) = check::retry_after_value(retry_after) {
        response.headers_mut().insert(RETRY_AFTER, v);
    }
    response
}

fn unauthorized(state: &State, seq: u64, problem: &TokenProblem) -> Response<Body> {
    let (code, message) = match problem {
        TokenProblem::Missing => (
            CODE_AUTHENTICATION_REQUIRED,
            "No authentication bearer token specified in authorization header.",
        ),
        TokenProblem::Unknown => (CODE_BAD_CREDENTIALS, "Invalid login credentials."),
        TokenProblem::Expired => (CODE_BAD_CREDENTIALS, "The access token has expired."),
        TokenProblem::Revoked => (CODE_BAD_CREDENTIALS, "The access token has been revoked."),
    };
    reply::error(state, seq, StatusCode::UNAUTHORIZED, code, message)
}

/// A 400 naming every violation (the first 64, and how many more), with one `details`
/// entry per violation named.
fn bad_request(state: &State, seq: u64, errors: &ValidationErrors) -> Response<Body> {
    let mut body = reply::error_body(
        state,
        seq,
        StatusCode::BAD_REQUEST,
        CODE_BAD_REQUEST,
        &errors.to_string(),
    );
    body.details = errors
        .violations()
        .iter()
        .map(|v| serde_json::json!({ "fieldName": v.path, "errorMessage": v.rule.to_string() }))
        .collect();
    reply::json(state, seq, StatusCode::BAD_REQUEST, &body)
}
