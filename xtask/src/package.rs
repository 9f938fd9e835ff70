//! `cargo xtask package`: the published crates, packaged and then checked from their
//! packages alone.
//!
//! `cargo package --workspace` packages every published crate (failing on a path
//! dependency without a version, or a missing `readme`); each `.crate` is then unpacked
//! into `target/package-check/`, outside the checkout's crates, where a workspace of the
//! unpacked crates (each depending on the others through `[patch.crates-io]`, as they
//! would from crates.io) runs `cargo check --all-targets`. So a crate whose code, tests
//! or benches read a file outside itself (`include_str!("../../schemas/...")`) fails here.
//!
//! Why not `cargo package`'s own verification build: it builds each crate's dependency
//! tree again with that crate's features alone (minutes per crate on two cores), skips
//! tests, and treats the packaged crates as immutable registry sources, so a second run
//! in the same target dir reuses the first run's build of a crate whose code has
//! changed since (seen here: a stale `gateway-model` failed `gateway-telemetry`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Crates that are never published (`publish = false`), left out of the package.
const UNPUBLISHED: &[&str] = &["xtask", "gateway-bench", "gateway-tests"];

/// Packages the published crates and checks them from their packages.
pub fn check(root: &Path) -> Result<(), String> {
    let target = crate::target_dir(root)?;
    let packages = target.join("package");
    // Packages of crates since renamed or removed would otherwise be checked too.
    remove_dir(&packages)?;
    let mut args = vec!["package", "--workspace", "--locked", "--no-verify"];
    for name in UNPUBLISHED {
        args.extend(["--exclude", name]);
    }
    // A developer's uncommitted work is what needs checking; CI's clone is clean.
    args.push("--allow-dirty");
    crate::run_cargo(root, &args, &[]).map_err(|e| format!("cargo package: {e}"))?;

    let unpacked = target.join("package-check");
    remove_dir(&unpacked)?;
    std::fs::create_dir_all(&unpacked)
        .map_err(|e| format!("cannot create {}: {e}", unpacked.display()))?;
    let mut crates = Vec::new();
    for entry in std::fs::read_dir(&packages)
        .map_err(|e| format!("cannot list {}: {e}", packages.display()))?
    {
        let path = entry.map_err(|e| e.to_string())?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".crate"))
        else {
            continue;
        };
        let Some((name, _version)) = name_and_version(stem) else {
            return Err(format!(
                "{} is not named <crate>-<version>.crate",
                path.display()
            ));
        };
        unpack(&path, &unpacked)?;
        crates.push((name.to_owned(), stem.to_owned()));
    }
    if crates.is_empty() {
        return Err(format!(
            "cargo package left no .crate in {}",
            packages.display()
        ));
    }
    crates.sort();
    std::fs::write(unpacked.join("Cargo.toml"), manifest(&crates))
        .map_err(|e| format!("cannot write the check workspace: {e}"))?;
    // The checkout's lock, so the check resolves the versions CI tests; not `--locked`,
    // as the lock also lists the unpublished crates.
    std::fs::copy(root.join("Cargo.lock"), unpacked.join("Cargo.lock"))
        .map_err(|e| format!("cannot copy Cargo.lock: {e}"))?;
    let target_dir = target.to_string_lossy().into_owned();
    crate::run_cargo(
        &unpacked,
        &["check", "--workspace", "--all-targets", "--keep-going"],
        &[("CARGO_TARGET_DIR", &target_dir)],
    )
    .map_err(|e| {
        format!(
            "the packaged crates do not build from their packages alone ({e}); \
             a crate may read a file outside itself, see the errors above"
        )
    })
}

/// The check workspace: every unpacked crate a member, each found by the others by path.
fn manifest(crates: &[(String, String)]) -> String {
    let mut toml = String::from(
        "# Written by `cargo xtask package`: the published crates, unpacked from their\n\
         # .crate files, built together.\n[workspace]\nresolver = \"3\"\nmembers = [\n",
    );
    for (_, dir) in crates {
        let _ = writeln!(toml, "  \"{dir}\",");
    }
    toml.push_str("]\n\n[patch.crates-io]\n");
    for (name, dir) in crates {
        let _ = writeln!(toml, "{name} = {{ path = \"{dir}\" }}");
    }
    toml
}

/// Unpacks a `.crate` (a gzipped tar) into `dir` with the system's `tar`, every file
/// stamped with the time of unpacking (`-m`): cargo's packages all carry one fixed old
/// mtime, which would make cargo take a changed file for one it has already built.
fn unpack(file: &Path, dir: &Path) -> Result<(), String> {
    let status = Command::new("tar")
        .arg("-xzmf")
        .arg(file)
        .arg("-C")
        .arg(dir)
        .status()
        .map_err(|e| format!("cannot start tar to unpack {}: {e}", file.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("tar could not unpack {}: {status}", file.display()))
    }
}

fn remove_dir(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", dir.display())),
    }
}

/// A `.crate` file's stem split into the crate's name and its version: at the first `-`
/// that a `<major>.<minor>.<patch>` version follows (a name may hold `-` and digits, a
/// pre-release version `-` too).
fn name_and_version(stem: &str) -> Option<(&str, &str)> {
    stem.match_indices('-').find_map(|(at, _)| {
        let version = &stem[at + 1..];
        let core = version.split(['-', '+']).next().unwrap_or_default();
        let parts: Vec<&str> = core.split('.').collect();
        let numeric = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        numeric.then(|| (&stem[..at], version))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_workspace_lists_and_patches_every_crate() {
        let crates = [
            ("gateway-auth".to_owned(), "gateway-auth-0.1.0".to_owned()),
            ("gateway-model".to_owned(), "gateway-model-0.1.0".to_owned()),
        ];
        let toml = manifest(&crates);
        assert!(
            toml.contains("members = [\n  \"gateway-auth-0.1.0\",\n  \"gateway-model-0.1.0\",\n]")
        );
        assert!(
            toml.contains("[patch.crates-io]\ngateway-auth = { path = \"gateway-auth-0.1.0\" }\n")
        );
        assert!(toml.contains("gateway-model = { path = \"gateway-model-0.1.0\" }\n"));
    }

    #[test]
    fn crate_files_split_into_name_and_version() {
        for (stem, name, version) in [
            ("gateway-model-0.1.0", "gateway-model", "0.1.0"),
            ("gateway-model-0.2.0-rc.1", "gateway-model", "0.2.0-rc.1"),
            ("gateway-2fa-1.0.0+build-5", "gateway-2fa", "1.0.0+build-5"),
        ] {
            assert_eq!(name_and_version(stem), Some((name, version)), "{stem}");
        }
        assert_eq!(name_and_version("no-version"), None);
    }
}
