//! The small commands: `route`, `sim`, `schema`, `check-config`, and the set-up `serve` shares.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use gateway_model::RouteRequest;
use gateway_model::schema::{SCHEMAS, entry};
use gateway_router::{ConfigError, Router, load_config};
use gateway_sim::Sim;
use gateway_telemetry::MetricsHandle;

use crate::args::{CheckConfigArgs, RouteArgs, SchemaArgs, ServeArgs, SimArgs};
use crate::console;
use crate::signal::termination;
use gateway_server::{Sidecar, SidecarOptions};

/// `route`: one prompt, printed answer (or the outcome as JSON). Returns the exit code.
pub async fn route(args: RouteArgs) -> anyhow::Result<i32> {
    let config = load_config(&args.config)?;
    if config.metrics.listen.is_some() {
        console::info("note: [metrics] listen applies to `serve` only; `route` serves nothing");
    }
    let router = Router::builder(config)
        .build()
        .await
        .context("setting up the router")?;
    let prompt = if let Some(prompt) = args.prompt {
        prompt
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the prompt from standard input")?;
        text.trim_end_matches(['\n', '\r']).to_owned()
    };
    let mut request = RouteRequest::new(args.route, prompt).tuning(args.tuning.into());
    if let Some(key) = args.key {
        request = request.sticky_key(key);
    }
    for (k, v) in args.metadata {
        request = request.metadata(k, v);
    }
    let result = router.route(request).await;
    let flushed = router
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(10))
        .await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(err) => {
            console::error(&err);
            if let Some(trace) = err.trace() {
                for attempt in &trace.models_tried {
                    console::info(format_args!(
                        "  tried {}: {} ({} attempt{})",
                        attempt.model_id,
                        attempt.outcome,
                        attempt.attempts,
                        if attempt.attempts == 1 { "" } else { "s" }
                    ));
                }
            }
            return Ok(1);
        }
    };
    if let Err(e) = flushed {
        console::warn(format_args!("the audit trail could not be flushed: {e}"));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        println!("{}", outcome.response.output);
        console::info(format_args!(
            "({} answered via route {}, {} attempt(s), {:.1} ms)",
            outcome.served_model,
            outcome.route,
            outcome.attempts,
            outcome.latency_us as f64 / 1000.0
        ));
    }
    Ok(0)
}

/// `serve`: the sidecar until SIGTERM or Ctrl-C.
pub async fn serve(args: ServeArgs, metrics: MetricsHandle) -> anyhow::Result<i32> {
    let config = load_config(&args.config)?;
    let mut options = SidecarOptions::from_config(&config).map_err(anyhow::Error::msg)?;
    if let Some(secs) = args.drain_secs {
        options.drain = Duration::from_secs(secs);
    }
    if let Some(room) = gateway_server::raise_for_connections()
        && u64::try_from(options.limits.max_connections).unwrap_or(u64::MAX) > room
    {
        eprintln!(
            "warning: [server] max_connections = {} does not fit the open-file limit; serving at most {room}",
            options.limits.max_connections
        );
        options.limits.max_connections = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    }
    let router = Router::builder(config)
        .build()
        .await
        .context("setting up the router")?;
    let sidecar = Sidecar::start_with(router, Some(metrics), args.listen, options)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!(
        "genesys-router serving on http://{} (POST /v1/route, GET /metrics /healthz /readyz)",
        sidecar.addr()
    );
    if let Some(at) = sidecar.metrics_addr() {
        eprintln!("metrics also on http://{at}/metrics");
    }
    let trigger = sidecar.shutdown_trigger();
    tokio::spawn(async move {
        termination().await;
        eprintln!("shutting down: draining in-flight calls and flushing the audit trail");
        let _ = trigger.send(true);
    });
    sidecar.wait().await;
    eprintln!("stopped");
    Ok(0)
}

/// `sim`: the simulator on its own until Ctrl-C.
pub async fn sim(args: SimArgs) -> anyhow::Result<i32> {
    let mut builder = Sim::builder()
        .addr(args.listen)
        .seed(args.seed)
        .token_lifetime(Duration::from_secs(args.token_lifetime_secs));
    for (id, secret) in args.clients {
        builder = builder.client(id, secret);
    }
    if !args.models.is_empty() {
        builder = builder.models(args.models);
    }
    let sim = builder.start().await?;
    let base = sim.base_url();
    console::info(format_args!("gateway-sim listening on {base}"));
    console::info(format_args!(
        "  token:   curl -u sim-client:sim-secret -d grant_type=client_credentials {base}/oauth/token"
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
            std::fs::write(&path, e.render())
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        return Ok(0);
    }
    match &args.name {
        Some(name) => {
            let Some(e) = entry(name.trim_end_matches(".schema.json")) else {
                let names: Vec<&str> = SCHEMAS.iter().map(|e| e.name).collect();
                bail!("no schema named `{name}`; known: {}", names.join(", "));
            };
            print!("{}", e.render());
        }
        None => {
            for e in SCHEMAS {
                println!("{}", e.name);
            }
        }
    }
    Ok(0)
}

/// `check-config`: every problem with its path, or a short summary.
pub fn check_config(args: &CheckConfigArgs) -> i32 {
    check_config_file(&args.file, &mut std::io::stdout())
}

/// Checks `path`, writing the report to `out`; returns the exit code.
pub fn check_config_file(path: &Path, out: &mut impl std::io::Write) -> i32 {
    match load_config(path) {
        Ok(config) => {
            let models: Vec<String> = config
                .all_models()
                .into_iter()
                .map(ToString::to_string)
                .collect();
            let _ = writeln!(
                out,
                "{}: ok ({} route{}: {}; models: {})",
                path.display(),
                config.routes.len(),
                if config.routes.len() == 1 { "" } else { "s" },
                config.routes.keys().cloned().collect::<Vec<_>>().join(", "),
                models.join(", ")
            );
            0
        }
        Err(ConfigError::Invalid { path, errors }) => {
            let n = errors.violations().len();
            let _ = writeln!(
                out,
                "{}: {n} problem{}",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            for v in errors.violations() {
                let _ = writeln!(out, "  {v}");
            }
            1
        }
        Err(e) => {
            let _ = writeln!(out, "{e}");
            1
        }
    }
}
