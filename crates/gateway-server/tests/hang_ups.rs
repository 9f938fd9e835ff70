//! A caller that hangs up before its answer is counted and logged as nginx does, status
//! 499. This binary installs the global Prometheus recorder (one per process), so it
//! holds this one test only.

use std::time::Duration;

use gateway_model::EnvironmentConfig;
use gateway_server::{Sidecar, SidecarOptions};
use gateway_sim::{Scripted, Sim, Target};
use tokio::io::AsyncWriteExt as _;

mod support;

use support::Captured;

const HUNG_UP: &str =
    r#"genesys_router_http_requests_total{path="/v1/chat/completions",status="499"}"#;

// One thread: the sidecar's tasks log through this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_caller_that_hangs_up_before_the_answer_is_counted_and_logged_as_499() {
    let (captured, _default) = Captured::access_log();
    let metrics = gateway_telemetry::install().unwrap();

    let sim = Sim::builder().start().await.unwrap();
    // The gateway never answers: only the hang-up can end the request.
    sim.script(Target::model("model-gen-4"), [Scripted::Stall]);
    let router = support::router(support::one_route(EnvironmentConfig::at(sim.base_url()))).await;
    let options = SidecarOptions {
        drain: Duration::ZERO,
        ..SidecarOptions::default()
    };
    let sidecar = Sidecar::start_with(
        router,
        Some(metrics.clone()),
        "127.0.0.1:0".parse().unwrap(),
        options,
    )
    .await
    .unwrap();

    let body = r#"{"model":"summarize","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut caller = tokio::net::TcpStream::connect(sidecar.addr())
        .await
        .unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\nx-request-id: caller-7\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        sidecar.addr(),
        body.len()
    );
    caller.write_all(head.as_bytes()).await.unwrap();
    // Hang up once the call is at the gateway, then wait (bounded) for the service to
    // notice: the series appears when it does.
    until(
        || sim.counters().prompts_in_flight == 1,
        "the call reached the gateway",
    )
    .await;
    drop(caller);
    until(
        || metrics.render().contains(HUNG_UP),
        "the hang-up was counted",
    )
    .await;
    sidecar.shutdown().await.unwrap();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    for part in [
        "method=POST",
        "path=/v1/chat/completions",
        "status=499",
        "request_id=\"caller-7\"",
        "latency_ms=",
    ] {
        assert!(lines[0].contains(part), "{part} missing from {log}");
    }
}

/// Waits (at most 20 s) until `done` holds.
async fn until(done: impl Fn() -> bool, what: &str) {
    let started = tokio::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "never: {what}");
        tokio::task::yield_now().await;
    }
}
