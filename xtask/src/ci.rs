//! `cargo xtask ci`: every check CI runs, printed as it goes, stopping at the first failure.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// One CI step: a name and what it runs.
struct Step {
    name: &'static str,
    action: Action,
}

enum Action {
    /// A cargo command, with extra environment variables.
    Cargo {
        args: Vec<&'static str>,
        env: Vec<(&'static str, &'static str)>,
    },
    /// Code run inside xtask.
    InProcess(fn(&Path) -> Result<(), String>),
}

impl Step {
    fn cargo(name: &'static str, args: &[&'static str]) -> Self {
        Self {
            name,
            action: Action::Cargo {
                args: args.to_vec(),
                env: Vec::new(),
            },
        }
    }

    fn describe(&self) -> String {
        match &self.action {
            Action::Cargo { args, env } => {
                let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v:?} ")).collect();
                format!("{}cargo {}", env.concat(), args.join(" "))
            }
            Action::InProcess(_) => format!("cargo xtask {}", self.name),
        }
    }
}

fn nextest_available() -> bool {
    crate::cargo_command()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn steps() -> Vec<Step> {
    let mut steps = vec![
        Step::cargo("fmt", &["fmt", "--all", "--check"]),
        Step::cargo(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        ),
    ];
    if nextest_available() {
        steps.push(Step::cargo(
            "test",
            &[
                "nextest",
                "run",
                "--workspace",
                "--locked",
                "--no-fail-fast",
            ],
        ));
        steps.push(Step::cargo(
            "doctest",
            &["test", "--workspace", "--doc", "--locked"],
        ));
    } else {
        println!("note: cargo-nextest not found; running the tests with `cargo test`");
        steps.push(Step::cargo(
            "test",
            &["test", "--workspace", "--locked", "--no-fail-fast"],
        ));
    }
    steps.push(Step {
        name: "schema --check",
        action: Action::InProcess(crate::schema::check),
    });
    steps.push(Step {
        name: "doc",
        action: Action::Cargo {
            args: vec!["doc", "--workspace", "--no-deps", "--locked"],
            env: vec![("RUSTDOCFLAGS", "-D warnings")],
        },
    });
    steps.push(Step {
        name: "bench --quick",
        action: Action::InProcess(|root| crate::bench::run(root, true)),
    });
    steps
}

/// Runs every step in order; the first failure stops the run with its name and command.
/// Whether `redis-server` can be run (the fleet tests need it).
fn redis_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn run(root: &Path) -> Result<(), String> {
    if !redis_available() {
        if std::env::var_os("CI").is_some() {
            return Err(
                "redis-server is not on PATH: the fleet tests need it (`.ci/run` installs the \
                 Debian package redis-server)"
                    .into(),
            );
        }
        println!(
            "note: redis-server is not on PATH; the fleet tests (gateway-fleet) will skip. \
             Install it with `apt-get install redis-server`."
        );
    }
    let steps = steps();
    let total = steps.len();
    let started = Instant::now();
    for (i, step) in steps.iter().enumerate() {
        let command = step.describe();
        println!("\n==> [{}/{total}] {}: {command}", i + 1, step.name);
        let t = Instant::now();
        let outcome = match &step.action {
            Action::Cargo { args, env } => crate::run_cargo(root, args, env),
            Action::InProcess(f) => f(root),
        };
        match outcome {
            Ok(()) => println!(
                "==> [{}/{total}] {} passed in {:.1?}",
                i + 1,
                step.name,
                t.elapsed()
            ),
            Err(why) => {
                return Err(format!(
                    "CI step `{}` failed ({}): {why}\nre-run it alone with: {command}",
                    step.name,
                    format_args!("{}/{total}", i + 1)
                ));
            }
        }
    }
    println!(
        "\nxtask ci: all {total} steps passed in {:.1?}",
        started.elapsed()
    );
    Ok(())
}
