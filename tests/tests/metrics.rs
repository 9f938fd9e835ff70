//! Every routed call records its metrics: this test binary installs the global Prometheus
//! recorder (one per process), routes known calls, and reads the exact values back.

use std::time::Duration;

use gateway_model::{RouteConfig, RouteRequest};
use gateway_sim::{Scripted, Sim, Target};
use gateway_telemetry::metric_names::{
    ATTEMPTS_TOTAL, FALLBACKS_TOTAL, OVERHEAD_SECONDS, REQUEST_DURATION_SECONDS, REQUESTS_TOTAL,
    RETRIES_TOTAL, TOKEN_REFRESHES_TOTAL,
};
use gateway_tests::{config_for, router_for};

#[tokio::test]
async fn routed_calls_record_requests_retries_fallbacks_and_latency() {
    let metrics = gateway_telemetry::install().unwrap();
    let sim = Sim::builder().start().await.unwrap();
    let route = RouteConfig {
        fallbacks: vec!["model-fallback-3".into()],
        ..RouteConfig::to_model("model-gen-4")
    };
    let router = router_for(config_for(&sim).with_route("s", route))
        .build()
        .await
        .unwrap();
    series_start_at_zero(&metrics);

    router.route(RouteRequest::new("s", "one")).await.unwrap();
    sim.script(
        Target::model("model-gen-4"),
        vec![
            Scripted::Status {
                status: 503,
                code: None
            };
            3
        ],
    );
    router.route(RouteRequest::new("s", "two")).await.unwrap();
    sim.script(
        Target::model("model-gen-4"),
        [Scripted::Status {
            status: 502,
            code: None,
        }],
    );
    router.route(RouteRequest::new("s", "three")).await.unwrap();

    let get = read(&metrics);
    let gen4 = [("model", "model-gen-4")];
    assert_eq!(
        get(
            REQUESTS_TOTAL,
            &[("model", "model-gen-4"), ("outcome", "success")]
        ),
        2.0
    );
    assert_eq!(
        get(
            REQUESTS_TOTAL,
            &[("model", "model-gen-4"), ("outcome", "upstream_error")]
        ),
        1.0
    );
    assert_eq!(
        get(
            REQUESTS_TOTAL,
            &[("model", "model-fallback-3"), ("outcome", "success")]
        ),
        1.0
    );
    assert_eq!(get(ATTEMPTS_TOTAL, &gen4), 1.0 + 3.0 + 2.0);
    assert_eq!(
        get(
            RETRIES_TOTAL,
            &[("model", "model-gen-4"), ("reason", "status_5xx")]
        ),
        2.0 + 1.0
    );
    assert_eq!(
        get(
            FALLBACKS_TOTAL,
            &[
                ("from", "model-gen-4"),
                ("to", "model-fallback-3"),
                ("reason", "upstream_error")
            ]
        ),
        1.0
    );
    assert_eq!(get(TOKEN_REFRESHES_TOTAL, &[("result", "success")]), 1.0);
    let duration_count = format!("{REQUEST_DURATION_SECONDS}_count");
    assert_eq!(get(&duration_count, &gen4), 3.0);
    // The router's own overhead is recorded once per call, on the model chosen first.
    let overhead_count = format!("{OVERHEAD_SECONDS}_count");
    assert_eq!(get(&overhead_count, &gen4), 3.0);
    let overhead_sum = get(&format!("{OVERHEAD_SECONDS}_sum"), &gen4);
    assert!(
        overhead_sum > 0.0 && overhead_sum < Duration::from_secs(10).as_secs_f64(),
        "{overhead_sum}"
    );

    // The in-process view agrees.
    let stats = router.stats();
    let gen4 = stats.iter().find(|s| s.model == "model-gen-4").unwrap();
    assert_eq!(
        (gen4.requests, gen4.successes, gen4.retries, gen4.fallbacks),
        (3, 2, 3, 1)
    );

    // A call dropped while its request is at the gateway counts that attempt, and a
    // request that ended `cancelled`, as its audit entry does.
    drop_mid_flight(&router, &sim, "four").await;
    let get = read(&metrics);
    let gen4 = [("model", "model-gen-4")];
    assert_eq!(get(ATTEMPTS_TOTAL, &gen4), 1.0 + 3.0 + 2.0 + 1.0);
    assert_eq!(
        get(
            REQUESTS_TOTAL,
            &[("model", "model-gen-4"), ("outcome", "cancelled")]
        ),
        1.0
    );
}

/// The refresh failure series and every fallback series of the route's chain are born at
/// zero, so an alert's `increase()` over them sees the process's first.
fn series_start_at_zero(metrics: &gateway_telemetry::MetricsHandle) {
    let text = metrics.render();
    let zero = r#"genesys_router_token_refreshes_total{result="failure"} 0"#;
    assert!(text.contains(zero), "{text}");
    let samples = gateway_telemetry::exposition::parse(&text).unwrap();
    for reason in [
        "client_error",
        "rate_limited",
        "upstream_error",
        "policy_violation",
        "timeout",
        "circuit_open",
    ] {
        let labels = [
            ("from", "model-gen-4"),
            ("to", "model-fallback-3"),
            ("reason", reason),
        ];
        let series = gateway_telemetry::exposition::series(FALLBACKS_TOTAL, &labels);
        assert_eq!(samples.get(&series), Some(&0.0), "{reason}: {text}");
    }
    assert!(!text.contains(r#"reason="success""#), "{text}");
}

/// Routes `prompt` on route `s` while `model-gen-4` stalls, and drops the call once its
/// request is at the simulator.
async fn drop_mid_flight(
    router: &gateway_router::Router,
    sim: &gateway_sim::SimHandle,
    prompt: &str,
) {
    sim.script(Target::model("model-gen-4"), [Scripted::Stall]);
    let sent = sim.prompt_requests().len();
    let mut call = Box::pin(router.route(RouteRequest::new("s", prompt)));
    tokio::select! {
        _ = &mut call => panic!("a stalled call cannot end"),
        () = async {
            while sim.prompt_requests().len() == sent {
                tokio::task::yield_now().await;
            }
        } => {}
    }
    drop(call);
}

fn read(metrics: &gateway_telemetry::MetricsHandle) -> impl Fn(&str, &[(&str, &str)]) -> f64 {
    gateway_tests::read_metrics(metrics)
}
