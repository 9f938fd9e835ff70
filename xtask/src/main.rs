//! Repository automation, run as `cargo xtask <command>` (see `.cargo/config.toml`).
//!
//! - `schema [--check]`: write `schemas/*.schema.json` from the Rust types, or check
//!   that the files on disk match them (exits non-zero naming each stale file) and keep
//!   the portable JSON Schema subset (`portable.rs`).
//! - `tidy`: no module over 600 lines of non-test code, no function over 70 lines,
//!   no import cycle between modules (`tidy.rs`).
//! - `package`: package the published crates and check that each builds, tests
//!   included, from its package alone (`package.rs`).
//! - `release`: build the release binary, check its size, and run the CLI tests
//!   against it (`release.rs`).
//! - `ci`: every check CI runs, in order, stopping at the first failure.
//! - `bench [--quick]`: micro-benchmarks and the load benchmark (`target/bench/results.json`).
//! - `openai-sdk`: the OpenAI door driven by the real OpenAI Python SDK, `LangChain` and
//!   the Vercel AI SDK (`openai_sdk.rs`; needs `python3`, `node` and the package
//!   registries, so not part of `ci`).

mod bench;
mod ci;
mod openai_sdk;
mod package;
mod portable;
mod release;
mod schema;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  schema            write schemas/*.schema.json from the Rust types
  schema --check    fail (naming each file) if schemas/ differs from the code or
                    leaves the portable JSON Schema subset (xtask/src/portable.rs)
  tidy              module and function sizes, no import cycle (xtask/src/tidy.rs)
  package           package the published crates and check them from their packages
  release           build the release binary, check its size, run the CLI tests on it
  ci                fmt, tidy, clippy, tests + doctests, schema --check, promtool, docs,
                    release, package, bench --quick
  bench [--quick]   benchmarks (bench profile); results in target/bench/results.json
  openai-sdk        the OpenAI door checked with the real OpenAI Python SDK, LangChain
                    and the Vercel AI SDK (needs python3 with venv, node with npm,
                    and the package registries; not part of ci)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["schema"] => repo_root().and_then(|root| schema::write(&root)),
        ["schema", "--check"] => repo_root().and_then(|root| schema::check(&root)),
        ["ci"] => repo_root().and_then(|root| ci::run(&root)),
        ["release"] => repo_root().and_then(|root| release::check(&root)),
        ["tidy"] => repo_root().and_then(|root| tidy::check(&root)),
        ["package"] => repo_root().and_then(|root| package::check(&root)),
        ["bench"] => repo_root().and_then(|root| bench::run(&root, false)),
        ["bench", "--quick"] => repo_root().and_then(|root| bench::run(&root, true)),
        ["openai-sdk"] => repo_root().and_then(|root| openai_sdk::run(&root)),
        ["help" | "--help" | "-h"] | [] => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown arguments {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A `cargo` command (the one running xtask) without the package variables `cargo run`
/// set for xtask itself: build scripts that track them (ring tracks
/// `CARGO_MANIFEST_DIR`) would otherwise rebuild whenever a shell build and an xtask
/// build alternate.
fn cargo_command() -> std::process::Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = std::process::Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            command.env_remove(name);
        }
    }
    command
}

/// Whether `cargo nextest` can run the tests.
pub(crate) fn nextest_available() -> bool {
    crate::cargo_command()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `cargo args...` in `root` with extra environment variables; the error says how
/// it ended.
fn run_cargo(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let status = cargo_command()
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot start cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("exited with {status}"))
    }
}

/// Where cargo builds for the workspace at `root`, as cargo itself resolves it
/// (`CARGO_TARGET_DIR`, `CARGO_BUILD_TARGET_DIR`, a `target-dir` in any
/// `.cargo/config.toml`), so a step reads what it just built, not a stale copy.
fn target_dir(root: &Path) -> Result<PathBuf, String> {
    let output = cargo_command()
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo metadata exited with {}", output.status));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cargo metadata's output is not JSON: {e}"))?;
    let dir = metadata["target_directory"]
        .as_str()
        .ok_or("cargo metadata names no target_directory")?;
    Ok(root.join(dir))
}

/// The root of the checkout xtask runs for, found at run time.
///
/// Never the folder xtask was compiled in (`env!("CARGO_MANIFEST_DIR")`): cargo hashes
/// workspace members by their path relative to the workspace, so with a shared target
/// dir (a global one, a second clone, a git worktree) one build serves every checkout,
/// and a baked-in path would make `schema --check` in one checkout read another's files.
fn repo_root() -> Result<PathBuf, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    find_root(
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        || locate_workspace(&cwd),
    )
}

/// The root from the runtime `CARGO_MANIFEST_DIR` (`cargo run`, and so `cargo xtask`,
/// sets it to this crate's folder in the checkout it runs in), else from `locate`.
fn find_root(
    manifest_dir: Option<PathBuf>,
    locate: impl FnOnce() -> Result<PathBuf, String>,
) -> Result<PathBuf, String> {
    let from_env = manifest_dir
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .and_then(|dir| dir.parent().map(Path::to_path_buf))
        .filter(|root| root.join("Cargo.toml").is_file());
    match from_env {
        Some(root) => Ok(root),
        None => locate(),
    }
}

/// The workspace root that `cargo locate-project --workspace` finds from `dir`, for
/// when xtask runs without cargo (the binary started by hand).
fn locate_workspace(dir: &Path) -> Result<PathBuf, String> {
    let output = cargo_command()
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot start cargo to find the workspace: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cannot find the workspace from {}: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let manifest = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    manifest
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("`cargo locate-project` printed {}", manifest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake workspace, `<tmp>/<test>/<name>/{Cargo.toml,xtask/Cargo.toml}`; one
    /// folder per test, as tests run in parallel.
    fn checkout(test: &str, name: &str) -> PathBuf {
        let root = std::env::temp_dir()
            .join(format!("xtask-root-{}-{test}", std::process::id()))
            .join(name);
        std::fs::create_dir_all(root.join("xtask")).unwrap();
        std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        std::fs::write(root.join("xtask/Cargo.toml"), "").unwrap();
        root
    }

    #[test]
    fn each_checkout_finds_itself_through_the_runtime_manifest_dir() {
        // Two checkouts that share one xtask build: each run's CARGO_MANIFEST_DIR names
        // its own, whatever folder the binary was compiled in.
        let (a, b) = (checkout("two", "a"), checkout("two", "b"));
        let never = || -> Result<PathBuf, String> { panic!("the env var is enough") };
        assert_eq!(find_root(Some(a.join("xtask")), never), Ok(a.clone()));
        assert_eq!(find_root(Some(b.join("xtask")), never), Ok(b.clone()));
        std::fs::remove_dir_all(a.parent().unwrap()).unwrap();
    }

    #[test]
    fn without_cargo_run_the_workspace_is_located_from_the_current_directory() {
        let root = checkout("located", "root");
        let nested = root.join("schemas");
        std::fs::create_dir_all(&nested).unwrap();
        // No env var, or one naming a folder without a manifest: ask cargo.
        for manifest_dir in [None, Some(root.join("nowhere"))] {
            let found = find_root(manifest_dir, || locate_workspace(&nested)).unwrap();
            assert_eq!(found.canonicalize().unwrap(), root.canonicalize().unwrap());
        }
        std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
    }
}
