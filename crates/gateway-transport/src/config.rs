//! What a transport is built from: the base URL, client options, limits and retry
//! policy, read from a router configuration or set by hand.

use std::time::Duration;

use gateway_model::RouterConfig;

use crate::client::ClientOptions;
use crate::error::ErrorKind;
use crate::retry::RetryPolicy;

/// Everything the transport needs to know.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// API base URL, such as `https://api.mypurecloud.com`.
    pub base_url: String,
    /// How to connect and what to trust.
    pub client: ClientOptions,
    /// Most calls in flight at once.
    pub max_concurrency: usize,
    /// Longest wait for a slot.
    pub limiter_timeout: Duration,
    /// Timeout of one attempt (sending, waiting, reading the body).
    pub attempt_timeout: Duration,
    /// Deadline of a whole call, retries included (a call may bring its own).
    pub deadline: Duration,
    /// Which failures are retried, and how.
    pub retry: RetryPolicy,
    /// Retries allowed per request (the retry budget's ratio).
    pub budget_ratio: f64,
    /// Retries per second always allowed.
    pub budget_min_per_sec: u32,
    /// The `User-Agent` sent.
    pub user_agent: String,
    /// Requests per minute the OAuth client may send (`None`: not paced).
    pub requests_per_minute: Option<u32>,
    /// The pace's burst.
    pub rate_burst: u32,
    /// Secrets the gateway is never sent, taken out of errors should an answer quote
    /// them (the router's OAuth client secret and Basic credential).
    pub known_secrets: crate::KnownSecrets,
}

impl TransportConfig {
    /// Defaults (those of `gateway_model::RouterConfig`) for `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        let limits = gateway_model::LimitsConfig::default();
        let retry = gateway_model::RetryConfig::default();
        Self::from_parts(base_url.into(), &limits, &retry, ClientOptions::default())
    }

    /// The transport a [`RouterConfig`] describes (the environment's API base, limits,
    /// retry policy, TLS trust). Reads the extra CA file if one is configured.
    pub fn from_router_config(config: &RouterConfig) -> Result<Self, ErrorKind> {
        let endpoints = config
            .environment
            .resolve()
            .map_err(|e| ErrorKind::Setup(e.to_string()))?;
        let mut client = ClientOptions {
            roots: config.tls.roots,
            allow_insecure_http: config.environment.allow_insecure_http,
            connect_timeout: Duration::from_millis(config.limits.connect_timeout_ms),
            max_response_bytes: usize::try_from(config.limits.max_response_bytes)
                .unwrap_or(usize::MAX),
            http1_only: config.tls.http1_only,
            // Enough HTTP/2 connections for every call the limiter lets through.
            http2_connections: usize::try_from(config.limits.max_concurrency)
                .unwrap_or(usize::MAX)
                .div_ceil(crate::STREAMS_PER_CONNECTION),
            // As many idle connections as calls may be in flight, so a full limiter
            // does not close and reopen connections between calls.
            pool_max_idle_per_host: usize::try_from(config.limits.max_concurrency)
                .unwrap_or(usize::MAX)
                .max(ClientOptions::default().pool_max_idle_per_host),
            ..ClientOptions::default()
        };
        if let Some(path) = &config.tls.extra_ca_file {
            client = client.extra_ca_file(path)?;
        }
        Ok(Self::from_parts(
            endpoints.api_base,
            &config.limits,
            &config.retry,
            client,
        ))
    }

    fn from_parts(
        base_url: String,
        limits: &gateway_model::LimitsConfig,
        retry: &gateway_model::RetryConfig,
        client: ClientOptions,
    ) -> Self {
        Self {
            base_url,
            client,
            max_concurrency: usize::try_from(limits.max_concurrency).unwrap_or(usize::MAX),
            limiter_timeout: Duration::from_millis(limits.limiter_timeout_ms),
            attempt_timeout: Duration::from_millis(limits.attempt_timeout_ms),
            deadline: Duration::from_millis(limits.deadline_ms),
            retry: RetryPolicy::from_config(retry),
            budget_ratio: retry.budget_ratio,
            budget_min_per_sec: retry.budget_min_per_s,
            user_agent: format!("genesys-router/{}", env!("CARGO_PKG_VERSION")),
            requests_per_minute: limits.requests_per_minute,
            rate_burst: limits.rate_burst,
            known_secrets: crate::KnownSecrets::default(),
        }
    }
}
