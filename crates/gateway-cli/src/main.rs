//! `genesys-router`: route, serve, demo, sim, schema, check-config, healthcheck,
//! completions, man.

// Output goes through `console` or `commands::write_stdout`, never `print!`.
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::Parser;
use gateway_cli::args::{Cli, Command};
use gateway_cli::exit::{self, Exit};
use gateway_cli::logging::{self, LogFormat};
use gateway_cli::runtime::{self, RuntimeError};
use gateway_cli::{commands, console, demo, healthcheck};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return refused(&e),
    };
    let json = matches!(&cli.command, Command::Route(args) if args.json);
    if let Err(e) = logging::init(cli.log.as_deref(), cli.log_format) {
        // A bad filter is a usage error, like a bad flag (clap exits 2 for those).
        if json {
            usage_json(&e.to_string());
        }
        console::error(e);
        return Exit::Usage.into();
    }
    let log_format = cli.log_format;

    let runtime = match runtime::build() {
        Ok(runtime) => runtime,
        Err(e @ RuntimeError::WorkerThreads(_)) => {
            // A bad setting, like a bad log filter: nothing ran.
            if json {
                usage_json(&e.to_string());
            }
            console::error(e);
            return Exit::Usage.into();
        }
        Err(e) => {
            let e = anyhow::Error::new(e);
            if json {
                error_json(&e);
            }
            console::error(exit::render(&e));
            return Exit::Failure.into();
        }
    };
    let result = runtime.block_on(run(cli.command, log_format));
    // A blocking task still running (a DNS lookup a timeout gave up on) must not hold
    // the exit: dropping the runtime would wait for it without bound.
    runtime.shutdown_timeout(BLOCKING_TASKS_GRACE);
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            exit::report(&e);
            exit::classify(&e).into()
        }
    }
}

/// Reports a command line clap refused (or its help or version) and gives the exit code.
fn refused(e: &clap::Error) -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    let from_env = gateway_cli::args::refused_env_var(e, &args)
        .map(|var| format!("the refused value came from the environment variable {var}"));
    if e.use_stderr() && route_json(args.into_iter()) {
        // clap's message, up to its usage paragraph, on one line.
        let text = e.to_string();
        let lines: Vec<&str> = text
            .lines()
            .take_while(|l| !l.is_empty())
            .map(str::trim)
            .collect();
        let mut message = lines.join(" ").trim_start_matches("error: ").to_owned();
        if let Some(from_env) = &from_env {
            message = format!("{message} ({from_env})");
        }
        usage_json(&message);
    }
    // The message (or the help, or the version) and clap's code: 2 for a wrong command
    // line, 0 for help. Help or a version that cannot be written to stdout is a failure
    // (1), as any other output that cannot be; a reader that stops early (`| head`) is
    // none, as `commands::write_stdout` has it.
    if let Err(write) = e.print()
        && !e.use_stderr()
        && write.kind() != std::io::ErrorKind::BrokenPipe
    {
        console::error(format!("writing to standard output: {write}"));
        return Exit::Failure.into();
    }
    if let Some(from_env) = from_env {
        console::info(from_env);
    }
    u8::try_from(e.exit_code()).map_or(Exit::Usage.into(), ExitCode::from)
}

/// How long the exit waits for blocking tasks still running once the command is done.
const BLOCKING_TASKS_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether the command line asks `route` for JSON, read from the raw arguments (for a
/// command line clap refused).
fn route_json(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let args: Vec<_> = args.collect();
    args.iter().any(|a| a == "route") && args.iter().any(|a| a == "--json")
}

/// `route --json`'s error document for a usage failure found before the command ran, so
/// a script reads one JSON document whatever went wrong.
fn usage_json(message: &str) {
    error_json(&anyhow::Error::new(exit::InvalidInput(message.to_owned())));
}

/// `route --json`'s error document for `err`, found before the command ran.
fn error_json(err: &anyhow::Error) {
    if let Ok(body) = serde_json::to_string_pretty(&exit::json_error(err)) {
        let body = console::json_for_stdout(&body);
        let _ = commands::write_stdout(format!("{body}\n").as_bytes());
    }
}

async fn run(command: Command, log_format: LogFormat) -> anyhow::Result<i32> {
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
                // A bar is no JSON line: text logs on a terminal only.
                progress: log_format == LogFormat::Text
                    && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let report = demo::run(&options, &metrics).await?;
            commands::write_stdout(report.summary.as_bytes())?;
            Ok(0)
        }
        Command::Sim(args) => commands::sim(args).await,
        Command::Schema(args) => commands::schema(&args),
        Command::CheckConfig(args) => commands::check_config(&args),
        Command::Healthcheck(args) => Ok(healthcheck::healthcheck(&args).await),
        Command::Completions(args) => commands::completions(&args),
        Command::Man(args) => commands::man(&args),
    }
}

/// Installs the Prometheus recorder (before any router is built, so its handles record).
fn install_metrics() -> anyhow::Result<gateway_telemetry::MetricsHandle> {
    let handle = gateway_telemetry::install()?;
    gateway_telemetry::describe();
    Ok(handle)
}
