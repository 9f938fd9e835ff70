//! What the sidecar's tests share: a router with one route on the simulator, a plain
//! HTTP/1.1 client, one request sent and its answer read whole, and a log capture.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use bytes::Bytes;
use gateway_auth::Credentials;
use gateway_model::{EnvironmentConfig, RouteConfig, RouterConfig};
use gateway_router::Router;
use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A plain HTTP/1.1 client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A config with one route, `summarize` on `model-gen-4`, in `environment`, with no
/// audit trail.
pub fn one_route(environment: EnvironmentConfig) -> RouterConfig {
    let mut config = RouterConfig::new(environment)
        .with_route("summarize", RouteConfig::to_model("model-gen-4"));
    config.audit.enabled = false;
    config
}

/// `config` built into a router that logs in as the simulator's default client.
pub async fn router(config: RouterConfig) -> Router {
    router_as(
        config,
        Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
    )
    .await
}

/// `config` built into a router that logs in as `credentials`.
pub async fn router_as(config: RouterConfig, credentials: Credentials) -> Router {
    Router::builder(config)
        .credentials(credentials)
        .build()
        .await
        .unwrap()
}

/// A new client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `body` to `url`; the answer's status, headers and body.
pub async fn send(
    client: &HttpClient,
    method: Method,
    url: String,
    body: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    send_with(client, method, url, &[], body).await
}

/// Sends `body` to `url` with `headers`; the answer's status, headers and body.
pub async fn send_with(
    client: &HttpClient,
    method: Method,
    url: String,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

/// Where a test's log lines go: a `tracing` writer that keeps them in memory.
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Captures the access log's lines, as text, on this thread until the guard drops.
    pub fn access_log() -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_env_filter("genesys_router::access=info")
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }
}
