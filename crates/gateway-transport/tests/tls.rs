//! Real TLS: the simulator serves https with a certificate signed by a CA made for this
//! test. Trusting that CA works (over HTTP/2, chosen by ALPN); not trusting it fails with
//! an error that says why.

use std::time::Duration;

use bytes::Bytes;
use gateway_model::GatewayPayload;
use gateway_model::ModelEntityListing;
use gateway_sim::{
    Behaviour, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Latency, Sim, SimHandle, TestPki,
};
use gateway_transport::{
    Call, ClientOptions, ErrorKind, STREAMS_PER_CONNECTION, StaticToken, Transport, TransportConfig,
};
use http::{Request, StatusCode, Version};
use http_body_util::Full;

const PROMPTS: &str = "/api/v2/ai/gateway/prompts";

/// A CA and a `localhost` certificate it signed: `(ca_pem, cert_pem, key_pem)`.
fn test_pki() -> (String, String, String) {
    let pki = TestPki::generate().unwrap();
    (pki.ca_pem, pki.cert_pem, pki.key_pem)
}

async fn token(transport: &Transport, base: &str) -> String {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}"));
    let request = Request::post(format!("{base}/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .body(Full::new(Bytes::from_static(
            b"grant_type=client_credentials",
        )))
        .unwrap();
    let answer = transport
        .client()
        .send(request, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    serde_json::from_slice::<serde_json::Value>(&answer.body).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn https_with_a_trusted_test_ca_succeeds_over_http2() {
    let (ca, cert, key) = test_pki();
    let sim = Sim::builder().tls(cert, key).start().await.unwrap();
    assert!(sim.base_url().starts_with("https://localhost:"));

    let mut config = TransportConfig::new(sim.base_url());
    config.client = ClientOptions {
        extra_ca_pem: Some(ca.into_bytes()),
        ..ClientOptions::default()
    };
    let bare = Transport::new(config.clone()).unwrap();
    let token = token(&bare, &sim.base_url()).await;
    let t = Transport::new(config)
        .unwrap()
        .with_token_source(StaticToken::new(&token).unwrap());

    let answer = t
        .execute(Call::get(t.url("/api/v2/ai/models").unwrap(), "tls-1"))
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.version, Version::HTTP_2, "ALPN negotiated HTTP/2");
    let listing: ModelEntityListing = answer.json().unwrap();
    assert_eq!(listing.total, 4);
}

#[tokio::test]
async fn https_with_an_untrusted_certificate_fails_with_a_clear_error() {
    let (_, cert, key) = test_pki();
    let sim = Sim::builder().tls(cert, key).start().await.unwrap();
    let mut config = TransportConfig::new(sim.base_url());
    config.retry.max_attempts = 1;
    let t = Transport::new(config).unwrap();

    let err = t
        .execute(Call::get(t.url("/api/v2/ai/models").unwrap(), "tls-2"))
        .await
        .unwrap_err();
    match err.kind() {
        ErrorKind::Tls { host, reason } => {
            assert_eq!(host, &format!("localhost:{}", sim.addr().port()));
            assert!(reason.contains("UnknownIssuer"), "{reason}");
            assert!(
                reason.contains("extra_ca_file"),
                "the error says how to fix it: {reason}"
            );
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    assert_eq!(
        sim.counters().prompt_requests + sim.counters().model_requests,
        0,
        "nothing reached the server"
    );
}

#[test]
fn a_bad_extra_ca_is_a_setup_error() {
    let config = ClientOptions {
        extra_ca_pem: Some(b"not a certificate".to_vec()),
        ..ClientOptions::default()
    };
    let err = gateway_transport::HttpClient::new(&config).unwrap_err();
    assert!(
        matches!(err, ErrorKind::Setup(ref m) if m.contains("no certificate")),
        "{err}"
    );
    let missing = ClientOptions::default()
        .extra_ca_file(std::path::Path::new("/nonexistent/ca.pem"))
        .unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/ca.pem"),
        "{missing}"
    );
    // A device that never ends is refused without reading it.
    let endless = ClientOptions::default()
        .extra_ca_file(std::path::Path::new("/dev/zero"))
        .unwrap_err();
    assert!(
        endless.to_string().contains("not a regular file"),
        "{endless}"
    );
}

/// A TLS simulator behaving as `behaviour` says, and a transport with `client` options
/// that trusts it and holds a token from it.
async fn tls_pair(behaviour: Behaviour, client: ClientOptions) -> (SimHandle, Transport) {
    let (ca, cert, key) = test_pki();
    let sim = Sim::builder()
        .tls(cert, key)
        .behaviour(behaviour)
        .start()
        .await
        .unwrap();
    let mut config = TransportConfig::new(sim.base_url());
    config.client = ClientOptions {
        extra_ca_pem: Some(ca.into_bytes()),
        ..client
    };
    config.max_concurrency = 1_000;
    let bare = Transport::new(config.clone()).unwrap();
    let token = token(&bare, &sim.base_url()).await;
    let t = Transport::new(config)
        .unwrap()
        .with_token_source(StaticToken::new(&token).unwrap());
    (sim, t)
}

/// One call, then `count` calls at once (`make` builds the i-th); the versions the
/// answers came over, and the connections the simulator accepted for the `count` calls.
/// (Until the first handshake says which version the gateway speaks, every call waiting
/// opens a connection, so the first call goes alone.)
async fn burst(
    sim: &SimHandle,
    t: &Transport,
    count: usize,
    make: impl Fn(&Transport, usize) -> Call,
) -> (Vec<Version>, u64) {
    t.execute(make(t, count)).await.unwrap();
    let before = sim.counters().connections;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..count {
        let (t, call) = (t.clone(), make(t, i));
        calls.spawn(async move { t.execute(call).await });
    }
    let mut versions = Vec::new();
    while let Some(answer) = calls.join_next().await {
        versions.push(answer.unwrap().unwrap().version);
    }
    (versions, sim.counters().connections - before)
}

/// `count` catalogue reads at once, as [`burst`] says.
async fn concurrent_calls(client: ClientOptions, count: usize) -> (Vec<Version>, u64) {
    let (sim, t) = tls_pair(Behaviour::default(), client).await;
    burst(&sim, &t, count, |t, i| {
        Call::get(t.url("/api/v2/ai/models").unwrap(), format!("tls-many-{i}"))
    })
    .await
}

#[tokio::test]
async fn http2_multiplexes_calls_on_one_connection_and_http1_only_offers_only_http1() {
    let (versions, connections) = concurrent_calls(ClientOptions::default(), 20).await;
    assert!(
        versions.iter().all(|v| *v == Version::HTTP_2),
        "{versions:?}"
    );
    assert_eq!(
        connections, 0,
        "20 calls at once share the one HTTP/2 connection"
    );

    let http1 = ClientOptions {
        http1_only: true,
        ..ClientOptions::default()
    };
    let (versions, connections) = concurrent_calls(http1, 20).await;
    assert!(
        versions.iter().all(|v| *v == Version::HTTP_11),
        "{versions:?}"
    );
    assert!(
        connections > 0,
        "HTTP/1.1 calls at once need more connections"
    );
}

#[tokio::test]
async fn calls_past_one_connections_streams_open_one_more_http2_connection() {
    const CALLS: usize = STREAMS_PER_CONNECTION + 50;
    // Every call must reach the simulator before the first is answered: 150 TLS calls
    // from one thread of a debug build, on a loaded machine, get three seconds.
    let slow = Behaviour {
        latency: Latency::Fixed { ms: 3_000.0 },
        ..Behaviour::default()
    };
    let prompt = |t: &Transport, i: usize| {
        let payload = GatewayPayload::builder("model-gen-4", "Summarize this transcript")
            .build()
            .unwrap();
        let body = Bytes::from(serde_json::to_vec(&payload).unwrap());
        Call::post(t.url(PROMPTS).unwrap(), body, format!("lane-{i}"))
    };
    for (lanes, opened) in [(1, 0), (2, 1)] {
        let client = ClientOptions {
            http2_connections: lanes,
            ..ClientOptions::default()
        };
        let (sim, t) = tls_pair(slow.clone(), client).await;
        let (versions, connections) = burst(&sim, &t, CALLS, prompt).await;
        assert!(
            versions.iter().all(|v| *v == Version::HTTP_2),
            "{versions:?}"
        );
        assert_eq!(
            sim.counters().max_prompts_in_flight,
            i64::try_from(CALLS).unwrap(),
            "every call was at the gateway at once"
        );
        assert_eq!(
            connections, opened,
            "{lanes} lane(s): {CALLS} calls at once open {opened} more connection(s), \
             the second lane's one connection opened by one call while the others wait"
        );
    }
}

/// A gateway that takes the connection but never answers the TLS handshake is given the
/// connect timeout, TCP and TLS together, not the attempt's (on tokio's paused clock).
#[tokio::test(start_paused = true)]
async fn a_stalled_tls_handshake_ends_at_the_connect_timeout() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let mut config = TransportConfig::new(&base);
    config.retry.max_attempts = 1;
    config.client.connect_timeout = Duration::from_millis(200);
    config.attempt_timeout = Duration::from_secs(20);
    config.deadline = Duration::from_secs(30);
    let t = Transport::new(config).unwrap();

    let started = tokio::time::Instant::now();
    let err = t
        .execute(Call::get(t.url("/api/v2/ai/models").unwrap(), "tls-stall"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    match err.kind() {
        ErrorKind::Connect { reason, .. } => {
            assert!(reason.contains("not made within"), "{reason}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    holder.abort();
}
