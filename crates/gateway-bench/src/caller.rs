//! What one load run calls with: a bare hyper client, the router, or the load
//! generator's plain client at the sidecar, set up for a scenario.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use gateway_auth::{ClientCredentials, Credentials};
use gateway_model::{
    AuditConfig, EnvironmentConfig, FsyncPolicy, GatewayPayload, GatewayResponse, RouteConfig,
    RouteOutcome, RouteRequest, RouterConfig,
};
use gateway_router::Router;
use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::{Deserialize, Serialize};

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

/// Issues one call of a scenario, failing it after the scenario's call timeout.
pub struct Caller {
    kind: CallerKind,
    timeout: Duration,
}

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
    /// Plain hyper-util clients speaking HTTP/2 without TLS (prior knowledge), each
    /// keeping one multiplexed connection; call `i` goes through client `i % n`.
    Multiplexed(Vec<Client<HttpConnector, Full<Bytes>>>),
}

/// Streams a multiplexing caller keeps open on one connection (the sidecar allows 256).
const STREAMS_PER_CONNECTION: usize = 100;

/// Enough HTTP/2 clients that `concurrency` callers keep at most
/// [`STREAMS_PER_CONNECTION`] streams open on each one's connection.
fn multiplexed(concurrency: usize) -> RawClient {
    let clients = concurrency.div_ceil(STREAMS_PER_CONNECTION).max(1);
    RawClient::Multiplexed(
        (0..clients)
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .http2_only(true)
                    .build_http()
            })
            .collect(),
    )
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
    /// The size of one routed call's future, for a router's scenario: what each call in
    /// flight holds besides its allocations (2,000 calls at once hold it 2,000 times).
    #[must_use]
    pub fn call_future_bytes(&self) -> Option<usize> {
        match &self.kind {
            CallerKind::Raw(_) => None,
            // Never polled: dropping it sends and audits nothing.
            CallerKind::Router(router) => Some(std::mem::size_of_val(
                &router.route(RouteRequest::new("bench", PROMPT)),
            )),
        }
    }

    /// Makes call number `i` (the sticky key cycles over 1,000 conversations); a call
    /// with no answer within the caller's timeout fails.
    pub async fn call(&self, i: u64) -> anyhow::Result<()> {
        match tokio::time::timeout(self.timeout, self.call_unbounded(i)).await {
            Ok(result) => result,
            Err(_) => bail!("no answer within {} ms", self.timeout.as_millis()),
        }
    }

    /// The call a scenario makes, without a deadline.
    async fn call_unbounded(&self, i: u64) -> anyhow::Result<()> {
        match &self.kind {
            CallerKind::Raw(raw) => match &raw.client {
                RawClient::Transport(c) => {
                    post(c, &raw.uri, &raw.body, raw.bearer.as_ref(), raw.expect).await
                }
                RawClient::Plain(c) => {
                    post(c, &raw.uri, &raw.body, raw.bearer.as_ref(), raw.expect).await
                }
                RawClient::Multiplexed(clients) => {
                    // `i` counts calls, so the calls in flight spread evenly.
                    let c = &clients[usize::try_from(i).unwrap_or(0) % clients.len()];
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

/// How a scenario's router (the library's, or the sidecar's through TOML) is set up
/// beyond the common config: the published scenarios differ only in these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    /// Parts left out, to measure what they cost.
    pub without: Without,
    /// A CA to trust, for the simulator's TLS mode.
    pub ca_file: Option<PathBuf>,
    /// Offer only HTTP/1.1 to the gateway (`[tls] http1_only`).
    pub http1_only: bool,
    /// `[limits] max_concurrency`, when more than the default 256 calls run at once.
    pub max_concurrency: Option<u32>,
    /// The sidecar's callers speak HTTP/2 (prior knowledge, no TLS) and multiplex their
    /// calls over a few connections instead of holding one HTTP/1.1 connection each.
    pub callers_http2: bool,
    /// A call without an answer this long fails (default [`CALL_TIMEOUT_MARGIN`]: set
    /// the upstream's latency plus that margin for a slow upstream).
    pub call_timeout: Option<Duration>,
}

/// How long a call may take beyond the upstream's own latency before it counts as failed:
/// generous, so only a call that hangs trips it.
pub const CALL_TIMEOUT_MARGIN: Duration = Duration::from_secs(30);

impl Setup {
    /// The call timeout: the one set, or [`CALL_TIMEOUT_MARGIN`].
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout.unwrap_or(CALL_TIMEOUT_MARGIN)
    }
}

/// The router config the library scenario runs with (and the sidecar's, through TOML).
pub fn router_config(sim: &str, audit_file: &Path, setup: &Setup) -> RouterConfig {
    let mut config = RouterConfig::new(EnvironmentConfig::at(sim)).with_route(
        "bench",
        RouteConfig {
            fallbacks: vec!["model-fallback-3".into()],
            ..RouteConfig::to_model("model-gen-4")
        },
    );
    config.limits.max_concurrency = setup.max_concurrency.unwrap_or(256);
    config.audit = AuditConfig {
        file: audit_file.to_owned(),
        fsync: FsyncPolicy::Interval,
        rotate_bytes: 64 * 1024 * 1024,
        keep_rotated: 1,
        enabled: !setup.without.audit,
        ..AuditConfig::default()
    };
    config.tls.extra_ca_file.clone_from(&setup.ca_file);
    config.tls.http1_only = setup.http1_only;
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
            gateway_telemetry::install().context("installing the metrics recorder")?;
        }
        Ok(())
    }
}

/// Builds the caller for `scenario` against `target` (the simulator, or the sidecar).
pub async fn caller(
    scenario: Scenario,
    concurrency: usize,
    target: &str,
    out_dir: &Path,
    setup: &Setup,
) -> anyhow::Result<Caller> {
    let kind = match scenario {
        Scenario::Baseline | Scenario::Direct => {
            let bearer = HeaderValue::from_str(&format!("Bearer {}", sim_token(target).await?))?;
            let client = if scenario == Scenario::Baseline {
                RawClient::Transport(transport_like_client())
            } else {
                RawClient::Plain(Client::builder(TokioExecutor::new()).build_http())
            };
            CallerKind::Raw(Box::new(RawCall {
                client,
                uri: format!("{target}/api/v2/ai/gateway/prompts").parse()?,
                body: payload_bytes()?,
                bearer: Some(bearer),
                expect: Expect::Gateway,
            }))
        }
        Scenario::Sidecar => {
            let request = RouteRequest::new("bench", PROMPT).sticky_key("conversation-1");
            let client = if setup.callers_http2 {
                multiplexed(concurrency)
            } else {
                RawClient::Plain(Client::builder(TokioExecutor::new()).build_http())
            };
            CallerKind::Raw(Box::new(RawCall {
                client,
                uri: format!("{target}/v1/route").parse()?,
                body: Bytes::from(serde_json::to_vec(&request)?),
                bearer: None,
                expect: Expect::Outcome,
            }))
        }
        Scenario::Library => {
            setup.without.install_metrics()?;
            let audit = out_dir.join(format!("library-audit-{}.jsonl", std::process::id()));
            let router = Router::builder(router_config(target, &audit, setup))
                .credentials(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
                .without_recorder_check()
                .build()
                .await
                .context("building the router")?;
            CallerKind::Router(router)
        }
        Scenario::Fleet => CallerKind::Router(fleet_router(target, out_dir, setup).await?),
    };
    Ok(Caller {
        kind,
        timeout: setup.call_timeout(),
    })
}

/// The router of the fleet scenario: in fleet mode on the `redis-server` whose URL
/// `GENESYS_ROUTER_REDIS_URL` holds, sharing the token, a rate budget and circuits.
async fn fleet_router(target: &str, out_dir: &Path, setup: &Setup) -> anyhow::Result<Router> {
    setup.without.install_metrics()?;
    let audit = out_dir.join(format!("fleet-audit-{}.jsonl", std::process::id()));
    let mut config = router_config(target, &audit, setup);
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
    let longest_open = config.longest_circuit_opening();
    let mut builder = Router::builder(config)
        .credentials(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
        .shared_circuits(fleet.circuits(longest_open))
        .token_layer(move |local| tokens.tokens(local));
    if let Some(budget) = fleet.rate_budget() {
        builder = builder.rate_budget(budget);
    }
    let router = builder
        .without_recorder_check()
        .build()
        .await
        .context("building the router")?;
    Ok(router)
}
