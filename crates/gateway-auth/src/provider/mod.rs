//! The client-credentials token provider: cached, refreshed ahead of expiry in the
//! background, one request in flight however many callers wait, gentle with the token
//! endpoint when things go wrong.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use gateway_model::redact::redact_secrets;
use gateway_model::{Jitter, RouterConfig};
use gateway_transport::{AccessToken, HttpClient, TokenError, parse_retry_after};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Method, Request, Uri};
use http_body_util::Full;
use serde::Deserialize;
use tokio::time::Instant;

mod builder;
mod refusal;
mod token_source;

pub use builder::ClientCredentialsBuilder;

use crate::credentials::{Credentials, Secret};
use crate::error::AuthError;
use crate::lifetime::TokenLifetime;
use crate::refresh::{Bucket, RefreshPolicy};

/// Called after every token request with `true` (a token was granted) or `false`.
pub type RefreshHook = Arc<dyn Fn(bool) + Send + Sync>;

/// The OAuth token path on the login host.
pub const TOKEN_PATH: &str = "/oauth/token";

/// The waits after failed token requests: ceilings of 1 s doubling to 60 s, with equal
/// jitter (each wait at least half its ceiling; an immediate retry would only repeat the
/// failure).
const RETRY_SCHEDULE: gateway_model::Backoff = gateway_model::Backoff::new(
    Duration::from_secs(1),
    Duration::from_secs(60),
    Jitter::Equal,
);

/// A cached token and its schedule.
struct Cached {
    token: AccessToken,
    /// Handed out until then (a safety margin before expiry).
    usable_until: Instant,
    /// Refreshed in the background from then on.
    refresh_at: Instant,
    lifetime: Duration,
    /// Set when the API refused the token (a 401): it is never handed out again.
    refused: AtomicBool,
}

impl Cached {
    /// Whether the token may be handed out at `now`.
    fn usable_at(&self, now: Instant) -> bool {
        now < self.usable_until && !self.refused.load(Ordering::Acquire)
    }
}

/// Failed attempts in a row and when the next one may run.
#[derive(Default)]
struct FailureStreak {
    failures: u32,
    next_attempt: Option<Instant>,
    last_error: Option<AuthError>,
}

struct Inner {
    http: HttpClient,
    token_url: Uri,
    host: String,
    client_id: String,
    basic: HeaderValue,
    /// The client secret and the Basic credential it is sent in, taken out of whatever
    /// the login host's error answers repeat.
    sent_secrets: [Secret; 2],
    policy: RefreshPolicy,
    timeout: Duration,
    cache: RwLock<Option<Arc<Cached>>>,
    /// Held by the task that requests a token, so only one request is ever in flight.
    single_flight: Arc<tokio::sync::Mutex<()>>,
    background: AtomicBool,
    backoff: Mutex<FailureStreak>,
    forced: Mutex<Bucket>,
    requests: AtomicU64,
    hook: Option<RefreshHook>,
}

/// A [`TokenSource`] for the OAuth 2.0 client-credentials grant against Genesys Cloud.
///
/// - The token is cached and handed out until shortly before it expires.
/// - It is refreshed ahead of expiry ([`RefreshPolicy`]) by a background task; callers
///   keep getting the current token meanwhile. A failed background refresh keeps the
///   still-valid token and retries with exponential backoff (ceilings of 1 s doubling to
///   60 s with equal jitter, or a 429's `Retry-After` up to 5 minutes; never later than
///   half the time left); nothing panics.
/// - Exactly one token request is in flight however many callers wait: on a cold cache,
///   1,000 concurrent callers cause one request.
/// - The answer's `expires_in` becomes a [`TokenLifetime`]: clamped to 48 hours, refused
///   with [`AuthError::InvalidLifetime`] below 1 s or when not a whole number. Every
///   instant computed from it is a checked sum.
/// - A 401 from the API invalidates that exact token ([`TokenSource::invalidate`]): it is
///   never handed out again, and the next caller fetches a new one. Such forced refreshes
///   are rate limited (3 at once, then one per 10 s; meanwhile a caller gets
///   [`AuthError::BackingOff`] with the wait), and failed requests back off, so the token
///   endpoint (about 300 requests per minute per client) is never hammered, even when
///   every call gets a 401.
/// - A redirect or a 4xx that blames the request (a wrong region or login URL) is
///   [`AuthError::Misdirected`], which is not transient.
/// - [`TokenSource::refresh_in`] says when a cached token falls due, and
///   [`TokenSource::renew`] fetches its successor under the same single flight and
///   backoff, so a fleet can renew its shared token ahead of expiry.
///
/// Cheap to clone; clones share the cache.
///
/// [`TokenSource`]: gateway_transport::TokenSource
/// [`TokenSource::invalidate`]: gateway_transport::TokenSource::invalidate
/// [`TokenSource::refresh_in`]: gateway_transport::TokenSource::refresh_in
/// [`TokenSource::renew`]: gateway_transport::TokenSource::renew
///
/// ```no_run
/// use gateway_auth::{ClientCredentials, Credentials};
/// use gateway_model::Region;
///
/// # async fn run() -> Result<(), gateway_auth::AuthError> {
/// let region = Region::parse("eu-west-1").expect("a known region");
/// let tokens = ClientCredentials::builder(Credentials::from_env()?)
///     .region(region)
///     .build()?;
/// tokens.prefetch().await?; // fail fast on bad credentials at start-up
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientCredentials {
    inner: Arc<Inner>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self.cached();
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.inner.client_id)
            .field("token_url", &self.inner.token_url.to_string())
            .field("client_secret", &"<redacted>")
            .field("token", &cached.as_ref().map(|_| "<redacted>"))
            .field("token_requests", &self.token_requests())
            .finish()
    }
}

/// The login service's answer to a grant. `expires_in` is read as any JSON value and
/// checked into a [`TokenLifetime`], so an absurd number is a typed error or clamped.
#[derive(Deserialize)]
struct Grant {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// The longest a login host's `Retry-After` holds token requests back.
const MAX_LOGIN_RETRY_AFTER: Duration = Duration::from_secs(300);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClientCredentials {
    /// Starts configuring a provider for `credentials`.
    pub fn builder(credentials: Credentials) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder {
            credentials,
            login_base: None,
            http: None,
            policy: RefreshPolicy::default(),
            timeout: Duration::from_secs(10),
            forced_burst: 3,
            forced_every: Duration::from_secs(10),
            hook: None,
        }
    }

    /// A provider for a [`RouterConfig`]'s login host and `[limits] login_timeout_ms`.
    pub fn from_router_config(
        config: &RouterConfig,
        credentials: Credentials,
    ) -> Result<ClientCredentialsBuilder, AuthError> {
        let endpoints = config
            .environment
            .resolve()
            .map_err(|e| AuthError::Url(e.to_string()))?;
        Ok(Self::builder(credentials)
            .login_base(endpoints.login_base)
            .timeout(Duration::from_millis(config.limits.login_timeout_ms)))
    }

    /// The client id (not secret).
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// Token requests made so far (successful or not).
    pub fn token_requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Gets a token now if none is cached: a start-up check that the credentials work.
    pub async fn prefetch(&self) -> Result<(), AuthError> {
        self.current_token().await.map(drop)
    }

    /// A valid token: the cached one, or a fresh one.
    pub async fn current_token(&self) -> Result<AccessToken, AuthError> {
        match self.usable_token() {
            Some(token) => Ok(token),
            None => self.refresh_now().await,
        }
    }

    /// The cached token if it is still usable, starting a background refresh when it is
    /// due for one.
    fn usable_token(&self) -> Option<AccessToken> {
        let now = Instant::now();
        let cached = self.cached().filter(|c| c.usable_at(now))?;
        if now >= cached.refresh_at {
            self.refresh_in_background(&cached);
        }
        Some(cached.token.clone())
    }

    fn cached(&self) -> Option<Arc<Cached>> {
        self.inner
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches a token while callers wait (no usable token is cached).
    async fn refresh_now(&self) -> Result<AccessToken, AuthError> {
        self.fetch_unless(|_| true).await
    }

    /// A token other than `old` and not yet due for a refresh: the cached one if it is
    /// such, else one fetched now (under the same backoff as any fetch).
    async fn renewed(&self, old: &AccessToken) -> Result<AccessToken, AuthError> {
        self.fetch_unless(|c| !c.token.same_as(old) && Instant::now() < c.refresh_at)
            .await
    }

    /// Fetches a token while callers wait, unless the cached one is usable and `keep`
    /// takes it.
    async fn fetch_unless(&self, keep: impl Fn(&Cached) -> bool) -> Result<AccessToken, AuthError> {
        let flight = Arc::clone(&self.inner.single_flight).lock_owned().await;
        // Whoever held the lock before may have fetched one already.
        if let Some(cached) = self
            .cached()
            .filter(|c| c.usable_at(Instant::now()) && keep(c))
        {
            return Ok(cached.token.clone());
        }
        {
            let backoff = lock(&self.inner.backoff);
            if let (Some(next), Some(last)) = (backoff.next_attempt, &backoff.last_error) {
                let now = Instant::now();
                if now < next {
                    return Err(match last {
                        // A refused client stays refused, a wrong URL wrong: say so, not
                        // "backing off".
                        AuthError::Rejected { .. } | AuthError::Misdirected { .. } => last.clone(),
                        _ => AuthError::BackingOff {
                            last: last.to_string(),
                            retry_in: next.saturating_duration_since(now),
                        },
                    });
                }
            }
        }
        // After the backoff, so a wait it asks for spends no forced refresh.
        self.forced_refresh_allowed()?;
        // The request runs in a task of its own that holds the lock: a caller that gives
        // up (a dropped future, a deadline) neither aborts it nor lets a second one start.
        let this = self.clone();
        let fetch = tokio::spawn(async move {
            let _flight = flight;
            this.fetch_and_store().await
        });
        match fetch.await {
            Ok(result) => result.map(|c| c.token.clone()),
            Err(e) => Err(AuthError::Unreachable {
                host: self.inner.host.clone(),
                reason: format!("the token request task ended abnormally: {e}"),
            }),
        }
    }

    /// Whether a token may be requested now, as far as 401s go: a cached token the API
    /// refused, which would still be usable otherwise, forces a refresh, and those are
    /// rate limited; one past its use is replaced as any expired token is.
    fn forced_refresh_allowed(&self) -> Result<(), AuthError> {
        let now = Instant::now();
        let Some(refused) = self
            .cached()
            .filter(|c| c.refused.load(Ordering::Acquire) && now < c.usable_until)
        else {
            return Ok(());
        };
        let mut forced = lock(&self.inner.forced);
        if forced.try_take(now) {
            return Ok(());
        }
        let until_expiry = refused.usable_until.saturating_duration_since(now);
        Err(AuthError::BackingOff {
            last: "the API refused the token (HTTP 401), and the refreshes 401s may force are spent for now".into(),
            retry_in: forced.wait(now).map_or(until_expiry, |w| w.min(until_expiry)),
        })
    }

    /// Starts one background refresh unless one runs or the backoff says wait.
    fn refresh_in_background(&self, seen: &Arc<Cached>) {
        if lock(&self.inner.backoff)
            .next_attempt
            .is_some_and(|next| Instant::now() < next)
        {
            return;
        }
        // Outside a runtime (`ready_token` is a plain method) the next async call
        // fetches it instead.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.background.swap(true, Ordering::AcqRel) {
            return;
        }
        // Cleared however the task ends (a panicking hook, a runtime shutting down, even
        // before its first poll), so that a later refresh can start.
        let running = BackgroundRun(self.clone());
        let seen = Arc::clone(seen);
        runtime.spawn(async move {
            let this = &running.0;
            let flight = this.inner.single_flight.lock().await;
            // Skip if a caller refreshed while this task waited for the lock, or if a
            // caller's failed request set a backoff meanwhile.
            let still_due = this.cached().is_none_or(|c| Arc::ptr_eq(&c, &seen));
            if still_due && this.next_attempt_in().is_none_or(|wait| wait.is_zero()) {
                // A failure is recorded in the backoff; the old token stays in use.
                let _ = this.fetch_and_store().await;
            }
            drop(flight);
            drop(running);
        });
    }

    /// Requests a token (caller holds the single-flight lock) and caches it, or records
    /// the failure and when to try again.
    async fn fetch_and_store(&self) -> Result<Arc<Cached>, AuthError> {
        let result = self.store(self.fetch().await);
        // Told once the result is kept, and its panic caught: a hook that panics loses
        // neither a granted token nor the backoff after a failure, nor changes what the
        // caller is told.
        if let Some(hook) = &self.inner.hook {
            let ok = result.is_ok();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(ok)));
        }
        result
    }

    /// Caches a granted token, or records a failure and when to try again.
    fn store(&self, result: Result<Arc<Cached>, AuthError>) -> Result<Arc<Cached>, AuthError> {
        let mut backoff = lock(&self.inner.backoff);
        match result {
            Ok(cached) => {
                *backoff = FailureStreak::default();
                *self
                    .inner
                    .cache
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&cached));
                Ok(cached)
            }
            Err(err) => {
                backoff.failures = backoff.failures.saturating_add(1);
                let mut wait = RETRY_SCHEDULE.delay(backoff.failures, fastrand::f64());
                // A login host that is rate-limiting is asked again no sooner than it
                // says, within a bound of ours (its header is not to be trusted).
                if let AuthError::RateLimited {
                    retry_after: Some(after),
                    ..
                } = &err
                {
                    wait = wait.max((*after).min(MAX_LOGIN_RETRY_AFTER));
                }
                // With a token still usable, try again well before it expires. One past
                // its use (an outage longer than its life) is no reason to hurry: the
                // schedule stands, or every caller would ask every 100 ms.
                if let Some(c) = self.cached().filter(|c| !c.refused.load(Ordering::Acquire)) {
                    let left = c.usable_until.saturating_duration_since(Instant::now());
                    if !left.is_zero() {
                        wait = wait.min(left / 2).max(Duration::from_millis(100));
                    }
                }
                // `wait` is at most 300 s; a clock at the end of its range retries
                // at once rather than panicking.
                backoff.next_attempt = Instant::now().checked_add(wait);
                backoff.last_error = Some(err.clone());
                Err(err)
            }
        }
    }

    /// One token request.
    async fn fetch(&self) -> Result<Arc<Cached>, AuthError> {
        let inner = &*self.inner;
        inner.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let answer = inner
            .http
            .send_with(|| self.token_request(), inner.timeout)
            .await
            .map_err(|e| AuthError::Unreachable {
                host: inner.host.clone(),
                reason: match e {
                    // The transport's words name the attempt timeout: this is the login's.
                    gateway_transport::ErrorKind::Timeout(wait) => {
                        format!("no answer within the login timeout of {wait:?}")
                    }
                    e => e.to_string(),
                },
            })?;
        match answer.status.as_u16() {
            200 => self.granted(&answer.body, started),
            400 | 401 => {
                let secrets = inner.sent_secrets.each_ref().map(Secret::expose);
                let (error, description) = refusal::read(&answer.body, &secrets);
                Err(AuthError::Rejected {
                    client_id: inner.client_id.clone(),
                    host: inner.host.clone(),
                    status: answer.status.as_u16(),
                    error,
                    description,
                })
            }
            429 => Err(AuthError::RateLimited {
                host: inner.host.clone(),
                retry_after: answer
                    .headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now())),
            }),
            // A redirect or a 4xx that blames the request: another request to the same
            // place gets the same answer.
            status @ (300..=399 | 402..=407 | 409..=424 | 426..=428 | 430..=499) => {
                Err(AuthError::Misdirected {
                    host: inner.host.clone(),
                    status,
                })
            }
            status => Err(AuthError::Unreachable {
                host: inner.host.clone(),
                reason: format!("the login service answered HTTP {status}"),
            }),
        }
    }

    /// `POST /oauth/token` with the client's Basic credentials and the
    /// `client_credentials` grant.
    fn token_request(&self) -> Request<Full<Bytes>> {
        let inner = &*self.inner;
        let mut request = Request::new(Full::new(Bytes::from_static(
            b"grant_type=client_credentials",
        )));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = inner.token_url.clone();
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, inner.basic.clone());
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        request
    }

    /// The token a 200 answer's `body` grants, with its refresh times counted from
    /// `started` (when the request went out: never later than the login host's clock).
    fn granted(&self, body: &[u8], started: Instant) -> Result<Arc<Cached>, AuthError> {
        let inner = &*self.inner;
        // A login host may repeat the credentials where the token belongs.
        let secrets = inner.sent_secrets.each_ref().map(Secret::expose);
        let bad = |reason: String| AuthError::BadAnswer {
            host: inner.host.clone(),
            reason: redact_secrets(&reason, &secrets).into_owned(),
        };
        let grant: Grant = serde_json::from_slice(body).map_err(|e| {
            bad(format!(
                "the token answer is not the expected JSON: {}",
                without_values(&e)
            ))
        })?;
        if grant
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            // The value is not quoted: it could be anything the host echoes.
            return Err(bad("token_type is not bearer".into()));
        }
        let lifetime = TokenLifetime::from_expires_in(grant.expires_in.as_ref())
            .map_err(|reason| AuthError::InvalidLifetime {
                host: inner.host.clone(),
                reason,
            })?
            .get();
        let token = AccessToken::new(&grant.access_token)
            .ok_or_else(|| {
            bad("the access token is empty, or holds white space or characters a header cannot carry".into())
        })?;
        // `lifetime` is at most 48 h; the sums are checked all the same, and no
        // `Instant` is subtracted from.
        let before_expiry = |margin: Duration| started.checked_add(lifetime.saturating_sub(margin));
        let usable_until = before_expiry(RefreshPolicy::safety(lifetime));
        let refresh_at = before_expiry(inner.policy.margin(lifetime, fastrand::f64()));
        let (Some(usable_until), Some(refresh_at)) = (usable_until, refresh_at) else {
            return Err(bad("the token's expiry is beyond this clock's range".into()));
        };
        // A short life and a slow answer: cached, it would send the next caller straight
        // back to the login host, with the backoff just reset by this "success".
        if usable_until <= Instant::now() {
            return Err(bad(format!(
                "the token was no longer usable when its answer arrived (a life of {} s)",
                lifetime.as_secs()
            )));
        }
        Ok(Arc::new(Cached {
            token,
            usable_until,
            refresh_at,
            lifetime,
            refused: AtomicBool::new(false),
        }))
    }

    /// How long until the next token request is allowed, after a failure.
    fn next_attempt_in(&self) -> Option<Duration> {
        lock(&self.inner.backoff)
            .next_attempt
            .map(|next| next.saturating_duration_since(Instant::now()))
    }

    /// The lifetime of the cached token, if one is cached.
    pub fn token_lifetime(&self) -> Option<Duration> {
        self.cached().map(|c| c.lifetime)
    }
}

/// serde's complaint about a token answer without the values it quotes (a host that
/// answers with a bare string quotes the token itself, at any length) but with where.
fn without_values(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let end = text.find(" at line ").unwrap_or(text.len());
    let mut words = gateway_model::redact::without_quoted_values(&text[..end]);
    gateway_model::cut_to(&mut words, 200);
    format!("{words} (line {}, column {})", err.line(), err.column())
}

/// A background refresh under way: the provider's flag is cleared when this is dropped.
struct BackgroundRun(ClientCredentials);

impl Drop for BackgroundRun {
    fn drop(&mut self) {
        self.0.inner.background.store(false, Ordering::Release);
    }
}

impl ClientCredentials {
    /// `err` as the transport sees it, saying when the next request may go.
    fn token_error(&self, err: AuthError) -> TokenError {
        let retry_in = match &err {
            // Its own wait: the backoff's, or the next refresh a 401 may force.
            AuthError::BackingOff { retry_in, .. } => Some(*retry_in),
            err if err.is_transient() => self.next_attempt_in(),
            _ => None,
        };
        let err = TokenError::from(err);
        match retry_in {
            Some(wait) => err.with_retry_in(wait),
            None => err,
        }
    }
}
