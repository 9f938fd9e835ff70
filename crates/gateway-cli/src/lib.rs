//! The `genesys-router` command line, as a library so its pieces can be tested in-process:
//! the commands (the sidecar itself is `gateway-server`), the demo ([`demo::run`]), and the small commands.
//!
//! ```
//! use gateway_cli::args::Cli;
//! use clap::Parser;
//!
//! let cli = Cli::try_parse_from(["genesys-router", "check-config", "examples/router.toml"]).unwrap();
//! assert!(matches!(cli.command, gateway_cli::args::Command::CheckConfig(_)));
//! ```

// Output goes through `console` (stderr, in the log format) or `commands::write_stdout`
// (stdout, where `print!` would panic on a closed pipe).
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod args;
pub mod commands;
pub mod console;
pub mod demo;
pub mod exit;
pub mod healthcheck;
pub mod logging;
pub mod replace;
pub mod report;
pub mod runtime;
pub mod signal;
