//! Repository automation, run as `cargo xtask <command>` (see `.cargo/config.toml`).
//!
//! - `schema [--check]`: write `schemas/*.schema.json` from the Rust types, or check
//!   that the files on disk match them (exits non-zero naming each stale file).
//! - `ci`: every check CI runs, in order, stopping at the first failure.
//! - `bench [--quick]`: micro-benchmarks and the load benchmark (`target/bench/results.json`).

mod bench;
mod ci;
mod schema;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  schema            write schemas/*.schema.json from the Rust types
  schema --check    fail (naming each file) if schemas/ differs from the code
  ci                fmt, clippy, tests + doctests, schema --check, docs, bench --quick
  bench [--quick]   benchmarks (bench profile); results in target/bench/results.json
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["schema"] => schema::write(&repo_root()),
        ["schema", "--check"] => schema::check(&repo_root()),
        ["ci"] => ci::run(&repo_root()),
        ["bench"] => bench::run(&repo_root(), false),
        ["bench", "--quick"] => bench::run(&repo_root(), true),
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

/// The repository root: the parent of this crate's folder.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the repository root")
        .to_path_buf()
}
