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
