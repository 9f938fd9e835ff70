//! `genesys-router healthcheck URL`: one GET against a running sidecar, so a container
//! image needs no curl for its health check.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::args::HealthcheckArgs;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL is not plain `http://host[:port]/path` (the sidecar serves no TLS).
    #[error("`{0}` is not an http:// URL (the sidecar serves plain HTTP)")]
    NotHttp(http::Uri),
    /// The URL carries a user name or password (shown here as `***`): the sidecar takes
    /// none in its URL.
    #[error("`{0}` carries credentials; the sidecar takes none in its URL")]
    Credentials(String),
    /// No answer within the timeout.
    #[error("no answer from {url} within {timeout:?}")]
    Timeout {
        /// The URL probed.
        url: http::Uri,
        /// How long the probe waited.
        timeout: Duration,
    },
    /// The connection or the request failed (its causes say why: refused, reset, ...).
    #[error("GET {url} failed")]
    Request {
        /// The URL probed.
        url: http::Uri,
        /// What hyper reported.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The server answered with a status other than 2xx.
    #[error("GET {url} answered {status}")]
    Status {
        /// The URL probed.
        url: http::Uri,
        /// The status it answered.
        status: http::StatusCode,
    },
}

/// GETs `url` within `timeout`; `Ok` on a 2xx answer.
pub async fn probe(url: &http::Uri, timeout: Duration) -> Result<http::StatusCode, ProbeError> {
    if url.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(ProbeError::Credentials(
            gateway_model::endpoint::redact_userinfo(&url.to_string()),
        ));
    }
    if url.scheme_str() != Some("http") || url.host().is_none() {
        return Err(ProbeError::NotHttp(url.clone()));
    }
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(timeout, client.get(url.clone()))
        .await
        .map_err(|_| ProbeError::Timeout {
            url: url.clone(),
            timeout,
        })?
        .map_err(|source| ProbeError::Request {
            url: url.clone(),
            source,
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(status)
    } else {
        Err(ProbeError::Status {
            url: url.clone(),
            status,
        })
    }
}

/// `healthcheck`: exit 0 when healthy, 1 otherwise (the two codes Docker's
/// `HEALTHCHECK` defines), with the reason on stderr.
pub async fn healthcheck(args: &HealthcheckArgs) -> i32 {
    match probe(&args.url, Duration::from_secs(args.timeout_secs)).await {
        Ok(_) => 0,
        Err(e) => {
            // Every cause once: "connection refused" is what an operator needs.
            let reason = crate::exit::render(&anyhow::Error::new(e));
            crate::console::info(format_args!("unhealthy: {reason}"));
            1
        }
    }
}
