//! One logical call as the transport takes it, the headers that identify it, and the
//! successful answer it gives back.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use gateway_model::MAX_REQUEST_BYTES;
use gateway_model::redact::redact_secrets;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use tokio::time::Instant;

use crate::bearer::AccessToken;
use crate::error::{CallStats, ErrorKind};

/// The longest text [`shared_header_value`] keeps inline.
const INLINE_HEADER_BYTES: usize = 64;

/// A short header value (an id, a `traceparent`) in a buffer of its own.
struct InlineText {
    bytes: [u8; INLINE_HEADER_BYTES],
    len: usize,
}

impl AsRef<[u8]> for InlineText {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A header value holding `text`, made to be cloned: a value built the usual way copies
/// the text once and allocates again on its first clone (to share the copy), while this
/// one keeps a short text in one allocation that every clone shares. The rules of
/// [`HeaderValue::from_bytes`] apply.
///
/// ```
/// let value = gateway_transport::shared_header_value(b"0b6f7c1e-request-id").unwrap();
/// assert_eq!(value.clone(), "0b6f7c1e-request-id");
/// assert!(gateway_transport::shared_header_value(b"two\nlines").is_err());
/// ```
pub fn shared_header_value(text: &[u8]) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    if text.len() > INLINE_HEADER_BYTES {
        return HeaderValue::from_bytes(text);
    }
    let mut inline = InlineText {
        bytes: [0; INLINE_HEADER_BYTES],
        len: text.len(),
    };
    inline.bytes[..text.len()].copy_from_slice(text);
    HeaderValue::from_maybe_shared(Bytes::from_owner(inline))
}

/// The idempotency key header: one value per logical call, the same on every attempt.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-genesys-request-id");
/// The correlation header: one value per routed call, shared by its fallbacks.
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
/// The correlation id Genesys Cloud puts on every answer.
pub const ININ_CORRELATION_ID: HeaderName = HeaderName::from_static("inin-correlation-id");

/// One logical call: sent once, retried with the same request id.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// The absolute URL (see [`Transport::url`](crate::Transport::url)).
    pub uri: Uri,
    /// The JSON body (empty for `GET`).
    pub body: Bytes,
    /// The `X-Genesys-Request-Id`, identical on every attempt.
    pub request_id: String,
    /// The `X-Correlation-Id`, if any.
    pub correlation_id: Option<String>,
    /// A deadline for this call, replacing the configured one (a router passes the
    /// remaining time of a whole fallback chain).
    pub deadline: Option<Instant>,
    /// A cap on `Retry-After` for this call, below the policy's (a router with a
    /// fallback at hand would rather fail over than wait long): it lowers the policy's
    /// cap, never raises it.
    pub max_retry_after: Option<Duration>,
    /// How long the call may wait for a token, if longer than its deadline: a router
    /// that gives each model a share of its time passes the whole chain's deadline, as a
    /// slow login host is no model's fault and the next model needs the same token.
    pub token_deadline: Option<Instant>,
    /// More headers sent on every attempt (such as `traceparent`), at most
    /// [`MAX_CALL_HEADERS`] values; the transport's own (`Authorization`, the ids,
    /// `Accept`, `Content-Type`, `User-Agent`, `Host`) replace them where it sends one
    /// (a caller's `Authorization` goes out when no token source is set).
    pub headers: HeaderMap,
}

impl Call {
    /// A JSON `POST` of `body` to `uri`.
    pub fn post(uri: Uri, body: impl Into<Bytes>, request_id: impl Into<String>) -> Self {
        Self {
            method: Method::POST,
            uri,
            body: body.into(),
            request_id: request_id.into(),
            correlation_id: None,
            deadline: None,
            max_retry_after: None,
            token_deadline: None,
            headers: HeaderMap::new(),
        }
    }

    /// A `GET` of `uri`.
    pub fn get(uri: Uri, request_id: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            body: Bytes::new(),
            ..Self::post(uri, Bytes::new(), request_id)
        }
    }

    /// Sets the `X-Correlation-Id`.
    #[must_use]
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the deadline.
    #[must_use]
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Lets the call wait for a token until `deadline`, if that is later than its own.
    #[must_use]
    pub fn token_deadline(mut self, deadline: Instant) -> Self {
        self.token_deadline = Some(deadline);
        self
    }

    /// Lowers the `Retry-After` cap for this call to `cap` (a larger one than the
    /// policy's changes nothing).
    #[must_use]
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = Some(cap);
        self
    }

    /// Adds a header sent on every attempt.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
}

/// A successful (2xx) answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The HTTP version used.
    pub version: Version,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// Attempts, retries and timings.
    pub stats: CallStats,
    /// The token the answered request carried, taken out of a decoding error's text.
    pub(crate) sent_token: Option<AccessToken>,
    /// The transport's [`KnownSecrets`](crate::KnownSecrets), taken out likewise.
    pub(crate) known_secrets: crate::KnownSecrets,
}

impl Answer {
    /// The body as JSON of type `T`. A string holding half of a UTF-16 surrogate pair (a
    /// service that cut an emoji in two) reads with U+FFFD in its place rather than
    /// failing the answer. A decoding error quotes what it could not read, without the
    /// request's token (an answer may repeat it where a number belongs).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ErrorKind> {
        serde_json::from_slice(&self.body).or_else(|e| {
            gateway_model::replace_lone_surrogates(&self.body)
                .and_then(|fixed| serde_json::from_slice(&fixed).ok())
                .ok_or_else(|| {
                    let secrets = self.secrets();
                    ErrorKind::Decode(
                        redact_secrets(&e.to_string(), secrets.as_slice()).into_owned(),
                    )
                })
        })
    }

    /// The `ININ-Correlation-Id` header, without the request's token should it repeat it.
    pub fn upstream_correlation_id(&self) -> Option<Cow<'_, str>> {
        let secrets = self.secrets();
        self.headers
            .get(ININ_CORRELATION_ID)
            .and_then(|v| v.to_str().ok())
            .map(|id| redact_secrets(id, secrets.as_slice()))
    }

    /// `text` without the request's token or the known secrets, which a proxy may repeat
    /// anywhere in an answer.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        redact_secrets(text, self.secrets().as_slice())
    }

    /// Takes the request's token and the known secrets out of every string in `value`,
    /// object keys included.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        gateway_model::redact::redact_json(value, self.secrets().as_slice());
    }

    /// The request's token and the known secrets.
    fn secrets(&self) -> crate::known_secrets::SecretList<'_> {
        self.known_secrets
            .and(self.sent_token.as_ref().map(AccessToken::expose))
    }
}

/// Most header values a [`Call`] may carry of its own (`Call::headers`): far more than a
/// request needs, and few enough that the request built from them stays within what a
/// `HeaderMap` holds.
pub const MAX_CALL_HEADERS: usize = 256;

/// Checks the call's size and header values before anything is sent.
pub(crate) fn check_call(call: &Call) -> Result<(HeaderValue, Option<HeaderValue>), ErrorKind> {
    if call.body.len() > MAX_REQUEST_BYTES {
        return Err(ErrorKind::RequestTooLarge {
            size: call.body.len(),
            limit: MAX_REQUEST_BYTES,
        });
    }
    if call.headers.len() > MAX_CALL_HEADERS {
        return Err(ErrorKind::TooManyHeaders {
            count: call.headers.len(),
            limit: MAX_CALL_HEADERS,
        });
    }
    let request_id =
        shared_header_value(call.request_id.as_bytes()).map_err(|_| ErrorKind::InvalidHeader {
            name: "x-genesys-request-id",
        })?;
    let correlation_id = call
        .correlation_id
        .as_deref()
        .map(|id| shared_header_value(id.as_bytes()))
        .transpose()
        .map_err(|_| ErrorKind::InvalidHeader {
            name: "x-correlation-id",
        })?;
    Ok((request_id, correlation_id))
}
