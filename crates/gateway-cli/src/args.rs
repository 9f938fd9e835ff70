//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use gateway_model::Tuning;
use gateway_sim::{MAX_WINDOW_SECS, RateLimit, RetryAfterStyle};

use crate::exit::EXIT_CODES_HELP;
use crate::logging::LogFormat;

/// Routes LLM prompts to the Genesys Cloud AI Gateway: deterministic model selection,
/// temperature tuning, fallback chains, metrics and an audit trail.
#[derive(Debug, Parser)]
#[command(
    name = "genesys-router",
    version,
    propagate_version = true,
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// Log filter (tracing's `RUST_LOG` syntax), such as `info` or `gateway_router=debug`
    /// [default: `GENESYS_ROUTER_LOG`, else `RUST_LOG`, else `warn`].
    #[arg(long, global = true)]
    pub log: Option<String>,

    /// Log format on stderr: `text`, coloured on a terminal unless `NO_COLOR` is set, or
    /// `json`, one object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "GENESYS_ROUTER_LOG_FORMAT",
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Route one prompt and print the answer.
    Route(RouteArgs),
    /// Run the router as an HTTP sidecar (`POST /v1/route`, `/metrics`, `/healthz`, `/readyz`).
    Serve(ServeArgs),
    /// Route a batch of prompts against the embedded simulator and summarise (no credentials needed).
    Demo(DemoArgs),
    /// Run the Genesys Cloud simulator on its own, for your own tests.
    Sim(SimArgs),
    /// Print or write the JSON Schemas.
    Schema(SchemaArgs),
    /// Validate a config file and print every problem with its path.
    CheckConfig(CheckConfigArgs),
    /// Probe a running sidecar (exit 0 on a 2xx answer, else 1): a container health check.
    Healthcheck(HealthcheckArgs),
    /// Print a shell completion script (`genesys-router completions bash > ...`).
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per command to a directory.
    Man(ManArgs),
}

/// `route`.
#[derive(Debug, clap::Args)]
pub struct RouteArgs {
    /// The config file (TOML).
    #[arg(long, short, env = "GENESYS_ROUTER_CONFIG")]
    pub config: PathBuf,
    /// The route name.
    #[arg(long, short)]
    pub route: String,
    /// The prompt; read from standard input when absent.
    #[arg(long, short)]
    pub prompt: Option<String>,
    /// The tuning level.
    #[arg(long, short, value_enum, default_value_t = TuningArg::Default)]
    pub tuning: TuningArg,
    /// The sticky key (a conversation id, say).
    #[arg(long, short)]
    pub key: Option<String>,
    /// A metadata label, `key=value` (repeatable).
    #[arg(long = "meta", value_parser = parse_label)]
    pub metadata: Vec<(String, String)>,
    /// Print the whole outcome as JSON instead of the answer text; a failure prints a
    /// JSON error body (`code`, `message`, `exitCode`, ...) instead.
    #[arg(long)]
    pub json: bool,
}

/// `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The config file (TOML).
    #[arg(long, short, env = "GENESYS_ROUTER_CONFIG")]
    pub config: PathBuf,
    /// The address to listen on.
    #[arg(long, short, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// How long to let in-flight calls finish on shutdown, in seconds (0 to 3600;
    /// replaces `[server] drain_timeout_ms`). Calls still running then are cancelled,
    /// audited and answered 503.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_secs: Option<u64>,
    /// Serve a non-loopback address without API keys (behind a proxy that authenticates).
    #[arg(long)]
    pub allow_unauthenticated: bool,
}

/// `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Prompts to route (1 to 1,000,000).
    #[arg(long, short = 'n', default_value_t = 300, value_parser = counts(1_000_000))]
    pub requests: usize,
    /// Calls in flight at once (1 to 1,024).
    #[arg(long, short, default_value_t = 16, value_parser = counts(1_024))]
    pub concurrency: usize,
    /// Where the audit log and the metrics snapshot go.
    #[arg(long, short, default_value = "genesys-router-demo")]
    pub out: PathBuf,
    /// The simulator's seed (the same seed gives the same run at `-c 1`; more calls in
    /// flight reach the simulator in a different order each run).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// `sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// The address to listen on.
    #[arg(long, short, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The seed for random draws.
    #[arg(long, default_value_t = 0x5EED)]
    pub seed: u64,
    /// An accepted OAuth client, `id:secret` (repeatable; default `sim-client:sim-secret`).
    #[arg(long = "client", value_parser = parse_client)]
    pub clients: Vec<(String, String)>,
    /// Token lifetime in seconds (1 to 172800, the range Genesys Cloud allows).
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=172_800))]
    pub token_lifetime_secs: u64,
    /// The catalogue's model ids (comma-separated; default: the built-in four).
    #[arg(long, value_delimiter = ',', value_parser = parse_model_id)]
    pub models: Vec<String>,
    /// Limit prompt calls per OAuth client, across all of its tokens, to `ALLOWED` per
    /// `WINDOW_SECS` (such as `300/60`; at least 1 call, a window of 1 to 86400 s);
    /// beyond it calls get 429 with `Retry-After`. Off by default.
    #[arg(long, value_name = "ALLOWED/WINDOW_SECS", value_parser = parse_rate_limit)]
    pub client_rate_limit: Option<RateLimit>,
    /// Limit tokens granted per OAuth client to `ALLOWED` per `WINDOW_SECS` (as
    /// `--client-rate-limit`); beyond it token requests get 429 with `Retry-After`. Off by
    /// default.
    #[arg(long, value_name = "ALLOWED/WINDOW_SECS", value_parser = parse_rate_limit)]
    pub token_rate_limit: Option<RateLimit>,
    /// Close a connection that has not sent its first request, or over HTTP/1.1 a
    /// request's headers, within this many seconds, that waits that long for its next
    /// HTTP/1.1 request, or whose HTTP/2 peer leaves a ping that long unanswered (1 to
    /// 3600; longer than the router's 90 s pool idle timeout by default, so the router
    /// closes an idle connection first).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=gateway_sim::MAX_CONNECTION_TIMEOUT.as_secs()))]
    pub connection_timeout_secs: u64,
    /// Listen on a non-loopback address, where anyone who can reach it may use the
    /// unauthenticated admin API (reset the simulator, read recorded prompts).
    #[arg(long)]
    pub allow_remote: bool,
}

/// `schema`.
#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// The schema to print (such as `gateway-payload`); lists the names when absent.
    pub name: Option<String>,
    /// Write every schema to this directory instead.
    #[arg(long, conflicts_with = "name")]
    pub out: Option<PathBuf>,
}

/// `check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The config file (TOML).
    pub file: PathBuf,
    /// Print the result as JSON (`valid`, `routes`, `models`, `problems`, `exitCode`).
    #[arg(long)]
    pub json: bool,
}

/// `healthcheck`.
#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to GET (plain http).
    #[arg(default_value = "http://127.0.0.1:8787/healthz")]
    pub url: http::Uri,
    /// Give up after this many seconds (1 to 60).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub timeout_secs: u64,
}

/// `completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write `genesys-router.1` and a page per command to this directory instead.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A tuning level on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TuningArg {
    /// Precise answers.
    Low,
    /// The route's everyday setting.
    Default,
    /// Creative answers.
    High,
}

impl From<TuningArg> for Tuning {
    fn from(t: TuningArg) -> Self {
        match t {
            TuningArg::Low => Tuning::Low,
            TuningArg::Default => Tuning::Default,
            TuningArg::High => Tuning::High,
        }
    }
}

/// The flags whose value may come from an environment variable, with their short form.
const FROM_ENV: [(&str, Option<&str>, &str); 2] = [
    ("--config", Some("-c"), "GENESYS_ROUTER_CONFIG"),
    ("--log-format", None, "GENESYS_ROUTER_LOG_FORMAT"),
];

/// The environment variable that held the value clap refused in `err`, when its flag is
/// not on the command line `args` (clap's message names only the flag).
pub fn refused_env_var(err: &clap::Error, args: &[std::ffi::OsString]) -> Option<&'static str> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(refused)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let given = |long: &str, short: Option<&str>| {
        args.iter().filter_map(|a| a.to_str()).any(|a| {
            a == long
                || a.strip_prefix(long)
                    .is_some_and(|rest| rest.starts_with('='))
                || short.is_some_and(|short| a.starts_with(short) && !a.starts_with("--"))
        })
    };
    FROM_ENV
        .iter()
        .find(|(long, short, var)| {
            refused
                .strip_prefix(long)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '=']))
                && std::env::var_os(var).is_some()
                && !given(long, *short)
        })
        .map(|(_, _, var)| *var)
}

/// A count from 1 to `max`, range-checked by clap (a typo cannot spawn a billion tasks).
fn counts(max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=max)
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}` is not key=value"))
}

/// A model id the router could route to (the catalogue's ids are matched against them).
fn parse_model_id(text: &str) -> Result<String, String> {
    if gateway_model::ModelId::is_well_formed(text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a model id: it must match {} and be at most {} characters",
            gateway_model::MODEL_ID_PATTERN,
            gateway_model::MODEL_ID_MAX_LEN
        ))
    }
}

fn parse_client(text: &str) -> Result<(String, String), String> {
    text.split_once(':')
        .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
        .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        .ok_or_else(|| "a client is id:secret".to_owned())
}

/// `ALLOWED/WINDOW_SECS`: at least 1 call per window of 1 to [`MAX_WINDOW_SECS`] seconds.
fn parse_rate_limit(text: &str) -> Result<RateLimit, String> {
    let (allowed, window) = text
        .split_once('/')
        .ok_or_else(|| "expected ALLOWED/WINDOW_SECS, such as 300/60".to_owned())?;
    let allowed = allowed
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            format!(
                "ALLOWED `{allowed}` must be a whole number from 1 to {} (leave the flag out \
                 to turn the limit off)",
                u32::MAX
            )
        })?;
    let window_secs = window
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|secs| (1..=MAX_WINDOW_SECS).contains(secs))
        .ok_or_else(|| {
            format!("WINDOW_SECS `{window}` must be a whole number from 1 to {MAX_WINDOW_SECS}")
        })?;
    Ok(RateLimit {
        allowed,
        window_secs,
        retry_after: RetryAfterStyle::Seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("genesys-router").chain(args.iter().copied()))
    }

    #[test]
    fn numeric_flags_are_range_checked() {
        for bad in [
            &["demo", "--concurrency", "18446744073709551615"][..],
            &["demo", "--concurrency", "0"],
            &["demo", "--concurrency", "1025"],
            &["demo", "-n", "99999999999999999999999"],
            &["demo", "-n", "1000001"],
            &["serve", "-c", "x.toml", "--drain-secs", "3601"],
            &[
                "serve",
                "-c",
                "x.toml",
                "--drain-secs",
                "18446744073709551615",
            ],
            &["sim", "--token-lifetime-secs", "0"],
            &["sim", "--token-lifetime-secs", "172801"],
            &["sim", "--client-rate-limit", "0/60"],
            &["sim", "--client-rate-limit", "3/0"],
            &["sim", "--client-rate-limit", "3/86401"],
            &["sim", "--client-rate-limit", "4294967296/60"],
            &["sim", "--client-rate-limit", "3/18446744073709551616"],
            &["sim", "--client-rate-limit=-1/60"],
            &["sim", "--client-rate-limit", "3"],
            &["sim", "--client-rate-limit", "3/60/1"],
            &["sim", "--token-rate-limit", "a/60"],
            &["sim", "--token-rate-limit", "2/1.5"],
            &["sim", "--token-rate-limit", ""],
        ] {
            let err = parse(bad).expect_err(&bad.join(" "));
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
        let Command::Demo(demo) = parse(&["demo", "-n", "1000000", "-c", "1024"])
            .unwrap()
            .command
        else {
            panic!("demo")
        };
        assert_eq!((demo.requests, demo.concurrency), (1_000_000, 1_024));
    }

    #[test]
    fn the_simulators_models_must_be_model_ids() {
        for bad in ["a,,b", "has space", "x\ny"] {
            let err = parse(&["sim", "--models", bad]).expect_err(bad);
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
        let Command::Sim(sim) = parse(&["sim", "--models", "model-a,model-b"])
            .unwrap()
            .command
        else {
            panic!("sim")
        };
        assert_eq!(sim.models, ["model-a", "model-b"]);
    }

    #[test]
    fn sim_limits_are_allowed_per_window() {
        let Command::Sim(sim) = parse(&[
            "sim",
            "--client-rate-limit",
            "300/60",
            "--token-rate-limit",
            " 2 / 86400 ",
        ])
        .unwrap()
        .command
        else {
            panic!("sim")
        };
        let limit = |allowed, window_secs| RateLimit {
            allowed,
            window_secs,
            retry_after: RetryAfterStyle::Seconds,
        };
        assert_eq!(sim.client_rate_limit, Some(limit(300, 60)));
        assert_eq!(sim.token_rate_limit, Some(limit(2, 86_400)));
        let Command::Sim(off) = parse(&["sim"]).unwrap().command else {
            panic!("sim")
        };
        assert_eq!((off.client_rate_limit, off.token_rate_limit), (None, None));
        let err = parse(&["sim", "--client-rate-limit", "0/60"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("ALLOWED `0` must be a whole number from 1"),
            "{err}"
        );
        let err = parse(&["sim", "--token-rate-limit", "5/0"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("WINDOW_SECS `0` must be a whole number from 1 to 86400"),
            "{err}"
        );
        let err = parse(&["sim", "--token-rate-limit", "5"]).unwrap_err();
        assert!(
            err.to_string().contains("expected ALLOWED/WINDOW_SECS"),
            "{err}"
        );
    }
}
