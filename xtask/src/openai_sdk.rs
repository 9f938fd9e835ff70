//! `cargo xtask openai-sdk`: the sidecar's OpenAI door driven by the real clients, against
//! the simulator: the OpenAI Python SDK and `LangChain` (`tests/openai-sdk/check.py`), and
//! the Vercel AI SDK (`tests/openai-sdk/check.mjs`).
//!
//! It builds the CLI, starts `genesys-router sim` and `genesys-router serve` on free
//! loopback ports, installs the pinned clients (`requirements.txt` into a virtualenv,
//! `package.json` with npm, both under `target/openai-sdk/`), and runs the checks. It
//! needs `python3` with `venv` and `node` with `npm`; it is not part of `cargo xtask ci`,
//! which must not depend on `PyPI` or npm.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The routes of `examples/router.toml`, which the checks call by name.
const ROUTES: &str = "classify,reply,summarize";

/// A caller key the sidecar is started with.
const CALLER_KEY: &str = "openai-sdk-check-key";

/// Runs the checks; the error names the step that failed.
pub fn run(root: &Path) -> Result<(), String> {
    crate::run_cargo(root, &["build", "--locked", "-p", "gateway-cli"], &[])
        .map_err(|e| format!("cargo build -p gateway-cli: {e}"))?;
    let target = crate::target_dir(root)?;
    let binary = target.join("debug/genesys-router");
    let work = target.join("openai-sdk");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let python = virtualenv(root, &work)?;
    let node_check = node_packages(root, &work)?;

    let (sim, sim_url) = Running::start(
        Command::new(&binary).args(["sim", "--listen", "127.0.0.1:0"]),
        "listening on ",
    )?;
    let config = work.join("router.toml");
    write_config(root, &config, &sim_url, &work.join("audit.jsonl"))?;
    let (sidecar, sidecar_url) = Running::start(
        Command::new(&binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("GENESYS_CLIENT_ID", "sim-client")
            .env("GENESYS_CLIENT_SECRET", "sim-secret")
            .env("GENESYS_ROUTER_API_KEYS", CALLER_KEY),
        "serving on ",
    )?;
    let v1 = format!("{sidecar_url}/v1");
    let client = |program: &Path, script: &Path| {
        let mut command = Command::new(program);
        command
            .arg(script)
            .env("ROUTER_URL", &v1)
            .env("ROUTER_KEY", CALLER_KEY)
            .env("ROUTER_ROUTES", ROUTES);
        command
    };
    succeed(&mut client(
        &python,
        &root.join("tests/openai-sdk/check.py"),
    ))
    .map_err(|e| format!("tests/openai-sdk/check.py: {e}"))?;
    succeed(&mut client(Path::new("node"), &node_check))
        .map_err(|e| format!("tests/openai-sdk/check.mjs: {e}"))?;
    drop((sidecar, sim));
    Ok(())
}

/// `check.mjs` copied next to the pinned Vercel AI SDK packages in `work/node`, where
/// node resolves its imports.
fn node_packages(root: &Path, work: &Path) -> Result<PathBuf, String> {
    let node = work.join("node");
    std::fs::create_dir_all(&node).map_err(|e| format!("{}: {e}", node.display()))?;
    for file in ["package.json", "check.mjs"] {
        let from = root.join("tests/openai-sdk").join(file);
        std::fs::copy(&from, node.join(file))
            .map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
    }
    succeed(
        Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&node),
    )
    .map_err(|e| {
        format!(
            "npm install in {} (is node installed?): {e}",
            node.display()
        )
    })?;
    Ok(node.join("check.mjs"))
}

/// The virtualenv's `python`, with the pinned clients installed.
fn virtualenv(root: &Path, work: &Path) -> Result<PathBuf, String> {
    let venv = work.join("venv");
    let python = venv.join("bin/python");
    if !python.is_file() {
        succeed(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .map_err(|e| format!("python3 -m venv (is python3-venv installed?): {e}"))?;
    }
    succeed(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(root.join("tests/openai-sdk/requirements.txt")),
    )
    .map_err(|e| format!("pip install -r tests/openai-sdk/requirements.txt: {e}"))?;
    Ok(python)
}

fn succeed(command: &mut Command) -> Result<(), String> {
    let status = command.status().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("exited with {status}"))
    }
}

/// `examples/router.toml` pointed at the simulator, with its audit file in `work`,
/// calling for keys from `GENESYS_ROUTER_API_KEYS`.
fn write_config(root: &Path, to: &Path, sim_url: &str, audit: &Path) -> Result<(), String> {
    let example = root.join("examples/router.toml");
    let text = std::fs::read_to_string(&example)
        .map_err(|e| format!("cannot read {}: {e}", example.display()))?;
    let mut config = String::new();
    for line in text.lines() {
        let line = match line {
            l if l.starts_with("region = ") => format!("api_base = \"{sim_url}\""),
            l if l.starts_with("file = ") => format!("file = \"{}\"", audit.display()),
            l if l.starts_with("# api_keys_env = ") => {
                "api_keys_env = \"GENESYS_ROUTER_API_KEYS\"".to_owned()
            }
            l => l.to_owned(),
        };
        config.push_str(&line);
        config.push('\n');
    }
    std::fs::write(to, config).map_err(|e| format!("cannot write {}: {e}", to.display()))
}

/// A child process, killed when dropped.
struct Running(Child);

impl Running {
    /// Starts `command` and reads its stderr (where the CLI reports) up to the line
    /// holding `marker`, which is followed by the URL it serves.
    fn start(command: &mut Command, marker: &str) -> Result<(Self, String), String> {
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let stderr = child.stderr.take();
        let running = Self(child);
        let mut lines = BufReader::new(stderr.ok_or("no stderr")?).lines();
        let url = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                let (_, rest) = line.split_once(marker)?;
                rest.split_whitespace().next().map(str::to_owned)
            })
            .ok_or_else(|| format!("{command:?} ended without printing `{marker}<url>`"))?;
        // Pass on what it says later (a warning, an error), so it never blocks on a
        // full pipe and nothing is hidden.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| eprintln!("{l}")));
        Ok((running, url))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
