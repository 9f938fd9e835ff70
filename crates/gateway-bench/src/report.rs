//! What a benchmark run reports: one row per load run, the ratios the targets are stated
//! in, the printed table, and the machine the figures came from.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

use crate::load::LoadResult;

/// One row of `runs` in the results.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Run {
    pub(crate) scenario: &'static str,
    pub(crate) concurrency: usize,
    pub(crate) requests: u64,
    pub(crate) rps: f64,
    pub(crate) p50_us: u64,
    pub(crate) p90_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
    pub(crate) cpu_us_per_request: f64,
    pub(crate) peak_rss_mib: f64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    /// Cores the simulator used meanwhile (its CPU seconds per wall second).
    pub(crate) sim_cpu_cores: f64,
    /// For sidecar runs: the load generator's own CPU per call (the sidecar's is
    /// `cpu_us_per_request`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) generator_cpu_us_per_request: Option<f64>,
}

/// The row of one load run, with the simulator's cores meanwhile.
pub(crate) fn run_row(result: &LoadResult, sim_cpu_cores: f64) -> Run {
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

/// `a - b` in microseconds, signed.
pub(crate) fn diff(a: u64, b: u64) -> i64 {
    i64::try_from(a).unwrap_or(i64::MAX) - i64::try_from(b).unwrap_or(i64::MAX)
}

/// Added latency as a share of the compared latency.
pub(crate) fn share(a: u64, b: u64) -> f64 {
    diff(a, b) as f64 / b.max(1) as f64
}

/// `a / b`, or 0 for an empty `b`.
pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    a / b.max(1e-9)
}

/// The middle value (the mean of the middle two for an even count); 0 for none.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

/// Each figure's median over `each` (one map of figures per repeated run, all with the
/// same names): a figure every run gives as an integer stays one, rounded.
pub(crate) fn median_figures(
    each: &[serde_json::Map<String, Value>],
) -> serde_json::Map<String, Value> {
    let Some(first) = each.first() else {
        return serde_json::Map::new();
    };
    first
        .keys()
        .map(|name| {
            let values: Vec<&Value> = each.iter().filter_map(|m| m.get(name)).collect();
            let middle = median(values.iter().filter_map(|v| v.as_f64()).collect());
            let value = if values.iter().all(|v| v.is_i64()) {
                // Rounded from the mean of two integers at most: within i64.
                #[expect(clippy::cast_possible_truncation, reason = "a median of i64 values")]
                let middle = middle.round() as i64;
                json!(middle)
            } else {
                json!(middle)
            };
            (name.clone(), value)
        })
        .collect()
}

/// Ratios by name, then by concurrency level.
pub(crate) type Ratios = BTreeMap<&'static str, BTreeMap<String, Value>>;

/// Library against baseline and sidecar against direct (and fleet against library), at
/// each of `levels`.
pub(crate) fn ratios(runs: &[Run], levels: &[usize]) -> Ratios {
    let find = |scenario: &str, c: usize| {
        runs.iter()
            .find(|r| r.scenario == scenario && r.concurrency == c)
    };
    let mut ratios = Ratios::new();
    for &c in levels {
        let (Some(base), Some(lib), Some(direct), Some(side)) = (
            find("baseline", c),
            find("library", c),
            find("direct", c),
            find("sidecar", c),
        ) else {
            continue;
        };
        let mut put = |name: &'static str, value: Value| {
            ratios.entry(name).or_default().insert(c.to_string(), value);
        };
        put("library_rps_vs_baseline", json!(ratio(lib.rps, base.rps)));
        put("library_added_p50_us", json!(diff(lib.p50_us, base.p50_us)));
        put("library_added_p99_us", json!(diff(lib.p99_us, base.p99_us)));
        put(
            "library_cpu_vs_baseline",
            json!(ratio(lib.cpu_us_per_request, base.cpu_us_per_request)),
        );
        put(
            "library_added_p50_vs_baseline",
            json!(share(lib.p50_us, base.p50_us)),
        );
        put(
            "sidecar_cpu_vs_baseline",
            json!(ratio(side.cpu_us_per_request, base.cpu_us_per_request)),
        );
        put(
            "sidecar_added_p99_vs_direct",
            json!(share(side.p99_us, direct.p99_us)),
        );
        put("sidecar_rps_vs_direct", json!(ratio(side.rps, direct.rps)));
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
                json!(ratio(fleet.cpu_us_per_request, lib.cpu_us_per_request)),
            );
        }
    }
    ratios
}

/// The median over repeated baseline/library pairs of the library's rps, CPU per call
/// and added p50 against the baseline's, at each level (`library_rps_vs_baseline_median`,
/// `library_cpu_vs_baseline_median`, `library_added_p50_vs_baseline_median`); and the
/// sidecar's CPU per call in `runs` against the median of those baselines'
/// (`sidecar_cpu_vs_baseline_median`), so one slow baseline run does not move it.
pub(crate) fn median_ratios(
    pairs: &[(Run, Run)],
    runs: &[Run],
    levels: &[usize],
    into: &mut Ratios,
) {
    for &c in levels {
        let at: Vec<&(Run, Run)> = pairs
            .iter()
            .filter(|(base, _)| base.concurrency == c)
            .collect();
        if at.is_empty() {
            continue;
        }
        let of =
            |figure: fn(&Run, &Run) -> f64| median(at.iter().map(|(b, l)| figure(b, l)).collect());
        let mut put = |name: &'static str, value: f64| {
            into.entry(name)
                .or_default()
                .insert(c.to_string(), json!(value));
        };
        put(
            "library_rps_vs_baseline_median",
            of(|b, l| ratio(l.rps, b.rps)),
        );
        put(
            "library_cpu_vs_baseline_median",
            of(|b, l| ratio(l.cpu_us_per_request, b.cpu_us_per_request)),
        );
        put(
            "library_added_p50_vs_baseline_median",
            of(|b, l| share(l.p50_us, b.p50_us)),
        );
        let sidecar = runs
            .iter()
            .find(|r| r.scenario == "sidecar" && r.concurrency == c);
        if let Some(sidecar) = sidecar {
            let baseline = median(at.iter().map(|(b, _)| b.cpu_us_per_request).collect());
            put(
                "sidecar_cpu_vs_baseline_median",
                ratio(sidecar.cpu_us_per_request, baseline),
            );
        }
    }
}

/// The printed table of every run and ratio. A ratio also taken over the repeated pairs
/// is printed as that median (`…_median`) only, not as the first pair's.
pub(crate) fn table(runs: &[Run], ratios: &Ratios, levels: &[usize]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:>5} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}",
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
            "{:<14} {:>5} {:>9} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>9.1} {:>8.1} {:>8.2}",
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
        if ratios.contains_key(format!("{name}_median").as_str()) {
            continue;
        }
        let values: Vec<String> = levels
            .iter()
            .filter_map(|c| {
                by_level
                    .get(&c.to_string())
                    .map(|v| format!("c={c}: {}", fmt_value(v)))
            })
            .collect();
        let _ = writeln!(out, "{name:<32} {}", values.join("   "));
    }
    out
}

/// A number with three decimals, anything else as JSON.
pub(crate) fn fmt_value(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if v.is_f64() => format!("{f:.3}"),
        _ => v.to_string(),
    }
}

/// Criterion's mean estimates (ns) of the benchmarks `benches/micro.rs` defines
/// ([`crate::micro_ids::ALL`]), by id with `/` as `_`, if criterion ran. Criterion keeps
/// each benchmark in `<dir>/<id with / as _>/new/estimates.json` and never removes one,
/// so any other folder there is a benchmark removed, renamed or run by another checkout.
pub(crate) fn micro(dir: Option<&Path>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Some(dir) = dir else {
        return out;
    };
    for id in crate::micro_ids::ALL {
        let name = id.replace('/', "_");
        let Ok(text) = std::fs::read_to_string(dir.join(&name).join("new/estimates.json")) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if let Some(mean) = json["mean"]["point_estimate"].as_f64() {
            out.insert(name, mean);
        }
    }
    out
}

/// The machine the numbers came from.
pub(crate) fn machine() -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: &'static str, cpu_us_per_request: f64, p50_us: u64) -> Run {
        Run {
            scenario,
            concurrency: 16,
            requests: 1,
            rps: 1_000_000.0 / cpu_us_per_request,
            p50_us,
            p90_us: p50_us,
            p99_us: p50_us,
            max_us: p50_us,
            cpu_us_per_request,
            peak_rss_mib: 0.0,
            errors: 0,
            seconds: 1.0,
            sim_cpu_cores: 0.0,
            generator_cpu_us_per_request: None,
        }
    }

    #[test]
    fn median_figures_take_each_figure_over_the_runs_keeping_integers_integers() {
        let each: Vec<serde_json::Map<String, Value>> = [
            json!({"added_us": 900, "rss_mib": 70.5, "ratio": 0.2}),
            json!({"added_us": 300, "rss_mib": 64.0, "ratio": 0.4}),
            json!({"added_us": 1500, "rss_mib": 66.25, "ratio": 0.3}),
        ]
        .into_iter()
        .filter_map(|v| v.as_object().cloned())
        .collect();
        let middle = median_figures(&each);
        assert_eq!(
            Value::Object(middle),
            json!({"added_us": 900, "rss_mib": 66.25, "ratio": 0.3})
        );
        let two = median_figures(&each[..2]);
        assert_eq!(two["added_us"], json!(600));
        assert_eq!(two["rss_mib"], json!(67.25));
        assert!(median_figures(&[]).is_empty());
    }

    #[test]
    fn median_ratios_take_each_figure_over_the_pairs_and_the_sidecar_over_their_baselines() {
        let pairs = [
            (run("baseline", 17.0, 100), run("library", 34.0, 150)),
            (run("baseline", 13.0, 100), run("library", 26.0, 120)),
            (run("baseline", 12.0, 100), run("library", 30.0, 110)),
        ];
        let runs = [run("sidecar", 65.0, 500)];
        let mut ratios = Ratios::new();
        median_ratios(&pairs, &runs, &[16, 64], &mut ratios);
        let at16 = |name: &str| ratios[name]["16"].as_f64().unwrap();
        assert_eq!(at16("library_cpu_vs_baseline_median"), 2.0);
        assert_eq!(at16("library_rps_vs_baseline_median"), 0.5);
        assert_eq!(at16("library_added_p50_vs_baseline_median"), 0.2);
        assert_eq!(
            at16("sidecar_cpu_vs_baseline_median"),
            5.0,
            "against the median baseline, 13 µs, not the first run's 17"
        );
        assert!(
            !ratios["library_cpu_vs_baseline_median"].contains_key("64"),
            "no pair ran at 64"
        );
    }

    #[test]
    fn only_the_micro_benchmarks_defined_now_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, mean: f64| {
            let new = dir.path().join(name).join("new");
            std::fs::create_dir_all(&new).unwrap();
            let estimates = json!({ "mean": { "point_estimate": mean } });
            std::fs::write(new.join("estimates.json"), estimates.to_string()).unwrap();
        };
        write("payload_removed_last_year", 123.0);
        write("payload_validate", 45.0);
        let found = micro(Some(dir.path()));
        assert_eq!(
            found,
            BTreeMap::from([("payload_validate".to_owned(), 45.0)]),
            "a stale figure is not reported"
        );
    }

    #[test]
    fn a_ratio_taken_over_the_pairs_is_printed_as_its_median_only() {
        let mut ratios = Ratios::new();
        for (name, value) in [
            ("library_cpu_vs_baseline", 9.0),
            ("library_cpu_vs_baseline_median", 2.0),
            ("sidecar_rps_vs_direct", 0.5),
        ] {
            ratios
                .entry(name)
                .or_default()
                .insert("16".into(), json!(value));
        }
        let printed = table(&[], &ratios, &[16]);
        assert!(
            printed.contains("library_cpu_vs_baseline_median   c=16: 2.000"),
            "{printed}"
        );
        assert!(printed.contains("sidecar_rps_vs_direct"), "{printed}");
        assert!(
            !printed.contains("9.000"),
            "the first pair's ratio is not printed: {printed}"
        );
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
        assert_eq!(share(150, 100), 0.5);
        assert_eq!(diff(1, 3), -2);
    }
}
