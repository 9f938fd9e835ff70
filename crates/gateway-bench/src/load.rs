//! One load run in this process: a closed loop of `concurrency` workers sending back to
//! back, with latency, CPU and memory measured. Run as `gateway-bench load ...` in a
//! fresh process per scenario, so CPU time and peak RSS belong to that scenario alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use gateway_auth::{ClientCredentials, Credentials};
use gateway_model::{
    AuditConfig, EnvironmentConfig, FsyncPolicy, GatewayPayload, GatewayResponse, RouteConfig,
    RouteOutcome, RouteRequest, RouterConfig,
};
use gateway_router::Router;
use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use gateway_telemetry::LatencyHistogram;
use gateway_transport::TokenSource;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::{Deserialize, Serialize};

use crate::measure::{mib, sample};

/// The prompt every call sends (a short transcript summary request).
pub const PROMPT: &str = "Summarize this transcript: the customer asks to move the delivery to Friday and to keep the same address.";

/// What a load run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// A bare hyper-util client (the transport's connector and pool settings) posting a
    /// ready payload with a static bearer token, parsing the answer.
    Baseline,
    /// `Router::route` with everything on.
    Library,
    /// The load generator posting payloads straight to the simulator.
    Direct,
    /// The load generator posting route requests to `genesys-router serve`.
    Sidecar,
    /// `Router::route` as [`Scenario::Library`], in fleet mode on a local `redis-server`
    /// (`GENESYS_ROUTER_REDIS_URL`): the shared token, rate budget and circuits.
    Fleet,
}

impl Scenario {
    /// Parses a scenario name.
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        Ok(match name {
            "baseline" => Scenario::Baseline,
            "library" => Scenario::Library,
            "direct" => Scenario::Direct,
            "sidecar" => Scenario::Sidecar,
            "fleet" => Scenario::Fleet,
            other => bail!("unknown scenario `{other}`"),
        })
    }

    /// The name used on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline",
            Scenario::Library => "library",
            Scenario::Direct => "direct",
            Scenario::Sidecar => "sidecar",
            Scenario::Fleet => "fleet",
        }
    }
}

/// How long, or how many calls.
#[derive(Debug, Clone, Copy)]
pub enum Length {
    /// Warm up, then measure for a time.
    Timed {
        /// Unmeasured warm-up.
        warmup: Duration,
        /// Measured time.
        measure: Duration,
    },
    /// Exactly this many calls, sampling RSS after each count in the list.
    Count {
        /// Calls.
        calls: u64,
    },
}

/// What a load run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadResult {
    /// The scenario.
    pub scenario: Scenario,
    /// Workers.
    pub concurrency: usize,
    /// Measured calls that succeeded.
    pub requests: u64,
    /// Measured calls that failed.
    pub errors: u64,
    /// Measured wall time, seconds.
    pub seconds: f64,
    /// Calls per second.
    pub rps: f64,
    /// Latency percentiles and maximum, microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Maximum.
    pub max_us: u64,
    /// This process's CPU time per measured call, microseconds.
    pub cpu_us_per_request: f64,
    /// This process's peak RSS, MiB.
    pub peak_rss_mib: f64,
    /// RSS (MiB) after each checkpoint count of calls (memory runs only).
    pub rss_checkpoints: Vec<(u64, f64)>,
}

/// Issues one call of a scenario.
pub struct Caller(CallerKind);

/// What issues a scenario's calls.
enum CallerKind {
    /// A raw HTTP POST of a ready body.
    Raw(Box<RawCall>),
    /// The router.
    Router(Router),
}

/// A raw HTTP POST of a ready body.
struct RawCall {
    client: RawClient,
    uri: Uri,
    body: Bytes,
    bearer: Option<HeaderValue>,
    expect: Expect,
}

/// The pooled client a raw caller uses.
enum RawClient {
    /// The transport's connector (hyper-rustls over `HttpConnector`) and pool settings.
    Transport(Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>),
    /// A plain hyper-util client, as a load generator would use.
    Plain(Client<HttpConnector, Full<Bytes>>),
}

/// What a raw answer is parsed as.
#[derive(Clone, Copy)]
enum Expect {
    Gateway,
    Outcome,
}

/// A client with `gateway_transport::HttpClient`'s connector and pool settings.
fn transport_like_client() -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .expect("the ring provider supports the default protocol versions")
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(https)
}

async fn post<C: Connect + Clone + Send + Sync + 'static>(
    client: &Client<C, Full<Bytes>>,
    uri: &Uri,
    body: &Bytes,
    bearer: Option<&HeaderValue>,
    expect: Expect,
) -> anyhow::Result<()> {
    let mut request = Request::new(Full::new(body.clone()));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri.clone();
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        "x-genesys-request-id",
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())?,
    );
    if let Some(bearer) = bearer {
        headers.insert(AUTHORIZATION, bearer.clone());
    }
    let response = client.request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
    }
    match expect {
        Expect::Gateway => drop(serde_json::from_slice::<GatewayResponse>(&bytes)?),
        Expect::Outcome => drop(serde_json::from_slice::<RouteOutcome>(&bytes)?),
    }
    Ok(())
}

impl Caller {
    /// Makes call number `i` (the sticky key cycles over 1,000 conversations).
    pub async fn call(&self, i: u64) -> anyhow::Result<()> {
        match &self.0 {
            CallerKind::Raw(raw) => match &raw.client {
                RawClient::Transport(c) => {
                    post(c, &raw.uri, &raw.body, raw.bearer.as_ref(), raw.expect).await
                }
                RawClient::Plain(c) => {
                    post(c, &raw.uri, &raw.body, raw.bearer.as_ref(), raw.expect).await
                }
            },
            CallerKind::Router(router) => {
                let request = RouteRequest::new("bench", PROMPT)
                    .sticky_key(format!("conversation-{}", i % 1000));
                router
                    .route(request)
                    .await
                    .map(drop)
                    .map_err(anyhow::Error::from)
            }
        }
    }
}

/// A token from the simulator's login endpoint.
pub async fn sim_token(sim: &str) -> anyhow::Result<String> {
    let tokens =
        ClientCredentials::builder(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
            .login_base(sim)
            .build()?;
    Ok(tokens.current_token().await?.expose().to_owned())
}

/// The payload every raw call to the simulator sends, serialised once.
fn payload_bytes() -> anyhow::Result<Bytes> {
    let payload = GatewayPayload::builder("model-gen-4", PROMPT)
        .fallbacks(["model-fallback-3"])
        .build()?;
    Ok(Bytes::from(serde_json::to_vec(&payload)?))
}

/// The router config the library scenario runs with (and the sidecar's, through TOML).
pub fn router_config(sim: &str, audit_file: &std::path::Path) -> RouterConfig {
    let mut config = RouterConfig::new(EnvironmentConfig::at(sim)).with_route(
        "bench",
        RouteConfig {
            fallbacks: vec!["model-fallback-3".into()],
            ..RouteConfig::to_model("model-gen-4")
        },
    );
    config.limits.max_concurrency = 256;
    config.audit = AuditConfig {
        file: audit_file.to_owned(),
        fsync: FsyncPolicy::Interval,
        rotate_bytes: 64 * 1024 * 1024,
        keep_rotated: 1,
        ..AuditConfig::default()
    };
    config
}

/// Parts of the router a load run leaves out, to measure what each costs (the published
/// scenarios leave out nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Without {
    /// No audit trail.
    pub audit: bool,
    /// No metrics recorder installed.
    pub metrics: bool,
}

impl Without {
    /// Parses `audit` or `metrics`.
    pub fn parse(names: &[String]) -> anyhow::Result<Self> {
        let mut without = Self::default();
        for name in names {
            match name.as_str() {
                "audit" => without.audit = true,
                "metrics" => without.metrics = true,
                other => bail!("unknown part `{other}` (audit, metrics)"),
            }
        }
        Ok(without)
    }

    /// Installs the metrics recorder unless left out.
    fn install_metrics(self) -> anyhow::Result<()> {
        if !self.metrics {
            gateway_telemetry::install_at(None).context("installing the metrics recorder")?;
        }
        Ok(())
    }

    /// `config` with the parts left out.
    fn apply(self, mut config: RouterConfig) -> RouterConfig {
        config.audit.enabled &= !self.audit;
        config
    }
}

/// Builds the caller for `scenario` against `target` (the simulator, or the sidecar).
pub async fn caller(
    scenario: Scenario,
    target: &str,
    out_dir: &std::path::Path,
    without: Without,
) -> anyhow::Result<Caller> {
    Ok(match scenario {
        Scenario::Baseline | Scenario::Direct => {
            let bearer = HeaderValue::from_str(&format!("Bearer {}", sim_token(target).await?))?;
            let client = if scenario == Scenario::Baseline {
                RawClient::Transport(transport_like_client())
            } else {
                RawClient::Plain(Client::builder(TokioExecutor::new()).build_http())
            };
            Caller(CallerKind::Raw(Box::new(RawCall {
                client,
                uri: format!("{target}/api/v2/ai/gateway/prompts").parse()?,
                body: payload_bytes()?,
                bearer: Some(bearer),
                expect: Expect::Gateway,
            })))
        }
        Scenario::Sidecar => {
            let request = RouteRequest::new("bench", PROMPT).sticky_key("conversation-1");
            Caller(CallerKind::Raw(Box::new(RawCall {
                client: RawClient::Plain(Client::builder(TokioExecutor::new()).build_http()),
                uri: format!("{target}/v1/route").parse()?,
                body: Bytes::from(serde_json::to_vec(&request)?),
                bearer: None,
                expect: Expect::Outcome,
            })))
        }
        Scenario::Library => {
            without.install_metrics()?;
            let audit = out_dir.join(format!("library-audit-{}.jsonl", std::process::id()));
            let router = Router::builder(without.apply(router_config(target, &audit)))
                .credentials(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
                .without_recorder_check()
                .build()
                .await
                .context("building the router")?;
            Caller(CallerKind::Router(router))
        }
        Scenario::Fleet => {
            without.install_metrics()?;
            let audit = out_dir.join(format!("fleet-audit-{}.jsonl", std::process::id()));
            let mut config = without.apply(router_config(target, &audit));
            // A pace far above what the machine can send: every attempt still reserves
            // its slot in Redis, as a fleet with a rate budget does.
            config.limits.requests_per_minute = Some(6_000_000);
            config.limits.rate_burst = 1_000;
            config.fleet = Some(gateway_model::FleetConfig {
                key_prefix: format!("bench-{}", std::process::id()),
                replicas: 3,
                ..gateway_model::FleetConfig::default()
            });
            let fleet = gateway_fleet::Fleet::from_config(&config)?.context("a [fleet] section")?;
            let tokens = fleet.clone();
            let mut builder = Router::builder(config)
                .credentials(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
                .shared_circuits(fleet.circuits())
                .token_layer(move |local| tokens.tokens(local));
            if let Some(budget) = fleet.rate_budget() {
                builder = builder.rate_budget(budget);
            }
            let router = builder
                .without_recorder_check()
                .build()
                .await
                .context("building the router")?;
            Caller(CallerKind::Router(router))
        }
    })
}

/// Counters and flags the workers share with the measuring task.
#[derive(Default)]
struct Progress {
    histogram: LatencyHistogram,
    done: AtomicU64,
    errors: AtomicU64,
    issued: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Progress {
    /// The first failed call's error, taken out.
    fn take_first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn finished(&self) -> u64 {
        self.done.load(Ordering::Relaxed) + self.errors.load(Ordering::Relaxed)
    }
}

/// Starts `concurrency` workers calling back to back until `limit` calls or a stop.
fn spawn_workers(
    caller: &Arc<Caller>,
    progress: &Arc<Progress>,
    concurrency: usize,
    limit: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..concurrency.max(1))
        .map(|_| {
            let (caller, progress) = (Arc::clone(caller), Arc::clone(progress));
            tokio::spawn(async move {
                while !progress.stop.load(Ordering::Relaxed) {
                    let i = progress.issued.fetch_add(1, Ordering::Relaxed);
                    if i >= limit {
                        break;
                    }
                    let started = Instant::now();
                    let result = caller.call(i).await;
                    let took = started.elapsed();
                    if !progress.measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    match result {
                        Ok(()) => {
                            progress.histogram.record(took);
                            progress.done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            progress.errors.fetch_add(1, Ordering::Relaxed);
                            let mut first = progress
                                .first_error
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            first.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
            })
        })
        .collect()
}

/// Makes exactly `calls` calls with `concurrency` workers on an existing caller; fails on
/// the first failed call's error (used where a counter, not a clock, is the measurement).
pub async fn drive(caller: &Arc<Caller>, concurrency: usize, calls: u64) -> anyhow::Result<()> {
    let progress = Arc::new(Progress::default());
    progress.measuring.store(true, Ordering::Relaxed);
    for worker in spawn_workers(caller, &progress, concurrency, calls) {
        worker.await.context("a load worker panicked")?;
    }
    let errors = progress.errors.load(Ordering::Relaxed);
    if let Some(e) = progress.take_first_error() {
        bail!("{errors} of {calls} calls failed, the first: {e}");
    }
    Ok(())
}

/// Runs one load and measures it.
pub async fn run(
    scenario: Scenario,
    concurrency: usize,
    target: &str,
    length: Length,
    checkpoints: &[u64],
    out_dir: &std::path::Path,
    without: Without,
) -> anyhow::Result<LoadResult> {
    let caller = Arc::new(caller(scenario, target, out_dir, without).await?);
    let progress = Arc::new(Progress::default());
    let limit = match length {
        Length::Count { calls } => calls,
        Length::Timed { .. } => u64::MAX,
    };
    progress
        .measuring
        .store(matches!(length, Length::Count { .. }), Ordering::Relaxed);
    let workers = spawn_workers(&caller, &progress, concurrency, limit);

    let mut rss_checkpoints = Vec::new();
    let before;
    let started;
    match length {
        Length::Timed { warmup, measure } => {
            tokio::time::sleep(warmup).await;
            before = sample("self").unwrap_or_default();
            started = Instant::now();
            progress.measuring.store(true, Ordering::Relaxed);
            tokio::time::sleep(measure).await;
            progress.measuring.store(false, Ordering::Relaxed);
            progress.stop.store(true, Ordering::Relaxed);
        }
        Length::Count { .. } => {
            before = sample("self").unwrap_or_default();
            started = Instant::now();
            let mut pending: Vec<u64> = checkpoints.to_vec();
            pending.sort_unstable();
            for at in pending {
                while progress.finished() < at
                    && !workers.iter().all(tokio::task::JoinHandle::is_finished)
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                rss_checkpoints.push((at, mib(sample("self").unwrap_or_default().rss)));
            }
        }
    }
    let measured = match length {
        Length::Timed { measure, .. } => measure.min(started.elapsed()),
        Length::Count { .. } => Duration::ZERO,
    };
    for worker in workers {
        worker.await.context("a load worker panicked")?;
    }
    let measured = if measured.is_zero() {
        started.elapsed()
    } else {
        measured
    };
    let after = sample("self").unwrap_or_default();
    Ok(summarize(
        scenario,
        concurrency,
        &progress,
        measured,
        before,
        after,
        rss_checkpoints,
    ))
}

fn summarize(
    scenario: Scenario,
    concurrency: usize,
    progress: &Progress,
    measured: Duration,
    before: crate::measure::ProcSample,
    after: crate::measure::ProcSample,
    rss_checkpoints: Vec<(u64, f64)>,
) -> LoadResult {
    let requests = progress.done.load(Ordering::Relaxed);
    let errors = progress.errors.load(Ordering::Relaxed);
    if let Some(e) = progress.take_first_error() {
        eprintln!("{}: {errors} failed calls, the first: {e}", scenario.name());
    }
    let us =
        |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let seconds = measured.as_secs_f64();
    let h = &progress.histogram;
    LoadResult {
        scenario,
        concurrency,
        requests,
        errors,
        seconds,
        rps: requests as f64 / seconds.max(1e-9),
        p50_us: us(h.quantile(0.50)),
        p90_us: us(h.quantile(0.90)),
        p99_us: us(h.quantile(0.99)),
        max_us: us(h.max()),
        cpu_us_per_request: after.cpu.saturating_sub(before.cpu).as_secs_f64() * 1e6
            / requests.max(1) as f64,
        peak_rss_mib: mib(after.peak_rss),
        rss_checkpoints,
    }
}

/// `callers` tasks ask a fresh provider for a token at once; returns the token requests
/// the simulator saw.
pub async fn token_storm(sim: &str, callers: usize) -> anyhow::Result<u64> {
    let before = sim_counter(sim, "tokenRequests").await?;
    let tokens =
        ClientCredentials::builder(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
            .login_base(sim)
            .build()?;
    let barrier = Arc::new(tokio::sync::Barrier::new(callers));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (tokens, barrier) = (tokens.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                tokens.token().await
            })
        })
        .collect();
    for task in tasks {
        task.await
            .context("a caller panicked")?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(sim_counter(sim, "tokenRequests").await? - before)
}

/// One counter from the simulator's admin API.
pub async fn sim_counter(sim: &str, name: &str) -> anyhow::Result<u64> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .get(format!("{sim}/__admin/counters").parse()?)
        .await?;
    let body = response.into_body().collect().await?.to_bytes();
    let counters: serde_json::Value = serde_json::from_slice(&body)?;
    counters[name]
        .as_u64()
        .with_context(|| format!("no counter {name} in {counters}"))
}
