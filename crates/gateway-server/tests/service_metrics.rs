//! Service metrics after routed calls. This binary installs the global Prometheus
//! recorder (one per process), so it holds this one test only.

use bytes::Bytes;
use gateway_model::EnvironmentConfig;
use gateway_server::{Sidecar, SidecarOptions};
use gateway_sim::Sim;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};

mod support;

#[tokio::test]
async fn token_and_request_counters_follow_routed_calls() {
    let metrics = gateway_telemetry::install().unwrap();
    let sim = Sim::builder().start().await.unwrap();
    let router = support::router(support::one_route(EnvironmentConfig::at(sim.base_url()))).await;
    let sidecar = Sidecar::start_with(
        router,
        Some(metrics.clone()),
        "127.0.0.1:0".parse().unwrap(),
        SidecarOptions::default(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", sidecar.addr());
    let client = support::client();
    let mut prompt_tokens = 0;
    let mut completion_tokens = 0;
    for _ in 0..3 {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{base}/v1/route"))
            .body(Full::new(Bytes::from_static(
                br#"{"route":"summarize","prompt":"hello"}"#,
            )))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let outcome: gateway_model::RouteOutcome = serde_json::from_slice(&body).unwrap();
        let usage = outcome.response.usage.expect("the simulator reports usage");
        prompt_tokens += usage.prompt_tokens;
        completion_tokens += usage.completion_tokens;
    }
    let text = metrics.render();
    let line = |series: &str| {
        text.lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(
        line(r#"genesys_router_tokens_total{model="model-gen-4",kind="prompt"}"#),
        f64::from(prompt_tokens)
    );
    assert_eq!(
        line(r#"genesys_router_tokens_total{model="model-gen-4",kind="completion"}"#),
        f64::from(completion_tokens)
    );
    assert_eq!(
        line(r#"genesys_router_http_requests_total{path="/v1/route",status="200"}"#),
        3.0
    );
    assert_eq!(line("genesys_router_build_info{"), 1.0);
    sidecar.shutdown().await.unwrap();
}
