//! The whole benchmark: a simulator process, one fresh load process per scenario and
//! concurrency, a fresh sidecar per sidecar run, then ratios, a table, and
//! `target/bench/results.json`. Two more simulators serve the scenarios of their own:
//! one answering in 50 ms for 2,000 callers at once, one over TLS for HTTP/2 against
//! HTTP/1.1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::caller::{CALL_TIMEOUT_MARGIN, Scenario, Setup};
pub use crate::plan::Plan;
use crate::processes::{
    COUNTED_LOAD_WITHIN, FLEET_URL_ENV, Load, Simulator, output_within, remove_audit_files,
    sidecar, start_redis,
};
use crate::report::{
    Ratios, Run, diff, fmt_value, machine, median_figures, median_ratios, micro, ratio, ratios,
    share, table,
};

/// Concurrency levels every scenario runs at.
pub const LEVELS: [usize; 3] = [1, 16, 64];

/// The upstream latency of the realistic scenario, in milliseconds.
pub const UPSTREAM_MS: u64 = 50;

/// The call timeout of the runs whose upstream answers in [`UPSTREAM_MS`].
const SLOW_CALL_TIMEOUT: Duration =
    Duration::from_millis(UPSTREAM_MS).saturating_add(CALL_TIMEOUT_MARGIN);

/// How long the token storm and each allocation count may run.
const SIDE_RUN_WITHIN: Duration = Duration::from_secs(600);

/// Runs everything and writes `results.json`; returns the printed report.
pub fn run(plan: &Plan) -> anyhow::Result<String> {
    std::fs::create_dir_all(&plan.out_dir)?;
    remove_audit_files(&plan.out_dir);
    let sim = Simulator::start(&[])?;
    let (mut runs, pairs) = core_runs(plan, &sim)?;
    let fleet = fleet_runs(plan, &sim, &mut runs)?;
    let memory = memory(plan, &sim)?;
    let token_requests = token_storm(&sim.url)?;
    eprintln!("bench: allocations per call (counting allocator, c = 16)");
    let allocations = allocations(plan, &sim.url)?;
    drop(sim);
    let realistic = realistic(plan)?;
    let http2 = http2(plan)?;

    let mut ratios = ratios(&runs, &LEVELS);
    median_ratios(&pairs, &runs, &LEVELS, &mut ratios);
    let micro = micro(plan.criterion_dir.as_deref());
    let results = json!({
        "quick": plan.quick,
        "machine": machine(),
        "runs": runs,
        "repeats": pairs.iter().flat_map(|(b, l)| [b, l]).collect::<Vec<_>>(),
        "ratios": ratios,
        // The headline figures: medians over the repeated pairs, not one pair's.
        "library_cpu_vs_baseline": ratios.get("library_cpu_vs_baseline_median"),
        "sidecar_cpu_vs_baseline": ratios.get("sidecar_cpu_vs_baseline_median"),
        "memory": memory,
        "token_requests_for_10k_cold_callers": token_requests,
        "allocations_per_call": allocations.get("library"),
        "allocations": allocations,
        "fleet": fleet,
        "realistic_latency": realistic,
        "http2": http2,
        "micro_ns": micro,
    });
    let path = plan.out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")?;
    Ok(summary(&runs, &ratios, &results, &path))
}

/// Baseline and library runs made back to back, for the median ratios.
type Pairs = Vec<(Run, Run)>;

/// Baseline, library and direct at every level, the library/baseline pairs repeated
/// for the median ratios, and the sidecar at every level.
fn core_runs(plan: &Plan, sim: &Simulator) -> anyhow::Result<(Vec<Run>, Pairs)> {
    let mut runs = Vec::new();
    let mut pairs = Vec::new();
    for concurrency in LEVELS {
        for repeat in 0..plan.repeats() {
            eprintln!(
                "bench: baseline and library at concurrency {concurrency} (run {})",
                repeat + 1
            );
            let base = Load::new(Scenario::Baseline, concurrency, &sim.url).measured(plan, sim)?;
            let lib = Load::new(Scenario::Library, concurrency, &sim.url).measured(plan, sim)?;
            if repeat == 0 {
                runs.push(base.clone());
                runs.push(lib.clone());
            }
            pairs.push((base, lib));
        }
    }
    for concurrency in LEVELS {
        eprintln!("bench: direct and sidecar at concurrency {concurrency}");
        runs.push(Load::new(Scenario::Direct, concurrency, &sim.url).measured(plan, sim)?);
        runs.push(sidecar(plan, sim, concurrency, &Setup::default())?);
    }
    Ok((runs, pairs))
}

/// Whether the `CI` env var's value says this runs under CI (set, and neither empty,
/// `0` nor `false`).
fn under_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// The fleet at every level against a local `redis-server`, if one is installed (under
/// CI it must be); an error if one is installed but does not start.
fn fleet_runs(plan: &Plan, sim: &Simulator, runs: &mut Vec<Run>) -> anyhow::Result<String> {
    let Some((redis, url)) = start_redis(&plan.out_dir)? else {
        if under_ci(std::env::var("CI").ok().as_deref()) {
            bail!("no redis-server on PATH: under CI the fleet scenario may not be skipped");
        }
        eprintln!("bench: fleet skipped: no redis-server on PATH");
        return Ok("skipped: no redis-server on PATH".to_owned());
    };
    for concurrency in LEVELS {
        eprintln!("bench: fleet at concurrency {concurrency}");
        // The load processes read the URL from the env var `[fleet]` names.
        let mut load = Load::new(Scenario::Fleet, concurrency, &sim.url);
        load.env.push((FLEET_URL_ENV, url.clone()));
        runs.push(load.measured(plan, sim)?);
    }
    drop(redis);
    Ok("measured against a local redis-server".to_owned())
}

/// RSS of one library process after 10,000 and after `memory_calls` routed calls.
fn memory(plan: &Plan, sim: &Simulator) -> anyhow::Result<Value> {
    eprintln!("bench: memory over {} routed calls", plan.memory_calls());
    let mut load = Load::new(Scenario::Library, 16, &sim.url);
    load.args = vec![
        "--calls".into(),
        plan.memory_calls().to_string(),
        "--checkpoints".into(),
        format!("10000,{}", plan.memory_calls()),
    ];
    load.within = Some(COUNTED_LOAD_WITHIN);
    let memory = load.run(plan)?;
    let rss_at = |n: u64| {
        memory
            .rss_checkpoints
            .iter()
            .find(|(at, _)| *at == n)
            .map(|(_, rss)| *rss)
    };
    Ok(json!({
        "rss_mib_after_10k": rss_at(10_000),
        "rss_mib_after_1m": rss_at(plan.memory_calls()),
        "calls_in_long_run": plan.memory_calls(),
        "long_run_shortened": plan.quick,
        "note": if plan.quick { "quick mode: the 1m figure is RSS after 100,000 calls" } else { "RSS after 1,000,000 calls" },
    }))
}

/// The simulator answering in [`UPSTREAM_MS`], and callers at each of the plan's levels
/// (thousands at once at the last) through the direct client, the library and the
/// sidecar (the router's concurrency limit raised to fit): throughput against direct,
/// added p50 and p99, peak RSS, each the median of the plan's repeats (one run varies
/// by a few MiB and, at 64 callers, by about a millisecond of p99).
fn realistic(plan: &Plan) -> anyhow::Result<Value> {
    let sim = Simulator::start(&["--latency-ms".into(), UPSTREAM_MS.to_string()])?;
    let mut runs = Vec::new();
    let mut by_callers = serde_json::Map::new();
    let mut each_run = serde_json::Map::new();
    for callers in plan.realistic_levels() {
        let setup = Setup {
            max_concurrency: Some(u32::try_from(callers * 2).unwrap_or(u32::MAX).max(256)),
            call_timeout: Some(SLOW_CALL_TIMEOUT),
            ..Setup::default()
        };
        let mut each = Vec::new();
        for repeat in 1..=plan.repeats() {
            eprintln!(
                "bench: {callers} callers, upstream answering in {UPSTREAM_MS} ms (run {repeat} of {})",
                plan.repeats()
            );
            let direct = Load::new(Scenario::Direct, callers, &sim.url).measured(plan, &sim)?;
            let library = Load::new(Scenario::Library, callers, &sim.url)
                .setup(&setup)
                .measured(plan, &sim)?;
            let side = sidecar(plan, &sim, callers, &setup)?;
            each.push(figures(json!({
                "library_rps_vs_direct": ratio(library.rps, direct.rps),
                "sidecar_rps_vs_direct": ratio(side.rps, direct.rps),
                "library_added_p50_us": diff(library.p50_us, direct.p50_us),
                "library_added_p99_us": diff(library.p99_us, direct.p99_us),
                "sidecar_added_p50_us": diff(side.p50_us, direct.p50_us),
                "sidecar_added_p99_us": diff(side.p99_us, direct.p99_us),
                "sidecar_added_p99_vs_upstream": share(side.p99_us, direct.p99_us),
                "library_peak_rss_mib": library.peak_rss_mib,
                "sidecar_peak_rss_mib": side.peak_rss_mib,
            })));
            runs.extend([direct, library, side]);
        }
        by_callers.insert(callers.to_string(), median_figures(&each).into());
        each_run.insert(callers.to_string(), json!(each));
    }
    Ok(json!({
        "upstream_ms": UPSTREAM_MS,
        "runs_per_figure": plan.repeats(),
        "by_callers": by_callers,
        "by_callers_each_run": each_run,
        "runs": runs,
    }))
}

/// The figures of one run, as a map (`value` is a JSON object).
fn figures(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// The library over TLS to the simulator in TLS mode: HTTP/2 by ALPN against HTTP/1.1
/// only (a pool), same load: 16 and 64 callers on answers that come at once, then the
/// realistic scenario's most callers on answers that take [`UPSTREAM_MS`], where the
/// calls in flight outnumber one connection's streams; and the sidecar with HTTP/2 on
/// both sides at that load, the median of the plan's repeats.
fn http2(plan: &Plan) -> anyhow::Result<Value> {
    let tls = crate::tls::TestPki::write(&plan.out_dir.join("tls"))?;
    let mut runs = Vec::new();
    let mut out = serde_json::Map::new();
    let instant = Simulator::start(&tls.sim_args())?;
    for concurrency in [16, 64] {
        let level = concurrency.to_string();
        runs.extend(versions_compared(
            plan,
            &instant,
            &tls,
            concurrency,
            &level,
            &mut out,
        )?);
    }
    drop(instant);
    let mut args = tls.sim_args();
    args.extend(["--latency-ms".into(), UPSTREAM_MS.to_string()]);
    let slow = Simulator::start(&args)?;
    let callers = plan.realistic_levels().last().copied().unwrap_or(200);
    let level = format!("{callers}_at_{UPSTREAM_MS}ms");
    runs.extend(versions_compared(
        plan, &slow, &tls, callers, &level, &mut out,
    )?);
    let mut each = Vec::new();
    for _ in 0..plan.repeats() {
        let side = sidecar_multiplexed(plan, &slow, &tls, callers)?;
        each.push(figures(json!({
            "rps": side.rps,
            "p50_us": side.p50_us,
            "p99_us": side.p99_us,
            "cpu_us_per_request": side.cpu_us_per_request,
            "peak_rss_mib": side.peak_rss_mib,
        })));
        runs.push(side);
    }
    out.insert(
        format!("sidecar_multiplexed_{level}"),
        median_figures(&each).into(),
    );
    out.insert(format!("sidecar_multiplexed_{level}_each_run"), json!(each));
    out.insert("runs".into(), json!(runs));
    Ok(Value::Object(out))
}

/// The sidecar with HTTP/2 on both sides, as it can be deployed: over TLS to the
/// gateway, and its `callers` multiplexing over HTTP/2 (about 100 calls per connection)
/// rather than holding an HTTP/1.1 connection each.
fn sidecar_multiplexed(
    plan: &Plan,
    sim: &Simulator,
    tls: &crate::tls::TestPki,
    callers: usize,
) -> anyhow::Result<Run> {
    let setup = Setup {
        ca_file: Some(tls.ca.clone()),
        max_concurrency: Some(u32::try_from(callers * 2).unwrap_or(u32::MAX).max(256)),
        callers_http2: true,
        call_timeout: Some(SLOW_CALL_TIMEOUT),
        ..Setup::default()
    };
    eprintln!("bench: sidecar with HTTP/2 both ways, {callers} callers");
    sidecar(plan, sim, callers, &setup)
}

/// One HTTP/2 run and one HTTP/1.1 run of `concurrency` callers against `sim`; their
/// ratios and the connections each opened go into `out` under `level`.
fn versions_compared(
    plan: &Plan,
    sim: &Simulator,
    tls: &crate::tls::TestPki,
    concurrency: usize,
    level: &str,
    out: &mut serde_json::Map<String, Value>,
) -> anyhow::Result<Vec<crate::report::Run>> {
    let mut rows = Vec::new();
    for http1_only in [false, true] {
        let setup = Setup {
            ca_file: Some(tls.ca.clone()),
            http1_only,
            max_concurrency: Some(u32::try_from(concurrency * 2).unwrap_or(u32::MAX).max(256)),
            call_timeout: Some(SLOW_CALL_TIMEOUT),
            ..Setup::default()
        };
        let label = if http1_only { "http1" } else { "http2" };
        eprintln!("bench: library over TLS, {label}, {concurrency} callers ({level})");
        let before = crate::load::sim_counter_blocking(&sim.url, &tls.ca, "connections")?;
        let row = Load::new(Scenario::Library, concurrency, &sim.url)
            .setup(&setup)
            .measured(plan, sim)?;
        let after = crate::load::sim_counter_blocking(&sim.url, &tls.ca, "connections")?;
        out.insert(
            format!("{label}_connections_c{level}"),
            json!(crate::load::counter_growth("connections", before, after)?),
        );
        rows.push(row);
    }
    let (h2, h1) = (&rows[0], &rows[1]);
    for (name, value) in [
        ("http2_rps_vs_http1", ratio(h2.rps, h1.rps)),
        (
            "http2_cpu_vs_http1",
            ratio(h2.cpu_us_per_request, h1.cpu_us_per_request),
        ),
        (
            "http2_p99_vs_http1",
            ratio(h2.p99_us as f64, h1.p99_us as f64),
        ),
    ] {
        out.entry(name)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|levels| levels.insert(level.to_owned(), json!(value)));
    }
    Ok(rows)
}

/// Token requests the simulator saw for 10,000 callers on a cold cache.
fn token_storm(sim: &str) -> anyhow::Result<u64> {
    eprintln!("bench: 10,000 callers on a cold token cache");
    let (status, stdout) = output_within(
        Command::new(std::env::current_exe()?)
            .args(["token-storm", "--target", sim, "--callers", "10000"])
            .stderr(Stdio::inherit()),
        SIDE_RUN_WITHIN,
        "the token storm",
    )?;
    if !status.success() {
        bail!("the token storm failed ({status})");
    }
    let text = String::from_utf8_lossy(&stdout);
    text.trim()
        .parse()
        .with_context(|| format!("the token storm's output: {text:?}"))
}

/// Heap allocations (and bytes) per call of `baseline` and `library` at c = 16, each
/// counted by `gateway-bench-allocs` in its own process, and the size of the library's
/// call future.
fn allocations(plan: &Plan, sim: &str) -> anyhow::Result<BTreeMap<String, Value>> {
    let exe = std::env::current_exe()?.with_file_name("gateway-bench-allocs");
    let calls = if plan.quick { "500" } else { "2000" };
    let mut out = BTreeMap::new();
    for scenario in [Scenario::Baseline, Scenario::Library] {
        let what = format!("{} {}", exe.display(), scenario.name());
        let (status, stdout) = output_within(
            Command::new(&exe)
                .args(["--scenario", scenario.name(), "--target", sim])
                .args(["--calls", calls])
                .arg("--out-dir")
                .arg(&plan.out_dir)
                .stderr(Stdio::inherit()),
            SIDE_RUN_WITHIN,
            &what,
        )?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
        let line: Value =
            serde_json::from_slice(&stdout).with_context(|| format!("{what} output"))?;
        let name = scenario.name();
        out.insert(name.to_owned(), line["allocations_per_call"].clone());
        out.insert(format!("{name}_bytes"), line["bytes_per_call"].clone());
        if !line["call_future_bytes"].is_null() {
            out.insert(
                format!("{name}_call_future_bytes"),
                line["call_future_bytes"].clone(),
            );
        }
    }
    Ok(out)
}

/// The printed report: the table, then memory, tokens, allocations, the realistic and
/// HTTP/2 scenarios and the micro-benchmarks.
fn summary(runs: &[Run], ratios: &Ratios, results: &Value, path: &std::path::Path) -> String {
    let mut out = table(runs, ratios, &LEVELS);
    let memory = &results["memory"];
    let _ = writeln!(
        out,
        "\nRSS after 10,000 routed calls: {} MiB; after {}: {} MiB",
        fmt_value(&memory["rss_mib_after_10k"]),
        memory["calls_in_long_run"],
        fmt_value(&memory["rss_mib_after_1m"]),
    );
    let _ = writeln!(
        out,
        "token requests for 10,000 callers on a cold cache: {}",
        results["token_requests_for_10k_cold_callers"]
    );
    let _ = writeln!(
        out,
        "allocations per call at c = 16: library {}, baseline {}; a routed call's future: {} bytes",
        fmt_value(&results["allocations"]["library"]),
        fmt_value(&results["allocations"]["baseline"]),
        fmt_value(&results["allocations"]["library_call_future_bytes"]),
    );
    for (section, figures) in [
        (
            "realistic_latency",
            &results["realistic_latency"]["by_callers"],
        ),
        ("http2", &results["http2"]),
    ] {
        if let Some(fields) = figures.as_object() {
            let figures: Vec<String> = fields
                .iter()
                .filter(|(name, _)| *name != "runs" && !name.ends_with("_each_run"))
                .map(|(name, value)| format!("{name} {}", fmt_value(value)))
                .collect();
            let _ = writeln!(out, "{section}: {}", figures.join(", "));
        }
    }
    if let Some(micro) = results["micro_ns"].as_object() {
        for (id, ns) in micro {
            let _ = writeln!(
                out,
                "micro {id:<44} {:>10.0} ns",
                ns.as_f64().unwrap_or(0.0)
            );
        }
    }
    let _ = writeln!(out, "\nwritten to {}", path.display());
    out
}

#[cfg(test)]
mod tests {
    use super::under_ci;

    #[test]
    fn ci_is_on_when_set_to_anything_but_empty_zero_or_false() {
        for on in ["1", "true", "yes"] {
            assert!(under_ci(Some(on)), "{on}");
        }
        for off in [None, Some(""), Some("0"), Some("false"), Some("FALSE")] {
            assert!(!under_ci(off), "{off:?}");
        }
    }
}
