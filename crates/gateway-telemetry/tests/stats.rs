//! `Stats`: fixed memory whatever the number of calls, percentiles within the stated
//! error, unknown models in one bucket, correct totals under concurrent recording.

use std::time::Duration;

use gateway_model::Outcome;
use gateway_telemetry::{LatencyHistogram, MAX_RELATIVE_ERROR, OTHER_MODEL, Stats};

/// Log-uniform latencies between 1 µs and 10 minutes, seeded.
fn latencies(n: usize, seed: u64) -> Vec<Duration> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (low, high) = (1e3_f64.ln(), 600e9_f64.ln());
    (0..n)
        .map(|_| Duration::from_nanos((low + rng.f64() * (high - low)).exp() as u64))
        .collect()
}

#[test]
fn memory_is_the_same_after_a_thousand_and_a_million_latencies() {
    let stats = Stats::new(["model-a", "model-b"]);
    let empty = stats.memory_bytes();
    let all = latencies(1_000_000, 7);
    for (i, latency) in all.iter().enumerate() {
        stats.record("model-a", Outcome::Success, *latency);
        if i + 1 == 1_000 {
            assert_eq!(stats.memory_bytes(), empty, "after 1,000");
        }
    }
    // Unknown ids do not add anything either.
    for (i, latency) in all.iter().take(10_000).enumerate() {
        stats.record(&format!("unknown-{i}"), Outcome::Success, *latency);
    }
    assert_eq!(stats.memory_bytes(), empty, "after 1,000,000");
    assert_eq!(stats.model("model-a").unwrap().requests, 1_000_000);
    // The histogram itself is a fixed-size structure.
    let h = LatencyHistogram::new();
    let before = h.memory_bytes();
    for latency in &all {
        h.record(*latency);
    }
    assert_eq!(h.memory_bytes(), before);
    assert!(before < 10_000, "one histogram is {before} bytes");
}

#[test]
fn percentiles_are_within_the_stated_error_of_exact_values() {
    let stats = Stats::new(["model-a"]);
    let mut all = latencies(200_000, 42);
    // A second mode around 80 ms, where LLM calls cluster.
    let mut rng = fastrand::Rng::with_seed(3);
    all.extend((0..100_000).map(|_| Duration::from_micros(70_000 + rng.u64(0..20_000))));
    for latency in &all {
        stats.record("model-a", Outcome::Success, *latency);
    }
    all.sort_unstable();
    let exact = |q: f64| all[((q * all.len() as f64).ceil() as usize).clamp(1, all.len()) - 1];
    let snapshot = stats.model("model-a").unwrap();
    for (q, got) in [
        (0.5, snapshot.p50),
        (0.9, snapshot.p90),
        (0.99, snapshot.p99),
    ] {
        let (got, want) = (got.unwrap().as_nanos() as f64, exact(q).as_nanos() as f64);
        let error = (got - want).abs() / want;
        assert!(
            error <= MAX_RELATIVE_ERROR,
            "p{q}: {got} vs {want} ({error})"
        );
    }
    assert_eq!(snapshot.max, all.last().copied());
    let h = LatencyHistogram::new();
    for latency in &all {
        h.record(*latency);
    }
    for q in [0.001, 0.01, 0.1, 0.25, 0.75, 0.999, 1.0] {
        let (got, want) = (
            h.quantile(q).unwrap().as_nanos() as f64,
            exact(q).as_nanos() as f64,
        );
        assert!(
            (got - want).abs() / want <= MAX_RELATIVE_ERROR,
            "q{q}: {got} vs {want}"
        );
    }
}

#[test]
fn snapshot_counts_outcomes_retries_fallbacks_and_other_models() {
    let stats = Stats::new(["model-a", "model-b", "model-a"]);
    stats.record("model-a", Outcome::Success, Duration::from_millis(10));
    stats.record("model-a", Outcome::Success, Duration::from_millis(20));
    stats.record("model-a", Outcome::RateLimited, Duration::from_millis(30));
    stats.record("model-a", Outcome::UpstreamError, Duration::from_millis(40));
    stats.record_retry("model-a");
    stats.record_fallback("model-a");
    let snapshot = stats.snapshot();
    let names: Vec<_> = snapshot.iter().map(|s| s.model.as_str()).collect();
    assert_eq!(
        names,
        ["model-a", "model-b"],
        "duplicates merged, no empty other"
    );
    let a = &snapshot[0];
    assert_eq!(
        (a.requests, a.successes, a.retries, a.fallbacks),
        (4, 2, 1, 1)
    );
    assert_eq!(a.hit_rate, Some(0.5));
    assert_eq!(a.outcomes[2], (Outcome::RateLimited, 1));
    assert_eq!(a.max, Some(Duration::from_millis(40)));
    assert_eq!(a.mean, Some(Duration::from_millis(25)));
    assert_eq!(snapshot[1].hit_rate, None);
    assert_eq!(snapshot[1].p50, None);

    stats.record("not-configured", Outcome::Timeout, Duration::from_secs(1));
    stats.record_retry("also-not");
    let snapshot = stats.snapshot();
    let other = snapshot.last().unwrap();
    assert_eq!(other.model, OTHER_MODEL);
    assert_eq!((other.requests, other.retries), (1, 1));
    assert!(stats.model("not-configured").is_none());
    assert_eq!(stats.model(OTHER_MODEL).unwrap().requests, 1);
}

#[test]
fn concurrent_recording_loses_nothing() {
    let stats = Stats::new(["model-a"]);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let stats = &stats;
            s.spawn(move || {
                for i in 0..50_000u64 {
                    let outcome = if i % 4 == 0 {
                        Outcome::Timeout
                    } else {
                        Outcome::Success
                    };
                    stats.record(
                        "model-a",
                        outcome,
                        Duration::from_micros(t * 1000 + i % 997),
                    );
                    stats.record_retry("model-a");
                }
            });
        }
    });
    let a = stats.model("model-a").unwrap();
    assert_eq!(
        (a.requests, a.successes, a.retries),
        (200_000, 150_000, 200_000)
    );
}
