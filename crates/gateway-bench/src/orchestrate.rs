//! The whole benchmark: a simulator process, one fresh load process per scenario and
//! concurrency, a fresh sidecar per sidecar run, then ratios, a table, and
//! `target/bench/results.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::load::{LoadResult, Scenario, router_config};
use crate::measure::{mib, sample};

/// Concurrency levels every scenario runs at.
pub const LEVELS: [usize; 3] = [1, 16, 64];

/// How the benchmark runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Short runs (a smoke check, under a minute).
    pub quick: bool,
    /// Where results go (`target/bench`).
    pub out_dir: PathBuf,
    /// The `genesys-router` binary for the sidecar runs.
    pub cli: PathBuf,
    /// Where criterion wrote its estimates, if it ran.
    pub criterion_dir: Option<PathBuf>,
}

impl Plan {
    fn timing(&self) -> (Duration, Duration) {
        if self.quick {
            (Duration::from_millis(300), Duration::from_millis(1500))
        } else {
            (Duration::from_secs(1), Duration::from_secs(8))
        }
    }

    fn memory_calls(&self) -> u64 {
        if self.quick { 100_000 } else { 1_000_000 }
    }
}

/// One row of `runs` in the results.
#[derive(Debug, Clone, Serialize)]
struct Run {
    scenario: &'static str,
    concurrency: usize,
    requests: u64,
    rps: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
    cpu_us_per_request: f64,
    peak_rss_mib: f64,
    errors: u64,
    seconds: f64,
    /// Cores the simulator used meanwhile (its CPU seconds per wall second).
    sim_cpu_cores: f64,
    /// For sidecar runs: the load generator's own CPU per call (the sidecar's is `cpu_us_per_request`).
    #[serde(skip_serializing_if = "Option::is_none")]
    generator_cpu_us_per_request: Option<f64>,
}

/// A child process that is killed if dropped.
struct Guarded(Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads lines from `reader` until one contains `http://`, returning the URL.
fn read_url(reader: impl std::io::Read + Send + 'static, what: &str) -> anyhow::Result<String> {
    let mut lines = BufReader::new(reader).lines();
    for line in lines.by_ref() {
        let line = line?;
        if let Some(rest) = line.split("http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or_default();
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(format!("http://{addr}"));
        }
    }
    bail!("{what} exited before printing its address")
}

/// The env var the fleet scenario's `[fleet] redis_url_env` names (the default).
const FLEET_URL_ENV: &str = "GENESYS_ROUTER_REDIS_URL";

/// Starts a `redis-server` on a free loopback port for the fleet scenario, if one is
/// installed; its URL.
fn start_redis(dir: &Path) -> Option<(Guarded, String)> {
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
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let ready = lines.any(|l| l.is_ok_and(|l| l.contains("Ready to accept connections")));
    std::thread::spawn(move || for _ in lines {});
    ready.then(|| (guard, format!("redis://127.0.0.1:{port}/")))
}

/// Starts the simulator as `gateway-bench sim`.
fn start_sim() -> anyhow::Result<(Guarded, String)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("sim")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the simulator")?;
    let stdout = child.stdout.take().context("simulator stdout")?;
    let guard = Guarded(child);
    let url = read_url(stdout, "the simulator")?;
    Ok((guard, url))
}

/// Runs `gateway-bench load ...` and parses its result line.
fn load(
    plan: &Plan,
    scenario: Scenario,
    concurrency: usize,
    target: &str,
    extra: &[String],
    env: &[(&str, &str)],
) -> anyhow::Result<LoadResult> {
    let (warmup, measure) = plan.timing();
    let exe = std::env::current_exe()?;
    let output = Command::new(exe)
        .args([
            "load",
            "--scenario",
            scenario.name(),
            "--concurrency",
            &concurrency.to_string(),
            "--target",
            target,
        ])
        .args([
            "--warmup-ms",
            &warmup.as_millis().to_string(),
            "--measure-ms",
            &measure.as_millis().to_string(),
        ])
        .arg("--out-dir")
        .arg(&plan.out_dir)
        .args(extra)
        .envs(env.iter().copied())
        .stderr(Stdio::inherit())
        .output()
        .context("running a load process")?;
    remove_audit_files(&plan.out_dir);
    if !output.status.success() {
        bail!(
            "the {} load at concurrency {concurrency} failed ({})",
            scenario.name(),
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

/// Removes the audit files the library and sidecar runs wrote (hundreds of MB per run):
/// writing them is part of the cost measured, keeping them is not.
fn remove_audit_files(dir: &Path) {
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

fn run_row(result: &LoadResult, sim_cpu_cores: f64) -> Run {
    Run {
        scenario: result.scenario.name(),
        concurrency: result.concurrency,
        requests: result.requests,
        rps: result.rps,
        p50_us: result.p50_us,
        p90_us: result.p90_us,
        p99_us: result.p99_us,
        max_us: result.max_us,
        cpu_us_per_request: result.cpu_us_per_request,
        peak_rss_mib: result.peak_rss_mib,
        errors: result.errors,
        seconds: result.seconds,
        sim_cpu_cores,
        generator_cpu_us_per_request: None,
    }
}

/// Runs a load and measures the simulator's CPU meanwhile.
fn measured(
    plan: &Plan,
    sim_pid: &str,
    scenario: Scenario,
    concurrency: usize,
    target: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(LoadResult, f64)> {
    let before = sample(sim_pid).unwrap_or_default();
    let started = Instant::now();
    let result = load(plan, scenario, concurrency, target, &[], env)?;
    let wall = started.elapsed().as_secs_f64();
    let after = sample(sim_pid).unwrap_or_default();
    Ok((
        result,
        after.cpu.saturating_sub(before.cpu).as_secs_f64() / wall.max(1e-9),
    ))
}

/// A sidecar run: a fresh `genesys-router serve` in front of the simulator.
fn sidecar(plan: &Plan, sim: &str, sim_pid: &str, concurrency: usize) -> anyhow::Result<Run> {
    let config_path = plan.out_dir.join("sidecar.toml");
    let audit = plan.out_dir.join("sidecar-audit.jsonl");
    let config = router_config(sim, &audit);
    let toml = toml_config(&config)?;
    std::fs::write(&config_path, toml).context("writing the sidecar config")?;
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
    let pid = child.id().to_string();
    let guard = Guarded(child);
    let url = read_url(stderr, "the sidecar")?;

    let before = sample(&pid).unwrap_or_default();
    let (result, sim_cores) = measured(plan, sim_pid, Scenario::Sidecar, concurrency, &url, &[])?;
    let after = sample(&pid).unwrap_or_default();
    drop(guard);
    remove_audit_files(&plan.out_dir);
    let mut row = run_row(&result, sim_cores);
    row.generator_cpu_us_per_request = Some(result.cpu_us_per_request);
    // The warm-up calls are in the sidecar's CPU time too; spread over the measured ones.
    let total = result.requests.max(1) as f64
        * (1.0 + plan.timing().0.as_secs_f64() / result.seconds.max(1e-9));
    row.cpu_us_per_request = after.cpu.saturating_sub(before.cpu).as_secs_f64() * 1e6 / total;
    row.peak_rss_mib = mib(after.peak_rss);
    Ok(row)
}

/// The TOML form of a config (the sidecar reads a file).
fn toml_config(config: &gateway_model::RouterConfig) -> anyhow::Result<String> {
    Ok(toml::to_string(config)?)
}

/// Criterion's mean estimates (ns), by benchmark id, if criterion ran. Criterion keeps
/// each benchmark in `<dir>/<id with / as _>/new/estimates.json`.
fn micro(dir: Option<&Path>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Some(entries) = dir.and_then(|d| std::fs::read_dir(d).ok()) else {
        return out;
    };
    for bench in entries.flatten() {
        let estimates = bench.path().join("new/estimates.json");
        let Ok(text) = std::fs::read_to_string(&estimates) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if let Some(mean) = json["mean"]["point_estimate"].as_f64() {
            out.insert(bench.file_name().to_string_lossy().into_owned(), mean);
        }
    }
    out
}

/// The machine the numbers came from.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    json!({
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "cpu": cpu,
        "kernel": kernel,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

/// Runs everything and writes `results.json`; returns the printed report.
pub fn run(plan: &Plan) -> anyhow::Result<String> {
    std::fs::create_dir_all(&plan.out_dir)?;
    remove_audit_files(&plan.out_dir);
    let (sim_guard, sim) = start_sim()?;
    let sim_pid = sim_guard.0.id().to_string();
    let mut runs = Vec::new();

    for scenario in [Scenario::Baseline, Scenario::Library, Scenario::Direct] {
        for concurrency in LEVELS {
            eprintln!("bench: {} at concurrency {concurrency}", scenario.name());
            let (result, sim_cores) = measured(plan, &sim_pid, scenario, concurrency, &sim, &[])?;
            runs.push(run_row(&result, sim_cores));
        }
    }
    for concurrency in LEVELS {
        eprintln!("bench: sidecar at concurrency {concurrency}");
        runs.push(sidecar(plan, &sim, &sim_pid, concurrency)?);
    }
    let fleet = if let Some((redis, url)) = start_redis(&plan.out_dir) {
        // The load processes read the URL from the env var `[fleet]` names.
        for concurrency in LEVELS {
            eprintln!("bench: fleet at concurrency {concurrency}");
            let env = [(FLEET_URL_ENV, url.as_str())];
            let (result, sim_cores) =
                measured(plan, &sim_pid, Scenario::Fleet, concurrency, &sim, &env)?;
            runs.push(run_row(&result, sim_cores));
        }
        drop(redis);
        "measured against a local redis-server".to_owned()
    } else {
        eprintln!("bench: fleet skipped: no redis-server on PATH");
        "skipped: no redis-server on PATH".to_owned()
    };

    eprintln!("bench: memory over {} routed calls", plan.memory_calls());
    let memory = load(
        plan,
        Scenario::Library,
        16,
        &sim,
        &[
            "--calls".into(),
            plan.memory_calls().to_string(),
            "--checkpoints".into(),
            format!("10000,{}", plan.memory_calls()),
        ],
        &[],
    )?;
    let rss_at = |n: u64| {
        memory
            .rss_checkpoints
            .iter()
            .find(|(at, _)| *at == n)
            .map(|(_, rss)| *rss)
    };

    let token_requests = token_storm(&sim)?;
    eprintln!("bench: allocations per call (counting allocator, c = 16)");
    let allocations = allocations(plan, &sim)?;
    drop(sim_guard);

    let ratios = ratios(&runs);

    let micro = micro(plan.criterion_dir.as_deref());
    let results = json!({
        "quick": plan.quick,
        "machine": machine(),
        "runs": runs,
        "ratios": ratios,
        "memory": {
            "rss_mib_after_10k": rss_at(10_000),
            "rss_mib_after_1m": rss_at(plan.memory_calls()),
            "calls_in_long_run": plan.memory_calls(),
            "long_run_shortened": plan.quick,
            "note": if plan.quick { "quick mode: the 1m figure is RSS after 100,000 calls" } else { "RSS after 1,000,000 calls" },
        },
        "token_requests_for_10k_cold_callers": token_requests,
        "allocations_per_call": allocations.get("library"),
        "allocations": allocations,
        "fleet": fleet,
        "micro_ns": micro,
    });
    let path = plan.out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")?;
    let mut text = report(
        &runs,
        &ratios,
        rss_at(10_000),
        rss_at(plan.memory_calls()),
        plan.memory_calls(),
        token_requests,
        &micro,
        &path,
    );
    let _ = writeln!(
        text,
        "allocations per call at c = 16: library {}, baseline {}",
        allocations
            .get("library")
            .map_or_else(|| "-".to_owned(), fmt_value),
        allocations
            .get("baseline")
            .map_or_else(|| "-".to_owned(), fmt_value),
    );
    Ok(text)
}

/// Token requests the simulator saw for 10,000 callers on a cold cache.
fn token_storm(sim: &str) -> anyhow::Result<u64> {
    eprintln!("bench: 10,000 callers on a cold token cache");
    let storm = Command::new(std::env::current_exe()?)
        .args(["token-storm", "--target", sim, "--callers", "10000"])
        .output()?;
    String::from_utf8_lossy(&storm.stdout)
        .trim()
        .parse()
        .context("token storm output")
}

/// Heap allocations (and bytes) per call of `baseline` and `library` at c = 16, each
/// counted by `gateway-bench-allocs` in its own process.
fn allocations(plan: &Plan, sim: &str) -> anyhow::Result<BTreeMap<String, Value>> {
    let exe = std::env::current_exe()?.with_file_name("gateway-bench-allocs");
    let calls = if plan.quick { "500" } else { "2000" };
    let mut out = BTreeMap::new();
    for scenario in [Scenario::Baseline, Scenario::Library] {
        let output = Command::new(&exe)
            .args([
                "--scenario",
                scenario.name(),
                "--target",
                sim,
                "--calls",
                calls,
            ])
            .arg("--out-dir")
            .arg(&plan.out_dir)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("starting {}", exe.display()))?;
        if !output.status.success() {
            bail!(
                "{} {} failed ({})",
                exe.display(),
                scenario.name(),
                output.status
            );
        }
        let line: Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("{} output", exe.display()))?;
        let name = scenario.name();
        out.insert(name.to_owned(), line["allocations_per_call"].clone());
        out.insert(format!("{name}_bytes"), line["bytes_per_call"].clone());
    }
    Ok(out)
}

/// Library against baseline and sidecar against direct, per concurrency level.
fn ratios(runs: &[Run]) -> BTreeMap<&'static str, BTreeMap<String, Value>> {
    let find = |scenario: &str, c: usize| {
        runs.iter()
            .find(|r| r.scenario == scenario && r.concurrency == c)
    };
    let mut ratios = BTreeMap::<&'static str, BTreeMap<String, Value>>::new();
    for c in LEVELS {
        let (Some(base), Some(lib), Some(direct), Some(side)) = (
            find("baseline", c),
            find("library", c),
            find("direct", c),
            find("sidecar", c),
        ) else {
            continue;
        };
        let key = c.to_string();
        let diff = |a: u64, b: u64| {
            i64::try_from(a).unwrap_or(i64::MAX) - i64::try_from(b).unwrap_or(i64::MAX)
        };
        // Added latency as a share of the compared scenario's latency.
        let share = |a: u64, b: u64| diff(a, b) as f64 / b.max(1) as f64;
        let mut put = |name: &'static str, value: Value| {
            ratios.entry(name).or_default().insert(key.clone(), value);
        };
        put(
            "library_rps_vs_baseline",
            json!(lib.rps / base.rps.max(1e-9)),
        );
        put("library_added_p50_us", json!(diff(lib.p50_us, base.p50_us)));
        put("library_added_p99_us", json!(diff(lib.p99_us, base.p99_us)));
        put(
            "library_cpu_vs_baseline",
            json!(lib.cpu_us_per_request / base.cpu_us_per_request.max(1e-9)),
        );
        put(
            "library_added_p50_vs_baseline",
            json!(share(lib.p50_us, base.p50_us)),
        );
        put(
            "sidecar_cpu_vs_baseline",
            json!(side.cpu_us_per_request / base.cpu_us_per_request.max(1e-9)),
        );
        put(
            "sidecar_added_p99_vs_direct",
            json!(share(side.p99_us, direct.p99_us)),
        );
        put(
            "sidecar_rps_vs_direct",
            json!(side.rps / direct.rps.max(1e-9)),
        );
        put(
            "sidecar_added_p50_us",
            json!(diff(side.p50_us, direct.p50_us)),
        );
        put(
            "sidecar_added_p99_us",
            json!(diff(side.p99_us, direct.p99_us)),
        );
        if let Some(fleet) = find("fleet", c) {
            put("fleet_added_p50_us", json!(diff(fleet.p50_us, lib.p50_us)));
            put("fleet_added_p99_us", json!(diff(fleet.p99_us, lib.p99_us)));
            put(
                "fleet_cpu_vs_library",
                json!(fleet.cpu_us_per_request / lib.cpu_us_per_request.max(1e-9)),
            );
        }
    }

    ratios
}

#[allow(clippy::too_many_arguments)] // one report of everything measured
fn report(
    runs: &[Run],
    ratios: &BTreeMap<&str, BTreeMap<String, Value>>,
    rss_10k: Option<f64>,
    rss_long: Option<f64>,
    long_calls: u64,
    token_requests: u64,
    micro: &BTreeMap<String, f64>,
    path: &Path,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:>4} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}",
        "scenario",
        "c",
        "requests",
        "rps",
        "p50 us",
        "p90 us",
        "p99 us",
        "max us",
        "cpu us/r",
        "rss MiB",
        "sim cpu"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{:<9} {:>4} {:>9} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>9.1} {:>8.1} {:>8.2}",
            r.scenario,
            r.concurrency,
            r.requests,
            r.rps,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.max_us,
            r.cpu_us_per_request,
            r.peak_rss_mib,
            r.sim_cpu_cores
        );
    }
    let _ = writeln!(out);
    for (name, by_level) in ratios {
        let values: Vec<String> = LEVELS
            .iter()
            .filter_map(|c| {
                by_level
                    .get(&c.to_string())
                    .map(|v| format!("c={c}: {}", fmt_value(v)))
            })
            .collect();
        let _ = writeln!(out, "{name:<26} {}", values.join("   "));
    }
    let rss = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} MiB"));
    let _ = writeln!(
        out,
        "\nRSS after 10,000 routed calls: {}; after {long_calls}: {}",
        rss(rss_10k),
        rss(rss_long)
    );
    let _ = writeln!(
        out,
        "token requests for 10,000 callers on a cold cache: {token_requests}"
    );
    for (id, ns) in micro {
        let _ = writeln!(out, "micro {id:<44} {ns:>10.0} ns");
    }
    let _ = writeln!(out, "\nwritten to {}", path.display());
    out
}

fn fmt_value(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if v.is_f64() => format!("{f:.3}"),
        _ => v.to_string(),
    }
}
