//! The processes a benchmark run starts: the simulator, one `gateway-bench load` per
//! scenario and concurrency, a `genesys-router serve` per sidecar run, `redis-server`
//! for the fleet; each is killed when its guard is dropped. Every wait on one is
//! bounded: a process that does not print its address, or finish, in time is killed and
//! the run fails naming what did not happen.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::caller::{Scenario, Setup, router_config};
use crate::load::LoadResult;
use crate::plan::Plan;
use crate::report::{Run, run_row};

/// How long a started process may take to print its address, or redis its readiness.
const START_WITHIN: Duration = Duration::from_secs(60);

/// How long a timed load process may run beyond its warm-up and window (start-up,
/// the calls in flight, exit).
const LOAD_GRACE: Duration = Duration::from_secs(300);

/// How long a fixed-count load process (the memory run) may run.
pub(crate) const COUNTED_LOAD_WITHIN: Duration = Duration::from_secs(1800);

/// The lines of a child's output kept for an error message.
const LINES_KEPT: usize = 20;

/// A child process that is killed if dropped.
pub(crate) struct Guarded(Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guarded {
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Its exit status, once it exits before `deadline`; `None` if still running then.
    fn exit_before(&mut self, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.0.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The lines `pipes` carry, read by a thread each. The threads keep reading after the
/// receiver is dropped, so the child never blocks on a full pipe.
fn lines_of(pipes: Vec<Box<dyn Read + Send>>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    for pipe in pipes {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
    }
    rx
}

/// Waits at most `within` for a line `pick` takes something from, and returns that; an
/// error saying that `what` did not `expect`, with its last lines, if its output
/// closes first or time runs out.
fn await_line(
    lines: &mpsc::Receiver<String>,
    within: Duration,
    what: &str,
    expect: &str,
    pick: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let deadline = deadline_after(within);
    let mut seen = std::collections::VecDeque::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let why = match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(found) = pick(&line) {
                    return Ok(found);
                }
                if seen.len() == LINES_KEPT {
                    seen.pop_front();
                }
                seen.push_back(line);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                format!("did not {expect} within {} s", within.as_secs_f64())
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => format!("exited before it could {expect}"),
        };
        let output = Vec::from(seen).join("\n");
        bail!("{what} {why}; its last output:\n{output}");
    }
}

/// The first `http://` or `https://` URL in `line`.
fn url_in(line: &str) -> Option<String> {
    let start = line.find("http://").or_else(|| line.find("https://"))?;
    line[start..].split_whitespace().next().map(str::to_owned)
}

/// Reads `reader`'s lines until one holds a URL, for at most `within`; returns the URL.
fn read_url(
    reader: impl Read + Send + 'static,
    what: &str,
    within: Duration,
) -> anyhow::Result<String> {
    await_line(
        &lines_of(vec![Box::new(reader)]),
        within,
        what,
        "print its address",
        url_in,
    )
}

/// Runs `command` to its end, for at most `within` (then it is killed): its exit status
/// and standard output. `what` names it in the error.
pub(crate) fn output_within(
    command: &mut Command,
    within: Duration,
    what: &str,
) -> anyhow::Result<(ExitStatus, Vec<u8>)> {
    let deadline = deadline_after(within);
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let mut stdout = child.stdout.take().context("the child's stdout")?;
    let mut guard = Guarded(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = tx.send(stdout.read_to_end(&mut out).map(|_| out));
    });
    let Some(status) = guard.exit_before(deadline)? else {
        drop(guard);
        bail!(
            "{what} did not finish within {} s, and was killed",
            within.as_secs()
        );
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let out = rx
        .recv_timeout(left.max(Duration::from_secs(5)))
        .with_context(|| format!("{what} exited, but its output did not close"))?
        .with_context(|| format!("reading {what}'s output"))?;
    Ok((status, out))
}

/// The env var the fleet scenario's `[fleet] redis_url_env` names (the default).
pub(crate) const FLEET_URL_ENV: &str = "GENESYS_ROUTER_REDIS_URL";

/// Starts a `redis-server` on a free loopback port for the fleet scenario: `None` if
/// none is installed, an error with its output if it is but does not start.
pub(crate) fn start_redis(dir: &Path) -> anyhow::Result<Option<(Guarded, String)>> {
    start_redis_with(OsStr::new("redis-server"), dir, START_WITHIN)
}

/// [`start_redis`] with `program`, waiting at most `within` for it to be ready. The
/// port is picked free, then released for redis to take; should another process take
/// it in between, a second port is tried.
fn start_redis_with(
    program: &OsStr,
    dir: &Path,
    within: Duration,
) -> anyhow::Result<Option<(Guarded, String)>> {
    match redis_once(program, dir, within) {
        Err(e) if format!("{e:#}").contains("Address already in use") => {
            eprintln!("bench: redis-server lost its port to another process; trying another");
            redis_once(program, dir, within)
        }
        other => other,
    }
}

/// One attempt of [`start_redis_with`].
fn redis_once(
    program: &OsStr,
    dir: &Path,
    within: Duration,
) -> anyhow::Result<Option<(Guarded, String)>> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("picking a port for redis-server")?
        .port();
    let spawned = Command::new(program)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--logfile", ""])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("starting redis-server"),
    };
    let stdout = child.stdout.take().context("redis-server stdout")?;
    let stderr = child.stderr.take().context("redis-server stderr")?;
    let guard = Guarded(child);
    await_line(
        &lines_of(vec![Box::new(stdout), Box::new(stderr)]),
        within,
        "redis-server",
        "print `Ready to accept connections`",
        |line| {
            line.contains("Ready to accept connections")
                .then(String::new)
        },
    )?;
    Ok(Some((guard, format!("redis://127.0.0.1:{port}/"))))
}

/// A simulator process (`gateway-bench sim`) and its base URL.
pub(crate) struct Simulator {
    guard: Guarded,
    /// Its base URL.
    pub(crate) url: String,
}

impl Simulator {
    /// Starts `gateway-bench sim` with `args` (a latency, a TLS folder).
    pub(crate) fn start(args: &[String]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("sim")
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the simulator")?;
        let stdout = child.stdout.take().context("simulator stdout")?;
        let guard = Guarded(child);
        let url = read_url(stdout, "the simulator", START_WITHIN)?;
        Ok(Self { guard, url })
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.guard.pid()
    }
}

/// One load process to run: a scenario at a concurrency against a target.
pub(crate) struct Load<'a> {
    pub(crate) scenario: Scenario,
    pub(crate) concurrency: usize,
    pub(crate) target: &'a str,
    /// More arguments for `gateway-bench load` (a fixed call count, a TLS CA).
    pub(crate) args: Vec<String>,
    /// More environment (the fleet's Redis URL).
    pub(crate) env: Vec<(&'static str, String)>,
    /// Processes to sample at the instants the load samples itself.
    pub(crate) sample_pids: Vec<u32>,
    /// How long the process may run (default: its warm-up and window, plus minutes).
    pub(crate) within: Option<Duration>,
}

impl<'a> Load<'a> {
    /// `scenario` at `concurrency` against `target`, with nothing more.
    pub(crate) fn new(scenario: Scenario, concurrency: usize, target: &'a str) -> Self {
        Self {
            scenario,
            concurrency,
            target,
            args: Vec::new(),
            env: Vec::new(),
            sample_pids: Vec::new(),
            within: None,
        }
    }

    /// The arguments `setup` needs (a CA file, HTTP/1.1 only, a concurrency limit, a
    /// call timeout).
    pub(crate) fn setup(mut self, setup: &Setup) -> Self {
        if let Some(ca) = &setup.ca_file {
            self.args.push("--ca-file".into());
            self.args.push(ca.display().to_string());
        }
        if setup.http1_only {
            self.args.push("--http1-only".into());
        }
        if setup.callers_http2 {
            self.args.push("--callers-http2".into());
        }
        if let Some(max) = setup.max_concurrency {
            self.args.push("--max-concurrency".into());
            self.args.push(max.to_string());
        }
        if let Some(timeout) = setup.call_timeout {
            self.args.push("--call-timeout-ms".into());
            self.args.push(timeout.as_millis().to_string());
        }
        self
    }

    /// Runs `gateway-bench load ...` and parses its result line; an error if it fails,
    /// overruns, or reports a failed call.
    pub(crate) fn run(&self, plan: &Plan) -> anyhow::Result<LoadResult> {
        let (warmup, measure) = plan.timing();
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["load", "--scenario", self.scenario.name()])
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--target", self.target])
            .args(["--warmup-ms", &warmup.as_millis().to_string()])
            .args(["--measure-ms", &measure.as_millis().to_string()])
            .arg("--out-dir")
            .arg(&plan.out_dir)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stderr(Stdio::inherit());
        for pid in &self.sample_pids {
            command.args(["--sample-pid", &pid.to_string()]);
        }
        let what = format!(
            "the {} load at concurrency {}",
            self.scenario.name(),
            self.concurrency
        );
        let within = self.within.unwrap_or(warmup + measure + LOAD_GRACE);
        let outcome = output_within(&mut command, within, &what);
        remove_audit_files(&plan.out_dir);
        let (status, stdout) = outcome?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
        let text = String::from_utf8_lossy(&stdout);
        let line = text
            .lines()
            .last()
            .context("the load process printed nothing")?;
        let result: LoadResult = serde_json::from_str(line)
            .with_context(|| format!("parsing the load result: {line}"))?;
        if result.errors != 0 {
            bail!("{what} reported {} failed calls", result.errors);
        }
        Ok(result)
    }

    /// Runs the load with the simulator's CPU sampled over the load's own window: the
    /// row, with the simulator's cores meanwhile, and the load's result.
    fn measured_result(
        mut self,
        plan: &Plan,
        sim: &Simulator,
    ) -> anyhow::Result<(Run, LoadResult)> {
        self.sample_pids.insert(0, sim.pid());
        let result = self.run(plan)?;
        let sim_cpu = result
            .sampled(sim.pid())
            .context("the load did not sample the simulator")?;
        let cores = sim_cpu.cpu_seconds / result.sampled_seconds.max(1e-9);
        Ok((run_row(&result, cores), result))
    }

    /// Runs the load and measures the simulator's CPU over its window, in cores.
    pub(crate) fn measured(self, plan: &Plan, sim: &Simulator) -> anyhow::Result<Run> {
        Ok(self.measured_result(plan, sim)?.0)
    }
}

/// Removes the audit files the library and sidecar runs wrote (hundreds of MB per run):
/// writing them is part of the cost measured, keeping them is not.
pub(crate) fn remove_audit_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.contains("-audit")
            && name.contains(".jsonl")
            && let Err(e) = std::fs::remove_file(entry.path())
        {
            eprintln!("bench: could not remove {}: {e}", entry.path().display());
        }
    }
}

/// A sidecar run: a fresh `genesys-router serve` (set up as `setup` says) in front of
/// `sim`, loaded at `concurrency`; the row carries the sidecar's CPU and peak RSS.
pub(crate) fn sidecar(
    plan: &Plan,
    sim: &Simulator,
    concurrency: usize,
    setup: &Setup,
) -> anyhow::Result<Run> {
    let config_path = plan.out_dir.join("sidecar.toml");
    let audit = plan.out_dir.join("sidecar-audit.jsonl");
    let config = router_config(&sim.url, &audit, setup);
    std::fs::write(&config_path, toml::to_string(&config)?)
        .context("writing the sidecar config")?;
    let mut child = Command::new(&plan.cli)
        .args(["serve", "--config"])
        .arg(&config_path)
        .args(["--listen", "127.0.0.1:0"])
        .env("GENESYS_CLIENT_ID", gateway_sim::DEFAULT_CLIENT_ID)
        .env("GENESYS_CLIENT_SECRET", gateway_sim::DEFAULT_CLIENT_SECRET)
        .env_remove("GENESYS_REGION")
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", plan.cli.display()))?;
    let stderr = child.stderr.take().context("sidecar stderr")?;
    let guard = Guarded(child);
    let pid = guard.pid();
    let url = read_url(stderr, "the sidecar", START_WITHIN)?;

    // The sidecar is sampled by the load process, at the instants it samples itself.
    let mut load = Load::new(Scenario::Sidecar, concurrency, &url).setup(setup);
    load.sample_pids.push(pid);
    let (mut row, result) = load.measured_result(plan, sim)?;
    drop(guard);
    remove_audit_files(&plan.out_dir);
    let sidecar = result
        .sampled(pid)
        .context("the load did not sample the sidecar")?;
    row.generator_cpu_us_per_request = Some(row.cpu_us_per_request);
    row.cpu_us_per_request = sidecar.cpu_seconds * 1e6 / row.requests.max(1) as f64;
    row.peak_rss_mib = sidecar.peak_rss_mib;
    Ok(row)
}

/// `within` from now; a sum past the clock's range (a flag's huge number) is a year.
fn deadline_after(within: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(within)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// An executable shell script `name` in `dir` running `body`.
    fn script(dir: &Path, name: &str, body: &str) -> std::ffi::OsString {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.into_os_string()
    }

    #[test]
    fn a_redis_server_not_installed_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-redis-server");
        let started = start_redis_with(missing.as_os_str(), dir.path(), START_WITHIN).unwrap();
        assert!(started.is_none());
    }

    #[test]
    fn a_redis_server_that_fails_to_start_is_an_error_with_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let fake = script(
            dir.path(),
            "redis-server",
            "echo 'Could not create server TCP listening socket: Address already in use' >&2\nexit 1",
        );
        let err = start_redis_with(&fake, dir.path(), START_WITHIN)
            .err()
            .expect("an error, not `None`");
        let err = format!("{err:#}");
        assert!(
            err.contains("exited before") && err.contains("Address already in use"),
            "{err}"
        );
    }

    #[test]
    fn a_redis_server_that_never_says_ready_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let fake = script(dir.path(), "redis-server", "echo starting\nexec sleep 600");
        let err = start_redis_with(&fake, dir.path(), Duration::from_millis(300))
            .err()
            .expect("an error at the deadline");
        let err = format!("{err:#}");
        assert!(
            err.contains("did not print `Ready to accept connections` within 0.3 s")
                && err.contains("starting"),
            "{err}"
        );
    }

    #[test]
    fn a_ready_redis_server_gives_its_url() {
        let dir = tempfile::tempdir().unwrap();
        let fake = script(
            dir.path(),
            "redis-server",
            "echo '* Ready to accept connections tcp'\nexec sleep 600",
        );
        let (_guard, url) = start_redis_with(&fake, dir.path(), START_WITHIN)
            .unwrap()
            .expect("started");
        assert!(url.starts_with("redis://127.0.0.1:"), "{url}");
    }

    #[test]
    fn a_child_that_never_prints_its_address_is_an_error_at_the_deadline() {
        let mut child = Command::new("sh")
            .args(["-c", "echo listening soon; exec sleep 600"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let _guard = Guarded(child);
        let err = read_url(stdout, "the simulator", Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the simulator did not print its address within 0.3 s")
                && err.contains("listening soon"),
            "{err}"
        );
    }

    #[test]
    fn a_child_running_past_its_deadline_is_killed_and_named() {
        let err = output_within(
            Command::new("sh").args(["-c", "echo partial; exec sleep 600"]),
            Duration::from_millis(300),
            "the library load at concurrency 16",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("the library load at concurrency 16 did not finish within"),
            "{err}"
        );
        let (status, out) = output_within(
            Command::new("sh").args(["-c", "echo done"]),
            START_WITHIN,
            "echo",
        )
        .unwrap();
        assert!(status.success());
        assert_eq!(out, b"done\n");
    }
}
