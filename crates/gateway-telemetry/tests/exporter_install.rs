//! Installing the global Prometheus exporter: served over HTTP on loopback, rendered
//! in-process, and a second install is a clear error. (Its own test binary: the global
//! recorder can be set once per process.)

use std::time::Duration;

use bytes::Bytes;
use gateway_model::{MetricsConfig, Outcome};
use gateway_telemetry::{ExporterError, ModelMetrics, install, install_at, token_refresh};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::test]
async fn install_serves_metrics_once_and_refuses_a_second_install() {
    let bad = MetricsConfig {
        listen: Some("localhost-ish".into()),
    };
    assert!(matches!(
        install(&bad),
        Err(ExporterError::BadListenAddress { .. })
    ));

    // A free loopback port for the listener.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let handle = install(&MetricsConfig {
        listen: Some(addr.to_string()),
    })
    .unwrap();
    assert_eq!(handle.listen_addr(), Some(addr));

    let model = ModelMetrics::new("model-gen-4");
    model.request(Outcome::Success, Duration::from_millis(40));
    model.attempt();
    token_refresh(true);
    let local = handle.render();
    assert!(
        local.contains(r#"genesys_router_requests_total{model="model-gen-4",outcome="success"} 1"#),
        "{local}"
    );

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{addr}/metrics").parse().unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .expect("the listener answers")
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains(r#"genesys_router_attempts_total{model="model-gen-4"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"genesys_router_token_refreshes_total{result="success"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("# TYPE genesys_router_request_duration_seconds histogram"),
        "{text}"
    );

    let again = install_at(None).unwrap_err();
    assert!(matches!(again, ExporterError::AlreadyInstalled), "{again}");
    assert!(again.to_string().contains("already installed"));
}
