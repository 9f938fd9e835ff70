//! The dispatch loop: limiter, bearer token, attempts with timeouts, retries with
//! backoff and `Retry-After`, the retry budget, the overall deadline.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use gateway_model::{ErrorBody, MAX_REQUEST_BYTES, RetryReason, RouterConfig};
use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT,
};
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};
use http_body_util::Full;
use tokio::time::Instant;

use crate::bearer::{AccessToken, TokenSource};
use crate::budget::RetryBudget;
use crate::client::{ClientOptions, Exchange, HttpClient};
use crate::error::{CallStats, ErrorKind, TransportError};
use crate::limiter::{Limiter, Permit};
use crate::rate_budget::{LocalRateBudget, RateBudget};
use crate::retry::{Disposition, RetryPolicy, Wait, parse_retry_after};

/// The idempotency key header: one value per logical call, the same on every attempt.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-genesys-request-id");
/// The correlation header: one value per routed call, shared by its fallbacks.
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
/// The correlation id Genesys Cloud puts on every answer.
pub const ININ_CORRELATION_ID: HeaderName = HeaderName::from_static("inin-correlation-id");
const RATELIMIT_COUNT: HeaderName = HeaderName::from_static("inin-ratelimit-count");
const RATELIMIT_ALLOWED: HeaderName = HeaderName::from_static("inin-ratelimit-allowed");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("inin-ratelimit-reset");

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
        }
    }
}

/// One logical call: sent once, retried with the same request id.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// The absolute URL (see [`Transport::url`]).
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
    /// A cap on `Retry-After` for this call, replacing the policy's (a router with a
    /// fallback at hand would rather fail over than wait long).
    pub max_retry_after: Option<Duration>,
    /// More headers sent on every attempt (such as `traceparent`); the transport's own
    /// (`Authorization`, the ids, `Accept`, `Content-Type`, `User-Agent`) win over them.
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

    /// Sets the `Retry-After` cap for this call.
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
}

impl Answer {
    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ErrorKind> {
        serde_json::from_slice(&self.body).map_err(|e| ErrorKind::Decode(e.to_string()))
    }

    /// The `ININ-Correlation-Id` header.
    pub fn upstream_correlation_id(&self) -> Option<&str> {
        self.headers
            .get(ININ_CORRELATION_ID)
            .and_then(|v| v.to_str().ok())
    }
}

/// What one attempt's result means for the call.
enum Step {
    /// A success.
    Done(Exchange),
    /// A 401: refresh the token once, or fail.
    Refresh(Option<Box<ErrorBody>>),
    /// A retryable failure.
    Retry {
        reason: RetryReason,
        retry_after: Option<std::time::Duration>,
        failure: ErrorKind,
    },
    /// A final failure.
    Fail(ErrorKind),
}

/// The error a call ends with when the policy says not to retry.
fn give_up(wait: Wait, failure: ErrorKind) -> ErrorKind {
    match (wait, failure) {
        (Wait::RetryAfterTooLong(after), ErrorKind::RateLimited { body, .. }) => {
            ErrorKind::RateLimited {
                retry_after: Some(after),
                over_cap: true,
                body,
            }
        }
        (_, failure) => failure,
    }
}

/// Checks the call's size and header values before anything is sent.
fn check_call(call: &Call) -> Result<(HeaderValue, Option<HeaderValue>), ErrorKind> {
    if call.body.len() > MAX_REQUEST_BYTES {
        return Err(ErrorKind::RequestTooLarge {
            size: call.body.len(),
            limit: MAX_REQUEST_BYTES,
        });
    }
    let request_id =
        HeaderValue::from_str(&call.request_id).map_err(|_| ErrorKind::InvalidHeader {
            name: "x-genesys-request-id",
        })?;
    let correlation_id = call
        .correlation_id
        .as_deref()
        .map(HeaderValue::from_str)
        .transpose()
        .map_err(|_| ErrorKind::InvalidHeader {
            name: "x-correlation-id",
        })?;
    Ok((request_id, correlation_id))
}

/// A pause asked for by `inin-ratelimit-*` headers: nothing is sent before `until`.
#[derive(Debug, Default)]
struct Pacing {
    until: Option<Instant>,
}

/// The transport: a shared client, a limiter, a retry policy and budget, and a token hook.
///
/// ```no_run
/// use gateway_transport::{Call, StaticToken, Transport, TransportConfig};
///
/// # async fn run() -> Result<(), gateway_transport::TransportError> {
/// let transport = Transport::new(TransportConfig::new("https://api.mypurecloud.com"))?
///     .with_token_source(StaticToken::new("my-token").expect("a header-safe token"));
/// let uri = transport.url("/api/v2/ai/models")?;
/// let answer = transport.execute(Call::get(uri, "0b6f7c1e-request-id")).await?;
/// println!("{} after {} attempt(s)", answer.status, answer.stats.attempts);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    client: HttpClient,
    limiter: Limiter,
    budget: RetryBudget,
    pacing: Mutex<Pacing>,
    tokens: Option<Arc<dyn TokenSource>>,
    rate: Option<Arc<dyn RateBudget>>,
    config: TransportConfig,
    user_agent: HeaderValue,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("base_url", &self.inner.config.base_url)
            .field("max_concurrency", &self.inner.config.max_concurrency)
            .field("retry", &self.inner.config.retry)
            .field("has_token_source", &self.inner.tokens.is_some())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Builds the transport and its client. Fails on a refused base URL or bad TLS setup.
    pub fn new(config: TransportConfig) -> Result<Self, TransportError> {
        let fail = |kind| TransportError::new(kind, CallStats::default());
        let client = HttpClient::new(&config.client).map_err(fail)?;
        client.check_url(&config.base_url).map_err(fail)?;
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| fail(ErrorKind::InvalidHeader { name: "user-agent" }))?;
        Ok(Self {
            inner: Arc::new(Inner {
                limiter: Limiter::new(config.max_concurrency, config.limiter_timeout),
                budget: RetryBudget::new(config.budget_ratio, config.budget_min_per_sec),
                pacing: Mutex::new(Pacing::default()),
                tokens: None,
                rate: config.requests_per_minute.map(|per_minute| {
                    Arc::new(LocalRateBudget::new(per_minute, config.rate_burst))
                        as Arc<dyn RateBudget>
                }),
                client,
                config,
                user_agent,
            }),
        })
    }

    /// Adds the token source that supplies `Authorization: Bearer …` (and is told about a 401).
    #[must_use]
    pub fn with_token_source(self, source: impl TokenSource) -> Self {
        self.with_shared_token_source(Arc::new(source))
    }

    /// Like [`Transport::with_token_source`], for a source shared with other code.
    #[must_use]
    pub fn with_shared_token_source(self, source: Arc<dyn TokenSource>) -> Self {
        self.rebuilt(Some(source), self.inner.rate.clone())
    }

    /// Paces requests by `budget` (a fleet's shared one, say) instead of the configured
    /// `requests_per_minute`.
    #[must_use]
    pub fn with_rate_budget(self, budget: Arc<dyn RateBudget>) -> Self {
        self.rebuilt(self.inner.tokens.clone(), Some(budget))
    }

    /// The pace requests keep, if any.
    pub fn rate_budget(&self) -> Option<&Arc<dyn RateBudget>> {
        self.inner.rate.as_ref()
    }

    /// The same client and limiter with these hooks (and a fresh retry budget).
    fn rebuilt(
        &self,
        tokens: Option<Arc<dyn TokenSource>>,
        rate: Option<Arc<dyn RateBudget>>,
    ) -> Self {
        let inner = Inner {
            client: self.inner.client.clone(),
            limiter: self.inner.limiter.clone(),
            budget: RetryBudget::new(
                self.inner.config.budget_ratio,
                self.inner.config.budget_min_per_sec,
            ),
            pacing: Mutex::new(Pacing::default()),
            tokens,
            rate,
            config: self.inner.config.clone(),
            user_agent: self.inner.user_agent.clone(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The shared HTTP client (for the token endpoint, say).
    pub fn client(&self) -> &HttpClient {
        &self.inner.client
    }

    /// The limiter.
    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    /// The configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// The absolute URL of `path` under the base URL.
    pub fn url(&self, path: &str) -> Result<Uri, TransportError> {
        let base = self.inner.config.base_url.trim_end_matches('/');
        let url = format!("{base}/{}", path.trim_start_matches('/'));
        self.inner
            .client
            .check_url(&url)
            .map_err(|kind| TransportError::new(kind, CallStats::default()))
    }

    /// Sends `call`, retrying per the policy, within the deadline, holding a limiter slot
    /// while a request is in flight.
    ///
    /// A limiter slot is **not** held while sleeping between attempts: a call waiting out
    /// a `Retry-After` or a backoff does not keep healthy calls from running. It takes a
    /// slot again (waiting at most the limiter timeout) before its next attempt.
    /// Dropping the future releases its slot and closes its connection.
    pub async fn execute(&self, call: Call) -> Result<Answer, TransportError> {
        let mut stats = CallStats::default();
        match self.run(&call, &mut stats).await {
            Ok(exchange) => Ok(Answer {
                status: exchange.status,
                version: exchange.version,
                headers: exchange.headers,
                body: exchange.body,
                stats,
            }),
            Err(kind) => Err(TransportError::new(kind, stats)),
        }
    }

    async fn run(&self, call: &Call, stats: &mut CallStats) -> Result<Exchange, ErrorKind> {
        let inner = &*self.inner;
        let started = Instant::now();
        let deadline = call
            .deadline
            .unwrap_or_else(|| crate::clock::later(started, inner.config.deadline));
        let (request_id, correlation_id) = check_call(call)?;
        inner.budget.deposit();

        let mut refreshed = false;
        let mut last_failure: Option<String> = None;
        let past_deadline = |last: Option<String>| ErrorKind::DeadlineExceeded {
            deadline: deadline.saturating_duration_since(started),
            last,
        };
        loop {
            self.pace(deadline, stats).await?;
            self.keep_rate(deadline, stats).await?;
            // The token first, bounded by the deadline, so no slot is held while waiting for it.
            let token = match &inner.tokens {
                Some(source) => match tokio::time::timeout_at(deadline, source.token()).await {
                    Ok(token) => Some(token?),
                    Err(_) => return Err(past_deadline(last_failure)),
                },
                None => None,
            };
            let permit = self.acquire(deadline, stats).await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(past_deadline(last_failure));
            }
            let request = self.request(call, &request_id, correlation_id.as_ref(), token.as_ref());
            let timeout = inner.config.attempt_timeout.min(remaining);
            let sent = Instant::now();
            stats.attempts += 1;
            let result = inner.client.send(request, timeout).await;
            stats.upstream += sent.elapsed();
            drop(permit);

            match self.judge(result, stats) {
                Step::Done(exchange) => return Ok(exchange),
                // The attempt was cut short by the call's deadline, not by its own timeout.
                Step::Retry {
                    failure: ErrorKind::Timeout(_),
                    ..
                } if Instant::now() >= deadline => {
                    return Err(past_deadline(last_failure));
                }
                Step::Fail(kind) => return Err(kind),
                Step::Refresh(body) => match (&inner.tokens, token) {
                    (Some(source), Some(token)) if !refreshed => {
                        source.invalidate(&token);
                        refreshed = true;
                        stats.token_refreshed = true;
                        stats.retries[RetryReason::Unauthorized.index()] += 1;
                    }
                    _ => return Err(ErrorKind::Unauthorized { body }),
                },
                Step::Retry {
                    reason,
                    retry_after,
                    failure,
                } => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let mut policy = inner.config.retry;
                    if let Some(cap) = call.max_retry_after {
                        policy.max_retry_after = policy.max_retry_after.min(cap);
                    }
                    let wait = policy.wait(stats.attempts, retry_after, remaining, fastrand::f64());
                    let Wait::Sleep(wait) = wait else {
                        return Err(give_up(wait, failure));
                    };
                    if !inner.budget.try_withdraw() {
                        stats.budget_exhausted = true;
                        return Err(failure);
                    }
                    last_failure = Some(failure.to_string());
                    stats.retries[reason.index()] += 1;
                    stats.backoff += wait;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// What one attempt's result means for the call.
    fn judge(&self, result: Result<Exchange, ErrorKind>, stats: &mut CallStats) -> Step {
        let exchange = match result {
            Ok(exchange) => exchange,
            Err(kind) => {
                return match kind.retry_reason() {
                    Some(reason) => Step::Retry {
                        reason,
                        retry_after: None,
                        failure: kind,
                    },
                    None => Step::Fail(kind),
                };
            }
        };
        stats.last_status = Some(exchange.status);
        stats.upstream_correlation_id = exchange
            .headers
            .get(ININ_CORRELATION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.observe_rate_limit(&exchange.headers);
        let body = || ErrorBody::parse(&exchange.body).map(Box::new);
        match RetryPolicy::classify(exchange.status) {
            Disposition::Success => Step::Done(exchange),
            Disposition::RefreshToken => Step::Refresh(body()),
            Disposition::Fail => Step::Fail(ErrorKind::Status {
                status: exchange.status,
                body: body(),
            }),
            Disposition::Retry(reason) => {
                let retry_after = exchange
                    .headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let failure = if reason == RetryReason::RateLimited {
                    if let Some(after) = retry_after {
                        self.pause_rate(after.min(self.inner.config.retry.max_retry_after));
                    }
                    ErrorKind::RateLimited {
                        retry_after,
                        over_cap: false,
                        body: body(),
                    }
                } else {
                    ErrorKind::Status {
                        status: exchange.status,
                        body: body(),
                    }
                };
                Step::Retry {
                    reason,
                    retry_after,
                    failure,
                }
            }
        }
    }

    /// Waits out a pause announced by `inin-ratelimit-*` headers, if it ends before the deadline.
    async fn pace(&self, deadline: Instant, stats: &mut CallStats) -> Result<(), ErrorKind> {
        let until = self
            .inner
            .pacing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .until;
        let Some(until) = until.filter(|u| *u > Instant::now()) else {
            return Ok(());
        };
        if until >= deadline {
            return Err(ErrorKind::Paced {
                wait: until.saturating_duration_since(Instant::now()),
            });
        }
        stats.backoff += until.saturating_duration_since(Instant::now());
        tokio::time::sleep_until(until).await;
        Ok(())
    }

    /// Waits for a slot of the rate budget, if one is set and the slot comes before the
    /// deadline.
    async fn keep_rate(&self, deadline: Instant, stats: &mut CallStats) -> Result<(), ErrorKind> {
        let Some(rate) = &self.inner.rate else {
            return Ok(());
        };
        let max_wait = deadline.saturating_duration_since(Instant::now());
        match rate.reserve(max_wait).await {
            Ok(wait) if wait.is_zero() => Ok(()),
            Ok(wait) => {
                stats.backoff += wait;
                tokio::time::sleep(wait.min(max_wait)).await;
                Ok(())
            }
            Err(wait) => Err(ErrorKind::Paced { wait }),
        }
    }

    /// Tells the rate budget that the gateway asked for a pause.
    fn pause_rate(&self, wait: Duration) {
        if let Some(rate) = &self.inner.rate {
            rate.pause(wait);
        }
    }

    /// Remembers a spent rate limit (`count >= allowed`) so that no request is sent
    /// before it resets.
    fn observe_rate_limit(&self, headers: &HeaderMap) {
        let number =
            |name: &HeaderName| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
        let (Some(count), Some(allowed), Some(reset)) = (
            number(&RATELIMIT_COUNT),
            number(&RATELIMIT_ALLOWED),
            number(&RATELIMIT_RESET),
        ) else {
            return;
        };
        if count >= allowed && reset > 0 {
            // The header is hostile: its wait is capped before it meets the clock.
            let wait = Duration::from_secs(reset).min(self.inner.config.retry.max_retry_after);
            self.pause_rate(wait);
            let until = crate::clock::from_now(wait);
            let mut pacing = self
                .inner
                .pacing
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if pacing.until.is_none_or(|u| u < until) {
                pacing.until = Some(until);
            }
        }
    }

    async fn acquire(&self, deadline: Instant, stats: &mut CallStats) -> Result<Permit, ErrorKind> {
        let limiter = &self.inner.limiter;
        let wait = limiter
            .max_wait()
            .min(deadline.saturating_duration_since(Instant::now()));
        let started = Instant::now();
        let permit = limiter.acquire(wait).await;
        stats.limiter_wait += started.elapsed();
        Ok(permit?)
    }

    fn request(
        &self,
        call: &Call,
        request_id: &HeaderValue,
        correlation_id: Option<&HeaderValue>,
        token: Option<&AccessToken>,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(call.body.clone()));
        *request.method_mut() = call.method.clone();
        *request.uri_mut() = call.uri.clone();
        let headers = request.headers_mut();
        headers.clone_from(&call.headers);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, self.inner.user_agent.clone());
        if !call.body.is_empty() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        headers.insert(REQUEST_ID, request_id.clone());
        if let Some(id) = correlation_id {
            headers.insert(CORRELATION_ID, id.clone());
        }
        if let Some(token) = token {
            headers.insert(AUTHORIZATION, token.header_value().clone());
        }
        request
    }
}
