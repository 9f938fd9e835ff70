//! One shared HTTP client: hyper-util's pooled client over rustls (ring), HTTP/1.1 and
//! HTTP/2 by ALPN, with a body-size cap, a per-exchange timeout and errors that say what
//! failed (connect, TLS, broken connection).

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_model::TrustRoots;
use gateway_model::endpoint::check_url;
use http::{HeaderMap, Request, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;

use crate::connect_timeout::ConnectTimeout;
use crate::error::ErrorKind;
use crate::lanes::Lanes;
use crate::tcp::TcpConnector;
use gateway_model::RetryReason;

/// How the client connects and what it trusts.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Root certificates: Mozilla's (compiled in) or the OS store.
    pub roots: TrustRoots,
    /// Extra CA certificates (PEM) to trust, for private gateways and tests.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Allow plain `http://` to hosts that are not loopback.
    pub allow_insecure_http: bool,
    /// Longest a new connection may take, TCP and TLS together.
    pub connect_timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// Most idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// Offer only HTTP/1.1 by ALPN (by default HTTP/2 is offered too, and a gateway that
    /// takes it serves calls multiplexed over few connections).
    pub http1_only: bool,
    /// Most HTTP/2 connections per host: each serves up to
    /// [`STREAMS_PER_CONNECTION`](crate::STREAMS_PER_CONNECTION) calls before the next
    /// opens, so calls do not queue behind one connection's stream limit (1 by default;
    /// `TransportConfig::from_router_config` makes it `max_concurrency / 100` rounded
    /// up; at most [`MAX_LANES`](crate::MAX_LANES)).
    pub http2_connections: usize,
}

impl Default for ClientOptions {
    /// Mozilla roots, https only (loopback excepted), 5 s connect timeout, 4 MiB bodies,
    /// 90 s idle connections.
    fn default() -> Self {
        Self {
            roots: TrustRoots::Webpki,
            extra_ca_pem: None,
            allow_insecure_http: false,
            connect_timeout: Duration::from_secs(5),
            max_response_bytes: 4 * 1024 * 1024,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 1024,
            http1_only: false,
            http2_connections: 1,
        }
    }
}

/// The largest CA file read: a bundle of every public root is about 250 KB.
pub const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

impl ClientOptions {
    /// Trusts the CA certificates in the PEM file at `path` (at most [`MAX_CA_FILE_BYTES`],
    /// a regular file, at least one certificate) as well.
    pub fn extra_ca_file(mut self, path: &Path) -> Result<Self, ErrorKind> {
        let pem = gateway_model::read_bounded(path, MAX_CA_FILE_BYTES).map_err(|e| {
            ErrorKind::Setup(format!("cannot read CA file {}: {e}", path.display()))
        })?;
        extra_ca_certs(&pem)
            .map_err(|e| ErrorKind::Setup(format!("CA file {}: {e}", path.display())))?;
        self.extra_ca_pem = Some(pem);
        Ok(self)
    }

    /// The rustls client configuration these options trust (roots and extra CA, `ring`),
    /// for other clients that must trust what the gateway client trusts (the audit webhook).
    pub fn tls_config(&self) -> Result<rustls::ClientConfig, ErrorKind> {
        tls_config(self)
    }
}

/// An answer read in full.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The status.
    pub status: StatusCode,
    /// The HTTP version used (HTTP/2 when ALPN chose it).
    pub version: Version,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// hyper-util's pooled client over our connector.
type PooledClient = Client<ConnectTimeout<HttpsConnector<TcpConnector>>, Full<Bytes>>;

/// The pooled HTTP client every call shares. Cheap to clone (one set of pools).
#[derive(Clone)]
pub struct HttpClient {
    lanes: Arc<Lanes<PooledClient>>,
    allow_insecure_http: bool,
    max_response_bytes: usize,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds the client: trust roots, TLS with the ring provider, the connection pools.
    pub fn new(options: &ClientOptions) -> Result<Self, ErrorKind> {
        let tls = tls_config(options)?;
        let first = pooled_client(options, tls.clone(), Offer::Both);
        let more = if options.http1_only {
            0
        } else {
            options.http2_connections.saturating_sub(1)
        };
        let lanes = Lanes::new(first, more, || {
            pooled_client(options, tls.clone(), Offer::Http2)
        });
        Ok(Self {
            lanes: Arc::new(lanes),
            allow_insecure_http: options.allow_insecure_http,
            max_response_bytes: options.max_response_bytes,
        })
    }

    /// Parses `url` and applies the rule: https, or http only to loopback unless allowed.
    pub fn check_url(&self, url: &str) -> Result<Uri, ErrorKind> {
        Ok(check_url(url, self.allow_insecure_http)?)
    }

    /// The body-size cap.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// Sends `request` and reads the whole answer within `timeout`.
    ///
    /// The URL rule is checked here too, so no request escapes it. Dropping the returned
    /// future closes an HTTP/1.1 connection instead of returning it to the pool, and
    /// resets the request's stream of an HTTP/2 one.
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` stores each argument twice (rust-lang/rust#62958)"
    )]
    pub fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Exchange, ErrorKind>> {
        async move {
            // Kept for error messages only (an `Authority` is cheap to clone: shared bytes).
            let host = request.uri().authority().cloned();
            match (request.uri().scheme_str(), request.uri().host()) {
                (Some("https"), _) => {}
                (Some("http"), Some(h))
                    if self.allow_insecure_http || gateway_model::endpoint::is_loopback_host(h) => {
                }
                _ => {
                    check_url(&request.uri().to_string(), self.allow_insecure_http)?;
                }
            }
            let deadline = crate::clock::from_now(timeout);
            let exchange = self.exchange(request, host.as_ref(), deadline);
            match tokio::time::timeout_at(deadline, exchange).await {
                Ok(result) => result,
                Err(_) => Err(ErrorKind::Timeout(timeout)),
            }
        }
    }

    fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        authority: Option<&http::uri::Authority>,
        deadline: tokio::time::Instant,
    ) -> impl Future<Output = Result<Exchange, ErrorKind>> {
        // The request goes into hyper-util's (boxed) future at once, so this future does
        // not hold it too; the lane's ticket is held until the body is read.
        let lane = self.lanes.take(authority);
        let answer = lane.client().request(request);
        async move {
            let host = || authority.map_or_else(String::new, ToString::to_string);
            let _lane = lane;
            let response = answer.await.map_err(|e| classify(&e, &host()))?;
            let (parts, body) = response.into_parts();
            if parts.version == Version::HTTP_2
                && let Some(host) = authority
            {
                self.lanes.saw_http2(host);
            }
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body = if parts.status.is_success() {
                let limit = self.max_response_bytes;
                let too_large = || ErrorKind::BodyTooLarge { limit };
                if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
                    return Err(too_large());
                }
                match read_body(body, limit).await {
                    Ok(body) => body,
                    Err(None) => return Err(too_large()),
                    Err(Some(e)) => {
                        return Err(ErrorKind::Connection {
                            host: host(),
                            reason: format!("reading the body: {}", chain(&e)),
                        });
                    }
                }
            } else {
                let limit = self.max_response_bytes.min(MAX_ERROR_BODY_BYTES);
                error_body(body, declared, limit, deadline).await
            };
            Ok(Exchange {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body,
            })
        }
    }
}

/// An error answer's body, read only to say why (a code, a message): at most `limit`
/// bytes, and past it the status stands without it, so a 401 is refreshed, a 429 or 5xx
/// retried, and the call says what happened rather than "too large". Nor does a body
/// that breaks off or stalls change what the status says (a 400 is not retried, a 429
/// keeps its `Retry-After`): it gets [`MAX_ERROR_BODY_WAIT`] (never past `deadline`),
/// and the status stands without it.
async fn error_body(
    body: hyper::body::Incoming,
    declared: Option<u64>,
    limit: usize,
    deadline: tokio::time::Instant,
) -> Bytes {
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Bytes::new();
    }
    let wait = deadline.min(crate::clock::from_now(MAX_ERROR_BODY_WAIT));
    match tokio::time::timeout_at(wait, read_body(body, limit)).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) | Err(_) => Bytes::new(),
    }
}

/// The most of an error answer's body read (its code and message come first): past it
/// the body is dropped and the status stands.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// The longest an error answer's body is waited for once its status is in (never past
/// the attempt's own timeout): past it, or if it breaks off, the status stands alone.
pub const MAX_ERROR_BODY_WAIT: Duration = Duration::from_secs(2);

/// Idle time before the kernel probes a pooled connection, the time between probes, and
/// how many go unanswered before it is closed: a dead peer is found within 40 s.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const TCP_KEEPALIVE_RETRIES: u32 = 5;

/// How often an HTTP/2 connection is pinged, and how long its answer may take before the
/// connection is closed.
const HTTP2_PING_EVERY: Duration = Duration::from_secs(20);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP versions a pooled client offers by ALPN.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Offer {
    /// HTTP/2 and HTTP/1.1, or HTTP/1.1 alone with `http1_only`.
    Both,
    /// HTTP/2 alone, for a gateway known to speak it.
    Http2,
}

/// One pooled client: the connector (TCP, then TLS offering the versions `offer` and
/// `options` allow) and hyper-util's pool.
fn pooled_client(options: &ClientOptions, tls: rustls::ClientConfig, offer: Offer) -> PooledClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(options.connect_timeout));
    // A pooled connection whose peer vanished (a NAT or load balancer that dropped it
    // silently) is found out by the kernel's probes, not by a call's timeout.
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.set_keepalive_interval(Some(TCP_KEEPALIVE_INTERVAL));
    http.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let https = match (offer, options.http1_only) {
        (Offer::Http2, _) => https.enable_http2().wrap_connector(TcpConnector(http)),
        (Offer::Both, true) => https.enable_http1().wrap_connector(TcpConnector(http)),
        (Offer::Both, false) => https
            .enable_http1()
            .enable_http2()
            .wrap_connector(TcpConnector(http)),
    };
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(options.pool_idle_timeout)
        .pool_max_idle_per_host(options.pool_max_idle_per_host)
        // Known HTTP/2: one call opens the connection while the others wait for it.
        .http2_only(offer == Offer::Http2)
        // One HTTP/2 connection carries every call: a dead one is closed by an
        // unanswered PING, not left to fail each call at its timeout.
        .http2_keep_alive_interval(HTTP2_PING_EVERY)
        .http2_keep_alive_timeout(HTTP2_PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(ConnectTimeout::new(https, options.connect_timeout))
}

/// The whole of `body`, at most `limit` bytes (`Err(None)` beyond). An answer that comes
/// in one frame, as a small one does, is kept as it came: no copy, no frame queue.
async fn read_body(
    mut body: hyper::body::Incoming,
    limit: usize,
) -> Result<Bytes, Option<hyper::Error>> {
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Some)?.into_data() else {
            continue;
        };
        len = len.saturating_add(data.len());
        if len > limit {
            return Err(None);
        }
        match (&mut joined, first.take()) {
            (Some(all), _) => all.extend_from_slice(&data),
            (None, Some(earlier)) => {
                let mut all = BytesMut::with_capacity(len);
                all.extend_from_slice(&earlier);
                all.extend_from_slice(&data);
                joined = Some(all);
            }
            (None, None) => first = Some(data),
        }
    }
    Ok(joined.map_or_else(|| first.unwrap_or_default(), BytesMut::freeze))
}

impl ErrorKind {
    /// Why this failure may be retried, if it may.
    pub fn retry_reason(&self) -> Option<RetryReason> {
        match self {
            ErrorKind::Connect { .. } | ErrorKind::Connection { .. } => {
                Some(RetryReason::Connection)
            }
            ErrorKind::Timeout(_) => Some(RetryReason::Timeout),
            _ => None,
        }
    }
}

/// Sorts a client error into connect, TLS or broken-connection failures.
fn classify(err: &hyper_util::client::legacy::Error, host: &str) -> ErrorKind {
    // A TLS error while connecting is the handshake's (a certificate refused, say); one
    // on an established connection (an alert, a bad record) ended that connection, as a
    // reset would, and is retried as one.
    if err.is_connect() {
        if let Some(reason) = tls_cause(err) {
            return ErrorKind::Tls {
                host: host.to_owned(),
                reason,
            };
        }
        return ErrorKind::Connect {
            host: host.to_owned(),
            reason: chain(err),
        };
    }
    ErrorKind::Connection {
        host: host.to_owned(),
        reason: chain(err),
    }
}

/// The rustls error somewhere in the source chain, if any. `io::Error`s are looked
/// into as well (their `source()` skips the error they wrap, and hyper-rustls wraps
/// tokio-rustls' `io::Error` in another one).
fn tls_cause(err: &(dyn StdError + 'static)) -> Option<String> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(describe_tls(tls));
    }
    if let Some(inner) = err
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        && let Some(found) = tls_cause(inner)
    {
        return Some(found);
    }
    err.source().and_then(tls_cause)
}

fn describe_tls(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => format!(
            "{err}: the server's certificate is not signed by a trusted CA (for a private gateway, set tls.extra_ca_file)"
        ),
        _ => err.to_string(),
    }
}

/// Every message in the source chain, joined, without repeats.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

fn tls_config(options: &ClientOptions) -> Result<rustls::ClientConfig, ErrorKind> {
    let mut roots = rustls::RootCertStore::empty();
    match options.roots {
        TrustRoots::Webpki => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        TrustRoots::Native => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(ErrorKind::Setup(format!(
                    "no usable native root certificates ({})",
                    errors.join("; ")
                )));
            }
        }
    }
    if let Some(pem) = &options.extra_ca_pem {
        let certs = extra_ca_certs(pem).map_err(ErrorKind::Setup)?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ErrorKind::Setup(format!("extra CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ErrorKind::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The certificates of an extra CA's PEM text: at least one, every block readable.
fn extra_ca_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;

    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("extra CA PEM: {e}"))?;
    if certs.is_empty() {
        return Err("extra CA PEM holds no certificate".into());
    }
    Ok(certs)
}
