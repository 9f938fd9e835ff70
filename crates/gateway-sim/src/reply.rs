//! What every endpoint shares: the request as it reads it, and the answers it gives
//! (a JSON body, a Genesys error, a dropped connection).

use bytes::Bytes;
use gateway_model::ErrorBody;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::channel::Channel;
use http_body_util::{Either, Full};

use crate::state::State;

/// A response body: whole, or streamed slowly.
pub(crate) type Body = Either<Full<Bytes>, Channel<Bytes>>;

/// Returned by a handler to close the connection without an answer.
#[derive(Debug)]
pub(crate) struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose by the simulator")
    }
}

impl std::error::Error for Dropped {}

/// The result of a handler.
pub(crate) type Answer = Result<Response<Body>, Dropped>;

/// `ININ-Correlation-Id`, sent on every answer.
pub(crate) const ININ_CORRELATION_ID: HeaderName = HeaderName::from_static("inin-correlation-id");

/// A request with its body read, as the endpoints see it.
pub(crate) struct Received {
    pub(crate) seq: u64,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

impl Received {
    /// The value of header `name`, if present and text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A JSON answer with an `ININ-Correlation-Id`.
pub(crate) fn json(
    state: &State,
    seq: u64,
    status: StatusCode,
    body: &impl serde::Serialize,
) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(bytes))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&state.uuid(seq, 7).to_string()) {
        headers.insert(ININ_CORRELATION_ID, v);
    }
    response
}

/// A Genesys error answer: `{"message","code","status","contextId","details","errors"}`.
pub(crate) fn error(
    state: &State,
    seq: u64,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<Body> {
    json(
        state,
        seq,
        status,
        &error_body(state, seq, status, code, message),
    )
}

/// The Genesys error body for an answer.
pub(crate) fn error_body(
    state: &State,
    seq: u64,
    status: StatusCode,
    code: &str,
    message: &str,
) -> ErrorBody {
    ErrorBody::new(
        status.as_u16(),
        code,
        message,
        state.uuid(seq, 11).to_string(),
    )
}
