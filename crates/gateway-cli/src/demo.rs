//! `genesys-router demo`: the whole product against the embedded simulator, with some
//! trouble scripted in (latency, a burst of 429s, 503s, a policy rule), and a summary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gateway_audit::JsonlReader;
use gateway_auth::Credentials;
use gateway_model::{
    AuditConfig, EnvironmentConfig, FsyncPolicy, RouteConfig, RouteRequest, RouterConfig,
    SafetyFilter, SplitEntry, TemperatureMatrix, Tuning,
};
use gateway_router::Router;
use gateway_sim::{
    Behaviour, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, ErrorRate, Latency, PolicyRule,
    RetryAfter, Scripted, Sim, SimBuilder, SimHandle, Target,
};
use gateway_telemetry::MetricsHandle;
use indicatif::{ProgressBar, ProgressStyle};

use crate::report::model_table;

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Prompts to route.
    pub requests: usize,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Where the audit log and the metrics snapshot go.
    pub out: PathBuf,
    /// The simulator's seed.
    pub seed: u64,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
}

/// What the demo measured.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Prompts answered.
    pub answered: usize,
    /// Failures by error code.
    pub failed: BTreeMap<String, usize>,
    /// This run's audit entries, read back from the file.
    pub audit_entries: usize,
    /// The audit file.
    pub audit_file: PathBuf,
    /// The metrics snapshot file.
    pub metrics_file: PathBuf,
    /// The printed summary.
    pub summary: String,
    /// Token requests the simulator saw.
    pub token_requests: u64,
    /// HTTP attempts the simulator saw for prompts.
    pub prompt_requests: u64,
}

/// The scripted simulator: latency everywhere, a burst of 429s on `model-gen-4`, 503s on
/// `model-gen-5`, a policy rule on `model-small-1`, a slower fallback model.
async fn simulator(seed: u64) -> anyhow::Result<SimHandle> {
    let sim = model_behaviours(
        Sim::builder()
            .seed(seed)
            .record_capacity(0)
            .behaviour(Behaviour {
                latency: Latency::Uniform {
                    min_ms: 15.0,
                    max_ms: 60.0,
                },
                ..Behaviour::default()
            }),
    )
    .script(
        Target::model("model-gen-4"),
        vec![
            Scripted::TooManyRequests {
                retry_after: RetryAfter::Seconds(1)
            };
            4
        ],
    )
    // One call to model-gen-5 fails every attempt, so it falls back.
    .script(
        Target::model("model-gen-5"),
        vec![
            Scripted::Status {
                status: 503,
                code: None
            };
            3
        ],
    )
    .start()
    .await
    .context("starting the embedded simulator")?;
    Ok(sim)
}

/// The models that misbehave on their own: 503s on `model-gen-5`, a policy rule on
/// `model-small-1`, a slower fallback model.
fn model_behaviours(builder: SimBuilder) -> SimBuilder {
    builder
        .model_behaviour(
            "model-gen-5",
            Behaviour {
                latency: Latency::Uniform {
                    min_ms: 20.0,
                    max_ms: 80.0,
                },
                errors: vec![ErrorRate {
                    status: 503,
                    rate: 0.25,
                }],
                ..Behaviour::default()
            },
        )
        .model_behaviour(
            "model-small-1",
            Behaviour {
                latency: Latency::Uniform {
                    min_ms: 5.0,
                    max_ms: 20.0,
                },
                policy_rules: vec![PolicyRule {
                    contains: "account number".into(),
                    code: None,
                }],
                ..Behaviour::default()
            },
        )
        .model_behaviour(
            "model-fallback-3",
            Behaviour {
                latency: Latency::Exponential { mean_ms: 70.0 },
                ..Behaviour::default()
            },
        )
}

/// The demo's routes, pointing at the simulator.
fn config(sim: &SimHandle, out: &Path) -> RouterConfig {
    let mut config = RouterConfig::new(EnvironmentConfig::at(sim.base_url()))
        .with_route(
            "summarize",
            RouteConfig {
                fallbacks: vec!["model-fallback-3".into()],
                temperature: TemperatureMatrix {
                    low: 0.1,
                    default: 0.3,
                    high: 0.7,
                },
                max_tokens: 512,
                ..RouteConfig::to_model("model-gen-4")
            },
        )
        .with_route(
            "reply",
            RouteConfig {
                model: None,
                split: vec![
                    SplitEntry {
                        model: "model-gen-4".into(),
                        weight: 70,
                    },
                    SplitEntry {
                        model: "model-gen-5".into(),
                        weight: 30,
                    },
                ],
                fallbacks: vec!["model-fallback-3".into()],
                temperature: TemperatureMatrix {
                    low: 0.4,
                    default: 0.7,
                    high: 1.1,
                },
                safety_filters: vec![SafetyFilter::Pii, SafetyFilter::Toxicity],
                ..RouteConfig::default()
            },
        )
        .with_route(
            "classify",
            RouteConfig {
                fallbacks: vec!["model-fallback-3".into()],
                temperature: TemperatureMatrix {
                    low: 0.0,
                    default: 0.1,
                    high: 0.2,
                },
                max_tokens: 64,
                ..RouteConfig::to_model("model-small-1")
            },
        );
    config.limits.max_concurrency = 32;
    config.retry.base_delay_ms = 50;
    config.retry.max_delay_ms = 1_000;
    config.audit = AuditConfig {
        file: out.join("audit.jsonl"),
        fsync: FsyncPolicy::Interval,
        // Never rotated during a run, so this run's entries are all in the one file.
        rotate_bytes: u64::MAX,
        ..AuditConfig::default()
    };
    config
}

/// The `i`-th prompt of the batch: a route, a prompt, a tuning level and a sticky key.
fn prompt(i: usize) -> RouteRequest {
    const SUMMARIES: [&str; 3] = [
        "Summarize this transcript: the customer wants to move the delivery to Friday.",
        "Summarize the call: the agent explained the refund policy twice.",
        "Summarize: the caller reports the router blinks red after the update.",
    ];
    const REPLIES: [&str; 3] = [
        "Suggest a friendly reply to: where is my parcel?",
        "Suggest a reply to a customer asking for an invoice copy.",
        "Suggest a reply to: can I change my plan mid-month?",
    ];
    const CLASSIFY: [&str; 3] = [
        "Classify the intent: I want to cancel my subscription.",
        "Classify the intent: my account number is 12345678, please check it.",
        "Classify the intent: the app crashes when I log in.",
    ];
    let conversation = format!("conversation-{:03}", i % 97);
    let tuning = Tuning::ALL[i % 3];
    let request = match i % 3 {
        0 => RouteRequest::new("summarize", SUMMARIES[i / 3 % 3]),
        1 => RouteRequest::new("reply", REPLIES[i / 3 % 3]),
        _ => RouteRequest::new("classify", CLASSIFY[i / 3 % 3]),
    };
    request
        .tuning(tuning)
        .sticky_key(conversation)
        .metadata("demo", "true")
}

/// Routes the batch with `options.concurrency` workers; returns the answered count, the
/// failures by code, and the time taken.
async fn route_batch(
    router: &Router,
    options: &DemoOptions,
) -> anyhow::Result<(usize, BTreeMap<String, usize>, Duration)> {
    let bar = if options.progress {
        ProgressBar::new(u64::try_from(options.requests).unwrap_or(u64::MAX))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} routing {pos}/{len} prompts [{bar:40}] {elapsed}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..options.concurrency.max(1))
        .map(|_| {
            let (router, next, bar, total) = (
                router.clone(),
                Arc::clone(&next),
                bar.clone(),
                options.requests,
            );
            // Counts, not the answers: a batch may be a million prompts long.
            tokio::spawn(async move {
                let mut answered = 0;
                let mut failed: BTreeMap<&'static str, usize> = BTreeMap::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break (answered, failed);
                    }
                    match router.route(prompt(i)).await {
                        Ok(_) => answered += 1,
                        Err(e) => *failed.entry(e.code()).or_default() += 1,
                    }
                    bar.inc(1);
                }
            })
        })
        .collect();
    let mut answered = 0;
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for worker in workers {
        let (done, failures) = worker.await.context("a demo worker panicked")?;
        answered += done;
        for (code, n) in failures {
            *failed.entry(code.to_owned()).or_default() += n;
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    Ok((answered, failed, elapsed))
}

/// How many audit entries the file at `path` holds (none if there is no file).
fn entries_in(path: &Path) -> anyhow::Result<usize> {
    if !path.exists() {
        return Ok(0);
    }
    let reader = JsonlReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(reader.flatten().count())
}

/// "N entries", and how many the file held before this run when it held any.
fn entries_note(this_run: usize, earlier: usize) -> String {
    if earlier == 0 {
        format!("{this_run} entries")
    } else {
        format!("{this_run} entries from this run, after {earlier} kept from earlier")
    }
}

/// Runs the demo and returns what it measured; `metrics` must be the installed recorder.
///
/// Its entries are appended to `out/audit.jsonl`: a trail already there (another run's,
/// or one `--out` points at by mistake) is kept, and the count is this run's. A file
/// another process writes is refused before any prompt is sent.
pub async fn run(options: &DemoOptions, metrics: &MetricsHandle) -> anyhow::Result<DemoReport> {
    if options.out.exists() && !options.out.is_dir() {
        anyhow::bail!(
            "--out {} is not a directory: the demo writes its report and audit trail into one",
            options.out.display()
        );
    }
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating the output directory {}", options.out.display()))?;
    let audit_file = options.out.join("audit.jsonl");

    let sim = simulator(options.seed).await?;
    let router = Router::builder(config(&sim, &options.out))
        .credentials(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
        .build()
        .await
        .context("building the router")?;
    // Counted once the router holds the file: no other writer adds to it from here.
    let earlier_entries = entries_in(&audit_file)?;

    let (answered, failed, elapsed) = route_batch(&router, options).await?;

    router
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(10))
        .await
        .context("flushing the audit trail")?;
    let counters = sim.counters();
    sim.shutdown().await;

    let audit_entries = entries_in(&audit_file)?.saturating_sub(earlier_entries);
    let metrics_file = options.out.join("metrics.prom");
    crate::replace::file(&metrics_file, metrics.render().as_bytes())?;

    let failures = if failed.is_empty() {
        "none".to_owned()
    } else {
        failed
            .iter()
            .map(|(code, n)| format!("{n} {code}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let summary = format!(
        "routed {} prompts over 3 routes in {:.1} s against the embedded simulator\n\
         (scripted: 15-80 ms latency, a burst of 429s on model-gen-4, 25% 503s on model-gen-5,\n\
         a policy rule on model-small-1; model-fallback-3 is every route's fallback)\n\n{}\n\
         answered: {answered}   failed: {failures}\n\
         simulator saw: {} prompt attempts, {} token request(s)\n\
         audit log:  {} ({})\n\
         metrics:    {} (Prometheus text; `genesys-router serve` serves the same at /metrics)\n",
        options.requests,
        elapsed.as_secs_f64(),
        model_table(&router.stats()),
        counters.prompt_requests,
        counters.token_requests,
        audit_file.display(),
        entries_note(audit_entries, earlier_entries),
        metrics_file.display(),
    );
    Ok(DemoReport {
        answered,
        failed,
        audit_entries,
        audit_file,
        metrics_file,
        summary,
        token_requests: counters.token_requests,
        prompt_requests: counters.prompt_requests,
    })
}
