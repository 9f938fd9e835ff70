//! `genesys-router`: route, serve, demo, sim, schema, check-config, healthcheck.

use std::process::ExitCode;

use clap::Parser;
use gateway_cli::args::{Cli, Command};
use gateway_cli::{commands, demo, healthcheck};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Route(args) => commands::route(args).await,
        Command::Serve(args) => {
            let metrics = install_metrics()?;
            commands::serve(args, metrics).await
        }
        Command::Demo(args) => {
            let metrics = install_metrics()?;
            let options = demo::DemoOptions {
                requests: args.requests,
                concurrency: args.concurrency,
                out: args.out,
                seed: args.seed,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let report = demo::run(&options, &metrics).await?;
            print!("{}", report.summary);
            Ok(0)
        }
        Command::Sim(args) => commands::sim(args).await,
        Command::Schema(args) => commands::schema(&args),
        Command::CheckConfig(args) => Ok(commands::check_config(&args)),
        Command::Healthcheck(args) => Ok(healthcheck::healthcheck(&args).await),
    }
}

/// Installs the Prometheus recorder (before any router is built, so its handles record).
fn install_metrics() -> anyhow::Result<gateway_telemetry::MetricsHandle> {
    let handle = gateway_telemetry::install_at(None)?;
    gateway_telemetry::describe();
    Ok(handle)
}
