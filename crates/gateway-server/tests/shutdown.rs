//! The sidecar's shutdown bound and its other listeners, over real sockets.

use std::time::{Duration, Instant};

use gateway_model::{EnvironmentConfig, Outcome, RouterConfig};
use gateway_router::Router;
use gateway_server::sidecar::{ANSWER_GRACE, FLUSH_BOUND};
use gateway_server::{Sidecar, SidecarOptions};
use gateway_sim::{Behaviour, Latency, Sim, SimHandle};
use http::{Method, StatusCode};
use support::{client, one_route, send};

mod support;
use serde_json::Value;

async fn router(sim: &SimHandle, audit: Option<&std::path::Path>) -> Router {
    let mut config = one_route(EnvironmentConfig::at(sim.base_url()));
    if let Some(file) = audit {
        config.audit.enabled = true;
        config.audit.file = file.to_owned();
    }
    config.limits.deadline_ms = 60_000;
    config.limits.attempt_timeout_ms = 60_000;
    support::router(config).await
}

/// A simulator whose every answer takes `ms` milliseconds.
async fn answering_in(ms: u32) -> SimHandle {
    Sim::builder()
        .behaviour(Behaviour {
            latency: Latency::Fixed { ms: f64::from(ms) },
            ..Behaviour::default()
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_left_at_the_drain_deadline_are_cancelled_audited_and_answered_503() {
    // Regression: with a 1 s drain and a 3 s upstream, every call in flight was lost:
    // no answer and no audit entry.
    let sim = answering_in(3_000).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let drain = Duration::from_millis(300);
    let options = SidecarOptions {
        drain,
        ..SidecarOptions::default()
    };
    let sidecar = Sidecar::start_with(
        router(&sim, Some(&audit)).await,
        None,
        "127.0.0.1:0".parse().unwrap(),
        options,
    )
    .await
    .unwrap();
    let url = format!("http://{}/v1/route", sidecar.addr());
    let client = client();
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                send(
                    &client,
                    Method::POST,
                    url,
                    &format!(r#"{{"route":"summarize","prompt":"call {i}"}}"#),
                )
                .await
            })
        })
        .collect();
    // Every call is at the gateway before the shutdown starts.
    while sim.counters().prompts_in_flight < 20 {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    sidecar.shutdown().await.unwrap();
    let took = started.elapsed();
    assert!(
        took < drain + ANSWER_GRACE + FLUSH_BOUND,
        "shutdown took {took:?}"
    );
    assert!(took >= drain, "the drain timeout was given");

    for call in calls {
        let (status, headers, body) = call.await.unwrap();
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(headers["retry-after"], "1");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "router.cancelled");
    }
    let report = gateway_audit::read_jsonl(&audit).unwrap();
    assert_eq!(report.entries.len(), 20, "one entry per call");
    let drain_us = u64::try_from(drain.as_micros()).unwrap();
    for entry in &report.entries {
        assert_eq!(entry.outcome, Outcome::Cancelled);
        let reason = entry.reason.as_deref().unwrap_or_default();
        assert!(reason.contains("drain timeout"), "{reason}");
        // Each request reached the gateway: the entry says it was sent, and for how long
        // (at least the drain) it was out. It once said 0 attempts in 0 µs.
        assert_eq!(entry.attempts, 1, "{entry:?}");
        let tried = &entry.models_tried[0];
        assert_eq!(tried.attempts, 1, "{entry:?}");
        assert!(tried.latency_us >= drain_us, "{entry:?}");
        assert!(tried.latency_us <= entry.latency_us, "{entry:?}");
    }
}

/// A request whose body is still arriving when the shutdown starts, with no other call
/// running: its call starts only once the body is in, after the shutdown began, and its
/// client hangs up without waiting for the answer. The call still runs to its end and
/// is audited before the trail is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_body_arrives_during_the_shutdown_is_audited() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let sim = answering_in(300).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let sidecar = Sidecar::start_with(
        router(&sim, Some(&audit)).await,
        None,
        "127.0.0.1:0".parse().unwrap(),
        SidecarOptions::default(),
    )
    .await
    .unwrap();
    let addr = sidecar.addr();
    let body = r#"{"route":"summarize","prompt":"late body"}"#;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/route HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // `100 Continue` comes when the handler asks for the body: the request is in flight.
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).await.unwrap();
    assert!(interim.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));

    // The shutdown starts; once the listener is closed, no call was running.
    let _ = sidecar.shutdown_trigger().send(true);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        tokio::task::yield_now().await;
    }
    stream.write_all(body.as_bytes()).await.unwrap();
    while sim.counters().prompts_in_flight < 1 {
        tokio::task::yield_now().await;
    }
    drop(stream);

    sidecar.wait().await.unwrap();
    let report = gateway_audit::read_jsonl(&audit).unwrap();
    assert_eq!(report.entries.len(), 1, "the call is audited");
    assert_eq!(report.entries[0].outcome, Outcome::Success);
}

#[tokio::test]
async fn metrics_listen_serves_metrics_on_its_own_address_with_the_same_timeouts() {
    // Regression: `[metrics] listen` was accepted by check-config and ignored by serve.
    let sim = Sim::builder().start().await.unwrap();
    let mut config = RouterConfig::new(EnvironmentConfig::at(sim.base_url()));
    config.metrics.listen = Some("127.0.0.1:0".into());
    let options = SidecarOptions::from_config(&config).unwrap();
    assert!(options.metrics_listen.is_some());
    let metrics = gateway_telemetry::LocalMetrics::new();
    let sidecar = Sidecar::start_with(
        router(&sim, None).await,
        Some(metrics.handle().clone()),
        "127.0.0.1:0".parse().unwrap(),
        options,
    )
    .await
    .unwrap();
    let at = sidecar.metrics_addr().expect("a metrics listener");
    assert_ne!(at, sidecar.addr());
    let client = client();
    let (status, headers, _) = send(&client, Method::GET, format!("http://{at}/metrics"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    // Only metrics there: no routing on the metrics port.
    let (status, _, _) = send(&client, Method::POST, format!("http://{at}/v1/route"), "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    sidecar.shutdown().await.unwrap();
}

/// The metrics listener serves at most `MAX_METRICS_CONNECTIONS` at once, whatever
/// `max_connections` allows the routing port: it once had the same cap, so an open
/// metrics port could hold as many descriptors as the routing port was given room for.
#[tokio::test]
async fn the_metrics_listener_has_a_small_connection_cap_of_its_own() {
    use gateway_server::sidecar::MAX_METRICS_CONNECTIONS;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = Sim::builder().start().await.unwrap();
    let mut config = RouterConfig::new(EnvironmentConfig::at(sim.base_url()));
    config.metrics.listen = Some("127.0.0.1:0".into());
    let options = SidecarOptions::from_config(&config).unwrap();
    assert!(options.limits.max_connections > MAX_METRICS_CONNECTIONS);
    let sidecar = Sidecar::start_with(
        router(&sim, None).await,
        None,
        "127.0.0.1:0".parse().unwrap(),
        options,
    )
    .await
    .unwrap();
    let at = sidecar.metrics_addr().unwrap();
    let get = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..MAX_METRICS_CONNECTIONS {
        let mut stream = tokio::net::TcpStream::connect(at).await.unwrap();
        // An answer proves the connection holds a slot before the next one comes.
        stream.write_all(get).await.unwrap();
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).await.unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(
            head.starts_with("HTTP/1.1 ") && !head.starts_with("HTTP/1.1 503"),
            "{head}"
        );
        open.push(stream);
    }
    let mut extra = tokio::net::TcpStream::connect(at).await.unwrap();
    let mut refused = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), extra.read_to_end(&mut refused))
        .await
        .expect("answered at once")
        .unwrap();
    let refused = String::from_utf8_lossy(&refused);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    // The routing port is not touched by it.
    let (status, _, _) = send(
        &client(),
        Method::GET,
        format!("http://{}/healthz", sidecar.addr()),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    drop(open);
    sidecar.shutdown().await.unwrap();
}

#[tokio::test]
async fn only_a_json_object_is_a_route_request() {
    // Regression: `["summarize","hi"]` was routed (serde's sequence form of a struct).
    let sim = Sim::builder().start().await.unwrap();
    let sidecar = Sidecar::start(
        router(&sim, None).await,
        None,
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let url = format!("http://{}/v1/route", sidecar.addr());
    let client = client();
    for body in [
        r#"["summarize","hi"]"#,
        r#" ["summarize","hi",null,null,{}]"#,
        "\"summarize\"",
        "5",
        "null",
    ] {
        let (status, _, answer) = send(&client, Method::POST, url.clone(), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let error: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(error["code"], "router.invalid.request", "{body}");
        assert_eq!(error["details"][0]["fieldName"], "", "{body}: {error}");
    }
    assert_eq!(
        sim.counters().prompt_requests,
        0,
        "nothing reached the gateway"
    );
    sidecar.shutdown().await.unwrap();
}
