//! The small commands: `route`, `sim`, `schema`, `check-config`, `completions`, `man`,
//! and the set-up `serve` shares.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use gateway_model::schema::{SCHEMAS, entry};
use gateway_model::{MAX_PROMPT_CHARS, RouteRequest};
use gateway_router::{ConfigError, Router, load_config};
use gateway_sim::Sim;
use gateway_telemetry::MetricsHandle;

use clap::CommandFactory as _;

use crate::args::{
    CheckConfigArgs, Cli, CompletionsArgs, ManArgs, RouteArgs, SchemaArgs, ServeArgs, SimArgs,
};
use crate::console;
use crate::exit::{Exit, InvalidConfig, InvalidInput};
use crate::signal::{StopSignals, termination};
use gateway_server::{Sidecar, SidecarOptions};

/// `route`: one prompt, printed answer (or the outcome as JSON). Returns the exit code;
/// with `--json`, a failure also prints a JSON error body on stdout (see
/// [`crate::exit::json_error`]), so a script reads one JSON document either way.
pub async fn route(args: RouteArgs) -> anyhow::Result<i32> {
    let json = args.json;
    let result = route_once(args).await;
    if json && let Err(e) = &result {
        // The failure is what the exit code and stderr report, whether or not its JSON
        // body could be written.
        let written = serde_json::to_string_pretty(&crate::exit::json_error(e))
            .map_err(anyhow::Error::from)
            .and_then(|body| {
                write_stdout(format!("{}\n", console::json_for_stdout(&body)).as_bytes())
            });
        if let Err(lost) = written {
            console::warn(format_args!(
                "the JSON error body could not be written: {lost:#}"
            ));
        }
    }
    result
}

async fn route_once(args: RouteArgs) -> anyhow::Result<i32> {
    // As the HTTP API refuses a repeated label, rather than keep the last one.
    let mut labels = std::collections::HashSet::new();
    if let Some((k, _)) = args.metadata.iter().find(|(k, _)| !labels.insert(k)) {
        return Err(InvalidInput(format!("--meta gives the label `{k}` twice")).into());
    }
    let config = load_config(&args.config)?;
    if config.metrics.listen.is_some() {
        console::info("note: [metrics] listen applies to `serve` only; `route` serves nothing");
    }
    // A one-shot call exposes no metrics: nothing installs a recorder for it.
    let router = builder(config)?
        .without_recorder_check()
        .build()
        .await
        .context("setting up the router")?;
    let prompt = match args.prompt {
        Some(prompt) => prompt,
        None => read_prompt(std::io::stdin().lock())?,
    };
    let mut request = RouteRequest::new(args.route, prompt).tuning(args.tuning.into());
    if let Some(key) = args.key {
        request = request.sticky_key(key);
    }
    for (k, v) in args.metadata {
        request = request.metadata(k, v);
    }
    // From here a prompt may be sent: SIGTERM or Ctrl-C cancels the call, which is
    // audited as cancelled, rather than killing the process with no entry written.
    let mut signals = StopSignals::new();
    let mut stopped = false;
    let stop = async {
        signals.next().await;
        stopped = true;
        "stopped by a signal".to_owned()
    };
    let result = router.route_until(request, stop).await;
    // A flush a second stop signal abandoned fails like one that failed: the answer is
    // still printed (or the call's failure reported), then the exit code says so.
    let flushed = match flush_unless_stopped(&router, &mut signals, stopped).await {
        Some(flushed) => flushed.map_err(|e| format!("could not be flushed: {e}")),
        None => Err("flush was abandoned by a stop signal".to_owned()),
    };
    if let (Err(e), Err(_)) = (&flushed, &result) {
        console::warn(format_args!("the audit trail {e} (entries may be lost)"));
    }
    // The caller reports the failure (and the models it tried) once, with its exit code.
    let outcome = result?;
    if args.json {
        let json = serde_json::to_string_pretty(&outcome)?;
        write_stdout(format!("{}\n", console::json_for_stdout(&json)).as_bytes())?;
    } else {
        let output = console::answer_for_stdout(&outcome.response.output);
        write_stdout(format!("{output}\n").as_bytes())?;
        console::info(format_args!(
            "({} answered via route {}, {} attempt(s), {:.1} ms)",
            outcome.served_model,
            outcome.route,
            outcome.attempts,
            outcome.latency_us as f64 / 1000.0
        ));
    }
    // The answer is out, but its audit entry may be lost: a script must see it, as a
    // supervisor sees it from `serve`.
    if let Err(e) = flushed {
        console::error(format_args!("the audit trail {e} (entries may be lost)"));
        return Ok(i32::from(Exit::Failure.code()));
    }
    Ok(0)
}

/// Flushes `router`'s audit trail (10 s at most), unless stop signals end the wait: a
/// second one, or the first if the call was `stopped` by one already. `None` if they
/// did.
async fn flush_unless_stopped(
    router: &Router,
    signals: &mut StopSignals,
    stopped: bool,
) -> Option<Result<(), gateway_audit::AuditError>> {
    let flush = router.shutdown(tokio::time::Instant::now() + Duration::from_secs(10));
    tokio::pin!(flush);
    let mut patience = u8::from(!stopped);
    loop {
        tokio::select! {
            flushed = &mut flush => return Some(flushed),
            () = signals.next() => {
                patience = patience.checked_sub(1)?;
                console::info("flushing the audit trail first (a second stop signal abandons it)");
            }
        }
    }
}

/// The router builder for `config`, joined to its fleet when it has a `[fleet]` section.
fn builder(config: gateway_model::RouterConfig) -> anyhow::Result<gateway_router::RouterBuilder> {
    let fleet =
        gateway_fleet::Fleet::from_config(&config).map_err(|e| InvalidConfig(e.to_string()))?;
    let longest_open = config.longest_circuit_opening();
    let mut builder = Router::builder(config);
    if let Some(fleet) = fleet {
        console::info(format_args!("fleet mode: sharing state through Redis"));
        if let Some(budget) = fleet.rate_budget() {
            builder = builder.rate_budget(budget);
        }
        builder = builder
            .shared_circuits(fleet.circuits(longest_open))
            .token_layer(move |local| fleet.tokens(local));
    }
    Ok(builder)
}

/// The env var the README and the example config name for the sidecar's API keys.
const CONVENTIONAL_KEYS_ENV: &str = "GENESYS_ROUTER_API_KEYS";

/// Refuses to serve the network without API keys (unless told to), and warns when the
/// keys are set under the name the examples use while the config names no variable.
fn refuse_an_open_door(
    args: &ServeArgs,
    options: &SidecarOptions,
    config: &gateway_model::RouterConfig,
) -> anyhow::Result<()> {
    // The name the examples use, set while the config names no variable: a key the
    // operator meant to require that would not be asked for.
    let unnamed_keys = (config.server.api_keys_env.is_none()
        && std::env::var_os(CONVENTIONAL_KEYS_ENV).is_some())
    .then(|| {
        format!(
            "{CONVENTIONAL_KEYS_ENV} is set, but [server] api_keys_env does not name it, so no \
             API key is asked for"
        )
    });
    if Sidecar::is_open_to_the_network(args.listen, options) && !args.allow_unauthenticated {
        return Err(InvalidConfig(format!(
            "refusing to listen on {} without API keys: anyone who can reach it could send \
             prompts as this OAuth client. Set [server] api_keys_env to an env var holding \
             keys, listen on a loopback address, or pass --allow-unauthenticated{}",
            args.listen,
            unnamed_keys
                .map(|hint| format!(" ({hint})"))
                .unwrap_or_default()
        ))
        .into());
    }
    if let Some(hint) = unnamed_keys {
        console::warn(hint);
    }
    Ok(())
}

/// `serve`: the sidecar until SIGTERM or Ctrl-C.
pub async fn serve(args: ServeArgs, metrics: MetricsHandle) -> anyhow::Result<i32> {
    let config = load_config(&args.config)?;
    let mut options = SidecarOptions::from_config(&config).map_err(InvalidConfig)?;
    if let Some(secs) = args.drain_secs {
        options.drain = Duration::from_secs(secs);
    }
    refuse_an_open_door(&args, &options, &config)?;
    let asked = options.limits.max_connections;
    if let Some(room) = options.fit_open_file_limit() {
        console::warn(format_args!(
            "[server] max_connections = {asked} does not fit the open-file limit beside [limits] max_concurrency = {} sockets to the gateway; serving at most {room}",
            options.upstream_connections
        ));
    }
    let router = builder(config)?
        .build()
        .await
        .context("setting up the router")?;
    // Listened for before the sidecar accepts its first request, so that no signal
    // after that takes the default action and stops it without a drain.
    let mut signals = StopSignals::new();
    let sidecar = Sidecar::start_with(router, Some(metrics), args.listen, options)
        .await
        .context("starting the sidecar")?;
    console::info(format_args!(
        "genesys-router serving on http://{} (POST /v1/route; OpenAI: POST /v1/chat/completions /v1/responses, GET /v1/models; GET /metrics /healthz /readyz)",
        sidecar.addr()
    ));
    if let Some(at) = sidecar.metrics_addr() {
        console::info(format_args!("metrics also on http://{at}/metrics"));
    }
    let (trigger, hurry) = (sidecar.shutdown_trigger(), sidecar.hurry_trigger());
    tokio::spawn(async move {
        signals.next().await;
        let _ = trigger.send(true);
        console::info(
            "shutting down: draining in-flight calls and flushing the audit trail \
             (a second signal cancels the calls still running)",
        );
        signals.next().await;
        hurry.cancel();
        console::warn(
            "second stop signal: cancelling the calls still running, then flushing the audit trail",
        );
    });
    let flushed = sidecar.wait().await;
    console::info("stopped");
    // Entries may be lost: a supervisor must see it in the exit code.
    flushed.context("flushing the audit trail at shutdown")?;
    Ok(0)
}

/// `sim`: the simulator on its own until Ctrl-C.
pub async fn sim(args: SimArgs) -> anyhow::Result<i32> {
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        return Err(InvalidConfig(format!(
            "refusing to listen on {}: the simulator's admin API (/__admin/) has no \
             authentication, so anyone who can reach it could reset it or read the prompts \
             it recorded. Listen on a loopback address, or pass --allow-remote",
            args.listen
        ))
        .into());
    }
    let mut builder = Sim::builder()
        .addr(args.listen)
        .seed(args.seed)
        .token_lifetime(Duration::from_secs(args.token_lifetime_secs))
        .connection_timeout(Duration::from_secs(args.connection_timeout_secs));
    // The login hint names a client the simulator knows; a secret given on the command
    // line is not echoed.
    let login = match args.clients.first() {
        Some((id, _)) => format!("{id}:<secret>"),
        None => format!(
            "{}:{}",
            gateway_sim::DEFAULT_CLIENT_ID,
            gateway_sim::DEFAULT_CLIENT_SECRET
        ),
    };
    for (id, secret) in args.clients {
        builder = builder.client(id, secret);
    }
    if !args.models.is_empty() {
        builder = builder.models(args.models);
    }
    if let Some(limit) = args.client_rate_limit {
        builder = builder.client_rate_limit(limit);
    }
    if let Some(limit) = args.token_rate_limit {
        builder = builder.token_rate_limit(limit);
    }
    let sim = builder.start().await?;
    let base = sim.base_url();
    console::info(format_args!("gateway-sim listening on {base}"));
    console::info(format_args!(
        "  token:   curl -u {login} -d grant_type=client_credentials {base}/oauth/token"
    ));
    console::info(format_args!(
        "  admin:   curl {base}/__admin/counters   (see `cargo doc -p gateway-sim` for the admin API)"
    ));
    termination().await;
    sim.shutdown().await;
    Ok(0)
}

/// `schema`: list, print one, or write all.
pub fn schema(args: &SchemaArgs) -> anyhow::Result<i32> {
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for e in SCHEMAS {
            let path = dir.join(e.file_name());
            crate::replace::file(&path, e.render().as_bytes())?;
            write_stdout(format!("wrote {}\n", path.display()).as_bytes())?;
        }
        return Ok(0);
    }
    let names: Vec<&str> = SCHEMAS.iter().map(|e| e.name).collect();
    let Some(name) = &args.name else {
        write_stdout(format!("{}\n", names.join("\n")).as_bytes())?;
        return Ok(0);
    };
    let Some(e) = entry(name.trim_end_matches(".schema.json")) else {
        // A wrong argument: exit 2, like any unknown value.
        return Err(InvalidInput(format!(
            "no schema named `{name}`; known: {}",
            names.join(", ")
        ))
        .into());
    };
    write_stdout(e.render().as_bytes())?;
    Ok(0)
}

/// `completions`: the completion script for `shell`, on stdout.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<i32> {
    // Into a buffer first: clap_complete panics when its writer fails.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), BIN_NAME, &mut script);
    if args.shell == clap_complete::Shell::Bash {
        let text = String::from_utf8(script).context("the bash completion script")?;
        script = bash_labels_as_the_loop_spells_them(&text, BIN_NAME).into_bytes();
    }
    write_stdout(&script)?;
    Ok(0)
}

/// The name completion scripts complete.
const BIN_NAME: &str = "genesys-router";

/// `clap_complete`'s separator between command names in a bash completion state.
const BASH_CMD_SEP: &str = "__subcmd__";

/// `script` with each `case "${cmd}"` label spelled as the script's own loop sets `cmd`.
// clap_complete 4.6 (clap-rs/clap#6421, unfixed in 4.6.12) escapes a hyphen in the bin
// name as `__` in the loop but as `__subcmd__` in the labels, so no subcommand's label
// ever matched. Once a release fixes it, no label has the wrong spelling and this
// changes nothing.
fn bash_labels_as_the_loop_spells_them(script: &str, bin_name: &str) -> String {
    let wrong = bin_name.replace('-', BASH_CMD_SEP);
    let right = bin_name.replace('-', "__");
    let mut fixed = String::with_capacity(script.len());
    for line in script.split_inclusive('\n') {
        let label = line.trim_start();
        let indent = &line[..line.len() - label.len()];
        match label.strip_prefix(wrong.as_str()) {
            Some(rest) if rest.starts_with(BASH_CMD_SEP) || rest.starts_with(')') => {
                fixed.extend([indent, right.as_str(), rest]);
            }
            _ => fixed.push_str(line),
        }
    }
    fixed
}

/// `man`: the man page on stdout, or every page written to `--out`.
pub fn man(args: &ManArgs) -> anyhow::Result<i32> {
    // `help` gets no page of its own, so no page names it.
    let command = Cli::command().disable_help_subcommand(true);
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        crate::replace::files_in(dir, |staging| {
            clap_mangen::generate_to(command, staging).context("writing the man pages")
        })?;
        write_stdout(format!("wrote the man pages to {}\n", dir.display()).as_bytes())?;
        return Ok(0);
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .context("rendering the man page")?;
    write_stdout(&page)?;
    Ok(0)
}

/// Most bytes of a prompt read from standard input: the longest prompt the gateway takes
/// ([`MAX_PROMPT_CHARS`] characters of up to 4 bytes) and a line break.
const MAX_STDIN_PROMPT_BYTES: usize = MAX_PROMPT_CHARS * 4 + 2;

/// The prompt on `input`, without its trailing line breaks; reads no more than a prompt
/// can be, so a runaway pipe is refused instead of filling memory.
fn read_prompt(input: impl std::io::Read) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    input
        .take(u64::try_from(MAX_STDIN_PROMPT_BYTES + 1).unwrap_or(u64::MAX))
        .read_to_end(&mut bytes)
        .context("reading the prompt from standard input")?;
    if bytes.len() > MAX_STDIN_PROMPT_BYTES {
        return Err(InvalidInput(format!(
            "the prompt on standard input is longer than {MAX_STDIN_PROMPT_BYTES} bytes; \
             a prompt is at most {MAX_PROMPT_CHARS} characters"
        ))
        .into());
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| InvalidInput("the prompt on standard input is not UTF-8".into()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Writes `bytes` to stdout, where `println!` would panic on a failed write. A reader
/// that stops early (`| head`) is no failure.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("writing to standard output"),
    }
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if"
)]
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// `check-config`: every problem with its path (the first 64, and how many more), or a
/// short summary (as JSON with `--json`). Exits 0 for a valid file, 3 otherwise.
/// A report that cannot be written (a full disk) is an error, not a silent 0.
pub fn check_config(args: &CheckConfigArgs) -> anyhow::Result<i32> {
    let report = check_config_file(&args.file);
    let text = if args.json {
        let json = serde_json::to_string_pretty(&report)?;
        format!("{}\n", console::json_for_stdout(&json))
    } else {
        report.to_string()
    };
    write_stdout(text.as_bytes())?;
    Ok(i32::from(report.exit_code))
}

/// What `check-config` found in one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// The file checked.
    pub file: String,
    /// Whether it is a valid configuration.
    pub valid: bool,
    /// Its routes, sorted (valid files only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Every model its routes name (valid files only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Every problem, with its JSON Pointer (`""`: the file as a whole): the first
    /// `gateway_model::MAX_VIOLATIONS`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// How many more problems were found than `problems` lists.
    #[serde(skip_serializing_if = "is_zero")]
    pub problems_unlisted: usize,
    /// The exit code: 0 or 3.
    pub exit_code: u8,
}

/// One problem of a config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The JSON Pointer of the offending value (`""` for the whole file).
    pub path: String,
    /// The rule it breaks, or why the file cannot be read.
    pub message: String,
}

/// Checks the config file at `path`.
pub fn check_config_file(path: &Path) -> CheckReport {
    let mut report = CheckReport {
        file: path.display().to_string(),
        valid: false,
        routes: Vec::new(),
        models: Vec::new(),
        problems: Vec::new(),
        problems_unlisted: 0,
        exit_code: Exit::Config.code(),
    };
    match load_config(path) {
        Ok(config) => {
            report.problems = files_named(&config);
            if !report.problems.is_empty() {
                return report;
            }
            report.valid = true;
            report.exit_code = Exit::Success.code();
            report.routes = config.routes.keys().cloned().collect();
            report.models = config
                .all_models()
                .into_iter()
                .map(ToString::to_string)
                .collect();
        }
        Err(ConfigError::Invalid { errors, .. }) => {
            report.problems_unlisted = errors.omitted();
            report.problems = errors
                .violations()
                .iter()
                .map(|v| Problem {
                    path: v.path.clone(),
                    message: v.rule.to_string(),
                })
                .collect();
        }
        Err(e) => report.problems.push(Problem {
            path: String::new(),
            message: crate::exit::render(&anyhow::Error::new(e)),
        }),
    }
    report
}

/// The problems of the files a valid config names, found as `serve` would find them
/// but creating nothing: an audit file it could not open, a webhook spool it could not
/// create, a CA file it could not use.
fn files_named(config: &gateway_model::RouterConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    if config.audit.enabled {
        if let Err(e) = gateway_audit::JsonlSink::check_path(&config.audit.file) {
            problems.push(Problem {
                path: "/audit/file".into(),
                message: e.to_string(),
            });
        }
        if let Some(webhook) = &config.audit.webhook
            && let Err(e) = gateway_audit::webhook::WebhookSink::check_spool_dir(&webhook.spool_dir)
        {
            problems.push(Problem {
                path: "/audit/webhook/spool_dir".into(),
                message: e.to_string(),
            });
        }
    }
    if let Some(ca) = &config.tls.extra_ca_file
        && let Err(e) = gateway_transport::ClientOptions::default().extra_ca_file(ca)
    {
        problems.push(Problem {
            path: "/tls/extra_ca_file".into(),
            message: e.to_string(),
        });
    }
    problems
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        if self.valid {
            return writeln!(
                f,
                "{}: ok ({} route{}: {}; models: {})",
                self.file,
                self.routes.len(),
                plural(self.routes.len()),
                self.routes.join(", "),
                self.models.join(", ")
            );
        }
        if let [only] = self.problems.as_slice()
            && only.path.is_empty()
        {
            // A problem of the whole file (unreadable, not TOML) names the file once.
            if only.message.contains(&self.file) {
                return writeln!(f, "{}", only.message);
            }
            return writeln!(f, "{}: {}", self.file, only.message);
        }
        let n = self.problems.len() + self.problems_unlisted;
        writeln!(f, "{}: {n} problem{}", self.file, plural(n))?;
        for p in &self.problems {
            let path = if p.path.is_empty() {
                "(document)"
            } else {
                &p.path
            };
            writeln!(f, "  {path}: {}", p.message)?;
        }
        if self.problems_unlisted > 0 {
            writeln!(f, "  … and {} more", self.problems_unlisted)?;
        }
        Ok(())
    }
}
