//! `gateway-bench load` exits non-zero, naming the first error, when any call fails.

use std::process::Command;

use gateway_sim::{Behaviour, Sim};

/// Runs `gateway-bench load --scenario direct` with `extra` against a simulator whose
/// every prompt call answers 500; its exit status and stderr.
fn load_against_a_failing_gateway(extra: &[&str]) -> (std::process::ExitStatus, String) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime
        .block_on(Sim::builder().behaviour(Behaviour::failing(500)).start())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gateway-bench"))
        .args(["load", "--scenario", "direct", "--concurrency", "2"])
        .args(["--target", &sim.base_url()])
        .arg("--out-dir")
        .arg(dir.path())
        .args(extra)
        .output()
        .unwrap();
    drop(sim);
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_timed_load_whose_calls_fail_exits_non_zero_with_the_first_error() {
    let (status, stderr) =
        load_against_a_failing_gateway(&["--warmup-ms", "100", "--measure-ms", "200"]);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("calls failed") && stderr.contains("HTTP 500"),
        "{stderr}"
    );
}

#[test]
fn a_counted_load_whose_calls_fail_exits_non_zero_with_the_first_error() {
    let (status, stderr) = load_against_a_failing_gateway(&["--calls", "20"]);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("20 calls failed") && stderr.contains("HTTP 500"),
        "{stderr}"
    );
}
