//! The processes a benchmark run starts: the simulator, one `gateway-bench load` per
//! scenario and concurrency, a `genesys-router serve` per sidecar run, `redis-server`
//! for the fleet; each is killed when its guard is dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::caller::{Scenario, Setup, router_config};
use crate::load::LoadResult;
use crate::measure::{mib, sample};
use crate::plan::Plan;
use crate::report::{Run, run_row};

/// A child process that is killed if dropped.
pub(crate) struct Guarded(Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guarded {
    /// The process id, as `/proc` names it.
    pub(crate) fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

/// Reads lines from `reader` until one holds an `http://` or `https://` URL, returning it.
fn read_url(reader: impl std::io::Read + Send + 'static, what: &str) -> anyhow::Result<String> {
    let mut lines = BufReader::new(reader).lines();
    for line in lines.by_ref() {
        let line = line?;
        if let Some(start) = line.find("http://").or_else(|| line.find("https://")) {
            let url = line[start..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(url);
        }
    }
    bail!("{what} exited before printing its address")
}

/// The env var the fleet scenario's `[fleet] redis_url_env` names (the default).
pub(crate) const FLEET_URL_ENV: &str = "GENESYS_ROUTER_REDIS_URL";

/// Starts a `redis-server` on a free loopback port for the fleet scenario, if one is
/// installed; its URL.
pub(crate) fn start_redis(dir: &Path) -> Option<(Guarded, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--logfile", ""])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let guard = Guarded(child);
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.any(|l| l.is_ok_and(|l| l.contains("Ready to accept connections")));
    std::thread::spawn(move || for _ in lines {});
    ready.then(|| (guard, format!("redis://127.0.0.1:{port}/")))
}

/// A simulator process (`gateway-bench sim`) and its base URL.
pub(crate) struct Simulator {
    guard: Guarded,
    /// Its base URL.
    pub(crate) url: String,
}

impl Simulator {
    /// Starts `gateway-bench sim` with `args` (a latency, a TLS folder).
    pub(crate) fn start(args: &[String]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("sim")
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the simulator")?;
        let stdout = child.stdout.take().context("simulator stdout")?;
        let guard = Guarded(child);
        let url = read_url(stdout, "the simulator")?;
        Ok(Self { guard, url })
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> String {
        self.guard.pid()
    }
}

/// One load process to run: a scenario at a concurrency against a target.
pub(crate) struct Load<'a> {
    pub(crate) scenario: Scenario,
    pub(crate) concurrency: usize,
    pub(crate) target: &'a str,
    /// More arguments for `gateway-bench load` (a fixed call count, a TLS CA).
    pub(crate) args: Vec<String>,
    /// More environment (the fleet's Redis URL).
    pub(crate) env: Vec<(&'static str, String)>,
}

impl<'a> Load<'a> {
    /// `scenario` at `concurrency` against `target`, with nothing more.
    pub(crate) fn new(scenario: Scenario, concurrency: usize, target: &'a str) -> Self {
        Self {
            scenario,
            concurrency,
            target,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The arguments `setup` needs (a CA file, HTTP/1.1 only, a concurrency limit).
    pub(crate) fn setup(mut self, setup: &Setup) -> Self {
        if let Some(ca) = &setup.ca_file {
            self.args.push("--ca-file".into());
            self.args.push(ca.display().to_string());
        }
        if setup.http1_only {
            self.args.push("--http1-only".into());
        }
        if setup.callers_http2 {
            self.args.push("--callers-http2".into());
        }
        if let Some(max) = setup.max_concurrency {
            self.args.push("--max-concurrency".into());
            self.args.push(max.to_string());
        }
        self
    }

    /// Runs `gateway-bench load ...` and parses its result line.
    pub(crate) fn run(&self, plan: &Plan) -> anyhow::Result<LoadResult> {
        let (warmup, measure) = plan.timing();
        let output = Command::new(std::env::current_exe()?)
            .args(["load", "--scenario", self.scenario.name()])
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--target", self.target])
            .args(["--warmup-ms", &warmup.as_millis().to_string()])
            .args(["--measure-ms", &measure.as_millis().to_string()])
            .arg("--out-dir")
            .arg(&plan.out_dir)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stderr(Stdio::inherit())
            .output()
            .context("running a load process")?;
        remove_audit_files(&plan.out_dir);
        if !output.status.success() {
            bail!(
                "the {} load at concurrency {} failed ({})",
                self.scenario.name(),
                self.concurrency,
                output.status
            );
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text
            .lines()
            .last()
            .context("the load process printed nothing")?;
        serde_json::from_str(line).with_context(|| format!("parsing the load result: {line}"))
    }

    /// Runs the load and measures the simulator's CPU meanwhile, in cores.
    pub(crate) fn measured(&self, plan: &Plan, sim: &Simulator) -> anyhow::Result<Run> {
        let pid = sim.pid();
        let before = sample(&pid).unwrap_or_default();
        let started = Instant::now();
        let result = self.run(plan)?;
        let wall = started.elapsed().as_secs_f64();
        let after = sample(&pid).unwrap_or_default();
        let cores = after.cpu.saturating_sub(before.cpu).as_secs_f64() / wall.max(1e-9);
        Ok(run_row(&result, cores))
    }
}

/// Removes the audit files the library and sidecar runs wrote (hundreds of MB per run):
/// writing them is part of the cost measured, keeping them is not.
pub(crate) fn remove_audit_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.contains("-audit")
            && name.contains(".jsonl")
            && let Err(e) = std::fs::remove_file(entry.path())
        {
            eprintln!("bench: could not remove {}: {e}", entry.path().display());
        }
    }
}

/// A sidecar run: a fresh `genesys-router serve` (set up as `setup` says) in front of
/// `sim`, loaded at `concurrency`; the row carries the sidecar's CPU and peak RSS.
pub(crate) fn sidecar(
    plan: &Plan,
    sim: &Simulator,
    concurrency: usize,
    setup: &Setup,
) -> anyhow::Result<Run> {
    let config_path = plan.out_dir.join("sidecar.toml");
    let audit = plan.out_dir.join("sidecar-audit.jsonl");
    let config = router_config(&sim.url, &audit, setup);
    std::fs::write(&config_path, toml::to_string(&config)?)
        .context("writing the sidecar config")?;
    let mut child = Command::new(&plan.cli)
        .args(["serve", "--config"])
        .arg(&config_path)
        .args(["--listen", "127.0.0.1:0"])
        .env("GENESYS_CLIENT_ID", gateway_sim::DEFAULT_CLIENT_ID)
        .env("GENESYS_CLIENT_SECRET", gateway_sim::DEFAULT_CLIENT_SECRET)
        .env_remove("GENESYS_REGION")
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", plan.cli.display()))?;
    let stderr = child.stderr.take().context("sidecar stderr")?;
    let guard = Guarded(child);
    let pid = guard.pid();
    let url = read_url(stderr, "the sidecar")?;

    let before = sample(&pid).unwrap_or_default();
    let mut row = Load::new(Scenario::Sidecar, concurrency, &url)
        .setup(setup)
        .measured(plan, sim)?;
    let after = sample(&pid).unwrap_or_default();
    drop(guard);
    remove_audit_files(&plan.out_dir);
    row.generator_cpu_us_per_request = Some(row.cpu_us_per_request);
    // The warm-up calls are in the sidecar's CPU time too; spread over the measured ones.
    let total =
        row.requests.max(1) as f64 * (1.0 + plan.timing().0.as_secs_f64() / row.seconds.max(1e-9));
    row.cpu_us_per_request = after.cpu.saturating_sub(before.cpu).as_secs_f64() * 1e6 / total;
    row.peak_rss_mib = mib(after.peak_rss);
    Ok(row)
}
