//! `cargo xtask bench [--quick]`: bench-profile builds (optimised, with symbols),
//! criterion micro-benchmarks, then the load benchmark (`gateway-bench run`), which
//! writes `target/bench/results.json`.

use std::path::Path;
use std::process::Command;

fn cargo(root: &Path, args: &[&str]) -> Result<(), String> {
    println!("==> cargo {}", args.join(" "));
    crate::run_cargo(root, args, &[]).map_err(|e| format!("`cargo {}` {e}", args.join(" ")))
}

/// Builds, runs the micro-benchmarks, then the load benchmark.
pub fn run(root: &Path, quick: bool) -> Result<(), String> {
    // The bench profile, not release: `cargo bench` below builds with it anyway, and
    // release is stripped. Only crates whose features differ between the two package
    // sets (dev-dependencies count for `cargo bench`) build twice.
    cargo(
        root,
        &[
            "build",
            "--profile",
            "bench",
            "--locked",
            "-p",
            "gateway-bench",
            "-p",
            "gateway-cli",
        ],
    )?;
    let mut micro = vec![
        "bench",
        "--locked",
        "-p",
        "gateway-bench",
        "--bench",
        "micro",
        "--",
    ];
    if quick {
        micro.extend(["--warm-up-time", "0.2", "--measurement-time", "0.5"]);
    }
    cargo(root, &micro)?;

    let target = crate::target_dir(root)?;
    // Cargo puts the bench profile's output in target/release/, as it does release's.
    let bin = target.join("release/gateway-bench");
    let mut command = Command::new(&bin);
    command
        .arg("run")
        .arg("--out-dir")
        .arg(target.join("bench"))
        .arg("--cli")
        .arg(target.join("release/genesys-router"))
        .arg("--criterion-dir")
        .arg(target.join("criterion"))
        .current_dir(root);
    if quick {
        command.arg("--quick");
    }
    println!(
        "==> {} run{}",
        bin.display(),
        if quick { " --quick" } else { "" }
    );
    let status = command
        .status()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the load benchmark failed ({status})"))
    }
}
