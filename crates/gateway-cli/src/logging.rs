//! Log set-up: the filter (`--log`, else `GENESYS_ROUTER_LOG`, else `RUST_LOG`, else
//! `warn`), the format (text or JSON lines), and colour only on a terminal without
//! `NO_COLOR`.

use std::ffi::OsStr;
use std::fmt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt as _, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt as tfmt};

use gateway_model::{EnvVarError, env_var};

use crate::console;
pub use crate::console::LogFormat;

/// The env var read for the filter when `--log` is absent.
pub const ENV_LOG: &str = "GENESYS_ROUTER_LOG";
/// The env var read next, tracing's usual one.
pub const ENV_RUST_LOG: &str = "RUST_LOG";
/// The filter when neither the flag nor an env var gives one.
pub const DEFAULT_FILTER: &str = "warn";

/// Where the filter came from, so an error can say which setting to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOrigin {
    /// `--log`.
    Flag,
    /// An env var.
    Env(&'static str),
    /// [`DEFAULT_FILTER`].
    Default,
}

impl fmt::Display for FilterOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterOrigin::Flag => f.write_str("--log"),
            FilterOrigin::Env(name) => f.write_str(name),
            FilterOrigin::Default => f.write_str("the default"),
        }
    }
}

/// A filter that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid log filter `{directives}` (from {origin}): {reason}")]
pub struct FilterError {
    /// The text given.
    pub directives: String,
    /// Where it came from.
    pub origin: FilterOrigin,
    /// What the parser objected to.
    pub reason: tracing_subscriber::filter::ParseError,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    /// The filter does not parse.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// A filter env var is set but not to UTF-8 text.
    #[error("{name} {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Why it gave no text.
        reason: EnvVarError,
    },
}

/// The filter text and its origin: the flag, then the first non-empty of
/// `GENESYS_ROUTER_LOG` and `RUST_LOG` (read through `lookup`), else `warn`. A variable
/// that is set but not UTF-8 is an error, not skipped: its owner meant something by it.
pub fn choose_filter(
    flag: Option<&str>,
    lookup: impl Fn(&str) -> Result<String, EnvVarError>,
) -> Result<(String, FilterOrigin), LogInitError> {
    if let Some(flag) = flag {
        return Ok((flag.to_owned(), FilterOrigin::Flag));
    }
    for name in [ENV_LOG, ENV_RUST_LOG] {
        match lookup(name) {
            Ok(v) if !v.trim().is_empty() => return Ok((v, FilterOrigin::Env(name))),
            Ok(_) | Err(EnvVarError::Unset) => {}
            Err(reason) => return Err(LogInitError::Env { name, reason }),
        }
    }
    Ok((DEFAULT_FILTER.to_owned(), FilterOrigin::Default))
}

/// Parses a filter strictly: an unknown level or a malformed directive is an error.
pub fn parse_filter(directives: &str, origin: FilterOrigin) -> Result<EnvFilter, FilterError> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|reason| FilterError {
            directives: directives.to_owned(),
            origin,
            reason,
        })
}

/// Whether to colour: only on a terminal, and never when `NO_COLOR` is set to a
/// non-empty value (<https://no-color.org>).
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Installs the global subscriber on stderr; the console lines
/// ([`crate::console`]) are written in the same format whatever the filter.
pub fn init(flag: Option<&str>, format: LogFormat) -> Result<(), LogInitError> {
    let chosen = choose_filter(flag, env_var)
        .and_then(|(directives, origin)| Ok(parse_filter(&directives, origin)?));
    // A bad filter is reported in the format asked for, as every final error is: the
    // subscriber goes in with the console lines alone.
    let (filter, result) = match chosen {
        Ok(filter) => (filter, Ok(())),
        Err(e) => (EnvFilter::new("off"), Err(e)),
    };
    let ansi = use_colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    // A second call (tests calling in-process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(layer(format, filter, ansi, std::io::stderr))
        .try_init();
    console::set_format(format);
    result
}

/// The log layer: `filter`, or the console target, written to `writer`.
fn layer<S, W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tfmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = filter.or(Targets::new().with_target(console::TARGET, tracing::Level::TRACE));
    match format {
        LogFormat::Text => tfmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tfmt::layer()
            .json()
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(
        vars: &'a [(&'a str, &'a str)],
    ) -> impl Fn(&str) -> Result<String, EnvVarError> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
                .ok_or(EnvVarError::Unset)
        }
    }

    #[test]
    fn the_flag_wins_then_our_env_var_then_rust_log_then_warn() {
        let both = [(ENV_LOG, "info"), (ENV_RUST_LOG, "debug")];
        assert_eq!(
            choose_filter(Some("trace"), env(&both)).unwrap(),
            ("trace".to_owned(), FilterOrigin::Flag)
        );
        assert_eq!(
            choose_filter(None, env(&both)).unwrap(),
            ("info".to_owned(), FilterOrigin::Env(ENV_LOG))
        );
        // An empty variable counts as unset.
        let rust_only = [(ENV_LOG, " "), (ENV_RUST_LOG, "debug")];
        assert_eq!(
            choose_filter(None, env(&rust_only)).unwrap(),
            ("debug".to_owned(), FilterOrigin::Env(ENV_RUST_LOG))
        );
        assert_eq!(
            choose_filter(None, env(&[])).unwrap(),
            ("warn".to_owned(), FilterOrigin::Default)
        );
    }

    #[test]
    fn a_filter_variable_that_is_not_utf8_is_an_error_naming_it() {
        let not_utf8 = |name: &str| {
            if name == ENV_LOG {
                Err(EnvVarError::NotUnicode)
            } else {
                Ok("debug".to_owned())
            }
        };
        let err = choose_filter(None, not_utf8).unwrap_err().to_string();
        assert_eq!(err, "GENESYS_ROUTER_LOG is not valid UTF-8");
        assert!(
            choose_filter(Some("info"), not_utf8).is_ok(),
            "the flag wins"
        );
    }

    #[test]
    fn a_bad_level_is_refused_naming_the_text_and_its_origin() {
        assert!(parse_filter("info,gateway_router=debug", FilterOrigin::Flag).is_ok());
        let err = parse_filter("gateway_router=loud", FilterOrigin::Env(ENV_RUST_LOG))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid log filter `gateway_router=loud` (from RUST_LOG): "),
            "{err}"
        );
        assert!(err.contains("level"), "{err}");
    }

    /// A `MakeWriter` that collects what the layer writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_filter_hides_other_genesys_router_targets_but_never_console_lines() {
        let out = Captured::default();
        let writer = out.clone();
        let filter = parse_filter("warn", FilterOrigin::Default).unwrap();
        let subscriber =
            tracing_subscriber::registry().with(layer(LogFormat::Json, filter, false, move || {
                writer.clone()
            }));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "genesys_router::access", "hidden: below warn");
            tracing::info!(target: console::TARGET, "shown: a console line");
            tracing::warn!(target: "gateway_router", "shown: at warn");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("hidden"), "{text}");
        assert_eq!(text.matches("shown").count(), 2, "{text}");
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))), "empty means unset");
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }
}
