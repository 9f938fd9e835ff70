//! The Prometheus text after a known sequence of events holds exactly the expected series.

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_model::{Outcome, RetryReason};
use gateway_telemetry::metric_names::{
    ATTEMPTS_TOTAL, AUDIT_ENTRIES_TOTAL, FALLBACKS_TOTAL, IN_FLIGHT_REQUESTS, LIMITER_WAIT_BUCKETS,
    LIMITER_WAIT_SECONDS, OVERHEAD_BUCKETS, OVERHEAD_SECONDS, REQUEST_DURATION_BUCKETS,
    REQUEST_DURATION_SECONDS, REQUESTS_TOTAL, RETRIES_TOTAL, TOKEN_REFRESHES_TOTAL, TOKENS_TOTAL,
};
use gateway_telemetry::{
    AuditCounters, AuditEvent, InFlightGuard, LocalMetrics, ModelMetrics, audit_event, fallback,
    limiter_wait, token_refresh,
};

use gateway_telemetry::exposition::{Series, parse, series};

/// The series a Prometheus histogram renders for `values` (at most two values, or
/// binary-exact ones, so the float sum is the same in any order).
fn histogram(
    out: &mut BTreeMap<Series, f64>,
    name: &str,
    labels: &[(&str, &str)],
    bounds: &[f64],
    values: &[f64],
) {
    for bound in bounds {
        let le = bound.to_string();
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        let below = values.iter().filter(|v| **v <= *bound).count();
        out.insert(series(&format!("{name}_bucket"), &with_le), below as f64);
    }
    let mut with_inf = labels.to_vec();
    with_inf.push(("le", "+Inf"));
    out.insert(
        series(&format!("{name}_bucket"), &with_inf),
        values.len() as f64,
    );
    out.insert(series(&format!("{name}_sum"), labels), values.iter().sum());
    out.insert(
        series(&format!("{name}_count"), labels),
        values.len() as f64,
    );
}

/// Records a known sequence of events; returns the guard of the call still in flight.
fn record_known_sequence(metrics: &LocalMetrics) -> InFlightGuard {
    // An audit sink's counters, as `gateway-audit`'s sinks build them: bound to the
    // recorder current at creation, used outside its scope.
    let (a, b, sink_counters) = metrics.scope(|| {
        (
            ModelMetrics::new("model-a"),
            ModelMetrics::new("model-b"),
            AuditCounters::new(),
        )
    });

    // Model a: two successes and a timeout, three attempts, one retry.
    a.request(Outcome::Success, Duration::from_millis(250));
    a.request(Outcome::Success, Duration::from_secs(2));
    a.request(Outcome::Timeout, Duration::from_secs(30));
    a.attempt();
    a.attempt();
    a.attempt();
    a.retry(RetryReason::ServerError);
    a.overhead(Duration::from_micros(3));
    a.overhead(Duration::from_micros(40));
    // Model b: one upstream error after two 429 retries.
    b.request(Outcome::UpstreamError, Duration::from_millis(500));
    b.attempt();
    b.retry(RetryReason::RateLimited);
    b.retry(RetryReason::RateLimited);
    // One call still in flight on b; one finished (and one cancelled) on a.
    let held = b.in_flight();
    drop(a.in_flight());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut call = Box::pin(async {
            let _guard = a.in_flight();
            std::future::pending::<()>().await;
        });
        tokio::select! {
            biased;
            () = &mut call => unreachable!("the call never finishes"),
            () = std::future::ready(()) => {}
        }
        // The call's guard is alive while its future is suspended...
        let text = metrics.render();
        assert_eq!(
            parse(&text).unwrap()[&series(IN_FLIGHT_REQUESTS, &[("model", "model-a")])],
            1.0
        );
        // ...and released when the future is dropped (cancellation).
        drop(call);
    });
    // Free functions, under the same recorder.
    metrics.scope(|| {
        fallback("model-a", "model-b", Outcome::Timeout);
        fallback("model-a", "model-b", Outcome::Timeout);
        limiter_wait(Duration::from_millis(125));
        limiter_wait(Duration::ZERO);
        token_refresh(true);
        token_refresh(true);
        token_refresh(false);
        audit_event(AuditEvent::Dropped);
    });
    for _ in 0..3 {
        sink_counters.add(AuditEvent::Written, 1);
    }
    held
}

/// Every series the known sequence should render, with its value.
/// Token counters start at zero for every model (nothing here reports usage).
fn expect_zero_token_counters(expected: &mut BTreeMap<Series, f64>) {
    for model in ["model-a", "model-b"] {
        for kind in ["prompt", "completion"] {
            expected.insert(
                series(TOKENS_TOTAL, &[("model", model), ("kind", kind)]),
                0.0,
            );
        }
    }
}

fn expected_series() -> BTreeMap<Series, f64> {
    let mut expected = BTreeMap::new();
    for (model, counts) in [
        ("model-a", [2.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]),
        ("model-b", [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
    ] {
        for (outcome, count) in Outcome::ALL.iter().zip(counts) {
            expected.insert(
                series(
                    REQUESTS_TOTAL,
                    &[("model", model), ("outcome", outcome.as_str())],
                ),
                count,
            );
        }
    }
    for (model, counts) in [
        ("model-a", [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
        ("model-b", [2.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
    ] {
        for (reason, count) in RetryReason::ALL.iter().zip(counts) {
            expected.insert(
                series(
                    RETRIES_TOTAL,
                    &[("model", model), ("reason", reason.as_str())],
                ),
                count,
            );
        }
    }
    expected.insert(series(ATTEMPTS_TOTAL, &[("model", "model-a")]), 3.0);
    expected.insert(series(ATTEMPTS_TOTAL, &[("model", "model-b")]), 1.0);
    expected.insert(series(IN_FLIGHT_REQUESTS, &[("model", "model-a")]), 0.0);
    expected.insert(series(IN_FLIGHT_REQUESTS, &[("model", "model-b")]), 1.0);
    expect_zero_token_counters(&mut expected);
    histogram(
        &mut expected,
        REQUEST_DURATION_SECONDS,
        &[("model", "model-a")],
        REQUEST_DURATION_BUCKETS,
        &[0.25, 2.0, 30.0],
    );
    histogram(
        &mut expected,
        REQUEST_DURATION_SECONDS,
        &[("model", "model-b")],
        REQUEST_DURATION_BUCKETS,
        &[0.5],
    );
    histogram(
        &mut expected,
        OVERHEAD_SECONDS,
        &[("model", "model-a")],
        OVERHEAD_BUCKETS,
        &[
            Duration::from_micros(3).as_secs_f64(),
            Duration::from_micros(40).as_secs_f64(),
        ],
    );
    histogram(
        &mut expected,
        OVERHEAD_SECONDS,
        &[("model", "model-b")],
        OVERHEAD_BUCKETS,
        &[],
    );
    histogram(
        &mut expected,
        LIMITER_WAIT_SECONDS,
        &[],
        LIMITER_WAIT_BUCKETS,
        &[0.125, 0.0],
    );
    expected.insert(
        series(
            FALLBACKS_TOTAL,
            &[
                ("from", "model-a"),
                ("to", "model-b"),
                ("reason", "timeout"),
            ],
        ),
        2.0,
    );
    expected.insert(series(TOKEN_REFRESHES_TOTAL, &[("result", "success")]), 2.0);
    expected.insert(series(TOKEN_REFRESHES_TOTAL, &[("result", "failure")]), 1.0);
    for (event, count) in [
        ("written", 3.0),
        ("delivered", 0.0),
        ("spooled", 0.0),
        ("replayed", 0.0),
        ("dropped", 1.0),
        ("retried", 0.0),
        ("failed", 0.0),
        ("rejected", 0.0),
    ] {
        expected.insert(series(AUDIT_ENTRIES_TOTAL, &[("event", event)]), count);
    }
    expected
}

#[test]
fn rendered_text_holds_exactly_the_recorded_values() {
    let metrics = LocalMetrics::new();
    let held = record_known_sequence(&metrics);
    let expected = expected_series();
    let text = metrics.render();
    let actual = parse(&text).unwrap();
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, v)| actual.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k:?} expected {v}, got {:?}", actual.get(k)))
        .collect();
    let unexpected: Vec<_> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "wrong values: {missing:#?}\nunexpected series: {unexpected:#?}\n{text}"
    );
    // Descriptions and types are there too.
    assert!(text.contains("# TYPE genesys_router_request_duration_seconds histogram"));
    assert!(text.contains("# TYPE genesys_router_in_flight_requests gauge"));
    assert!(text.contains("# HELP genesys_router_requests_total Finished calls per model"));
    drop(held);
}
