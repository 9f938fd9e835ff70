//! Shared helpers for the end-to-end tests in this folder (each `*.rs` beside this
//! file is one test binary, declared in `Cargo.toml`).
//!
//! ```
//! assert!(gateway_tests::repo_root().join("Cargo.toml").exists());
//! ```

use std::path::{Path, PathBuf};

/// The repository root (the folder holding the workspace `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}
