//! One shared HTTP client: hyper-util's pooled client over rustls (ring), HTTP/1.1 and
//! HTTP/2 by ALPN, with a body-size cap, a per-exchange timeout and errors that say what
//! failed (connect, TLS, broken connection).

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

mod failure;

use failure::{Failure, chain, classify};

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
    /// resets the request's stream of an HTTP/2 one. A request that waited for an HTTP/2
    /// connection another call was opening, which was never made, is sent again as
    /// [`send_with`](Self::send_with) says (a copy without the request's extensions).
    pub fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Exchange, ErrorKind>> {
        let copy = RequestCopy::of(&request);
        let mut first = Some(request);
        self.send_with(
            move || first.take().unwrap_or_else(|| copy.request()),
            timeout,
        )
    }

    /// Sends the request `make` builds and reads the whole answer within `timeout`, as
    /// [`send`](Self::send) does.
    ///
    /// `make` is called again, at most [`MAX_RESENDS`] times, only when the request was
    /// not sent: it waited for the HTTP/2 connection another call was opening, and that
    /// call was dropped (or its connection failed) first. hyper-util fails every such
    /// waiter (hyperium/hyper#3199); sending again makes one of them open the connection.
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` stores each argument twice (rust-lang/rust#62958)"
    )]
    pub fn send_with(
        &self,
        mut make: impl FnMut() -> Request<Full<Bytes>>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Exchange, ErrorKind>> {
        async move {
            let deadline = crate::clock::from_now(timeout);
            let exchange = async {
                let mut resends = 0;
                loop {
                    // In a block of its own, so this future keeps no room for the
                    // request once hyper has it.
                    let answer = {
                        let request = make();
                        self.check_scheme(&request)?;
                        // For the lanes and error messages (an `Authority` is cheap to clone).
                        let host = request.uri().authority().cloned();
                        self.exchange(request, host, deadline)
                    };
                    match answer.await {
                        Err(Failure::NotConnected(_)) if resends < MAX_RESENDS => resends += 1,
                        Err(Failure::NotConnected(e) | Failure::Failed(e)) => return Err(e),
                        Ok(exchange) => return Ok(exchange),
                    }
                }
            };
            match tokio::time::timeout_at(deadline, exchange).await {
                Ok(result) => result,
                Err(_) => Err(ErrorKind::Timeout(timeout)),
            }
        }
    }

    /// The URL rule: https, or http to loopback (or anywhere if allowed), and no
    /// credentials in the URL (they would be sent, and shown in errors).
    fn check_scheme(&self, request: &Request<Full<Bytes>>) -> Result<(), ErrorKind> {
        let credentials = request
            .uri()
            .authority()
            .is_some_and(|a| a.as_str().contains('@'));
        match (request.uri().scheme_str(), request.uri().host()) {
            _ if credentials => {
                check_url(&request.uri().to_string(), self.allow_insecure_http)?;
                Err(ErrorKind::Setup(
                    "the URL carries credentials, which are never sent".into(),
                ))
            }
            (Some("https"), _) => Ok(()),
            (Some("http"), Some(h))
                if self.allow_insecure_http || gateway_model::endpoint::is_loopback_host(h) =>
            {
                Ok(())
            }
            _ => {
                check_url(&request.uri().to_string(), self.allow_insecure_http)?;
                Ok(())
            }
        }
    }

    fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        authority: Option<http::uri::Authority>,
        deadline: tokio::time::Instant,
    ) -> impl Future<Output = Result<Exchange, Failure>> {
        // The request goes into hyper-util's (boxed) future at once, so this future does
        // not hold it too; the lane's ticket is held until the body is read.
        let lane = self.lanes.take(authority.as_ref());
        let answer = lane.client().request(request);
        async move {
            let host = || {
                authority
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string)
            };
            let _lane = lane;
            let response = answer.await.map_err(|e| classify(&e, &host()))?;
            let (parts, body) = response.into_parts();
            if let Some(host) = &authority {
                if parts.version == Version::HTTP_2 {
                    self.lanes.saw_http2(host);
                } else {
                    self.lanes.saw_http1(host);
                }
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
                    return Err(too_large().into());
                }
                match read_body(body, limit).await {
                    Ok(body) => body,
                    Err(None) => return Err(too_large().into()),
                    Err(Some(e)) => {
                        return Err(Failure::Failed(ErrorKind::Connection {
                            host: host(),
                            reason: format!("reading the body: {}", chain(&e)),
                        }));
                    }
                }
            } else {
                let limit = self.max_response_bytes.min(MAX_ERROR_BODY_BYTES);
                // Boxed: an error's read is rare, and inline its future would make every
                // call's future larger, held for the whole wait for an answer.
                Box::pin(error_body(body, declared, limit, deadline)).await
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

/// Most times [`HttpClient::send_with`] builds and sends a request again because the
/// HTTP/2 connection it waited for was not made (each time, one of the calls waiting
/// opens the next).
pub const MAX_RESENDS: u32 = 3;

/// What [`HttpClient::send`] keeps of a request to send it again: everything but its
/// extensions.
struct RequestCopy {
    method: http::Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Full<Bytes>,
}

impl RequestCopy {
    fn of(request: &Request<Full<Bytes>>) -> Self {
        Self {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
            body: request.body().clone(),
        }
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(self.body.clone());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use gateway_sim::{Sim, TestPki};
    use http::uri::Authority;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{mpsc, oneshot};

    use super::*;
    use crate::STREAMS_PER_CONNECTION;

    /// A relay on loopback to `target` that holds the first connection it takes, never
    /// answering, and joins the others to `target`; it reports each connection taken.
    async fn relay(target: SocketAddr) -> (u16, mpsc::UnboundedReceiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (taken, reports) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = None;
            while let Ok((mut inbound, _)) = listener.accept().await {
                if held.is_none() {
                    held = Some(inbound);
                } else {
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
                if taken.send(()).is_err() {
                    break;
                }
            }
        });
        (port, reports)
    }

    /// `future`, which signals once its first poll has returned.
    fn polled_once<F: Future>(
        future: F,
        polled: oneshot::Sender<()>,
    ) -> impl Future<Output = F::Output> {
        let mut future = Box::pin(future);
        let mut polled = Some(polled);
        std::future::poll_fn(move |cx| {
            let poll = future.as_mut().poll(cx);
            if let Some(polled) = polled.take() {
                let _ = polled.send(());
            }
            poll
        })
    }

    /// hyperium/hyper#3199: hyper-util fails every call waiting for an HTTP/2 connection
    /// when the call opening it is dropped. Here the second lane's opener is dropped while
    /// its connection is held at the relay; the two calls waiting for it open one more
    /// connection and are answered, over `send` and `send_with` alike.
    #[tokio::test(flavor = "current_thread")]
    async fn calls_waiting_for_a_connection_whose_opener_is_dropped_open_it_themselves() {
        let pki = TestPki::generate().unwrap();
        let sim = Sim::builder()
            .tls(pki.cert_pem, pki.key_pem)
            .start()
            .await
            .unwrap();
        let (port, mut taken) = relay(sim.addr()).await;
        let client = HttpClient::new(&ClientOptions {
            extra_ca_pem: Some(pki.ca_pem.into_bytes()),
            http2_connections: 2,
            ..ClientOptions::default()
        })
        .unwrap();
        let host: Authority = format!("localhost:{port}").parse().unwrap();
        let url = format!("https://{host}/api/v2/ai/models");
        let get = move || Request::get(&url).body(Full::default()).unwrap();
        // The host speaks HTTP/2 and the first lane is full: calls take the second.
        client.lanes.saw_http2(&host);
        let first_lane: Vec<_> = (0..STREAMS_PER_CONNECTION)
            .map(|_| client.lanes.take(Some(&host)))
            .collect();
        let timeout = Duration::from_secs(20);

        let opener = tokio::spawn({
            let (client, get) = (client.clone(), get.clone());
            async move { client.send(get(), timeout).await }
        });
        taken.recv().await.unwrap();
        let (polled, was_polled) = oneshot::channel();
        let waiting = tokio::spawn(polled_once(
            {
                let (client, get) = (client.clone(), get.clone());
                async move { client.send(get(), timeout).await }
            },
            polled,
        ));
        was_polled.await.unwrap();
        let (polled, was_polled) = oneshot::channel();
        let waiting_too = tokio::spawn(polled_once(
            {
                let client = client.clone();
                async move { client.send_with(get, timeout).await }
            },
            polled,
        ));
        was_polled.await.unwrap();
        opener.abort();
        assert!(opener.await.unwrap_err().is_cancelled());

        for call in [waiting, waiting_too] {
            let answer = call.await.unwrap().unwrap();
            assert_eq!(answer.version, Version::HTTP_2);
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "no token was sent");
        }
        taken.recv().await.unwrap();
        assert!(
            taken.try_recv().is_err(),
            "the two calls shared one connection"
        );
        drop(first_lane);
    }
}
