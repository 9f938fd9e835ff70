//! The sidecar in-process: concurrent clients, typed 4xx naming the field, health,
//! readiness and metrics endpoints.

use std::time::Duration;

use bytes::Bytes;
use gateway_auth::Credentials;
use gateway_model::{EnvironmentConfig, Outcome, RouteConfig, RouteOutcome, RouterConfig};
use gateway_router::Router;
use gateway_server::{Sidecar, SidecarOptions};
use gateway_sim::{
    Behaviour, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Latency, Scripted, Sim, SimHandle, Target,
};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use support::{client, one_route, router, router_as, send};

mod support;

/// `router` served on a free loopback port with the default options.
async fn serve(router: Router) -> Sidecar {
    Sidecar::start(
        router,
        None,
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

/// A router whose `summarize` route falls back to `model-fallback-3`, served with
/// metrics on a free loopback port.
async fn sidecar(sim: &SimHandle) -> Sidecar {
    let config = one_route(EnvironmentConfig::at(sim.base_url())).with_route(
        "summarize",
        RouteConfig {
            fallbacks: vec!["model-fallback-3".into()],
            ..RouteConfig::to_model("model-gen-4")
        },
    );
    let router = router(config).await;
    let metrics = gateway_telemetry::LocalMetrics::new();
    Sidecar::start(
        router,
        Some(metrics.handle().clone()),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_answers_concurrent_clients() {
    let sim = Sim::builder()
        .behaviour(Behaviour {
            latency: Latency::Fixed { ms: 20.0 },
            ..Behaviour::default()
        })
        .start()
        .await
        .unwrap();
    let sidecar = sidecar(&sim).await;
    let url = format!("http://{}/v1/route", sidecar.addr());
    let client = client();

    let calls: Vec<_> = (0..64)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let body = json!({"route": "summarize", "prompt": format!("call {i}"), "stickyKey": format!("c-{i}")}).to_string();
                send(&client, Method::POST, url, &body).await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for call in calls {
        let (status, _, body) = call.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let outcome: RouteOutcome = serde_json::from_slice(&body).unwrap();
        assert_eq!(outcome.served_model.as_str(), "model-gen-4");
        ids.insert(outcome.correlation_id);
    }
    assert_eq!(ids.len(), 64);
    assert!(
        sim.counters().max_prompts_in_flight > 1,
        "the calls ran concurrently"
    );
    sidecar.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_input_gets_a_typed_4xx_naming_the_field() {
    let sim = Sim::builder().start().await.unwrap();
    let sidecar = sidecar(&sim).await;
    let url = format!("http://{}/v1/route", sidecar.addr());
    let client = client();

    let cases = [
        (r#"{"route": 5, "prompt": "hi"}"#, "/route"),
        (
            r#"{"route": "summarize", "prompt": "hi", "tuning": "medium"}"#,
            "/tuning",
        ),
        (r#"{"route": "summarize", "prompt": ""}"#, "/prompt"),
        (r#"{"route": "summarize"}"#, "/prompt"),
        (
            r#"{"route": "summarize", "prompt": "hi", "colour": "red"}"#,
            "/colour",
        ),
        (r#"{"route": "summarize""#, ""),
        (
            r#"{"route": "summarize", "prompt": "hi", "metadata": {"t": "1", "t": "2"}}"#,
            "/metadata",
        ),
    ];
    for (body, field) in cases {
        let (status, _, answer) = send(&client, Method::POST, url.clone(), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let error: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(error["code"], "router.invalid.request");
        assert_eq!(error["status"], 400);
        assert_eq!(error["details"][0]["fieldName"], field, "{body}: {error}");
    }
    let (_, _, answer) = send(
        &client,
        Method::POST,
        url.clone(),
        r#"{"route": "summarize", "prompt": "hi", "colour": "red"}"#,
    )
    .await;
    assert!(
        String::from_utf8_lossy(&answer).contains("colour"),
        "the unknown field is named"
    );

    // Many small mistakes: the answer lists the first of them and counts the rest, so
    // it stays far smaller than the request.
    let labels = |n: usize| {
        let labels: Vec<String> = (0..n)
            .map(|i| format!(r#""!{i}":"a value of forty characters, more or less""#))
            .collect();
        format!(
            r#"{{"route": "summarize", "prompt": "hi", "metadata": {{{}}}}}"#,
            labels.join(",")
        )
    };
    let body = labels(gateway_model::MAX_METADATA_READ);
    let (status, _, answer) = send(&client, Method::POST, url.clone(), &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer.len() < body.len() / 4, "{} bytes", answer.len());
    let error: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(error["details"][0]["fieldName"], "/metadata");
    assert_eq!(
        error["details"].as_array().unwrap().len(),
        gateway_model::MAX_VIOLATIONS
    );
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("invalid request: 1025 validation errors"),
        "{message}"
    );
    assert!(message.contains("\n  … and 961 more"), "{message}");
    // Past the labels read from one object, the body is refused as it is read.
    let body = labels(5_000);
    let (status, _, answer) = send(&client, Method::POST, url.clone(), &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("more than 1024 labels"), "{answer}");

    let (status, _, answer) = send(
        &client,
        Method::POST,
        url.clone(),
        r#"{"route": "nope", "prompt": "hi"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unknown: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(unknown["code"], "router.unknown.route");
    // No call was made, so there is no correlation id to give (not an empty one).
    assert!(unknown.get("contextId").is_none(), "{unknown}");
    assert_eq!(
        sim.counters().prompt_requests,
        0,
        "nothing bad reached the gateway"
    );
    sidecar.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_route_whose_every_model_is_restricted_answers_403_not_a_502_to_retry() {
    let restricted = Behaviour {
        restricted: true,
        ..Behaviour::default()
    };
    let sim = Sim::builder()
        .model_behaviour("model-gen-4", restricted.clone())
        .model_behaviour("model-fallback-3", restricted)
        .start()
        .await
        .unwrap();
    let sidecar = sidecar(&sim).await;
    let client = client();
    let (status, _, answer) = send(
        &client,
        Method::POST,
        format!("http://{}/v1/route", sidecar.addr()),
        r#"{"route": "summarize", "prompt": "hi"}"#,
    )
    .await;
    let error: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    assert_eq!(error["status"], 403);
    assert_eq!(error["code"], "router.all.models.failed");
    assert_eq!(error["modelsTried"].as_array().map(Vec::len), Some(2));
    assert_eq!(sim.counters().prompt_requests, 2, "both models were tried");
    sidecar.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let sim = Sim::builder().start().await.unwrap();
    let sidecar = sidecar(&sim).await;
    let base = format!("http://{}", sidecar.addr());
    let client = client();

    assert_eq!(
        send(&client, Method::GET, format!("{base}/healthz"), "")
            .await
            .0,
        StatusCode::OK
    );
    let (status, _, body) = send(&client, Method::GET, format!("{base}/readyz"), "").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    // Without `validate_models` nothing checked the models: the answer says so.
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["models"], "not checked (validate_models is off)",
        "{body}"
    );
    assert_eq!(
        send(&client, Method::GET, format!("{base}/metrics"), "")
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send(&client, Method::DELETE, format!("{base}/v1/route"), "")
            .await
            .0,
        StatusCode::METHOD_NOT_ALLOWED
    );

    sidecar.shutdown().await.unwrap();

    // With credentials the login service refuses, the sidecar runs but is not ready.
    let sidecar = serve(
        router_as(
            one_route(EnvironmentConfig::at(sim.base_url())),
            Credentials::new("someone", "wrong"),
        )
        .await,
    )
    .await;
    let base = format!("http://{}", sidecar.addr());
    assert_eq!(
        send(&client, Method::GET, format!("{base}/healthz"), "")
            .await
            .0,
        StatusCode::OK
    );
    let (status, _, body) = send(&client, Method::GET, format!("{base}/readyz"), "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["token"]
            .as_str()
            .unwrap()
            .contains("`someone` was rejected"),
        "{body}"
    );
    sidecar.shutdown().await.unwrap();
}

/// A bind that fails names the setting it came from: the service's address or
/// `[metrics] listen`.
#[tokio::test]
async fn a_busy_metrics_address_is_named_as_metrics_listen() {
    let sim = Sim::builder().start().await.unwrap();
    let busy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = busy.local_addr().unwrap();
    let router = router_as(
        one_route(EnvironmentConfig::at(sim.base_url())),
        Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
    )
    .await;
    let options = SidecarOptions {
        metrics_listen: Some(at),
        ..SidecarOptions::default()
    };
    let err = Sidecar::start_with(router, None, "127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("cannot listen on {at} ([metrics] listen)")),
        "{err}"
    );
}

/// A login host that accepts connections and never answers does not hang `/readyz`: it
/// answers 503 once its wait for a token is over.
#[tokio::test]
async fn readiness_does_not_hang_on_a_silent_login_host() {
    let sim = Sim::builder().start().await.unwrap();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let login = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let environment = EnvironmentConfig {
        login_base: Some(login),
        ..EnvironmentConfig::at(sim.base_url())
    };
    let sidecar = serve(
        router_as(
            one_route(environment),
            Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        )
        .await,
    )
    .await;
    let client = client();
    let probe = send(
        &client,
        Method::GET,
        format!("http://{}/readyz", sidecar.addr()),
        "",
    );
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(8), probe)
        .await
        .expect("/readyz answers within its own wait, not the login timeout");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["token"].as_str().unwrap().contains("no token within"),
        "{body}"
    );
    sidecar.shutdown().await.unwrap();
    held.abort();
}

/// Sends a request head to `path` at `addr` announcing a body of `len` bytes with
/// `Expect: 100-continue`, and no body; the answer, read until the server closes.
async fn announce_only(addr: std::net::SocketAddr, path: &str, len: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {len}\r\nexpect: 100-continue\r\n\r\n"
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer))
        .await
        .expect("answered and closed without the body")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_whose_callers_hung_up_still_count_against_max_calls() {
    let sim = Sim::builder().start().await.unwrap();
    // The first call stalls at the gateway until its attempt times out.
    sim.script(Target::model("model-gen-4"), [Scripted::Stall]);
    let mut config = RouterConfig::new(EnvironmentConfig::at(sim.base_url()))
        .with_route("summarize", RouteConfig::to_model("model-gen-4"));
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    config.audit.file.clone_from(&audit);
    config.retry.max_attempts = 1;
    // Long enough for every refusal below to come while the call is stalled, two
    // 16 MiB bodies included, on a loaded machine running a debug build.
    config.limits.attempt_timeout_ms = 5_000;
    let router = Router::builder(config)
        .credentials(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
        .build()
        .await
        .unwrap();
    // A body cap larger than loopback's socket buffers, so that a refused body within
    // it is still arriving when the answer is ready.
    let options = SidecarOptions {
        max_calls: 1,
        body_max_bytes: 32 << 20,
        ..SidecarOptions::default()
    };
    let sidecar = Sidecar::start_with(router, None, "127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let url = format!("http://{}/v1/route", sidecar.addr());
    let body = r#"{"route": "summarize", "prompt": "hi"}"#;

    // A caller sends, and hangs up once its call is at the gateway.
    let hung_up = {
        let client = client();
        let url = url.clone();
        tokio::spawn(async move { send(&client, Method::POST, url, body).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sim.prompt_requests().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        sim.prompt_requests().len(),
        1,
        "the first call reached the simulator"
    );
    hung_up.abort();

    // Its call runs on and holds the one slot: the next caller is refused at once.
    let client = client();
    let (status, _, answer) = send(&client, Method::POST, url.clone(), body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let error: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(error["code"], "router.overloaded", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("the limit of 1 calls in flight, set by `server.max_calls`, is reached"),
        "the refusal names the setting: {message}"
    );
    // The slot is taken before the body is read: a body over the cap, announced and
    // not sent (`Expect: 100-continue`), is refused for the slot, not for its size.
    let answer = announce_only(sidecar.addr(), "/v1/route", 64 << 20).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains(r#""code":"router.overloaded""#), "{answer}");
    // A body within the cap that is not JSON is refused for the slot too (not a 400),
    // in both doors; its bytes are dropped as they come, so the answer is read.
    let junk = "x".repeat(16 << 20);
    let (status, _, answer) = send(&client, Method::POST, url.clone(), &junk).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let error: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(error["code"], "router.overloaded", "{error}");
    let openai = format!("http://{}/v1/chat/completions", sidecar.addr());
    let (status, _, answer) = send(&client, Method::POST, openai, &junk).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let error: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(error["error"]["code"], "overloaded", "{error}");
    assert_eq!(
        sim.prompt_requests().len(),
        1,
        "the refused call never left"
    );

    // Once the stalled call ends (its attempt times out), the slot is free again.
    let mut answered = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let (status, _, _) = send(&client, Method::POST, url.clone(), body).await;
        if status == StatusCode::OK {
            answered = true;
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered, "the slot came back when the call ended");
    sidecar.shutdown().await.unwrap();

    // A refused request is not read, so it is not a call: only the two calls that were
    // leave entries.
    let entries = gateway_audit::read_jsonl(&audit).unwrap().entries;
    let outcomes: Vec<_> = entries.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Timeout, Outcome::Success],
        "{entries:#?}"
    );
}

#[tokio::test]
async fn without_api_keys_a_web_pages_request_is_refused_at_every_door() {
    let sim = Sim::builder().start().await.unwrap();
    let sidecar = sidecar(&sim).await;
    let client = client();
    let base = format!("http://{}", sidecar.addr());
    // What a page's "simple" cross-origin POST looks like: text/plain, no preflight.
    let from_a_page = |path: &str, body: &str| {
        Request::post(format!("{base}{path}"))
            .header("origin", "https://evil.example")
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap()
    };
    for (path, body, code) in [
        (
            "/v1/route",
            r#"{"route":"summarize","prompt":"hi"}"#,
            "router.cross.origin",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"summarize","messages":[{"role":"user","content":"hi"}]}"#,
            "cross_origin_request",
        ),
        (
            "/v1/responses",
            r#"{"model":"summarize","input":"hi"}"#,
            "cross_origin_request",
        ),
    ] {
        let response = client.request(from_a_page(path, body)).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        let answer: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        let got = answer["code"].as_str().or(answer["error"]["code"].as_str());
        assert_eq!(got, Some(code), "{path}: {answer}");
    }
    assert!(
        sim.prompt_requests().is_empty(),
        "no page's call reached the gateway"
    );
    // The same request without `Origin`, as curl and the SDKs send it, is served.
    let (status, _, _) = send(
        &client,
        Method::POST,
        format!("{base}/v1/route"),
        r#"{"route":"summarize","prompt":"hi"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    sidecar.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_call_that_finds_every_circuit_open_is_answered_503_with_when_to_come_back() {
    let sim = Sim::builder().start().await.unwrap();
    let slow_down = Scripted::TooManyRequests {
        // Past `max_retry_after_s` (180 s): the call fails at once instead of waiting.
        retry_after: gateway_sim::RetryAfter::Seconds(200),
    };
    sim.script(Target::model("model-gen-4"), [slow_down.clone()]);
    sim.script(Target::model("model-fallback-3"), [slow_down]);
    let sidecar = sidecar(&sim).await;
    let client = client();
    let url = format!("http://{}/v1/route", sidecar.addr());
    let body = r#"{"route": "summarize", "prompt": "hi"}"#;

    let (status, headers, answer) = send(&client, Method::POST, url.clone(), body).await;
    let error: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{error}");
    let sent = sim.counters().prompt_requests;

    // Both 429s opened their model's circuit (for at most `max_retry_after_s`, 180 s):
    // nothing is sent, and the caller is told the service is unavailable for now (not that
    // the gateway answered badly), and when the first circuit lets a call through.
    let (status, headers_then, answer) = send(&client, Method::POST, url, body).await;
    let error: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(error["code"], "router.all.models.failed");
    assert_eq!(sim.counters().prompt_requests, sent, "nothing was sent");
    let after = |h: &http::HeaderMap| {
        h.get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    };
    let told = after(&headers_then).expect("a Retry-After");
    assert!((170..=180).contains(&told), "Retry-After: {told}");
    assert_eq!(
        after(&headers),
        Some(200),
        "the 429 passes the gateway's on"
    );
    sidecar.shutdown().await.unwrap();
}
