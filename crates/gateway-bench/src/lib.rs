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

pub mod load;
pub mod measure;
pub mod orchestrate;
