//! The real `genesys-router` binary: graceful shutdown under load loses no audit entry;
//! `check-config` lists every problem; the demo routes everything and audits everything.

#[path = "support/no_room.rs"]
mod no_room;
#[path = "support/spawned.rs"]
mod spawned;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use gateway_audit::read_jsonl;
use gateway_cli::demo::{DemoOptions, run};
use gateway_model::RouteOutcome;
use gateway_sim::{Behaviour, Latency, Sim};
use gateway_telemetry::LocalMetrics;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use spawned::Spawned;

const BIN: &str = env!("CARGO_BIN_EXE_genesys-router");

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// A config in `dir` with one route, `summarize` to `model-gen-4` on `sim`, and `audit`
/// as its `[audit]` section.
fn one_route_config(
    dir: &tempfile::TempDir,
    sim: &gateway_sim::SimHandle,
    audit: &str,
) -> std::path::PathBuf {
    let config = dir.path().join("router.toml");
    let text = format!(
        "[environment]\napi_base = \"{}\"\n[routes.summarize]\nmodel = \"model-gen-4\"\n[audit]\n{audit}\n",
        sim.base_url()
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// A started `serve`: the child, its stderr, the address, and the first line, which
/// names it.
type Served = (
    Spawned,
    BufReader<std::process::ChildStderr>,
    String,
    String,
);

/// The binary with the simulator's credentials and none of the caller's log settings
/// (a log line of the caller's own would come before the line the tests read).
fn bin() -> Command {
    let mut command = Command::new(BIN);
    command
        .env("GENESYS_CLIENT_ID", gateway_sim::DEFAULT_CLIENT_ID)
        .env("GENESYS_CLIENT_SECRET", gateway_sim::DEFAULT_CLIENT_SECRET)
        .env_remove("GENESYS_REGION")
        .env_remove("GENESYS_ROUTER_LOG")
        .env_remove("GENESYS_ROUTER_LOG_FORMAT")
        .env_remove("RUST_LOG");
    command
}

/// Starts `genesys-router serve` (with `extra` flags) on a free port.
fn spawn_serve(config: &std::path::Path, extra: &[&str]) -> Served {
    spawn_serve_by(bin(), config, extra)
}

/// [`spawn_serve`] through `command` (the binary, or a shell that execs it).
fn spawn_serve_by(mut command: Command, config: &std::path::Path, extra: &[&str]) -> Served {
    let mut child = Spawned::start(
        command
            .args(extra)
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--drain-secs", "20"])
            .stderr(Stdio::piped()),
    );
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in: {line}"))
        .to_owned();
    (child, stderr, addr, line)
}

/// `n` routed calls to the sidecar at `addr`, each in a task: their status and body.
fn route_calls(addr: &str, n: usize) -> Vec<tokio::task::JoinHandle<(StatusCode, Bytes)>> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    (0..n)
        .map(|i| {
            let (client, url) = (client.clone(), format!("http://{addr}/v1/route"));
            tokio::spawn(async move {
                let body = format!(r#"{{"route":"summarize","prompt":"call {i}"}}"#);
                let response = client
                    .request(
                        Request::post(url)
                            .body(Full::new(Bytes::from(body)))
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let status = response.status();
                (
                    status,
                    response.into_body().collect().await.unwrap().to_bytes(),
                )
            })
        })
        .collect()
}

/// Waits (at most 20 s) until `n` prompt calls are at `sim`, polling without taking a
/// core from the process under test.
async fn until_in_flight(sim: &gateway_sim::SimHandle, n: i64) {
    let started = tokio::time::Instant::now();
    while sim.counters().prompts_in_flight < n {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the calls never reached the simulator"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A simulator answering in `ms`, and a config for it in a new directory whose audit
/// trail is `audit.jsonl` there.
async fn slow_sim_and_audited_config(
    ms: f64,
) -> (
    gateway_sim::SimHandle,
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let sim = Sim::builder()
        .behaviour(Behaviour {
            latency: Latency::Fixed { ms },
            ..Behaviour::default()
        })
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let audit_section = format!("file = \"{}\"\nfsync = \"never\"", audit.display());
    let config = one_route_config(&dir, &sim, &audit_section);
    (sim, dir, audit, config)
}

/// Sends `signal` (`TERM`, `INT`) to `child`.
fn signal(child: &std::process::Child, signal: &str) {
    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_in_the_middle_of_load_loses_no_audit_entry() {
    // All 40 calls must be at the gateway at once: 3 s lets a loaded machine send them.
    let (sim, _dir, audit, config) = slow_sim_and_audited_config(3_000.0).await;

    let (mut child, mut stderr, addr, _) = spawn_serve(&config, &[]);

    // 40 calls in flight, then SIGTERM while every one waits on the gateway.
    let calls = route_calls(&addr, 40);
    until_in_flight(&sim, 40).await;
    signal(&child, "TERM");

    let mut audit_ids = HashSet::new();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "in-flight calls finish during the drain: {}",
            String::from_utf8_lossy(&body)
        );
        let outcome: RouteOutcome = serde_json::from_slice(&body).unwrap();
        audit_ids.insert(outcome.audit_id.expect("audited"));
    }
    let exit = child.exit_within(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(
        rest.contains("shutting down") && rest.contains("stopped"),
        "{rest}"
    );

    let entries = read_jsonl(&audit).unwrap().entries;
    assert_eq!(entries.len(), 40);
    let written: HashSet<_> = entries.iter().map(|e| e.id).collect();
    assert_eq!(
        written, audit_ids,
        "every answered call has its audit entry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stop_signal_ends_the_drain_and_every_call_is_still_audited() {
    // Regression: a second Ctrl-C or SIGTERM was ignored; only SIGKILL, which loses the
    // audit trail's tail, ended the drain.
    let (sim, _dir, audit, config) = slow_sim_and_audited_config(60_000.0).await;
    let (mut child, stderr, addr, _) = spawn_serve(&config, &[]);
    let calls = route_calls(&addr, 3);
    until_in_flight(&sim, 3).await;

    signal(&child, "TERM");
    // The first signal is taken (its line is written) before the second is sent.
    let mut stderr = tokio::task::spawn_blocking(move || {
        let mut stderr = stderr;
        let mut line = String::new();
        while !line.contains("shutting down") {
            line.clear();
            assert_ne!(stderr.read_line(&mut line).unwrap(), 0, "stderr ended");
        }
        stderr
    })
    .await
    .unwrap();
    signal(&child, "INT");

    // The drain is 20 s: ending well before it is the second signal's doing.
    let exit = child.exit_within(Duration::from_secs(15)).await;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(exit.success(), "{exit}: {rest}");
    assert!(rest.contains("second stop signal"), "{rest}");
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "router.cancelled", "{body}");
    }
    let entries = read_jsonl(&audit).unwrap().entries;
    assert_eq!(entries.len(), 3, "one entry per call");
    for entry in &entries {
        assert_eq!(entry.outcome, gateway_model::Outcome::Cancelled);
        let reason = entry.reason.as_deref().unwrap_or_default();
        assert!(reason.contains("ended early"), "{reason}");
        assert_eq!(entry.models_tried[0].attempts, 1, "{entry:?}");
    }
}

/// Waits (at most 15 s) for `child` to exit; its status and what was left of its stderr.
async fn exit_within_15_s(
    mut child: Spawned,
    stderr: Option<std::process::ChildStderr>,
) -> (std::process::ExitStatus, String) {
    // Read alongside, so a chatty child never blocks on a full pipe; it ends at the
    // child's exit, or when a failed test kills it.
    let rest = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        if let Some(mut stderr) = stderr {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        }
        rest
    });
    let status = child.exit_within(Duration::from_secs(15)).await;
    (status, rest.await.unwrap())
}

/// Regression: `route` took no signal, so Ctrl-C or a supervisor's SIGTERM killed it
/// with its prompt sent and billed, and no audit entry written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_signal_cancels_a_route_call_and_audits_it() {
    let (sim, _dir, audit, config) = slow_sim_and_audited_config(60_000.0).await;
    let mut child = Spawned::start(
        bin()
            .args(["route", "--config"])
            .arg(&config)
            .args(["--route", "summarize", "--prompt", "hello"])
            .stderr(Stdio::piped()),
    );
    until_in_flight(&sim, 1).await;
    signal(&child, "INT");

    let stderr = child.stderr.take();
    let (exit, rest) = exit_within_15_s(child, stderr).await;
    assert_eq!(exit.code(), Some(1), "a cancelled call: {exit}: {rest}");
    let entries = read_jsonl(&audit).unwrap().entries;
    assert_eq!(entries.len(), 1, "{rest}");
    assert_eq!(entries[0].outcome, gateway_model::Outcome::Cancelled);
    let reason = entries[0].reason.as_deref().unwrap_or_default();
    assert!(reason.contains("stopped by a signal"), "{reason}");
}

/// After its call, `route` flushes the audit trail (here to a webhook that never
/// answers, which takes seconds): a first stop signal lets the flush go on and says so,
/// a second abandons it with exit 1. Regression: the call's signal listener was gone
/// by then, so both were ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stop_signal_abandons_routes_audit_flush() {
    let sim = Sim::builder().start().await.unwrap();
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = hanging.local_addr().unwrap();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(4);
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hanging.accept().await {
            held.push(stream);
            let _ = accepted_tx.try_send(());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let audit = format!(
        "file = {:?}\n[audit.webhook]\nurl = \"http://{hook}/audit\"\n\
         secret_env = \"AUDIT_WEBHOOK_SECRET\"\nspool_dir = {:?}",
        dir.path().join("audit.jsonl").display().to_string(),
        dir.path().join("spool").display().to_string()
    );
    let config = one_route_config(&dir, &sim, &audit);
    let mut child = Spawned::start(
        bin()
            .args(["route", "--config"])
            .arg(&config)
            .args(["--route", "summarize", "--prompt", "hello"])
            .env(
                "AUDIT_WEBHOOK_SECRET",
                "whsec_dGVzdCBrZXkgZm9yIHRoZSBhdWRpdCB3ZWJob29r",
            )
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(Stdio::piped()),
    );
    // The entry's POST is at the webhook: the call is done, the flush under way.
    tokio::time::timeout(Duration::from_secs(20), accepted.recv())
        .await
        .expect("the webhook was called")
        .unwrap();
    signal(&child, "INT");
    let stderr = child.stderr.take().unwrap();
    let stderr = tokio::task::spawn_blocking(move || {
        let mut stderr = BufReader::new(stderr);
        let mut line = String::new();
        while !line.contains("flushing the audit trail first") {
            line.clear();
            assert_ne!(stderr.read_line(&mut line).unwrap(), 0, "stderr ended");
        }
        stderr.into_inner()
    });
    let stderr = tokio::time::timeout(Duration::from_secs(20), stderr)
        .await
        .expect("the first signal is taken")
        .unwrap();
    signal(&child, "INT");
    let (exit, rest) = exit_within_15_s(child, Some(stderr)).await;
    assert_eq!(exit.code(), Some(1), "{exit}: {rest}");
    assert!(rest.contains("flush was abandoned"), "{rest}");
    // The answer, billed, is still printed: it once went nowhere.
    let printed = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
    assert!(!printed.trim().is_empty(), "the answer is printed");
    holder.abort();
}

/// Regression: a line on a stderr that could not be written panicked (`eprintln!`): in
/// `serve`'s signal task, before it started the shutdown, so SIGTERM was ignored; and
/// in every command's last error line, which turned its exit code into 101.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_that_cannot_be_written_changes_no_exit_code_and_stops_no_shutdown() {
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full");
    let Ok(dev_full) = full() else {
        eprintln!("skipped: no /dev/full");
        return;
    };
    let status = bin()
        .args(["route", "--config", "/nonexistent/router.toml"])
        .args(["--route", "summarize", "--prompt", "hello"])
        .stderr(dev_full)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3), "a config error: {status}");

    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = one_route_config(&dir, &sim, "enabled = false");
    // Its stderr's reader goes away once `serve` says where it listens.
    let (child, stderr, _addr, _) = spawn_serve(&config, &[]);
    drop(stderr);
    signal(&child, "TERM");
    let (exit, _) = exit_within_15_s(child, None).await;
    assert!(exit.success(), "{exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exits_non_zero_when_audit_entries_were_lost() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let config = one_route_config(
        &dir,
        &sim,
        &format!("file = {:?}", audit.display().to_string()),
    );
    // Every write to the audit file fails: the call is answered, its entry is lost.
    let limited = no_room::with_no_room(&bin());
    let (mut child, mut stderr, addr, _) = spawn_serve_by(limited, &config, &[]);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let body = r#"{"route":"summarize","prompt":"hello"}"#;
    let response = client
        .request(
            Request::post(format!("http://{addr}/v1/route"))
                .body(Full::new(Bytes::from(body)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = child.exit_within(Duration::from_secs(30)).await;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(exit.code(), Some(1), "{rest}");
    assert!(
        rest.contains("flushing the audit trail at shutdown"),
        "{rest}"
    );
}

#[test]
fn check_config_accepts_the_example_and_lists_every_problem_of_a_bad_file() {
    let ok = Command::new(BIN)
        .arg("check-config")
        .arg(repo_file("examples/router.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(
        stdout.contains("ok (3 routes: classify, reply, summarize"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[environment]\nregion = \"moon-1\"\n[routes.a]\nmodel = \"m\"\nfallbacks = [\"m\"]\ntemperature = { low = 1.5, default = 0.5, high = 3.0 }\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .env_remove("GENESYS_REGION")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "an invalid config exits 3: {stdout}"
    );
    for path in [
        "/environment/region",
        "/routes/a/fallbacks/0",
        "/routes/a/temperature/high",
    ] {
        assert!(stdout.contains(path), "{path} missing from:\n{stdout}");
    }
    assert!(stdout.contains("3 problems"), "{stdout}");

    // Not TOML at all: the one problem names the file.
    std::fs::write(&bad, "x = [").unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.starts_with(&format!(
            "{}: is malformed: TOML parse error",
            bad.display()
        )),
        "{stdout}"
    );
}

#[test]
fn schema_prints_one_schema_or_lists_them() {
    let out = Command::new(BIN)
        .args(["schema", "gateway-payload"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let committed =
        std::fs::read_to_string(repo_file("schemas/gateway-payload.schema.json")).unwrap();
    assert_eq!(printed, committed);
    let out = Command::new(BIN).args(["schema", "nope"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("known: gateway-payload"));
}

/// Regression: `schema --out` wrote each file in place, so a disk that filled part way
/// left cut-short schemas where good copies had been.
#[test]
fn schema_out_on_a_full_disk_leaves_the_files_it_had_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["schema", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.path().join("gateway-payload.schema.json");
    let before = std::fs::read(&path).unwrap();
    assert!(!before.is_empty());

    let mut full = no_room::with_no_room(&bin());
    let out = full
        .args(["schema", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "every write fails");
    let after = std::fs::read(&path).unwrap();
    assert!(
        after == before,
        "the old copy is whole: {} bytes",
        after.len()
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "no temporary file is left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_answers_and_audits_every_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = LocalMetrics::new();
    let options = DemoOptions {
        requests: 90,
        concurrency: 8,
        out: dir.path().to_owned(),
        seed: 7,
        progress: false,
    };
    let report = run(&options, metrics.handle()).await.unwrap();
    assert_eq!(report.answered, 90, "{:?}", report.failed);
    assert_eq!(report.audit_entries, 90);
    assert_eq!(report.token_requests, 1);
    assert!(
        report.prompt_requests > 90,
        "the scripted 429s, 503s and policy violations cost extra attempts"
    );
    assert!(
        report.summary.contains("model-fallback-3"),
        "{}",
        report.summary
    );
    assert!(report.metrics_file.exists());

    // A second run keeps the first run's trail and counts its own entries.
    let again = run(&options, metrics.handle()).await.unwrap();
    assert_eq!(again.audit_entries, 90);
    assert!(
        again
            .summary
            .contains("90 entries from this run, after 90 kept from earlier"),
        "{}",
        again.summary
    );
    assert_eq!(read_jsonl(&again.audit_file).unwrap().entries.len(), 180);
}

/// Regression: the demo deleted `audit.jsonl` in its `--out` directory before anything
/// else, a live trail another process was writing included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_leaves_an_audit_file_another_process_writes_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, "a line of someone else's\n").unwrap();
    let holder =
        gateway_audit::JsonlSink::open_with(&file, gateway_audit::JsonlOptions::default()).unwrap();
    let options = DemoOptions {
        requests: 5,
        concurrency: 1,
        out: dir.path().to_owned(),
        seed: 7,
        progress: false,
    };
    let err = run(&options, LocalMetrics::new().handle())
        .await
        .expect_err("the file is in use");
    assert!(format!("{err:#}").contains("in use"), "{err:#}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "a line of someone else's\n"
    );
    drop(holder);
}

#[tokio::test]
async fn the_demo_says_when_out_names_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.txt");
    std::fs::write(&file, "kept").unwrap();
    let options = DemoOptions {
        requests: 1,
        concurrency: 1,
        out: file.clone(),
        seed: 7,
        progress: false,
    };
    let err = run(&options, LocalMetrics::new().handle())
        .await
        .expect_err("a file is no directory");
    assert!(format!("{err:#}").contains("is not a directory"), "{err:#}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_passes_on_a_serving_sidecar_and_fails_otherwise() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = one_route_config(&dir, &sim, "enabled = false");
    // Under the JSON log format, the line naming the address is a JSON event too.
    let (mut child, _stderr, addr, first) = spawn_serve(&config, &["--log-format", "json"]);
    let event: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("not JSON ({e}): {first}"));
    assert!(
        event["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("serving on http://")),
        "{first}"
    );
    let probe = |url: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(["healthcheck", &url])
                .output()
                .unwrap()
        })
    };

    let healthy = probe(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(healthy.status.code(), Some(0), "{healthy:?}");
    // A password in the URL is refused, and not printed.
    let userinfo = probe(format!("http://user:pw-secret@{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(userinfo.status.code(), Some(1), "{userinfo:?}");
    let said = String::from_utf8_lossy(&userinfo.stderr);
    assert!(
        said.contains("credentials") && !said.contains("pw-secret"),
        "{said}"
    );
    // A 404 is not healthy.
    let missing = probe(format!("http://{addr}/nope")).await.unwrap();
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));

    child.kill().unwrap();
    child.wait().unwrap();
    // Nothing listens there any more.
    let down = probe(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    let said = String::from_utf8_lossy(&down.stderr);
    assert!(said.starts_with("unhealthy: "), "{said}");
    assert!(said.contains("refused"), "the cause is named: {said}");
}

/// Regression: a webhook secret or Redis URL that an env var held but that could not be
/// used was reported without the env var's name (and the Redis one as `[fleet]` only),
/// though the value is not shown and the variable is what the operator must fix.
#[tokio::test]
async fn an_unusable_secret_or_url_in_an_env_var_names_the_variable() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let webhook = format!(
        "file = {:?}\n[audit.webhook]\nurl = \"http://127.0.0.1:9/audit\"\n\
         secret_env = \"CLI_TEST_WEBHOOK_SECRET\"\nspool_dir = {:?}",
        dir.path().join("audit.jsonl").display().to_string(),
        dir.path().join("spool").display().to_string()
    );
    let config = one_route_config(&dir, &sim, &webhook);
    let route = |config: &std::path::Path, var: &str, value: &str| {
        bin()
            .args(["route", "--config"])
            .arg(config)
            .args(["--route", "summarize", "--prompt", "hello"])
            .env(var, value)
            .output()
            .unwrap()
    };
    let out = route(&config, "CLI_TEST_WEBHOOK_SECRET", "whsec_c2VjcmV0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("`CLI_TEST_WEBHOOK_SECRET`"), "{stderr}");
    assert!(!stderr.contains("c2VjcmV0"), "{stderr}");

    let fleet = dir.path().join("fleet.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let audit_file = dir.path().join("fleet-audit.jsonl");
    let text = text.replace(&text[text.find("[audit]").unwrap()..], "")
        + &format!(
            "[audit]\nfile = {:?}\n[fleet]\nredis_url_env = \"CLI_TEST_REDIS_URL\"\n",
            audit_file.display().to_string()
        );
    std::fs::write(&fleet, text).unwrap();
    let out = route(&fleet, "CLI_TEST_REDIS_URL", "http://user:hunter2@x");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("`CLI_TEST_REDIS_URL`"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
