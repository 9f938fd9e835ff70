//! `gateway-bench-allocs`: heap allocations per call of one scenario, counted by dhat's
//! global allocator (which takes a lock and a backtrace per allocation, so timing runs
//! live in `gateway-bench`, never here). After a warm-up (connections, token, caches),
//! it counts the allocations of `--calls` calls and prints one JSON line; with
//! `--profile FILE` it also writes dhat's per-site profile (open it in dhat's viewer,
//! `dh_view.html` from valgrind, to see which code allocates).
//!
//! ```text
//! gateway-bench-allocs --scenario library --target http://127.0.0.1:PORT --calls 2000
//! ```
//!
//! A reallocation counts as one allocation, as dhat counts it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use gateway_bench::caller::{self, Scenario, Setup};
use gateway_bench::load;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Heap allocations per call of one scenario.
#[derive(Debug, Parser)]
#[command(name = "gateway-bench-allocs", version)]
struct Cli {
    /// baseline, library, direct, sidecar or fleet.
    #[arg(long, value_parser = Scenario::parse)]
    scenario: Scenario,
    /// The simulator's (or sidecar's) base URL.
    #[arg(long)]
    target: String,
    /// Workers calling back to back.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Calls counted (after as many again of warm-up, at most 2,000).
    #[arg(long, default_value_t = 2_000)]
    calls: u64,
    /// Where the scenario's files (the audit trail) go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// Also write dhat's per-site profile of the counted calls here.
    #[arg(long)]
    profile: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    gateway_bench::block_on(count(&cli))
}

async fn count(cli: &Cli) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cli.out_dir)?;
    let setup = Setup::default();
    let caller = Arc::new(
        caller::caller(
            cli.scenario,
            cli.concurrency,
            &cli.target,
            &cli.out_dir,
            &setup,
        )
        .await?,
    );
    load::drive(&caller, cli.concurrency, cli.calls.min(2_000)).await?;

    let mut builder = dhat::Profiler::builder().trim_backtraces(Some(40));
    builder = match &cli.profile {
        Some(path) => builder.file_name(path),
        None => builder.testing(),
    };
    let profiler = builder.build();
    let before = dhat::HeapStats::get();
    load::drive(&caller, cli.concurrency, cli.calls).await?;
    let after = dhat::HeapStats::get();
    drop(profiler);

    let calls = cli.calls.max(1) as f64;
    let line = serde_json::json!({
        "scenario": cli.scenario.name(),
        "concurrency": cli.concurrency,
        "calls": cli.calls,
        "allocations_per_call": (after.total_blocks - before.total_blocks) as f64 / calls,
        "bytes_per_call": (after.total_bytes - before.total_bytes) as f64 / calls,
        "call_future_bytes": caller.call_future_bytes(),
    });
    println!("{line}");
    Ok(())
}
