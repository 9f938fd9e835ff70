//! A call that skips a model on its open circuit is counted: this test binary installs
//! the global Prometheus recorder (one per process, so one test per binary).

use gateway_model::{RouteConfig, RouteRequest};
use gateway_sim::{Scripted, Sim, Target};
use gateway_telemetry::metric_names::{ATTEMPTS_TOTAL, REQUEST_DURATION_SECONDS, REQUESTS_TOTAL};
use gateway_tests::{config_for, read_metrics as read, router_for};

/// Regression: a call that skipped a model on its open circuit counted nowhere, so the
/// `circuit_open` series the alert and the dashboard read stayed at zero.
#[tokio::test]
async fn a_model_skipped_on_an_open_circuit_counts_as_circuit_open() {
    let metrics = gateway_telemetry::install().unwrap();
    let sim = Sim::builder().start().await.unwrap();
    let route = RouteConfig {
        fallbacks: vec!["model-fallback-3".into()],
        ..RouteConfig::to_model("model-gen-4")
    };
    let mut config = config_for(&sim)
        .with_route("s", route)
        .with_route("alone", RouteConfig::to_model("model-gen-4"));
    config.circuit_breaker.failure_threshold = 1;
    config.circuit_breaker.cooldown_ms = 600_000;
    let router = router_for(config).build().await.unwrap();
    // Three 503s use up gen-4's attempts: one failed call, which opens its circuit.
    let unavailable = Scripted::Status {
        status: 503,
        code: None,
    };
    sim.script(Target::model("model-gen-4"), vec![unavailable; 3]);
    router.route(RouteRequest::new("s", "opens")).await.unwrap();
    let sent = sim.prompt_requests().len();
    // Skipped on the way to the fallback, and on a route with no fallback.
    router.route(RouteRequest::new("s", "skips")).await.unwrap();
    router
        .route(RouteRequest::new("alone", "fails"))
        .await
        .unwrap_err();
    assert_eq!(
        sim.prompt_requests().len(),
        sent + 1,
        "only the fallback was sent to"
    );

    let get = read(&metrics);
    let open = [("model", "model-gen-4"), ("outcome", "circuit_open")];
    assert_eq!(get(REQUESTS_TOTAL, &open), 2.0);
    // No duration: nothing was sent. Three attempts, all for the first call.
    let duration_count = format!("{REQUEST_DURATION_SECONDS}_count");
    assert_eq!(get(&duration_count, &[("model", "model-gen-4")]), 1.0);
    assert_eq!(get(ATTEMPTS_TOTAL, &[("model", "model-gen-4")]), 3.0);
    let stats = router.stats();
    let models: Vec<&str> = stats.iter().map(|s| s.model.as_str()).collect();
    assert_eq!(models, ["model-fallback-3", "model-gen-4"], "in id order");
    let gen4 = stats.iter().find(|s| s.model == "model-gen-4").unwrap();
    let skipped = gen4
        .outcomes
        .iter()
        .find(|(outcome, _)| *outcome == gateway_model::Outcome::CircuitOpen);
    assert_eq!(skipped.map(|(_, n)| *n), Some(2));
    assert_eq!(gen4.requests, 3);
}
