//! One signed POST of a message: the HTTP client, the request, and the answer's status
//! as the verdict.
//!
//! A message is delivered when the answer's head says 2xx. The body is only read so the
//! connection can be reused, at most [`MAX_DRAIN_BYTES`] within [`DRAIN_TIMEOUT`], after
//! the request timeout no longer applies: a receiver that trickles a body after its 2xx
//! must not turn a delivery into a retry (and so a duplicate).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::AuditError;
use crate::webhook::batch::Message;
use crate::webhook::signature::{
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, sign, unix_seconds,
};
use crate::webhook::{Shared, WebhookOptions};

/// The sink's HTTP client: hyper-util's pool over rustls.
pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Most bytes of a response body read (and thrown away) so the connection can be reused.
const MAX_DRAIN_BYTES: usize = 64 * 1024;

/// Longest wait for those bytes once the status is known; its expiry only costs the
/// connection.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Builds the HTTP client, once per sink.
pub(crate) fn build_client(options: &WebhookOptions) -> Result<HttpClient, AuditError> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match &options.tls {
        Some(config) => builder.with_tls_config(config.clone()),
        None => builder
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| AuditError::Tls {
                reason: e.to_string(),
            })?,
    };
    let connector = builder
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .build(connector))
}

/// Why one POST did not deliver.
#[derive(Debug)]
pub(crate) enum DeliveryError {
    /// The receiver answered with this status (not 2xx).
    Status(StatusCode),
    /// The request could not be sent or its answer's head read.
    Http(String),
    /// No answer's head within the request timeout (or shutdown's delivery time).
    Timeout,
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Status(s) => write!(f, "receiver answered {s}"),
            DeliveryError::Http(e) => write!(f, "request failed: {e}"),
            DeliveryError::Timeout => f.write_str("request timed out"),
        }
    }
}

/// POSTs one message, signed with a fresh timestamp; returns once the answer's head is in.
pub(crate) async fn post(
    client: &HttpClient,
    shared: &Shared,
    message: &Message,
) -> Result<Response<Incoming>, DeliveryError> {
    let body = message.body().clone();
    let id = message.id();
    let timestamp = unix_seconds(SystemTime::now());
    let signature = sign(&shared.secret, id, timestamp, &body);
    let request = Request::post(shared.uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(
            USER_AGENT,
            concat!("genesys-router/", env!("CARGO_PKG_VERSION")),
        )
        .header(HEADER_ID, id)
        .header(HEADER_TIMESTAMP, timestamp)
        .header(HEADER_SIGNATURE, signature)
        .body(Full::new(body))
        .map_err(|e| DeliveryError::Http(e.to_string()))?;
    client
        .request(request)
        .await
        .map_err(|e| DeliveryError::Http(error_chain(&e)))
}

/// The verdict on an answer: its status alone. Its body is read first, bounded in size
/// and time, so the connection can be reused; how that goes does not change the verdict.
pub(crate) async fn verdict(response: Response<Incoming>) -> Result<(), DeliveryError> {
    let status = response.status();
    let drain = Limited::new(response.into_body(), MAX_DRAIN_BYTES).collect();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    if status.is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Status(status))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
