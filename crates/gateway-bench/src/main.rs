//! `gateway-bench`: the router's cost measured against a bare hyper client, and the
//! sidecar's against direct calls, in one run on one simulator. `cargo xtask bench`
//! builds it in release mode and runs `gateway-bench run`; BENCHMARKS.md explains the
//! figures.
//!
//! ```text
//! gateway-bench run [--quick] [--out-dir DIR] [--cli PATH] [--criterion-dir DIR]
//! gateway-bench sim                                  (the simulator, zero latency)
//! gateway-bench load --scenario S --concurrency N --target URL [...]
//! gateway-bench token-storm --target URL --callers N
//! ```

mod load;
mod measure;
mod orchestrate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::load::{Length, Scenario};

/// `--flag value` pairs and bare `--flag`s.
fn options(args: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    let mut it = args.iter().peekable();
    while let Some(arg) = it.next() {
        let Some(name) = arg.strip_prefix("--") else {
            bail!("unexpected argument `{arg}`")
        };
        let value = match it.peek() {
            Some(v) if !v.starts_with("--") => it.next().cloned().unwrap_or_default(),
            _ => String::new(),
        };
        out.insert(name.to_owned(), value);
    }
    Ok(out)
}

fn get<'a>(options: &'a HashMap<String, String>, name: &str) -> anyhow::Result<&'a str> {
    options
        .get(name)
        .map(String::as_str)
        .with_context(|| format!("missing --{name}"))
}

fn number<T: std::str::FromStr>(
    options: &HashMap<String, String>,
    name: &str,
    default: T,
) -> anyhow::Result<T> {
    match options.get(name) {
        Some(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("--{name} {v} is not a number")),
        None => Ok(default),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("usage: gateway-bench run|sim|load|token-storm [options]");
        return ExitCode::FAILURE;
    };
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
    match runtime.block_on(dispatch(command, rest)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: &str, rest: &[String]) -> anyhow::Result<()> {
    let opts = options(rest)?;
    match command {
        "sim" => {
            let sim = gateway_sim::Sim::builder()
                .record_capacity(0)
                .start()
                .await?;
            println!("gateway-sim {}", sim.base_url());
            // Runs until the orchestrator kills it.
            std::future::pending::<()>().await;
            Ok(())
        }
        "load" => {
            let scenario = Scenario::parse(get(&opts, "scenario")?)?;
            let concurrency = number(&opts, "concurrency", 16usize)?;
            let target = get(&opts, "target")?;
            let out_dir = PathBuf::from(
                opts.get("out-dir")
                    .cloned()
                    .unwrap_or_else(|| "target/bench".into()),
            );
            std::fs::create_dir_all(&out_dir)?;
            let length = match opts.get("calls") {
                Some(n) => Length::Count {
                    calls: n.parse().context("--calls")?,
                },
                None => Length::Timed {
                    warmup: Duration::from_millis(number(&opts, "warmup-ms", 500)?),
                    measure: Duration::from_millis(number(&opts, "measure-ms", 3000)?),
                },
            };
            let checkpoints: Vec<u64> = opts
                .get("checkpoints")
                .map(|c| c.split(',').filter_map(|n| n.parse().ok()).collect())
                .unwrap_or_default();
            let result = load::run(
                scenario,
                concurrency,
                target,
                length,
                &checkpoints,
                &out_dir,
            )
            .await?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        "token-storm" => {
            let requests = load::token_storm(
                get(&opts, "target")?,
                number(&opts, "callers", 10_000usize)?,
            )
            .await?;
            println!("{requests}");
            Ok(())
        }
        "run" => {
            let out_dir = PathBuf::from(
                opts.get("out-dir")
                    .cloned()
                    .unwrap_or_else(|| "target/bench".into()),
            );
            let exe_dir = std::env::current_exe()?
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default();
            let cli = opts
                .get("cli")
                .map_or_else(|| exe_dir.join("genesys-router"), PathBuf::from);
            if !cli.exists() {
                bail!(
                    "{} not found: build it with `cargo build --release -p gateway-cli`",
                    cli.display()
                );
            }
            let plan = orchestrate::Plan {
                quick: opts.contains_key("quick"),
                out_dir,
                cli,
                criterion_dir: opts.get("criterion-dir").map(PathBuf::from),
            };
            let report = tokio::task::spawn_blocking(move || orchestrate::run(&plan)).await??;
            print!("{report}");
            Ok(())
        }
        other => bail!("unknown command `{other}`"),
    }
}
