//! The real `genesys-router` binary as scripts and supervisors see it: log formats,
//! colour, exit codes, JSON errors, completions and the man page.
//!
//! By default the tests run the debug binary cargo builds for them; with
//! `GENESYS_ROUTER_BIN` set they run that binary instead. `cargo xtask ci` sets it to the
//! one `cargo build --release -p gateway-cli` makes (its "release binary" step), so what
//! ships is what these tests check.

#[path = "support/no_room.rs"]
mod no_room;
#[path = "support/spawned.rs"]
mod spawned;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use spawned::Spawned;

use gateway_sim::{Behaviour, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, ErrorRate, Sim, SimHandle};

/// The binary under test: `GENESYS_ROUTER_BIN`, else the one cargo built for the tests.
fn bin() -> PathBuf {
    std::env::var_os("GENESYS_ROUTER_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_genesys-router")),
        PathBuf::from,
    )
}

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
    let mut command = Command::new(bin());
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

    // A filter variable that is set but not UTF-8 is named, not skipped for the next.
    let output = cli(&["schema"])
        .env("GENESYS_ROUTER_LOG", not_utf8())
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("GENESYS_ROUTER_LOG is not valid UTF-8"),
        "{}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty(), "the command did not run");

    // Asked for JSON logs, the error is a JSON line too (it was plain text, which a log
    // shipper cannot read).
    let output = cli(&[
        "--log-format",
        "json",
        "--log",
        "gateway_router=loud",
        "schema",
    ])
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let line: serde_json::Value = serde_json::from_str(stderr(&output).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stderr(&output)));
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(
        line["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid log filter"),
        "{line}"
    );
}

/// `s\xffx`: a value no UTF-8 reader accepts.
fn not_utf8() -> &'static std::ffi::OsStr {
    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"s\xffx")
}

/// tokio panics on a bad `TOKIO_WORKER_THREADS`; the binary refuses it first, as a usage
/// error that names it, and takes a good one.
#[test]
fn a_bad_worker_thread_count_is_a_usage_error_not_a_panic() {
    for bad in ["abc", "0", "-3", "100000", "99999999999999999999999"] {
        let output = cli(&["schema"])
            .env("TOKIO_WORKER_THREADS", bad)
            .output()
            .unwrap();
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{bad}: {text}");
        assert!(
            text.contains(&format!("invalid TOKIO_WORKER_THREADS `{bad}`"))
                && !text.contains("panicked"),
            "names the variable and its value: {text}"
        );
        assert!(output.stdout.is_empty(), "the command did not run");
    }
    let output = cli(&["schema"])
        .env("TOKIO_WORKER_THREADS", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!output.stdout.is_empty());
}

/// The JSON document `route --json` printed on stdout.
fn stdout_json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            stderr(output)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_2_for_usage_errors() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = sim_config(dir.path(), &sim);

    let bad_flag = run(route(&config, &["--bogus"])).await;
    assert_eq!(bad_flag.status.code(), Some(2), "{}", stderr(&bad_flag));

    let unknown_schema = run(cli(&["schema", "nope"])).await;
    assert_eq!(unknown_schema.status.code(), Some(2));
    assert!(
        stderr(&unknown_schema).contains("no schema named `nope`"),
        "{}",
        stderr(&unknown_schema)
    );

    let mut unknown_route = cli(&["route", "--route", "nope", "--prompt", "hi", "--json"]);
    unknown_route.arg("--config").arg(&config);
    let unknown_route = run(unknown_route).await;
    assert_eq!(
        unknown_route.status.code(),
        Some(2),
        "{}",
        stderr(&unknown_route)
    );
    assert!(stderr(&unknown_route).contains("unknown route `nope`"));
    let body = stdout_json(&unknown_route);
    assert_eq!(body["code"], "router.unknown.route");
    assert_eq!(body["exitCode"], 2);

    // A prompt piped in that is longer than any prompt may be is refused after reading
    // one byte past the longest (8,000 four-byte characters and a line break).
    let mut piped = cli(&["route", "--route", "summarize"]);
    piped
        .arg("--config")
        .arg(&config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let too_long = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = piped.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The CLI stops reading at its limit; a broken pipe after that is expected.
        let _ = stdin.write_all(&vec![b'x'; 1 << 20]);
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(too_long.status.code(), Some(2), "{}", stderr(&too_long));
    assert!(
        stderr(&too_long).contains("longer than 32002 bytes"),
        "{}",
        stderr(&too_long)
    );
    // A label given twice is refused, as the HTTP API refuses it, not kept as the last.
    let twice = run(route(&config, &["--meta", "t=1", "--meta", "t=2"])).await;
    assert_eq!(twice.status.code(), Some(2), "{}", stderr(&twice));
    assert!(
        stderr(&twice).contains("--meta gives the label `t` twice"),
        "{}",
        stderr(&twice)
    );
    // A prompt that breaks a rule: its problems are listed one per line, not escaped.
    let mut empty = cli(&["route", "--route", "summarize", "--prompt", ""]);
    empty.arg("--config").arg(&config);
    let empty = run(empty).await;
    assert_eq!(empty.status.code(), Some(2), "{}", stderr(&empty));
    assert!(
        stderr(&empty).contains("1 validation error\n  /prompt: is required"),
        "{}",
        stderr(&empty)
    );
    assert_eq!(sim.counters().prompt_requests, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_3_for_an_invalid_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[environment]\nregion = \"moon-1\"\n[routes.a]\nmodel = \"m\"\n",
    )
    .unwrap();

    let routed = run(route(&bad, &["--json"])).await;
    assert_eq!(routed.status.code(), Some(3), "{}", stderr(&routed));
    let body = stdout_json(&routed);
    assert_eq!(body["code"], "cli.config.invalid");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("/environment/region"),
        "{body}"
    );

    let mut checked = cli(&["check-config", "--json"]);
    checked.arg(&bad);
    let checked = run(checked).await;
    assert_eq!(checked.status.code(), Some(3));
    let report = stdout_json(&checked);
    assert_eq!(report["valid"], false);
    assert_eq!(
        report["problems"][0]["path"], "/environment/region",
        "{report}"
    );

    // Past 64 problems the report lists the first and counts the rest, in both forms.
    let many = dir.path().join("many.toml");
    let routes = (0..70)
        .map(|i| format!("[routes.r{i:02}]\nmodel = \"\"\n"))
        .collect::<Vec<_>>()
        .concat();
    std::fs::write(
        &many,
        format!("[environment]\nregion = \"us-east-1\"\n{routes}"),
    )
    .unwrap();
    let mut checked = cli(&["check-config", "--json"]);
    checked.arg(&many);
    let report = stdout_json(&run(checked).await);
    assert_eq!(report["problems"].as_array().unwrap().len(), 64, "{report}");
    let unlisted = report["problemsUnlisted"].as_u64().unwrap();
    assert!(unlisted >= 6, "{report}");
    let mut checked = cli(&["check-config"]);
    checked.arg(&many);
    let text = String::from_utf8_lossy(&run(checked).await.stdout).into_owned();
    assert!(
        text.contains(&format!(": {} problems\n", 64 + unlisted)),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("  … and {unlisted} more\n")),
        "{text}"
    );

    let missing = run(route(&dir.path().join("absent.toml"), &[])).await;
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));

    // What is not a regular file, or is larger than any config, is refused before it is
    // read to its end (`/dev/zero` never ends; a FIFO would block the open).
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, vec![b'#'; 2 * 1024 * 1024]).unwrap();
    for (path, why) in [
        (Path::new("/dev/zero"), "not a regular file"),
        (huge.as_path(), "larger than 1048576 bytes"),
    ] {
        let mut checked = cli(&["check-config"]);
        checked.arg(path);
        let checked = run(checked).await;
        assert_eq!(checked.status.code(), Some(3), "{}", stderr(&checked));
        let text = String::from_utf8_lossy(&checked.stdout).into_owned() + &stderr(&checked);
        assert!(text.contains(why), "{path:?}: {text}");
    }
}

/// A region override that cannot be used is a config error naming the variable: one that
/// is not UTF-8 (rather than a silent fall back to the file's region), and one that
/// names no region (rather than a problem blamed on the file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_3_naming_a_region_override_that_cannot_be_used() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[environment]\nregion = \"us-east-1\"\n[routes.a]\nmodel = \"m\"\n",
    )
    .unwrap();
    let mut checked = cli(&["check-config", "--json"]);
    checked.arg(&good).env("GENESYS_REGION", not_utf8());
    let checked = run(checked).await;
    assert_eq!(checked.status.code(), Some(3), "{}", stderr(&checked));
    let report = stdout_json(&checked);
    assert_eq!(report["valid"], false);
    assert!(
        report["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("GENESYS_REGION is not valid UTF-8"),
        "{report}"
    );
    // One that names no region is blamed on the variable, not on the file (whose own
    // region is fine).
    let mut checked = cli(&["check-config", "--json"]);
    checked.arg(&good).env("GENESYS_REGION", "moon");
    let checked = run(checked).await;
    assert_eq!(checked.status.code(), Some(3), "{}", stderr(&checked));
    let message = stdout_json(&checked)["problems"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("GENESYS_REGION cannot be applied")
            && message.contains("unknown Genesys Cloud region `moon`")
            && !message.contains("good.toml"),
        "{message}"
    );
}

/// A webhook secret variable that is unset is a setting to fix: exit 3, as for the
/// fleet's Redis URL or the API keys, not the catch-all 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_3_for_a_missing_webhook_secret() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("router.toml");
    std::fs::write(
        &config,
        format!(
            "[environment]\napi_base = \"{}\"\n[routes.summarize]\nmodel = \"model-gen-4\"\n\
             [audit]\nfile = \"{}\"\n[audit.webhook]\nurl = \"{}/hook\"\n\
             secret_env = \"GENESYS_ROUTER_TEST_UNSET_WEBHOOK_SECRET\"\nspool_dir = \"{}\"\n",
            sim.base_url(),
            dir.path().join("audit.jsonl").display(),
            sim.base_url(),
            dir.path().join("spool").display(),
        ),
    )
    .unwrap();
    let output = run(route(&config, &[])).await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("GENESYS_ROUTER_TEST_UNSET_WEBHOOK_SECRET"),
        "{}",
        stderr(&output)
    );
    assert_eq!(sim.counters().prompt_requests, 0, "nothing was sent");
}

/// A CA file that holds no certificate is a setting to fix: exit 3, not the catch-all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_3_for_a_ca_file_without_a_certificate() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let config = sim_config(dir.path(), &sim);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = format!("{text}[tls]\nextra_ca_file = \"{}\"\n", ca.display());
    std::fs::write(&config, text).unwrap();
    let output = run(route(&config, &[])).await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no certificate"),
        "{}",
        stderr(&output)
    );
    // check-config reads it as serve would, and says so.
    let (path, message) = first_problem(&config).await;
    assert_eq!(path, "/tls/extra_ca_file");
    assert!(message.contains("no certificate"), "{message}");
}

/// `check-config --json` of `config`, which must exit 3: its first problem's path and
/// message.
async fn first_problem(config: &Path) -> (String, String) {
    let mut check = cli(&["check-config", "--json"]);
    check.arg(config);
    let checked = run(check).await;
    assert_eq!(checked.status.code(), Some(3), "{}", stderr(&checked));
    let report = stdout_json(&checked);
    let first = &report["problems"][0];
    let text = |key: &str| first[key].as_str().unwrap_or_default().to_owned();
    (text("path"), text("message"))
}

/// `sim_config` with `[audit] file = "<file>"` instead of no audit trail.
fn audited_config(dir: &Path, sim: &SimHandle, file: &Path) -> PathBuf {
    let config = sim_config(dir, sim);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[audit]\nenabled = false\n",
        &format!("[audit]\nfile = \"{}\"\n", file.display()),
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// An audit file that cannot be opened (a directory, a path under a file) or cannot keep
/// the trail (a device such as `/dev/null`) is a setting to fix, named by its key: exit 3
/// from `route`, and `check-config` finds it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_3_for_an_audit_file_that_cannot_be_opened_and_check_config_says_so() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "").unwrap();
    for (file, why) in [
        (dir.path().to_owned(), "directory"),
        (plain.join("sub").join("audit.jsonl"), "not a directory"),
        (PathBuf::from("/dev/null"), "not a regular file"),
    ] {
        let config = audited_config(dir.path(), &sim, &file);
        let output = run(route(&config, &[])).await;
        assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("`audit.file`"),
            "{}",
            stderr(&output)
        );
        let (path, message) = first_problem(&config).await;
        assert_eq!(path, "/audit/file");
        assert!(message.contains(why), "{message}");
    }
    assert_eq!(sim.counters().prompt_requests, 0, "nothing was sent");
}

/// An audit file another process writes (here, a sink of this test's) is refused before
/// anything is sent: two writers would rotate each other's files away. Exit 3, naming the
/// key and saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_3_for_an_audit_file_another_process_writes() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let holder =
        gateway_audit::JsonlSink::open_with(&file, gateway_audit::JsonlOptions::default()).unwrap();
    let config = audited_config(dir.path(), &sim, &file);
    let output = run(route(&config, &[])).await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let said = stderr(&output);
    assert!(
        said.contains("`audit.file`") && said.contains("in use"),
        "{said}"
    );
    assert_eq!(sim.counters().prompt_requests, 0, "nothing was sent");
    drop(holder);
    let output = run(route(&config, &[])).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// A webhook spool directory that exists but cannot be written (here sysfs, which even
/// root may not write; another user's directory, or a read-only mount, elsewhere) is a
/// setting too: exit 3 naming its key, not 1, which systemd restarts in a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_3_for_a_webhook_spool_that_cannot_be_written() {
    let spool = Path::new("/sys/kernel");
    if !spool.is_dir() || std::fs::File::create(spool.join("genesys-router-probe")).is_ok() {
        eprintln!("skipped: no directory here that this process cannot write");
        return;
    }
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = audited_config(dir.path(), &sim, &dir.path().join("audit.jsonl"));
    let text = format!(
        "{}[audit.webhook]\nurl = \"http://127.0.0.1:9/hook\"\n\
         secret_env = \"AUDIT_WEBHOOK_SECRET\"\nspool_dir = \"{}\"\n",
        std::fs::read_to_string(&config).unwrap(),
        spool.display()
    );
    std::fs::write(&config, text).unwrap();
    let mut command = route(&config, &[]);
    command.env(
        "AUDIT_WEBHOOK_SECRET",
        "whsec_dGVzdCBrZXkgZm9yIHRoZSBhdWRpdCB3ZWJob29r",
    );
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("`audit.webhook.spool_dir`"),
        "{}",
        stderr(&output)
    );
    assert_eq!(sim.counters().prompt_requests, 0, "nothing was sent");
}

/// A webhook spool that cannot be created (a file where the directory should be) is a
/// setting too: exit 3 naming its key, found by `check-config` first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_3_for_a_webhook_spool_that_cannot_be_created_and_check_config_says_so() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "").unwrap();
    for spool in [plain.clone(), plain.join("spool")] {
        let config = audited_config(dir.path(), &sim, &dir.path().join("audit.jsonl"));
        let text = format!(
            "{}[audit.webhook]\nurl = \"http://127.0.0.1:9/hook\"\n\
             secret_env = \"NO_SUCH_WEBHOOK_SECRET\"\nspool_dir = \"{}\"\n",
            std::fs::read_to_string(&config).unwrap(),
            spool.display()
        );
        std::fs::write(&config, text).unwrap();
        let output = run(route(&config, &[])).await;
        assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("`audit.webhook.spool_dir`"),
            "{}",
            stderr(&output)
        );
        let (path, message) = first_problem(&config).await;
        assert_eq!(path, "/audit/webhook/spool_dir");
        assert!(message.contains("not a directory"), "{message}");
    }
    assert_eq!(sim.counters().prompt_requests, 0, "nothing was sent");
}

/// The answer is printed, but an entry that could not be written fails the command, as
/// it fails `serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_exits_1_when_its_audit_entry_is_lost() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = audited_config(dir.path(), &sim, &dir.path().join("audit.jsonl"));
    let output = run(no_room::with_no_room(&route(&config, &[]))).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(!output.stdout.is_empty(), "the answer is still printed");
    assert!(
        stderr(&output).contains("could not be flushed"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_4_for_missing_credentials_with_the_cause_printed_once() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = sim_config(dir.path(), &sim);

    let mut command = route(&config, &["--json"]);
    command.env_remove("GENESYS_CLIENT_ID");
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let text = stderr(&output);
    assert_eq!(
        text.matches("GENESYS_CLIENT_ID is not set").count(),
        1,
        "each cause once: {text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    let body = stdout_json(&output);
    assert_eq!(body["code"], "cli.credentials");
    assert_eq!(body["exitCode"], 4);

    // A secret that is set but not UTF-8 is named as such, not as unset.
    let mut command = route(&config, &[]);
    command.env("GENESYS_CLIENT_SECRET", not_utf8());
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("GENESYS_CLIENT_SECRET is not valid UTF-8"),
        "{}",
        stderr(&output)
    );
}

/// The start-up catalogue check (`validate_models`) fails as a routed call would: on
/// refused credentials exit 4, which systemd's unit does not restart, not 5 (a later
/// try may work), which it restarted every 2 s with the bad secret; on a models path
/// the gateway does not serve, exit 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_catalogue_check_fails_with_the_exit_code_of_its_cause() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("router.toml");
    let write = |models_path: &str| {
        std::fs::write(
            &config,
            format!(
                "[environment]\napi_base = \"{}\"\nvalidate_models = true\n\
                 models_path = \"{models_path}\"\n[routes.summarize]\nmodel = \"model-gen-4\"\n\
                 [retry]\nmax_attempts = 1\n[audit]\nenabled = false\n",
                sim.base_url()
            ),
        )
        .unwrap();
    };
    write("/api/v2/ai/models");
    let mut command = route(&config, &[]);
    command.env("GENESYS_CLIENT_SECRET", "not-the-secret");
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    write("/api/v2/ai/no-such-path");
    let output = run(route(&config, &[])).await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    // With both right, the check passes and the call is made.
    write("/api/v2/ai/models");
    let output = run(route(&config, &[])).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(sim.counters().prompt_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_4_when_the_login_host_refuses_the_credentials() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = sim_config(dir.path(), &sim);

    let mut command = route(&config, &["--json"]);
    command.env("GENESYS_CLIENT_SECRET", "not-the-secret");
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).contains("rejected"), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("not-the-secret"),
        "the secret never reaches the output"
    );
    let body = stdout_json(&output);
    assert_eq!(body["code"], "router.no.token");
    assert_eq!(body["exitCode"], 4);
    assert_eq!(sim.counters().prompt_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_5_when_every_model_fails_upstream() {
    let sim = Sim::builder()
        .model_behaviour(
            "model-gen-4",
            Behaviour {
                errors: vec![ErrorRate {
                    status: 503,
                    rate: 1.0,
                }],
                ..Behaviour::default()
            },
        )
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = sim_config(dir.path(), &sim);

    let output = run(route(&config, &["--json"])).await;
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.starts_with("error: every model of route `summarize` failed"),
        "{text}"
    );
    assert!(
        text.contains("  tried model-gen-4: upstream_error"),
        "{text}"
    );
    let body = stdout_json(&output);
    assert_eq!(body["code"], "router.all.models.failed");
    assert_eq!(body["status"], 502);
    assert_eq!(body["exitCode"], 5);
    assert!(body["contextId"].is_string(), "the correlation id: {body}");
    assert_eq!(body["modelsTried"][0]["modelId"], "model-gen-4", "{body}");
}

#[test]
fn completions_and_the_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let output = cli(&["completions", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(
            script.contains("genesys-router") && script.contains("check-config"),
            "{shell}: {script}"
        );
    }
    let bad = cli(&["completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));

    let man = cli(&["man"]).output().unwrap();
    assert!(man.status.success(), "{}", stderr(&man));
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(page.contains(".TH genesys-router 1"), "{page}");
    assert!(
        page.contains("Exit codes"),
        "the exit code table is in the page"
    );

    let dir = tempfile::tempdir().unwrap();
    let written = cli(&["man", "--out"]).arg(dir.path()).output().unwrap();
    assert!(written.status.success(), "{}", stderr(&written));
    for page in [
        "genesys-router.1",
        "genesys-router-route.1",
        "genesys-router-serve.1",
    ] {
        assert!(dir.path().join(page).exists(), "{page}");
    }
}

/// What bash's completion function offers for `words`, the last one being completed,
/// with the script `genesys-router completions bash` prints sourced.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    // As bash calls a `complete -F` function: the command, the word, the word before.
    let program = format!(
        "source {}\nCOMP_WORDS=({})\nCOMP_CWORD={}\n\
         _genesys__router genesys-router \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        words.join(" "),
        words.len() - 1,
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_the_options_of_every_subcommand() {
    let output = cli(&["completions", "bash"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("genesys-router.bash");
    std::fs::write(&script, &output.stdout).unwrap();

    let top = bash_completes(&script, &["genesys-router", "se"]);
    assert_eq!(top, ["serve"], "the subcommands");
    let serve = bash_completes(&script, &["genesys-router", "serve", "--l"]);
    assert!(serve.contains(&"--listen".to_owned()), "{serve:?}");
    let route = bash_completes(&script, &["genesys-router", "route", "--"]);
    for option in ["--route", "--prompt", "--config"] {
        assert!(route.contains(&option.to_owned()), "{option}: {route:?}");
    }
    let check = bash_completes(&script, &["genesys-router", "check-config", "--j"]);
    assert_eq!(check, ["--json"], "a hyphenated subcommand");
    let help = bash_completes(&script, &["genesys-router", "help", "se"]);
    assert_eq!(help, ["serve"], "a nested subcommand");
}

#[test]
fn a_reader_that_stops_early_is_no_failure() {
    // `genesys-router completions bash | head -1`: every write after the reader left
    // fails with EPIPE; the reader is gone before the first one here.
    for args in [
        &["completions", "bash"][..],
        &["man"],
        &["schema"],
        &["schema", "route-request"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = cli(args).stdout(writer).output().unwrap();
        let text = stderr(&output);
        assert!(!text.contains("panicked"), "{args:?}: {text}");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {text}");
    }
}

#[test]
fn route_json_prints_one_json_document_for_a_wrong_command_line_too() {
    /// The arguments, the environment, and what the message names.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 4] = [
        (&["route", "--json", "--bogus"], &[], "--bogus"),
        (&["route", "--json", "--route", "a"], &[], "--config"),
        (
            &[
                "--log", "[{", "route", "--json", "--config", "x", "--route", "a", "--prompt", "p",
            ],
            &[],
            "filter",
        ),
        (
            &[
                "route", "--json", "--config", "x", "--route", "a", "--prompt", "p",
            ],
            &[("TOKIO_WORKER_THREADS", "0")],
            "TOKIO_WORKER_THREADS",
        ),
    ];
    for (args, env, says) in cases {
        let mut command = cli(args);
        command.envs(env.iter().copied());
        let output = command.output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        let body = stdout_json(&output);
        assert_eq!(body["code"], "cli.usage", "{args:?}");
        assert_eq!(body["exitCode"], 2, "{args:?}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(says), "{args:?}: {message}");
    }
    // Help is no failure, and not JSON.
    let help = cli(&["route", "--json", "--help"]).output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage:"));
}

#[test]
fn output_that_cannot_be_written_fails_the_command() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("router.toml");
    std::fs::write(
        &config,
        "[environment]\nregion = \"eu-west-1\"\n[routes.a]\nmodel = \"m\"\n",
    )
    .unwrap();
    for json in [false, true] {
        let mut command = cli(&["check-config"]);
        command.arg(&config);
        if json {
            command.arg("--json");
        }
        let output = command.stdout(full.try_clone().unwrap()).output().unwrap();
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "json {json}: {text}");
        assert!(text.contains("writing to standard output"), "{text}");
    }
    // clap's own output too: help and the version (exit 0 when written) fail; a usage
    // error that cannot be written to stderr keeps its code.
    for args in [&["--help"][..], &["route", "--help"], &["--version"]] {
        let output = cli(args)
            .stdout(full.try_clone().unwrap())
            .output()
            .unwrap();
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {text}");
        assert!(text.contains("writing to standard output"), "{text}");
    }
    let usage = cli(&["route", "--bogus"]).stderr(full).status().unwrap();
    assert_eq!(usage.code(), Some(2));
    // A reader that went away (`--help | head`) is no failure.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = cli(&["--help"]).stdout(writer).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).is_empty(), "{}", stderr(&output));
}

/// The simulator's admin API has no authentication: on a non-loopback address it could
/// be reset, and its recorded prompts read, by anyone who reaches it.
#[tokio::test]
async fn the_simulator_on_a_non_loopback_address_is_refused_unless_allowed() {
    // Spawned, and waited for with a bound: a simulator that did start would run until
    // stopped, and is killed as the failed test drops it.
    let mut sim = Spawned::start(
        cli(&["sim", "--listen", "0.0.0.0:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped()),
    );
    let status = sim.exit_within(std::time::Duration::from_secs(20)).await;
    let mut said = String::new();
    std::io::Read::read_to_string(&mut sim.stderr.take().unwrap(), &mut said).unwrap();
    assert_eq!(status.code(), Some(3), "{said}");
    assert!(
        said.contains("refusing to listen on 0.0.0.0:0: the simulator's admin API")
            && said.contains("has no authentication")
            && said.contains("--allow-remote"),
        "{said}"
    );
}

#[test]
fn serving_the_network_without_api_keys_is_refused_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("router.toml");
    std::fs::write(
        &config,
        "[environment]\napi_base = \"http://127.0.0.1:9\"\n[routes.a]\nmodel = \"m\"\n[audit]\nenabled = false\n",
    )
    .unwrap();
    let output = cli(&["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(&config)
        .env_remove("GENESYS_ROUTER_API_KEYS")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("refusing to listen on 0.0.0.0:0 without API keys"));
    assert!(!stderr(&output).contains("GENESYS_ROUTER_API_KEYS"));

    // The keys are set under the name the examples use, but the config does not name it.
    let output = cli(&["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(&config)
        .env("GENESYS_ROUTER_API_KEYS", "k-1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output)
            .contains("GENESYS_ROUTER_API_KEYS is set, but [server] api_keys_env does not name it"),
        "{}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains("k-1"),
        "the key itself is not shown"
    );

    // Named, but the second key is too short to resist guessing.
    let named = format!(
        "{}[server]\napi_keys_env = \"ROUTER_TEST_KEYS\"\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, named).unwrap();
    let output = cli(&["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(&config)
        .env(
            "ROUTER_TEST_KEYS",
            "0123456789abcdef0123456789abcdef,k-shorty",
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("key 2 of 2 is 8 characters long; at least 16"),
        "{}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains("shorty"),
        "the key itself is not shown"
    );
}

/// clap's message names the flag whose value it refused; when that value came from an
/// environment variable (an empty `GENESYS_ROUTER_CONFIG`, say), the variable is named.
#[test]
fn a_value_refused_from_the_environment_names_its_variable() {
    let says = "the refused value came from the environment variable";
    let empty = cli(&["route", "--route", "a", "--prompt", "hi"])
        .env("GENESYS_ROUTER_CONFIG", "")
        .output()
        .unwrap();
    assert_eq!(empty.status.code(), Some(2));
    assert!(
        stderr(&empty).contains(&format!("{says} GENESYS_ROUTER_CONFIG")),
        "{}",
        stderr(&empty)
    );
    let json = cli(&["route", "--route", "a", "--prompt", "hi", "--json"])
        .env("GENESYS_ROUTER_CONFIG", "")
        .output()
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(body["message"].as_str().unwrap().contains(says), "{body}");
    let format = cli(&["check-config", "router.toml"])
        .env("GENESYS_ROUTER_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(format.status.code(), Some(2));
    assert!(stderr(&format).contains(&format!("{says} GENESYS_ROUTER_LOG_FORMAT")));
    // The same refusal of a value given on the command line blames the command line.
    for flag in [&["--config", ""][..], &["-c", ""], &["--config="]] {
        let given = cli(&[&["route", "--route", "a", "--prompt", "hi"][..], flag].concat())
            .env("GENESYS_ROUTER_CONFIG", "")
            .output()
            .unwrap();
        assert_eq!(given.status.code(), Some(2), "{flag:?}");
        assert!(
            !stderr(&given).contains(says),
            "{flag:?}: {}",
            stderr(&given)
        );
    }
}
