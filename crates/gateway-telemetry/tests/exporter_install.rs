//! Installing the global Prometheus recorder: rendered in-process, and a second install
//! is a clear error. (Its own test binary: the global recorder can be set once per
//! process.)

use std::time::Duration;

use gateway_model::Outcome;
use gateway_telemetry::{ExporterError, ModelMetrics, install, recorder_installed, token_refresh};

#[test]
fn install_renders_metrics_and_refuses_a_second_install() {
    assert!(!recorder_installed());
    let handle = install().unwrap();
    assert!(recorder_installed());

    let model = ModelMetrics::new("model-gen-4");
    model.request(Outcome::Success, Duration::from_millis(40));
    model.attempt();
    token_refresh(true);
    handle.run_upkeep();
    let text = handle.render();
    for expected in [
        r#"genesys_router_requests_total{model="model-gen-4",outcome="success"} 1"#,
        r#"genesys_router_attempts_total{model="model-gen-4"} 1"#,
        r#"genesys_router_token_refreshes_total{result="success"} 1"#,
        "# TYPE genesys_router_request_duration_seconds histogram",
    ] {
        assert!(text.contains(expected), "{expected} in:\n{text}");
    }

    let again = install().unwrap_err();
    assert!(matches!(again, ExporterError::AlreadyInstalled), "{again}");
    assert!(again.to_string().contains("already installed"));
}
