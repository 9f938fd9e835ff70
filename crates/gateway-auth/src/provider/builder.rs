//! [`ClientCredentialsBuilder`]: how a [`ClientCredentials`] provider is configured.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use gateway_model::Region;
use gateway_transport::{ClientOptions, HttpClient};
use http::header::HeaderValue;

use super::{ClientCredentials, FailureStreak, Inner, RefreshHook, TOKEN_PATH};
use crate::credentials::Credentials;
use crate::error::AuthError;
use crate::refresh::{Bucket, RefreshPolicy};

/// Configures a [`ClientCredentials`] provider.
#[must_use]
pub struct ClientCredentialsBuilder {
    pub(super) credentials: Credentials,
    pub(super) login_base: Option<String>,
    pub(super) http: Option<HttpClient>,
    pub(super) policy: RefreshPolicy,
    pub(super) timeout: Duration,
    pub(super) forced_burst: u32,
    pub(super) forced_every: Duration,
    pub(super) hook: Option<RefreshHook>,
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("credentials", &self.credentials)
            .field("login_base", &self.login_base)
            .finish_non_exhaustive()
    }
}

impl ClientCredentialsBuilder {
    /// Uses the login host of `region` (`https://login.<domain>`).
    pub fn region(mut self, region: Region) -> Self {
        self.login_base = Some(region.login_base_url());
        self
    }

    /// Uses an explicit login base URL (a simulator, a private gateway).
    pub fn login_base(mut self, url: impl Into<String>) -> Self {
        self.login_base = Some(url.into());
        self
    }

    /// Shares an HTTP client (and its connection pool) instead of building one.
    pub fn http_client(mut self, http: HttpClient) -> Self {
        self.http = Some(http);
        self
    }

    /// When to refresh ahead of expiry.
    pub fn refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Timeout of one token request (default 10 s, as `[limits] login_timeout_ms`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many 401-forced refreshes may happen at once, and how often one more is allowed.
    pub fn forced_refresh_limit(mut self, burst: u32, every: Duration) -> Self {
        self.forced_burst = burst;
        self.forced_every = every;
        self
    }

    /// Called after every token request with its result (for metrics).
    pub fn on_refresh(mut self, hook: impl Fn(bool) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Builds the provider. No request is made until the first token is needed.
    pub fn build(self) -> Result<ClientCredentials, AuthError> {
        let base = self.login_base.ok_or_else(|| {
            AuthError::Url("no login host: set a region or a login base URL".into())
        })?;
        let http = match self.http {
            Some(http) => http,
            None => HttpClient::new(&ClientOptions::default())
                .map_err(|e| AuthError::Url(e.to_string()))?,
        };
        let url = format!("{}{TOKEN_PATH}", base.trim_end_matches('/'));
        let token_url = http
            .check_url(&url)
            .map_err(|e| AuthError::Url(e.to_string()))?;
        let host = token_url
            .authority()
            .map_or_else(String::new, ToString::to_string);
        let sent_secrets = self.credentials.sent_secrets();
        let mut basic = HeaderValue::from_str(&format!("Basic {}", sent_secrets[1].expose()))
            .map_err(|_| AuthError::Url("the credentials cannot be sent in a header".into()))?;
        basic.set_sensitive(true);
        Ok(ClientCredentials {
            inner: Arc::new(Inner {
                http,
                token_url,
                host,
                client_id: self.credentials.client_id,
                basic,
                sent_secrets,
                policy: self.policy,
                timeout: self.timeout,
                cache: RwLock::new(None),
                single_flight: Arc::new(tokio::sync::Mutex::new(())),
                background: AtomicBool::new(false),
                backoff: Mutex::new(FailureStreak::default()),
                forced: Mutex::new(Bucket::new(self.forced_burst, self.forced_every)),
                requests: AtomicU64::new(0),
                hook: self.hook,
            }),
        })
    }
}
