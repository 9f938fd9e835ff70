//! The dispatch loop: limiter, bearer token, attempts with timeouts, retries with
//! backoff and `Retry-After`, the retry budget, the overall deadline.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway_model::RetryReason;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use http::{Request, Uri};
use http_body_util::Full;
use tokio::time::Instant;

use crate::bearer::{AccessToken, TokenSource};
use crate::budget::RetryBudget;
use crate::call::{Answer, CORRELATION_ID, Call, REQUEST_ID, check_call};
use crate::client::{Exchange, HttpClient};
use crate::config::TransportConfig;
use crate::error::{CallStats, ErrorKind, TransportError};
use crate::limiter::{Limiter, Permit};
use crate::pacing::Pacing;
use crate::rate_budget::{LocalRateBudget, RateBudget};
use crate::retry::Wait;
use crate::token_wait::await_token;

mod judge;
mod rate;

use judge::Step;
use rate::RateSlot;

/// The header values that identify a call, checked once: its request id and its
/// correlation id, if any (shared values: every attempt's clone is a reference).
struct Ids {
    request_id: HeaderValue,
    correlation_id: Option<HeaderValue>,
}

/// What an attempt holds once it may be sent.
struct Ready<'a> {
    slot: RateSlot<'a>,
    token: Option<AccessToken>,
    permit: Permit,
}

/// One attempt's exchange (or its failure) and the token it was sent with.
struct Sent {
    result: Result<Exchange, ErrorKind>,
    token: Option<AccessToken>,
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
    pacing: Pacing,
    tokens: Option<Arc<dyn TokenSource>>,
    rate: Option<Arc<dyn RateBudget>>,
    config: TransportConfig,
    user_agent: HeaderValue,
    /// The base URL's `Host` header, when every request to it is HTTP/1.1 (plain http,
    /// or `http1_only`): set here from one shared value instead of formatted by hyper-util
    /// for each request (three allocations). Over HTTP/2, `:authority` says it instead.
    host: Option<(http::uri::Authority, HeaderValue)>,
}

/// The `Host` value for requests to `base_url` if they always go over HTTP/1.1, as
/// hyper-util would write it (the port only when it is not the scheme's default).
fn http1_host(base_url: &Uri, http1_only: bool) -> Option<(http::uri::Authority, HeaderValue)> {
    let secure = base_url.scheme_str() == Some("https");
    if secure && !http1_only {
        return None;
    }
    let authority = base_url.authority()?.clone();
    let default_port = if secure { 443 } else { 80 };
    let text = match base_url.port_u16() {
        Some(port) if port != default_port => format!("{}:{port}", authority.host()),
        _ => authority.host().to_owned(),
    };
    let value = crate::call::shared_header_value(text.as_bytes()).ok()?;
    Some((authority, value))
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
        let base = client.check_url(&config.base_url).map_err(fail)?;
        let host = http1_host(&base, config.client.http1_only);
        Ok(Self {
            inner: Arc::new(Inner {
                limiter: Limiter::new(config.max_concurrency, config.limiter_timeout),
                budget: RetryBudget::new(config.budget_ratio, config.budget_min_per_sec),
                pacing: Pacing::default(),
                tokens: None,
                rate: config.requests_per_minute.map(|per_minute| {
                    Arc::new(LocalRateBudget::new(per_minute, config.rate_burst))
                        as Arc<dyn RateBudget>
                }),
                client,
                config,
                user_agent,
                host,
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
            pacing: Pacing::default(),
            tokens,
            rate,
            config: self.inner.config.clone(),
            user_agent: self.inner.user_agent.clone(),
            host: self.inner.host.clone(),
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
    /// Dropping the future releases its slot and ends its request: it closes an HTTP/1.1
    /// connection, and resets the stream of an HTTP/2 one.
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` stores each argument twice (rust-lang/rust#62958)"
    )]
    pub fn execute(&self, call: Call) -> impl Future<Output = Result<Answer, TransportError>> {
        async move {
            let mut stats = CallStats::default();
            self.execute_tracked(call, &mut stats).await
        }
    }

    /// Like [`Transport::execute`], keeping `progress` up to date while the call runs,
    /// so that a caller who drops the future still knows what it had sent: the attempts
    /// started (an attempt counts once its request is handed to the connection), the
    /// retries, and the answers read. The call starts from empty figures (what `progress`
    /// held before, a dropped call's, say, is cleared: it counts against nothing). When
    /// the future completes, the figures move into the [`Answer`] or the
    /// [`TransportError`] and `progress` is left empty.
    ///
    /// ```no_run
    /// # async fn run(transport: gateway_transport::Transport, call: gateway_transport::Call) {
    /// let mut progress = gateway_transport::CallStats::default();
    /// tokio::select! {
    ///     done = transport.execute_tracked(call, &mut progress) => drop(done),
    ///     () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
    /// }
    /// println!("{} attempt(s) started before the wait ended", progress.attempts);
    /// # }
    /// ```
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` stores each argument twice (rust-lang/rust#62958)"
    )]
    pub fn execute_tracked<'a>(
        &'a self,
        call: Call,
        progress: &'a mut CallStats,
    ) -> impl Future<Output = Result<Answer, TransportError>> + 'a {
        async move {
            *progress = CallStats::default();
            let result = self.run(&call, progress).await;
            let stats = std::mem::take(progress);
            match result {
                Ok((exchange, token)) => Ok(Answer {
                    status: exchange.status,
                    version: exchange.version,
                    headers: exchange.headers,
                    body: exchange.body,
                    stats,
                    sent_token: token,
                    known_secrets: self.inner.config.known_secrets.clone(),
                }),
                Err(kind) => Err(TransportError::new(kind, stats)),
            }
        }
    }

    /// The call's successful exchange and the token it was sent with.
    async fn run(
        &self,
        call: &Call,
        stats: &mut CallStats,
    ) -> Result<(Exchange, Option<AccessToken>), ErrorKind> {
        let inner = &*self.inner;
        let started = Instant::now();
        let deadline = call
            .deadline
            .unwrap_or_else(|| crate::clock::later(started, inner.config.deadline));
        let (request_id, correlation_id) = check_call(call)?;
        let ids = Ids {
            request_id,
            correlation_id,
        };
        inner.budget.deposit();

        let mut refreshed = false;
        let mut last_failure: Option<String> = None;
        let past_deadline = |last: Option<String>| ErrorKind::DeadlineExceeded {
            deadline: deadline.saturating_duration_since(started),
            last,
        };
        loop {
            let Some(sent) = self
                .attempt(call, &ids, deadline, stats, &mut last_failure)
                .await?
            else {
                return Err(past_deadline(last_failure));
            };
            match self.judge(sent.result, sent.token.as_ref(), stats) {
                Step::Done(exchange) => return Ok((exchange, sent.token)),
                // The attempt was cut short by the call's deadline, not by its own timeout.
                Step::Retry {
                    failure: ErrorKind::Timeout(_),
                    ..
                } if Instant::now() >= deadline => {
                    return Err(past_deadline(last_failure));
                }
                Step::Fail(kind) => return Err(kind),
                // Every refused token is reported, so no later call sends it; the call
                // itself is sent again once at most, so a bad token cannot loop.
                Step::Refresh(body) => match (&inner.tokens, sent.token) {
                    (Some(source), Some(token)) => {
                        source.invalidate(&token);
                        if refreshed {
                            return Err(ErrorKind::Unauthorized { body });
                        }
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
                    let text = failure.to_string();
                    let wait = self.retry_wait(call, deadline, retry_after, failure, stats)?;
                    last_failure = Some(text);
                    stats.retries[reason.index()] += 1;
                    stats.backoff += wait;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One attempt: the pace kept, a token, a limiter slot, and the exchange within its
    /// timeout. `None` when the deadline passes before anything is sent.
    async fn attempt(
        &self,
        call: &Call,
        ids: &Ids,
        deadline: Instant,
        stats: &mut CallStats,
        last_failure: &mut Option<String>,
    ) -> Result<Option<Sent>, ErrorKind> {
        let inner = &*self.inner;
        let Some(Ready {
            slot,
            token,
            permit,
        }) = self.ready(call, deadline, stats, last_failure).await?
        else {
            return Ok(None);
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Ok(None);
        }
        let timeout = inner.config.attempt_timeout.min(remaining);
        let sent = Instant::now();
        slot.spent();
        stats.attempts += 1;
        // Built again, within the same attempt, only if it was never sent.
        let request = || self.request(call, ids, token.as_ref());
        let result = inner.client.send_with(request, timeout).await;
        stats.upstream += sent.elapsed();
        drop(permit);
        Ok(Some(Sent { result, token }))
    }

    /// What an attempt waits for before it is sent: the pace, a rate slot, a token and a
    /// limiter slot; `None` when the deadline passes first. A pause another call's answer
    /// announced while this one waited is waited out too, and the slots taken again
    /// after it, so no request is sent into a limit known to be spent.
    async fn ready(
        &self,
        call: &Call,
        deadline: Instant,
        stats: &mut CallStats,
        last_failure: &mut Option<String>,
    ) -> Result<Option<Ready<'_>>, ErrorKind> {
        let inner = &*self.inner;
        loop {
            self.pace(deadline, stats).await?;
            let pauses = inner.pacing.pauses();
            // Given back if the attempt ends, or its call is dropped, before it is sent.
            let Some(slot) = self.keep_rate(deadline, stats).await? else {
                return Ok(None);
            };
            // The token first, so no slot is held while waiting for it.
            let token = match &inner.tokens {
                Some(source) => {
                    let token = self.token(&**source, call, deadline, stats, last_failure);
                    let Some(token) = token.await? else {
                        return Ok(None);
                    };
                    Some(token)
                }
                None => None,
            };
            let waited = stats.limiter_wait;
            let Some(permit) = self.acquire(deadline, stats).await? else {
                return Ok(None);
            };
            // A pause begun while this call waited: the slots go back, and it is waited out.
            if inner.pacing.pauses() != pauses {
                continue;
            }
            // A long wait for the slot (a token's safety margin is seconds: one of a
            // second or more) may have outlived the token taken before it, or seen it
            // refused: take the source's current one, waiting for it (the slot held, as
            // this is rare) if none is at hand.
            let token = match (&inner.tokens, token) {
                (Some(source), Some(_))
                    if stats.limiter_wait.saturating_sub(waited) >= Duration::from_secs(1) =>
                {
                    let current = self.token(&**source, call, deadline, stats, last_failure);
                    let Some(current) = current.await? else {
                        return Ok(None);
                    };
                    Some(current)
                }
                (_, token) => token,
            };
            return Ok(Some(Ready {
                slot,
                token,
                permit,
            }));
        }
    }

    /// The token `source` has at hand, else one waited for (the wait counted in
    /// `stats`); `None` when the deadline passes first.
    async fn token(
        &self,
        source: &dyn TokenSource,
        call: &Call,
        deadline: Instant,
        stats: &mut CallStats,
        last_failure: &mut Option<String>,
    ) -> Result<Option<AccessToken>, ErrorKind> {
        if let Some(token) = source.ready_token() {
            return Ok(Some(token));
        }
        let asked = Instant::now();
        let token = await_token(
            source,
            call,
            deadline,
            &self.inner.config.retry,
            last_failure,
        );
        let token = token.await;
        stats.token_wait += asked.elapsed();
        token
    }

    /// How long to wait before retrying a `failure`, or the error the call ends with:
    /// the policy's backoff or `Retry-After` within the time left, if the retry budget
    /// allows one more.
    fn retry_wait(
        &self,
        call: &Call,
        deadline: Instant,
        retry_after: Option<Duration>,
        failure: ErrorKind,
        stats: &mut CallStats,
    ) -> Result<Duration, ErrorKind> {
        let inner = &*self.inner;
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
        Ok(wait)
    }

    /// A limiter slot, waiting at most the limiter timeout and never past `deadline`.
    async fn acquire(
        &self,
        deadline: Instant,
        stats: &mut CallStats,
    ) -> Result<Option<Permit>, ErrorKind> {
        let limiter = &self.inner.limiter;
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = limiter.max_wait().min(left);
        let started = Instant::now();
        let permit = limiter.acquire(wait).await;
        stats.limiter_wait += started.elapsed();
        match permit {
            Ok(permit) => Ok(Some(permit)),
            // The deadline ended the wait, not the limiter's own timeout: that says the
            // call's (or its model's share of the) time is up, not that the router is
            // overloaded, so a fallback with time of its own still gets its turn.
            Err(_) if left < limiter.max_wait() => Ok(None),
            Err(timeout) => Err(timeout.into()),
        }
    }

    /// The HTTP request of one attempt: the call's own headers under the transport's
    /// (which win), in a map sized once.
    fn request(&self, call: &Call, ids: &Ids, token: Option<&AccessToken>) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(call.body.clone()));
        *request.method_mut() = call.method.clone();
        *request.uri_mut() = call.uri.clone();
        let headers = request.headers_mut();
        headers.reserve(call.headers.len() + 6);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, self.inner.user_agent.clone());
        if !call.body.is_empty() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        headers.insert(REQUEST_ID, ids.request_id.clone());
        if let Some(id) = &ids.correlation_id {
            headers.insert(CORRELATION_ID, id.clone());
        }
        if let Some(token) = token {
            headers.insert(AUTHORIZATION, token.header_value().clone());
        }
        let host = self.inner.host.as_ref().filter(|(authority, _)| {
            call.uri.authority() == Some(authority)
                && (call.uri.scheme_str() == Some("http") || self.inner.config.client.http1_only)
        });
        if let Some((_, host)) = host {
            headers.insert(HOST, host.clone());
        }
        // The transport's own headers replace a caller's of the same name, where it sends
        // one: a caller's `Authorization` goes out when no token source is set, say.
        let ours = [
            (&ACCEPT, true),
            (&USER_AGENT, true),
            (&REQUEST_ID, true),
            (&CONTENT_TYPE, !call.body.is_empty()),
            (&CORRELATION_ID, ids.correlation_id.is_some()),
            (&AUTHORIZATION, token.is_some()),
            (&HOST, host.is_some()),
        ];
        for (name, value) in &call.headers {
            let replaced = ours.iter().any(|(own, sent)| *sent && *own == name);
            if !replaced {
                headers.append(name.clone(), value.clone());
            }
        }
        request
    }
}
