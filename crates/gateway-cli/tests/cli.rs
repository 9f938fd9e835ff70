//! The real `genesys-router` binary as scripts and supervisors see it: log formats,
//! colour, exit codes, JSON errors, completions and the man page.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sim, SimHandle};

const BIN: &str = env!("CARGO_BIN_EXE_genesys-router");

/// A config file with one route, `summarize` on `model-gen-4`, against `sim`; one
/// attempt per model so failures come quickly; no audit trail.
fn sim_config(dir: &Path, sim: &SimHandle) -> PathBuf {
    let path = dir.join("router.toml");
    std::fs::write(
        &path,
        format!(
            "[environment]\napi_base = \"{}\"\n[routes.summarize]\nmodel = \"model-gen-4\"\n\
             [retry]\nmax_attempts = 1\n[audit]\nenabled = false\n",
            sim.base_url()
        ),
    )
    .unwrap();
    path
}

/// The binary with the simulator's credentials and none of the caller's log settings.
fn cli(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("GENESYS_CLIENT_ID", DEFAULT_CLIENT_ID)
        .env("GENESYS_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
        .env_remove("GENESYS_REGION")
        .env_remove("GENESYS_ROUTER_LOG")
        .env_remove("GENESYS_ROUTER_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    command
}

/// Runs `command` off the async runtime (the simulator lives on it).
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// `route --config <config> --route summarize --prompt ... <extra>`.
fn route(config: &Path, extra: &[&str]) -> Command {
    let mut command = cli(&[
        "route",
        "--route",
        "summarize",
        "--prompt",
        "Summarize this",
    ]);
    command.arg("--config").arg(config).args(extra);
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_json_object_per_stderr_line() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = sim_config(dir.path(), &sim);

    let output = run(route(&config, &["--log", "debug", "--log-format", "json"])).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stderr(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 1, "debug logs and the summary line: {text}");
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\nall of stderr:\n{text}"));
        assert!(
            value["level"].is_string() && value["fields"].is_object(),
            "{line}"
        );
    }
    // The summary line the text format prints is a JSON event too.
    assert!(text.contains("answered via route summarize"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_written_to_a_file_have_no_escape_codes() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = sim_config(dir.path(), &sim);
    let log = dir.path().join("stderr.log");

    let mut command = route(&config, &["--log", "debug"]);
    command.stderr(std::fs::File::create(&log).unwrap());
    let output = run(command).await;
    assert!(output.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("DEBUG"), "debug events were logged: {text}");
    assert!(!text.contains('\u{1b}'), "escape codes in a file:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_comes_from_the_flag_then_genesys_router_log_then_rust_log() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = sim_config(dir.path(), &sim);
    let debug_lines = |output: &Output| stderr(output).matches("DEBUG").count();

    // Default: warn, so a successful call logs nothing at debug.
    let quiet = run(route(&config, &[])).await;
    assert_eq!(debug_lines(&quiet), 0, "{}", stderr(&quiet));

    let mut rust_log = route(&config, &[]);
    rust_log.env("RUST_LOG", "debug");
    let rust_log = run(rust_log).await;
    assert!(debug_lines(&rust_log) > 0, "RUST_LOG is honoured");

    let mut ours = route(&config, &[]);
    ours.env("RUST_LOG", "debug")
        .env("GENESYS_ROUTER_LOG", "warn");
    let ours = run(ours).await;
    assert_eq!(
        debug_lines(&ours),
        0,
        "GENESYS_ROUTER_LOG wins over RUST_LOG: {}",
        stderr(&ours)
    );

    let mut flag = route(&config, &["--log", "debug"]);
    flag.env("GENESYS_ROUTER_LOG", "warn");
    let flag = run(flag).await;
    assert!(debug_lines(&flag) > 0, "--log wins over the env");
}

#[test]
fn an_invalid_filter_is_a_usage_error_with_the_reason() {
    for (args, env) in [
        (&["--log", "gateway_router=loud", "schema"][..], None),
        (
            &["schema"][..],
            Some(("GENESYS_ROUTER_LOG", "gateway_router=loud")),
        ),
        (&["schema"][..], Some(("RUST_LOG", "gateway_router=loud"))),
    ] {
        let mut command = cli(args);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {text}");
        assert!(
            text.contains("invalid log filter `gateway_router=loud`") && text.contains("level"),
            "names the filter and why: {text}"
        );
        assert!(output.stdout.is_empty(), "the command did not run");
    }
}
