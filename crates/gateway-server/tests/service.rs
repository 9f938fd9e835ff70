//! The HTTP service's conventions over real sockets: the OpenAPI document matches the
//! paths served, API keys, request ids, `Allow`, `Retry-After`, service metrics.

use gateway_auth::Credentials;
use gateway_model::EnvironmentConfig;
use gateway_server::{ApiKeys, Sidecar, SidecarOptions};
use gateway_sim::{DEFAULT_CLIENT_ID, Sim, SimHandle};
use http::{Method, StatusCode};
use support::{Captured, client, one_route, router, router_as, send_with};

mod support;

async fn start(
    sim: &SimHandle,
    options: SidecarOptions,
) -> (Sidecar, gateway_telemetry::LocalMetrics) {
    let metrics = gateway_telemetry::LocalMetrics::new();
    let sidecar = Sidecar::start_with(
        router(one_route(EnvironmentConfig::at(sim.base_url()))).await,
        Some(metrics.handle().clone()),
        "127.0.0.1:0".parse().unwrap(),
        options,
    )
    .await
    .unwrap();
    (sidecar, metrics)
}

const ROUTE_BODY: &str = r#"{"route":"summarize","prompt":"hello"}"#;
const CHAT_BODY: &str = r#"{"model":"summarize","messages":[{"role":"user","content":"hello"}]}"#;
const RESPONSES_BODY: &str = r#"{"model":"summarize","input":"hi"}"#;

#[tokio::test]
async fn every_documented_path_is_served_and_nothing_else() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/openapi.json"
    ))
    .unwrap();
    let spec =
        oas3::from_json(&committed).expect("an OpenAPI 3.1 document an independent parser reads");
    let sim = Sim::builder().start().await.unwrap();
    let (sidecar, _metrics) = start(&sim, SidecarOptions::default()).await;
    let base = format!("http://{}", sidecar.addr());
    let client = client();

    let operations: Vec<_> = spec.operations().collect();
    assert!(operations.len() >= 8, "{operations:?}");
    for (path, method, _) in &operations {
        let body = match (method, path.as_str()) {
            (&Method::POST, "/v1/chat/completions") => CHAT_BODY,
            (&Method::POST, "/v1/responses") => RESPONSES_BODY,
            (&Method::POST, _) => ROUTE_BODY,
            _ => "",
        };
        let url = format!("{base}{}", path.replace("{model}", "summarize"));
        let (status, _, answer) = send_with(&client, method.clone(), url, &[], body).await;
        assert!(
            status.is_success(),
            "{method} {path} is documented but answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    // Another method is a 405 with `Allow`, which every operation documents.
    for (path, method, operation) in &operations {
        let other = if *method == Method::GET {
            Method::DELETE
        } else {
            Method::GET
        };
        let url = format!("{base}{}", path.replace("{model}", "summarize"));
        let (status, headers, _) = send_with(&client, other.clone(), url, &[], "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{other} {path}");
        assert!(headers.contains_key("allow"), "{other} {path}");
        let documented = operation
            .responses
            .as_ref()
            .is_some_and(|responses| responses.contains_key("405"));
        assert!(documented, "{method} {path} does not document its 405");
    }
    // The document the service serves is the committed one.
    let (_, _, served) = send_with(
        &client,
        Method::GET,
        format!("{base}/openapi.json"),
        &[],
        "",
    )
    .await;
    assert_eq!(served, committed.as_bytes());
    // A path it does not list is not served.
    let (status, _, _) = send_with(
        &client,
        Method::GET,
        format!("{base}/v1/undocumented"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    sidecar.shutdown().await.unwrap();
}

#[tokio::test]
async fn api_keys_guard_routing_but_not_health() {
    let sim = Sim::builder().start().await.unwrap();
    let options = SidecarOptions {
        api_keys: ApiKeys::parse("k-right"),
        metrics_open: false,
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..SidecarOptions::default()
    };
    let (sidecar, _metrics) = start(&sim, options).await;
    let base = format!("http://{}", sidecar.addr());
    let client = client();
    let route = format!("{base}/v1/route");

    let (status, headers, body) =
        send_with(&client, Method::POST, route.clone(), &[], ROUTE_BODY).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["code"], "router.unauthenticated");

    let (status, headers, _) = send_with(
        &client,
        Method::POST,
        route.clone(),
        &[("authorization", "Bearer k-wrong")],
        ROUTE_BODY,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(
        sim.counters().prompt_requests,
        0,
        "nothing reached the gateway without a key"
    );

    // The scheme's name is case-insensitive; the key is not.
    for (header, expected) in [
        ("Bearer k-right", StatusCode::OK),
        ("bearer k-right", StatusCode::OK),
        ("BEARER k-right", StatusCode::OK),
        ("Bearer K-RIGHT", StatusCode::UNAUTHORIZED),
        ("Basic k-right", StatusCode::UNAUTHORIZED),
        ("Bearer", StatusCode::UNAUTHORIZED),
    ] {
        let (status, _, _) = send_with(
            &client,
            Method::POST,
            route.clone(),
            &[("authorization", header)],
            ROUTE_BODY,
        )
        .await;
        assert_eq!(status, expected, "{header}");
    }

    // Two keys, even a right one beside a wrong one, are a malformed request (RFC 6750).
    for pair in [
        ["Bearer k-right", "Bearer k-wrong"],
        ["Bearer k-wrong", "Bearer k-right"],
    ] {
        let two = [("authorization", pair[0]), ("authorization", pair[1])];
        let (status, headers, body) =
            send_with(&client, Method::POST, route.clone(), &two, ROUTE_BODY).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{pair:?}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "router.invalid.request", "{body}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_request")
        );
    }

    for open in ["/healthz", "/readyz", "/openapi.json"] {
        let (status, _, _) =
            send_with(&client, Method::GET, format!("{base}{open}"), &[], "").await;
        assert_eq!(status, StatusCode::OK, "{open} stays open");
    }
    let (status, _, _) = send_with(&client, Method::GET, format!("{base}/metrics"), &[], "").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "metrics follow the switch"
    );
    // So do they on the metrics listener.
    let metrics_at = format!("http://{}/metrics", sidecar.metrics_addr().unwrap());
    let (status, _, _) = send_with(&client, Method::GET, metrics_at.clone(), &[], "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let key = [("authorization", "Bearer k-right")];
    let (status, _, _) = send_with(&client, Method::GET, metrics_at, &key, "").await;
    assert_eq!(status, StatusCode::OK);
    sidecar.shutdown().await.unwrap();
}

#[test]
fn a_non_loopback_address_without_keys_is_open_to_the_network() {
    let open = SidecarOptions::default();
    let keyed = SidecarOptions {
        api_keys: ApiKeys::parse("k"),
        ..SidecarOptions::default()
    };
    assert!(Sidecar::is_open_to_the_network(
        "0.0.0.0:8787".parse().unwrap(),
        &open
    ));
    assert!(Sidecar::is_open_to_the_network(
        "[::]:8787".parse().unwrap(),
        &open
    ));
    assert!(!Sidecar::is_open_to_the_network(
        "127.0.0.1:8787".parse().unwrap(),
        &open
    ));
    assert!(!Sidecar::is_open_to_the_network(
        "[::1]:8787".parse().unwrap(),
        &open
    ));
    assert!(!Sidecar::is_open_to_the_network(
        "0.0.0.0:8787".parse().unwrap(),
        &keyed
    ));
}

#[tokio::test]
async fn request_ids_allow_head_and_retry_after_follow_http_conventions() {
    let sim = Sim::builder().start().await.unwrap();
    let (sidecar, _metrics) = start(&sim, SidecarOptions::default()).await;
    let base = format!("http://{}", sidecar.addr());
    let client = client();

    // The caller's request id comes back; one is made up when absent, on every answer.
    let (_, headers, _) = send_with(
        &client,
        Method::POST,
        format!("{base}/v1/route"),
        &[("x-request-id", "caller-7")],
        ROUTE_BODY,
    )
    .await;
    assert_eq!(headers["x-request-id"], "caller-7");
    // One the audit trail could not keep is replaced by one made up, which it keeps.
    let long = "r".repeat(10_000);
    for unusable in [long.as_str(), "caller\t7"] {
        let (_, headers, _) = send_with(
            &client,
            Method::POST,
            format!("{base}/v1/route"),
            &[("x-request-id", unusable)],
            ROUTE_BODY,
        )
        .await;
        let echoed = headers["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(echoed).is_ok(), "{echoed}");
    }
    let (status, headers, _) =
        send_with(&client, Method::GET, format!("{base}/nowhere"), &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!headers["x-request-id"].is_empty());

    let (status, headers, body) =
        send_with(&client, Method::DELETE, format!("{base}/v1/route"), &[], "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["code"], "router.method.not.allowed");

    let (status, _, body) =
        send_with(&client, Method::HEAD, format!("{base}/healthz"), &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    sidecar.shutdown().await.unwrap();

    // Not ready (the login service refuses the client): 503 with Retry-After.
    let metrics = gateway_telemetry::LocalMetrics::new();
    let sidecar = Sidecar::start_with(
        router_as(
            one_route(EnvironmentConfig::at(sim.base_url())),
            Credentials::new(DEFAULT_CLIENT_ID, "wrong"),
        )
        .await,
        Some(metrics.handle().clone()),
        "127.0.0.1:0".parse().unwrap(),
        SidecarOptions::default(),
    )
    .await
    .unwrap();
    let (status, headers, _) = send_with(
        &client,
        Method::GET,
        format!("http://{}/readyz", sidecar.addr()),
        &[],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    sidecar.shutdown().await.unwrap();
}

/// Sends `head` (a request without a body) on a connection of its own, which the
/// service closes after answering; the answer's status line and body.
async fn raw(addr: std::net::SocketAddr, head: &str) -> (String, serde_json::Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the service closes the connection")
    .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    (status, serde_json::from_str(body).unwrap_or_default())
}

#[tokio::test]
async fn an_http_1_1_request_without_exactly_one_valid_host_is_refused() {
    let sim = Sim::builder().start().await.unwrap();
    let (sidecar, _metrics) = start(&sim, SidecarOptions::default()).await;
    let addr = sidecar.addr();
    let close = "connection: close\r\n";
    for hosts in [
        "",
        "host: a\r\nhost: b\r\n",
        "host: a b\r\n",
        "host: a/b\r\n",
    ] {
        let (status, body) = raw(
            addr,
            &format!("GET /healthz HTTP/1.1\r\n{hosts}{close}\r\n"),
        )
        .await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request", "{hosts:?}");
        assert_eq!(body["code"], "router.host.invalid", "{hosts:?}: {body}");
        assert_eq!(body["status"], 400, "{body}");
    }
    // The OpenAI door refuses it in OpenAI's error shape.
    let (status, body) = raw(addr, &format!("GET /v1/models HTTP/1.1\r\n{close}\r\n")).await;
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    assert_eq!(body["error"]["code"], "invalid_host", "{body}");
    // An empty Host (a target without an authority), a valid one and HTTP/1.0 pass.
    for request in [
        format!("GET /healthz HTTP/1.1\r\nhost:\r\n{close}\r\n"),
        format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n{close}\r\n"),
        "GET /healthz HTTP/1.0\r\n\r\n".to_owned(),
    ] {
        let (status, _) = raw(addr, &request).await;
        assert!(status.ends_with(" 200 OK"), "{request:?}: {status}");
    }
    sidecar.shutdown().await.unwrap();
}

// One thread: the sidecar's tasks log through this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn the_access_log_has_one_line_per_request_and_no_body() {
    let (captured, _default) = Captured::access_log();

    let sim = Sim::builder().start().await.unwrap();
    let (sidecar, _metrics) = start(&sim, SidecarOptions::default()).await;
    let base = format!("http://{}", sidecar.addr());
    let client = client();
    let secret_prompt = r#"{"route":"summarize","prompt":"card 4111 1111 1111 1111"}"#;
    let (status, _, _) = send_with(
        &client,
        Method::POST,
        format!("{base}/v1/route"),
        // A caller's id with spaces cannot pass for fields of the line.
        &[("x-request-id", "caller-9 status=500")],
        secret_prompt,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, _) =
        send_with(&client, Method::DELETE, format!("{base}/v1/route"), &[], "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let made_up = headers["x-request-id"].to_str().unwrap().to_owned();
    sidecar.shutdown().await.unwrap();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    for (line, expected) in lines.iter().zip([
        [
            "method=POST",
            "path=/v1/route",
            "status=200",
            "route=\"summarize\"",
            "model=\"model-gen-4\"",
            "request_id=\"caller-9 status=500\"",
        ],
        [
            "method=DELETE",
            "path=/v1/route",
            "status=405",
            "route=\"\"",
            "model=\"\"",
            &format!("request_id=\"{made_up}\""),
        ],
    ]) {
        for part in expected {
            assert!(line.contains(part), "{part} missing from {line}");
        }
        assert!(line.contains("latency_ms="), "{line}");
    }
    assert!(
        !log.contains("4111"),
        "a body reached the access log: {log}"
    );
}

/// Sends `head` (then `body`) on a connection of its own and reads the answer until the
/// server closes it; `Err` if the connection was reset first.
async fn exchange_raw(
    addr: std::net::SocketAddr,
    head: &str,
    body: &[u8],
) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(addr).await?;
    raw.write_all(head.as_bytes()).await?;
    raw.write_all(body).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        raw.read_to_end(&mut answer),
    )
    .await
    .expect("answered and closed in time")?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// A request the keys (or the `Host` rule) turn away has its body read and dropped
/// before it is answered,
/// so a client that sent a large prompt reads its 401 (or 403), not a reset from a
/// socket closed on unread data, which clients report as a connection error and retry;
/// a client waiting for `100 Continue` is not invited to send a body no one wants.
#[tokio::test]
async fn a_request_the_keys_turn_away_is_answered_not_reset() {
    let sim = Sim::builder().start().await.unwrap();
    // A body larger than loopback's socket buffers (within the cap), so that it is
    // still arriving when the refusal is ready.
    let options = SidecarOptions {
        api_keys: ApiKeys::parse("k-right"),
        body_max_bytes: 32 << 20,
        ..SidecarOptions::default()
    };
    let (sidecar, _metrics) = start(&sim, options).await;
    let addr = sidecar.addr();
    let body = vec![b' '; 16 << 20];
    for (path, auth) in [
        ("/v1/route", "Bearer k-wrong"),
        ("/v1/chat/completions", "Bearer k-wrong"),
        ("/v1/responses", "Bearer k-wrong"),
        ("/v1/route", "Basic k-right"),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: {auth}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let answer = exchange_raw(addr, &head, &body)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
    }
    let head = format!(
        "POST /v1/route HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer k-wrong\r\n\
         content-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let answer = exchange_raw(addr, &head, b"").await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    // So is one refused for want of a `Host`, before any path sees it.
    let head = format!(
        "POST /v1/route HTTP/1.1\r\nauthorization: Bearer k-right\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let answer = exchange_raw(addr, &head, &body).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("router.host.invalid"), "{answer}");
    assert_eq!(sim.counters().prompt_requests, 0);
    sidecar.shutdown().await.unwrap();
}
