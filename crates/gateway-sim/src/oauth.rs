//! `POST /oauth/token`: the client-credentials grant, as Genesys Cloud's login service answers it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use http::header::RETRY_AFTER;
use serde_json::json;

use crate::behaviour::Scripted;
use crate::check;
use crate::limit::Verdict;
use crate::locks::{lock, read};
use crate::record::LiveCounters;
use crate::reply::{self, Answer, Dropped, Received};
use crate::state::State;

/// Handles one token request.
pub(crate) async fn token(state: &State, request: &Received) -> Answer {
    let scripted = lock(&state.scripts).next_for_token();
    let mut expires_in = None;
    match scripted {
        None | Some(Scripted::Ok) => {}
        Some(Scripted::Drop) => return Err(Dropped),
        Some(Scripted::Stall) => {
            state.shutting_down().await;
            return Err(Dropped);
        }
        Some(Scripted::Delay { ms }) => {
            tokio::time::sleep(check::wait_from_millis(ms)).await;
        }
        Some(Scripted::Grant { expires_in: n }) => expires_in = Some(n),
        Some(other) => return Ok(scripted_failure(state, request.seq, &other)),
    }

    let Some(client_id) = authenticate(state, request.header("authorization")) else {
        return Ok(oauth_error(
            state,
            request.seq,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "authentication failed",
        ));
    };
    let form: Vec<(String, String)> = form_urlencoded(&request.body);
    let grant = form
        .iter()
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.as_str());
    if grant != Some("client_credentials") {
        return Ok(oauth_error(
            state,
            request.seq,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        ));
    }
    let token_limit = read(&state.client_limits).tokens;
    if let Some(limit) = token_limit.map(|limit| state.token_windows.hit(&client_id, &limit))
        && limit.exceeded()
    {
        LiveCounters::bump(&state.counters.token_rate_limited);
        return Ok(too_many_tokens(state, request.seq, &limit));
    }
    let (token, lifetime) = state.grant(request.seq, &client_id);
    LiveCounters::bump(&state.counters.token_grants);
    let expires_in = expires_in.unwrap_or_else(|| lifetime.as_secs().into());
    Ok(reply::json(
        state,
        request.seq,
        StatusCode::OK,
        &json!({ "access_token": token, "token_type": "bearer", "expires_in": expires_in }),
    ))
}

/// Checks `Authorization: Basic base64(id:secret)` against the configured clients and
/// gives the client id.
fn authenticate(state: &State, header: Option<&str>) -> Option<String> {
    let encoded = header?.strip_prefix("Basic ")?;
    let text = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = text.split_once(':')?;
    (state.clients.get(id).map(String::as_str) == Some(secret)).then(|| id.to_owned())
}

/// A scripted failure in the login service's shape: a status answers its OAuth `error`
/// (the `code` given, or one fitting the status), a 429 carries its `Retry-After`; a raw
/// or oversized answer is sent as scripted, as on the API.
fn scripted_failure(state: &State, seq: u64, script: &Scripted) -> http::Response<reply::Body> {
    match script {
        Scripted::Status { status, code } => {
            let status = check::final_status(*status);
            let error = code.as_deref().unwrap_or(match status.as_u16() {
                400 => "invalid_request",
                401 => "invalid_client",
                403 => "unauthorized_client",
                429 => "too_many_requests",
                _ => "server_error",
            });
            let description = format!("Simulated {}", status.canonical_reason().unwrap_or("error"));
            oauth_error(state, seq, status, error, &description)
        }
        Scripted::TooManyRequests { retry_after } => {
            let mut response = oauth_error(
                state,
                seq,
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Rate limit exceeded the maximum",
            );
            if let Some(v) = check::retry_after_value(*retry_after) {
                response.headers_mut().insert(RETRY_AFTER, v);
            }
            response
        }
        other => crate::prompts::scripted_failure(state, seq, other),
    }
}

/// The 429 for a token request beyond the client's token limit: the login service's error
/// shape, `Retry-After` at the end of the window and the `inin-ratelimit-*` headers.
fn too_many_tokens(state: &State, seq: u64, limit: &Verdict) -> http::Response<reply::Body> {
    let description = format!(
        "Rate limit exceeded the maximum. [{}] token requests for {} seconds",
        limit.allowed, limit.window_secs
    );
    let mut response = oauth_error(
        state,
        seq,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        &description,
    );
    if let Some(v) = check::retry_after_value(limit.retry_after()) {
        response.headers_mut().insert(RETRY_AFTER, v);
    }
    limit.add_headers(response.headers_mut());
    response
}

/// The login service's error shape: `{"error","description","error_description"}`.
fn oauth_error(
    state: &State,
    seq: u64,
    status: StatusCode,
    error: &str,
    description: &str,
) -> http::Response<reply::Body> {
    reply::json(
        state,
        seq,
        status,
        &json!({ "error": error, "description": description, "error_description": description }),
    )
}

/// Parses an `application/x-www-form-urlencoded` body (enough for OAuth forms).
fn form_urlencoded(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms() {
        let form = form_urlencoded(b"grant_type=client_credentials&x=a%20b+c&flag");
        assert_eq!(form[0], ("grant_type".into(), "client_credentials".into()));
        assert_eq!(form[1], ("x".into(), "a b c".into()));
        assert_eq!(form[2], ("flag".into(), String::new()));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%C3%A9%"), "é%");
        assert_eq!(percent_decode("é%4"), "é%4");
    }
}
