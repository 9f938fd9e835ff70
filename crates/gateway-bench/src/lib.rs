//! The load harness behind `gateway-bench`: scenarios that call the simulator (a bare
//! hyper client, the router, the sidecar), the per-process measurements, and the
//! orchestration that runs each scenario in its own process and writes
//! `target/bench/results.json`. Two binaries use it: `gateway-bench` (timing, CPU,
//! memory) and `gateway-bench-allocs` (allocations per call, under a counting
//! allocator that would distort timing).
//!
//! ```text
//! cargo xtask bench           # builds both, runs the micro-benchmarks and `gateway-bench run`
//! ```

pub mod caller;
pub mod load;
pub mod measure;
pub mod orchestrate;
mod plan;
mod processes;
mod report;
pub mod tls;

/// The ids of the criterion benchmarks `benches/micro.rs` defines: the report includes
/// these and no other estimates found in criterion's folder.
pub mod micro_ids {
    /// Build, validate and serialise a payload.
    pub const PAYLOAD_BUILD: &str = "payload/build_validate_serialize";
    /// The compiled payload schema check.
    pub const PAYLOAD_SCHEMA: &str = "payload/schema_check";
    /// `validate()` alone.
    pub const PAYLOAD_VALIDATE: &str = "payload/validate";
    /// Sticky selection over a 3-way split.
    pub const STICKY: &str = "selection/sticky_3_way";
    /// One call's metrics and audit entry (encoding and the JSONL write).
    pub const METRICS_AND_AUDIT: &str = "telemetry/metrics_and_audit_entry";
    /// Encoding an audit entry alone.
    pub const AUDIT_ENCODE: &str = "telemetry/audit_encode";
    /// The prompt's SHA-256 digest.
    pub const PROMPT_DIGEST: &str = "telemetry/prompt_digest";
    /// Every id above.
    pub const ALL: [&str; 7] = [
        PAYLOAD_BUILD,
        PAYLOAD_SCHEMA,
        PAYLOAD_VALIDATE,
        STICKY,
        METRICS_AND_AUDIT,
        AUDIT_ENCODE,
        PROMPT_DIGEST,
    ];
}

use std::process::ExitCode;

/// Runs a binary's `main` on a multi-threaded tokio runtime; an error is printed with
/// its causes and the exit code is non-zero.
pub fn block_on(main: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
