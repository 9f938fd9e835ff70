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
    /// A program other than cargo, run from the checkout's root. When it is not on PATH
    /// the step is skipped with a note saying how to install it, except under `CI`,
    /// where it fails: CI must not pass a check it did not run.
    Tool {
        program: &'static str,
        args: Vec<&'static str>,
        install: &'static str,
    },
}

/// The Debian package that provides `promtool`.
const PROMTOOL_INSTALL: &str = "apt-get install prometheus";

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

    fn promtool(name: &'static str, args: &[&'static str]) -> Self {
        Self {
            name,
            action: Action::Tool {
                program: "promtool",
                args: args.to_vec(),
                install: PROMTOOL_INSTALL,
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
            Action::Tool { program, args, .. } => format!("{program} {}", args.join(" ")),
        }
    }
}

/// The tests and doctests: with nextest when it is installed (it does not run doctests,
/// so `cargo test --doc` follows), else with `cargo test`.
fn test_steps() -> Vec<Step> {
    let mut steps = Vec::new();
    if crate::nextest_available() {
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
    steps
}

fn steps() -> Vec<Step> {
    let mut steps = vec![
        Step::cargo("fmt", &["fmt", "--all", "--check"]),
        Step {
            name: "tidy",
            action: Action::InProcess(crate::tidy::check),
        },
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
    steps.extend(test_steps());
    steps.push(Step {
        name: "schema --check",
        action: Action::InProcess(crate::schema::check),
    });
    steps.push(Step::promtool(
        "promtool check rules",
        &["check", "rules", "ops/prometheus/genesys-router.rules.yml"],
    ));
    steps.push(Step::promtool(
        "promtool test rules",
        &[
            "test",
            "rules",
            "ops/prometheus/genesys-router.rules.test.yml",
        ],
    ));
    steps.push(Step {
        name: "doc",
        action: Action::Cargo {
            args: vec!["doc", "--workspace", "--no-deps", "--locked"],
            env: vec![("RUSTDOCFLAGS", "-D warnings")],
        },
    });
    steps.push(Step {
        name: "release",
        action: Action::InProcess(crate::release::check),
    });
    steps.push(Step {
        name: "package",
        action: Action::InProcess(crate::package::check),
    });
    steps.push(Step {
        name: "bench --quick",
        action: Action::InProcess(|root| crate::bench::run(root, true)),
    });
    steps
}

/// Whether `redis-server` can be run (the fleet tests need it).
fn redis_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `program args` in `root`: `Ok(None)` when it succeeds, `Ok(Some(note))` when it
/// is not installed and `in_ci` is false (the step is skipped), an error otherwise.
fn run_tool(
    root: &Path,
    program: &str,
    args: &[&str],
    install: &str,
    in_ci: bool,
) -> Result<Option<String>, String> {
    match Command::new(program).args(args).current_dir(root).status() {
        Ok(status) if status.success() => Ok(None),
        Ok(status) => Err(format!("{program} exited with {status}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if in_ci {
                Err(format!(
                    "{program} is not on PATH, and under CI every check must run \
                     (`.ci/run` installs it: `{install}`)"
                ))
            } else {
                Ok(Some(format!(
                    "{program} is not on PATH; skipped. Install it with `{install}`."
                )))
            }
        }
        Err(e) => Err(format!("cannot start {program}: {e}")),
    }
}

/// Runs every step in order; the first failure stops the run with its name and command.
pub fn run(root: &Path) -> Result<(), String> {
    // `CI=false` (or `0`, or empty) is a developer's way of saying "not CI".
    let in_ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    if !redis_available() {
        if in_ci {
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
            Action::Cargo { args, env } => crate::run_cargo(root, args, env).map(|()| None),
            Action::InProcess(f) => f(root).map(|()| None),
            Action::Tool {
                program,
                args,
                install,
            } => run_tool(root, program, args, install, in_ci),
        };
        match outcome {
            Ok(Some(note)) => println!(
                "note: {note}\n==> [{}/{total}] {} skipped",
                i + 1,
                step.name
            ),
            Ok(None) => println!(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_skipped_outside_ci_and_fails_under_ci() {
        let root = Path::new(".");
        let missing = "genesys-router-no-such-tool";
        let note = run_tool(root, missing, &[], "apt-get install it", false).unwrap();
        assert!(note.is_some_and(|n| n.contains(missing) && n.contains("apt-get install it")));
        let error = run_tool(root, missing, &[], "apt-get install it", true).unwrap_err();
        assert!(
            error.contains("not on PATH") && error.contains("apt-get install it"),
            "{error}"
        );
    }

    #[test]
    fn a_tool_that_fails_fails_the_step() {
        let root = Path::new(".");
        assert_eq!(run_tool(root, "sh", &["-c", "exit 0"], "-", true), Ok(None));
        let error = run_tool(root, "sh", &["-c", "exit 3"], "-", false).unwrap_err();
        assert!(
            error.starts_with("sh exited with") && error.contains('3'),
            "{error}"
        );
    }

    #[test]
    fn ci_checks_the_committed_alert_rules_with_promtool() {
        let commands: Vec<String> = steps().iter().map(Step::describe).collect();
        for file in [
            "check rules ops/prometheus/genesys-router.rules.yml",
            "test rules ops/prometheus/genesys-router.rules.test.yml",
        ] {
            let command = format!("promtool {file}");
            assert!(commands.contains(&command), "{command} not in {commands:?}");
            let path = file.rsplit(' ').next().unwrap();
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join(path)
                    .is_file(),
                "{path} is missing"
            );
        }
    }
}
