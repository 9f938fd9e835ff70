//! Exit codes that tell a script or a supervisor what to fix, and the one-line report
//! of a failure with each cause once.

use std::fmt::Write as _;

use gateway_auth::AuthError;
use gateway_model::ErrorBody;
use gateway_router::{BuildError, ConfigError, RouteError, RouteErrorKind};

/// How the process ended. `--help` and the README list the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Success,
    /// 1: any other failure (an I/O error, the gateway refusing the request as
    /// malformed or refusing it for every model of the route, a call cancelled or
    /// overloaded).
    Failure,
    /// 2: the command line is wrong: an unknown flag or value (clap's code), a bad log
    /// filter or worker thread count, an unknown route, a prompt that breaks a rule.
    /// Nothing was sent.
    Usage,
    /// 3: the config file cannot be read or is not a valid configuration, or a file or
    /// env var it names is missing or malformed.
    Config,
    /// 4: the credentials are missing, or the login host or the gateway refused them.
    Credentials,
    /// 5: the gateway or the login host failed: every model failed (not by refusing the
    /// request), timed out or was rate limited, or a host could not be reached. A later
    /// try may work.
    Upstream,
}

/// The exit code table for `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  any other failure
  2  usage: bad arguments, log filter, thread count, route name or prompt (nothing was sent)
  3  the config file cannot be read or is invalid, or a file or env var it names is missing, malformed or in use
  4  credentials missing, or refused by the login host or the gateway
  5  upstream failure: every model failed (not by refusing the request), or a host could not be reached";

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Config => 3,
            Exit::Credentials => 4,
            Exit::Upstream => 5,
        }
    }

    /// A stable machine-readable name, the `code` of a JSON error that has no router code.
    pub fn name(self) -> &'static str {
        match self {
            Exit::Success => "cli.ok",
            Exit::Failure => "cli.failed",
            Exit::Usage => "cli.usage",
            Exit::Config => "cli.config.invalid",
            Exit::Credentials => "cli.credentials",
            Exit::Upstream => "cli.upstream",
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit.code())
    }
}

/// A configuration problem found outside the config loader (a `[metrics] listen` that
/// is not an address, say); exits 3 like the loader's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

/// Input the command line refuses before anything is sent (a prompt on standard input
/// longer than any prompt may be, say); exits 2 like the router's own refusals.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// The exit code for `err`: the first cause in its chain that says what to fix.
pub fn classify(err: &anyhow::Error) -> Exit {
    err.chain()
        .find_map(|cause| {
            if let Some(e) = cause.downcast_ref::<RouteError>() {
                Some(route_exit(e))
            } else if let Some(e) = cause.downcast_ref::<BuildError>() {
                Some(build_exit(e))
            } else if let Some(e) = cause.downcast_ref::<AuthError>() {
                Some(auth_exit(e))
            } else if cause.is::<ConfigError>() || cause.is::<InvalidConfig>() {
                Some(Exit::Config)
            } else if cause.is::<InvalidInput>() {
                Some(Exit::Usage)
            } else {
                None
            }
        })
        .unwrap_or(Exit::Failure)
}

fn route_exit(err: &RouteError) -> Exit {
    match err.kind() {
        RouteErrorKind::UnknownRoute { .. } | RouteErrorKind::Invalid(_) => Exit::Usage,
        RouteErrorKind::Unauthorized { .. } | RouteErrorKind::Forbidden { .. } => Exit::Credentials,
        RouteErrorKind::Token(t) if !t.retryable => Exit::Credentials,
        // Every model refused the request itself: a later try would meet the same.
        RouteErrorKind::Exhausted {
            refused: Some(_), ..
        } => Exit::Failure,
        RouteErrorKind::Token(_) | RouteErrorKind::Exhausted { .. } => Exit::Upstream,
        _ => Exit::Failure,
    }
}

fn build_exit(err: &BuildError) -> Exit {
    match err {
        // The transport's set-up reads only settings (the roots, a CA file, base URLs),
        // and a webhook secret env var unset or malformed is a setting to fix too, like
        // the fleet's Redis URL or the API keys.
        // The audit file and the webhook's spool are settings too: a directory where a
        // file should be, a path under a file or one that may not be written is fixed in
        // the config; a full disk or no descriptor left may pass, so a supervisor restarts.
        BuildError::AuditFile(e) | BuildError::SpoolDir(e) if !e.is_setting() => Exit::Failure,
        BuildError::Config(_)
        | BuildError::UnknownModels { .. }
        | BuildError::Transport(_)
        | BuildError::AuditFile(_)
        | BuildError::SpoolDir(_)
        | BuildError::Audit(gateway_audit::AuditError::Secret(_)) => Exit::Config,
        BuildError::Auth(e) => auth_exit(e),
        BuildError::Catalogue(e) => catalogue_exit(e),
        _ => Exit::Failure,
    }
}

/// The start-up catalogue check's failure, by what ended it: as a routed call's would.
fn catalogue_exit(err: &gateway_transport::TransportError) -> Exit {
    use gateway_transport::ErrorKind;
    match err.kind() {
        ErrorKind::Token(t) if !t.retryable => Exit::Credentials,
        ErrorKind::Unauthorized { .. } => Exit::Credentials,
        ErrorKind::Status { status, .. } if *status == http::StatusCode::FORBIDDEN => {
            Exit::Credentials
        }
        // A models path the gateway does not serve is a setting to fix.
        ErrorKind::Status { status, .. } if *status == http::StatusCode::NOT_FOUND => Exit::Config,
        ErrorKind::Url(_) => Exit::Config,
        _ => Exit::Upstream,
    }
}

fn auth_exit(err: &AuthError) -> Exit {
    match err {
        AuthError::MissingEnv { .. } | AuthError::Rejected { .. } => Exit::Credentials,
        AuthError::Url(_) | AuthError::Misdirected { .. } => Exit::Config,
        e if e.is_transient() => Exit::Upstream,
        _ => Exit::Failure,
    }
}

/// `err` and its causes on one line, each cause once: a cause whose text its parent
/// already quotes (as thiserror's `{0}` and `{source}` do) is left out.
pub fn render(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Writes the report to stderr: the error line, then the models a failed call tried.
pub fn report(err: &anyhow::Error) {
    crate::console::error(render(err));
    let trace = err
        .chain()
        .find_map(|c| c.downcast_ref::<RouteError>())
        .and_then(RouteError::trace);
    for attempt in trace.map(|t| t.models_tried.as_slice()).unwrap_or_default() {
        let mut line = String::new();
        let _ = write!(
            line,
            "  tried {}: {} ({} attempt{})",
            attempt.model_id,
            attempt.outcome,
            attempt.attempts,
            if attempt.attempts == 1 { "" } else { "s" }
        );
        crate::console::info(line);
    }
}

/// `err` as a Genesys-style error body (the sidecar's shape) for `--json` output:
/// `code`, `message`, `exitCode`, and for a routed call `status`, `contextId` (the
/// correlation id), `details` (the broken rules) and `modelsTried`.
pub fn json_error(err: &anyhow::Error) -> ErrorBody {
    let exit = classify(err);
    let mut body = ErrorBody {
        code: Some(exit.name().to_owned()),
        message: Some(render(err)),
        ..ErrorBody::default()
    };
    body.extra
        .insert("exitCode".into(), serde_json::Value::from(exit.code()));
    if let Some(route) = err.chain().find_map(|c| c.downcast_ref::<RouteError>()) {
        body.code = Some(route.code().to_owned());
        body.status = Some(route.http_status());
        body.context_id = route.correlation_id().map(str::to_owned);
        if let Some(violations) = route.violations() {
            body.details = violations
                .violations()
                .iter()
                .map(|v| serde_json::json!({ "fieldName": v.path, "errorMessage": v.rule.to_string() }))
                .collect();
        }
        if let Some(trace) = route.trace() {
            body.extra.insert(
                "modelsTried".into(),
                serde_json::to_value(&trace.models_tried).unwrap_or_default(),
            );
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn each_cause_is_rendered_once() {
        let auth = AuthError::MissingEnv {
            name: "GENESYS_CLIENT_ID".into(),
            reason: "is not set",
        };
        // BuildError::Auth quotes its source, and the context wraps both.
        let err = Err::<(), _>(BuildError::Auth(auth))
            .context("setting up the router")
            .unwrap_err();
        assert_eq!(
            render(&err),
            "setting up the router: authentication: environment variable GENESYS_CLIENT_ID is not set"
        );
        assert_eq!(classify(&err), Exit::Credentials);
    }

    #[test]
    fn causes_map_to_their_codes() {
        let config = anyhow::Error::new(InvalidConfig("bad".into()));
        assert_eq!(classify(&config), Exit::Config);
        let refused = anyhow::Error::new(RouteError::from(RouteErrorKind::Token(
            gateway_transport::TokenError::permanent("rejected"),
        )));
        assert_eq!(classify(&refused), Exit::Credentials);
        let unreachable = anyhow::Error::new(RouteError::from(RouteErrorKind::Token(
            gateway_transport::TokenError::transient("unreachable"),
        )));
        assert_eq!(classify(&unreachable), Exit::Upstream);
        let exhausted = |refused| {
            anyhow::Error::new(RouteError::from(RouteErrorKind::Exhausted {
                route: "r".into(),
                tried: Vec::new(),
                last: "403".into(),
                retry_after: None,
                refused,
            }))
        };
        assert_eq!(classify(&exhausted(None)), Exit::Upstream);
        assert_eq!(
            classify(&exhausted(Some(403))),
            Exit::Failure,
            "every model refused it: a later try would meet the same"
        );
        assert_eq!(classify(&anyhow::anyhow!("disk full")), Exit::Failure);
        // An audit file or spool a restart may cure is not a setting to fix: systemd's
        // unit stops restarting on 3.
        let io = |kind| gateway_audit::AuditError::Io {
            action: "open",
            path: "audit.jsonl".into(),
            source: std::io::Error::from(kind),
        };
        let built = |err| classify(&anyhow::Error::new(err));
        assert_eq!(
            built(BuildError::AuditFile(io(std::io::ErrorKind::StorageFull))),
            Exit::Failure
        );
        assert_eq!(
            built(BuildError::SpoolDir(io(std::io::ErrorKind::StorageFull))),
            Exit::Failure
        );
        assert_eq!(
            built(BuildError::AuditFile(io(
                std::io::ErrorKind::PermissionDenied
            ))),
            Exit::Config
        );
        let in_use = gateway_audit::AuditError::InUse {
            path: "spool".into(),
            lock: "spool/spool.lock".into(),
        };
        assert_eq!(built(BuildError::SpoolDir(in_use)), Exit::Config);
        let codes: Vec<u8> = [
            Exit::Success,
            Exit::Failure,
            Exit::Usage,
            Exit::Config,
            Exit::Credentials,
            Exit::Upstream,
        ]
        .map(Exit::code)
        .to_vec();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5]);
    }
}
