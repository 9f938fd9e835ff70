//! A real `redis-server` on a free loopback port, and routers that share it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use gateway_fleet::Fleet;
use gateway_model::{EnvironmentConfig, FleetConfig, RouteConfig, RouterConfig};
use gateway_router::Router;
use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SimHandle};

/// A `redis-server` child process, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one on a free port. Without `redis-server` on PATH this returns `None`
    /// (the test then says so and passes), except under CI (`CI` set), where it fails.
    pub fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            // `CI=false` (or `0`, or empty) says "not CI", as xtask reads it.
            assert!(
                !std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false")),
                "redis-server is not on PATH: .ci/run installs it (Debian package redis-server)"
            );
            eprintln!("skipped: redis-server is not on PATH (install the redis-server package)");
            return None;
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        // A port free when probed may be taken (by another test's listener) before
        // redis-server binds it: then it never becomes ready, and another port is tried.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            if let Some(child) = spawn_ready(port, dir.path()) {
                return Some(Self {
                    child: Some(child),
                    port,
                    dir,
                });
            }
        }
        panic!("redis-server did not become ready on any of five free ports");
    }

    /// The URL to connect to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// How many times the server ran `command` (lower case, as `INFO commandstats`
    /// names it) since it started or since [`RedisServer::reset_stats`].
    pub async fn calls_of(&self, command: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.connection().await)
            .await
            .expect("INFO commandstats");
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0, |rest| {
                rest.split(',')
                    .next()
                    .unwrap_or_default()
                    .parse()
                    .expect("a count")
            })
    }

    /// Zeroes the server's command counts.
    pub async fn reset_stats(&self) {
        let () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut self.connection().await)
            .await
            .expect("CONFIG RESETSTAT");
    }

    /// A connection of the test's own, to put values in and read them back.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("a valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("a connection to the test's redis-server")
    }

    /// Kills the server (the fleet then runs degraded).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty, and returns once it accepts
    /// connections (it says so on its log).
    pub fn restart(&mut self) {
        self.kill();
        let child = spawn_ready(self.port, self.dir.path());
        self.child = Some(child.expect("redis-server became ready again on its port"));
    }
}

/// A `redis-server` on `port`, once it accepts connections (it says so on its log), or
/// `None` if it exits first (the port was taken).
fn spawn_ready(port: u16, dir: &std::path::Path) -> Option<Child> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--logfile", ""])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let stdout = child.stdout.take().expect("its log");
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.any(|line| line.is_ok_and(|l| l.contains("Ready to accept connections")));
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    // Keep reading its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Some(child)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-server` and the simulator, started for one test; `None` where
/// [`RedisServer::start`] skips the test.
pub async fn redis_and_sim() -> Option<(RedisServer, SimHandle)> {
    let redis = RedisServer::start()?;
    let sim = gateway_sim::Sim::builder()
        .start()
        .await
        .expect("the simulator starts");
    Some((redis, sim))
}

/// A fleet config under a prefix of the test's own. Its command timeout is generous:
/// a thousand calls at once on a two-core machine running other tests can keep Redis'
/// answers past the default 250 ms, which would degrade a fleet whose Redis is fine.
pub fn fleet_config(prefix: &str, replicas: u32) -> FleetConfig {
    FleetConfig {
        key_prefix: prefix.to_owned(),
        replicas,
        command_timeout_ms: 2_000,
        ..FleetConfig::default()
    }
}

/// A router config for the simulator: one route, `reply`, to `model-gen-4`.
pub fn router_config(sim: &SimHandle) -> RouterConfig {
    let mut config = RouterConfig::new(EnvironmentConfig::at(sim.base_url()))
        .with_route("reply", RouteConfig::to_model("model-gen-4"));
    config.audit.enabled = false;
    config
}

/// [`router_config`] with a `[fleet]` section of [`fleet_config`].
pub fn fleet_router_config(sim: &SimHandle, prefix: &str, replicas: u32) -> RouterConfig {
    let mut config = router_config(sim);
    config.fleet = Some(fleet_config(prefix, replicas));
    config
}

/// The fleet handle a replica with `config` uses on `redis`.
pub fn fleet(config: &RouterConfig, redis_url: &str) -> Fleet {
    let fleet_config = config.fleet.clone().expect("a [fleet] section");
    Fleet::connect(redis_url, &fleet_config, &config.limits).unwrap()
}

/// A router in the fleet on `redis`, and its fleet handle.
pub async fn replica(config: &RouterConfig, redis_url: &str) -> (Router, Fleet) {
    let fleet = fleet(config, redis_url);
    let router = with_fleet(config, &fleet).build().await.unwrap();
    (router, fleet)
}

/// A router builder for `config`, plugged into `fleet`.
pub fn with_fleet(config: &RouterConfig, fleet: &Fleet) -> gateway_router::RouterBuilder {
    let tokens = fleet.clone();
    let mut builder = Router::builder(config.clone())
        .credentials(gateway_auth::Credentials::new(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
        ))
        .token_layer(move |local| tokens.tokens(local))
        .shared_circuits(fleet.circuits(config.longest_circuit_opening()));
    if let Some(budget) = fleet.rate_budget() {
        builder = builder.rate_budget(budget);
    }
    builder
}

/// A router of `fleet`.
pub async fn replica_of(config: &RouterConfig, fleet: &Fleet) -> Router {
    with_fleet(config, fleet).build().await.unwrap()
}

/// A router on its own (no fleet), pacing only itself.
pub async fn solo(config: &RouterConfig) -> Router {
    Router::builder(config.clone())
        .credentials(gateway_auth::Credentials::new(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
        ))
        .build()
        .await
        .unwrap()
}

/// Runs `per_router` calls on each router at once; the results in order.
pub async fn load(
    routers: &[Router],
    per_router: usize,
) -> Vec<Result<gateway_model::RouteOutcome, gateway_router::RouteError>> {
    let mut calls = tokio::task::JoinSet::new();
    for router in routers {
        for n in 0..per_router {
            let router = router.clone();
            calls.spawn(async move {
                let request = gateway_model::RouteRequest::new("reply", format!("call {n}"));
                router.route(request).await
            });
        }
    }
    let mut results = Vec::new();
    while let Some(result) = calls.join_next().await {
        results.push(result.expect("no call panics"));
    }
    results
}
