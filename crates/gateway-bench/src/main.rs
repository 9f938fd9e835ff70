//! `gateway-bench`: the router's cost measured against a bare hyper client, and the
//! sidecar's against direct calls, in one run on one simulator. `cargo xtask bench`
//! builds it with the `bench` profile (release settings, symbols kept) and runs
//! `gateway-bench run`; BENCHMARKS.md explains the figures.
//!
//! ```text
//! gateway-bench run [--quick] [--out-dir DIR] [--cli PATH] [--criterion-dir DIR]
//! gateway-bench sim [--latency-ms MS] [--tls-cert PEM --tls-key PEM]
//! gateway-bench load --scenario S --concurrency N --target URL [...]
//! gateway-bench token-storm --target URL --callers N
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};

use gateway_bench::caller::{Scenario, Setup, Without};
use gateway_bench::load::{self, Length};
use gateway_bench::orchestrate;

/// The router's cost against a bare hyper client, and the sidecar's against direct calls.
#[derive(Debug, Parser)]
#[command(name = "gateway-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every scenario, each in its own process, then the report and `results.json`.
    Run {
        /// Short runs: a smoke check, too short to quote.
        #[arg(long)]
        quick: bool,
        /// Where `results.json` and the per-scenario files go.
        #[arg(long, default_value = "target/bench")]
        out_dir: PathBuf,
        /// The `genesys-router` binary for the sidecar scenario (default: beside this one).
        #[arg(long)]
        cli: Option<PathBuf>,
        /// Criterion's output directory, whose estimates the report includes.
        #[arg(long)]
        criterion_dir: Option<PathBuf>,
    },
    /// The simulator, until killed; prints its base URL.
    Sim(SimArgs),
    /// One scenario's load; prints its result as one JSON line.
    Load(LoadArgs),
    /// Many callers asking one token source at once; prints the token requests made.
    TokenStorm {
        /// The simulator's base URL.
        #[arg(long)]
        target: String,
        /// Concurrent callers.
        #[arg(long, default_value_t = 10_000)]
        callers: usize,
    },
}

/// How the simulator answers.
#[derive(Debug, Args)]
struct SimArgs {
    /// Every answer takes this long (default: at once).
    #[arg(long)]
    latency_ms: Option<f64>,
    /// Serve TLS (HTTP/2 and HTTP/1.1 by ALPN) with this certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// One load run.
#[derive(Debug, Args)]
struct LoadArgs {
    /// baseline, library, direct, sidecar or fleet.
    #[arg(long, value_parser = Scenario::parse)]
    scenario: Scenario,
    /// Workers calling back to back.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The simulator's (or sidecar's) base URL.
    #[arg(long)]
    target: String,
    /// Where the scenario's files go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// A fixed number of calls instead of a timed run.
    #[arg(long)]
    calls: Option<u64>,
    /// Warm-up of a timed run, in milliseconds.
    #[arg(long, default_value_t = 500)]
    warmup_ms: u64,
    /// Measured window of a timed run, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    measure_ms: u64,
    /// Call counts at which a fixed-count run samples its memory (comma-separated).
    #[arg(long, value_delimiter = ',')]
    checkpoints: Vec<u64>,
    /// Leave out parts of the router to measure what they cost: `audit`, `metrics`
    /// (comma-separated; library and fleet only).
    #[arg(long, value_delimiter = ',')]
    without: Vec<String>,
    /// Trust this CA (PEM), for a simulator serving TLS.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Offer only HTTP/1.1 to the gateway.
    #[arg(long)]
    http1_only: bool,
    /// The router's concurrency limit (default 256).
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// The sidecar's callers multiplex over HTTP/2 (prior knowledge), about 100 calls
    /// per connection, instead of one HTTP/1.1 connection each.
    #[arg(long)]
    callers_http2: bool,
    /// A call without an answer this long fails (default 30,000: set the upstream's
    /// latency plus 30 s for a slow upstream; at most an hour).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    call_timeout_ms: Option<u64>,
    /// Also sample this process's CPU (and peak RSS) at the window's start and end, the
    /// instants this process samples its own (repeatable: the simulator, the sidecar).
    #[arg(long)]
    sample_pid: Vec<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    gateway_bench::block_on(dispatch(cli.command))
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Sim(args) => simulate(args).await,
        Command::Load(args) => load(args).await,
        Command::TokenStorm { target, callers } => {
            let requests = load::token_storm(&target, callers).await?;
            println!("{requests}");
            Ok(())
        }
        Command::Run {
            quick,
            out_dir,
            cli,
            criterion_dir,
        } => {
            let exe_dir = std::env::current_exe()?
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default();
            let cli = cli.unwrap_or_else(|| exe_dir.join("genesys-router"));
            if !cli.exists() {
                bail!(
                    "{} not found: build it with `cargo build --release -p gateway-cli`",
                    cli.display()
                );
            }
            let plan = orchestrate::Plan {
                quick,
                out_dir,
                cli,
                criterion_dir,
            };
            let report = tokio::task::spawn_blocking(move || orchestrate::run(&plan)).await??;
            print!("{report}");
            Ok(())
        }
    }
}

/// Runs the simulator until killed.
async fn simulate(args: SimArgs) -> anyhow::Result<()> {
    let mut builder = gateway_sim::Sim::builder().record_capacity(0);
    if let Some(ms) = args.latency_ms {
        builder = builder.behaviour(gateway_sim::Behaviour {
            latency: gateway_sim::Latency::Fixed { ms },
            ..gateway_sim::Behaviour::default()
        });
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        builder = builder.tls(
            std::fs::read_to_string(cert)?,
            std::fs::read_to_string(key)?,
        );
    }
    // Thousands of callers each hold a connection.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let sim = builder.start().await?;
    println!("gateway-sim {}", sim.base_url());
    // Runs until the orchestrator kills it.
    std::future::pending::<()>().await;
    Ok(())
}

/// Runs one load and prints its result line; an error, and so a non-zero exit, if any
/// call failed.
async fn load(args: LoadArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out_dir)?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let length = match args.calls {
        Some(calls) => Length::Count { calls },
        None => Length::Timed {
            warmup: Duration::from_millis(args.warmup_ms),
            measure: Duration::from_millis(args.measure_ms),
        },
    };
    let setup = Setup {
        without: Without::parse(&args.without)?,
        ca_file: args.ca_file,
        http1_only: args.http1_only,
        max_concurrency: args.max_concurrency,
        callers_http2: args.callers_http2,
        call_timeout: args.call_timeout_ms.map(Duration::from_millis),
    };
    let result = load::run(&load::Spec {
        scenario: args.scenario,
        concurrency: args.concurrency,
        target: &args.target,
        length,
        checkpoints: &args.checkpoints,
        out_dir: &args.out_dir,
        setup: &setup,
        sample_pids: &args.sample_pid,
    })
    .await?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
