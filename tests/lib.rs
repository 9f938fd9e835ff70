//! Shared helpers for the end-to-end tests in this folder (each `*.rs` beside this
//! folder's `tests/` is one test binary, found by cargo with no entry in `Cargo.toml`): a simulator plus a router wired to
//! it with the simulator's credentials.
//!
//! ```
//! assert!(gateway_tests::repo_root().join("Cargo.toml").exists());
//! ```

use std::path::{Path, PathBuf};

use gateway_auth::Credentials;
use gateway_model::{EnvironmentConfig, RouterConfig};
use gateway_router::{Router, RouterBuilder};
use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SimHandle};

/// The workspace README's Rust examples, compiled as doctests so they stay true. They
/// live here, not in a published crate, because the README sits outside every crate.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The repository root (the folder holding the workspace `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

/// A config pointing at `sim`, with fast retries and no routes yet.
pub fn config_for(sim: &SimHandle) -> RouterConfig {
    let mut config = RouterConfig::new(EnvironmentConfig::at(sim.base_url()));
    config.retry.base_delay_ms = 10;
    config.retry.max_delay_ms = 100;
    config.audit.enabled = false;
    config
}

/// A router builder for `config` that logs in with the simulator's client.
pub fn router_for(config: RouterConfig) -> RouterBuilder {
    Router::builder(config).credentials(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
}

/// Each series' value as `metrics` renders it now (0 when absent), by name and labels.
pub fn read_metrics(
    metrics: &gateway_telemetry::MetricsHandle,
) -> impl Fn(&str, &[(&str, &str)]) -> f64 + use<> {
    let samples = gateway_telemetry::exposition::parse(&metrics.render())
        .expect("the exposition text parses");
    move |name, labels| {
        samples
            .get(&gateway_telemetry::exposition::series(name, labels))
            .copied()
            .unwrap_or(0.0)
    }
}
