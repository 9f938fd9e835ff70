//! `cargo xtask release`: the binary `cargo build --release -p gateway-cli` makes, its
//! size checked and `crates/gateway-cli/tests/cli.rs` run against it, so what ships is
//! what the log, exit-code and output tests check.

use std::path::Path;

/// The largest release binary that ships (stripped, LTO; about 18 MB today).
const MAX_BINARY_BYTES: u64 = 25_000_000;

/// Builds the release binary, checks its size, and runs the CLI tests against it.
pub fn check(root: &Path) -> Result<(), String> {
    crate::run_cargo(
        root,
        &["build", "--release", "--locked", "-p", "gateway-cli"],
        &[],
    )
    .map_err(|e| format!("cargo build --release -p gateway-cli: {e}"))?;
    let target = crate::target_dir(root)?;
    let binary = target.join("release/genesys-router");
    let size = std::fs::metadata(&binary)
        .map_err(|e| format!("cannot read {}: {e}", binary.display()))?
        .len();
    println!("{}: {:.1} MB", binary.display(), mb(size));
    if size > MAX_BINARY_BYTES {
        return Err(format!(
            "the release binary is {:.1} MB, over the {:.0} MB it may ship at \
             (is `[profile.release]` still stripping it?)",
            mb(size),
            mb(MAX_BINARY_BYTES)
        ));
    }
    let binary = binary.to_string_lossy().into_owned();
    let env = [("GENESYS_ROUTER_BIN", binary.as_str())];
    let args: &[&str] = if crate::nextest_available() {
        &[
            "nextest",
            "run",
            "--locked",
            "-p",
            "gateway-cli",
            "--test",
            "cli",
        ]
    } else {
        &["test", "--locked", "-p", "gateway-cli", "--test", "cli"]
    };
    crate::run_cargo(root, args, &env)
        .map_err(|e| format!("the CLI tests against the release binary: {e}"))
}

#[allow(clippy::cast_precision_loss)] // a file size shown to one decimal
fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
