//! One load run in this process: a closed loop of `concurrency` workers sending back to
//! back, with latency, CPU and memory measured. Run as `gateway-bench load ...` in a
//! fresh process per scenario, so CPU time and peak RSS belong to that scenario alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use gateway_auth::{ClientCredentials, Credentials};
use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use gateway_telemetry::LatencyHistogram;
use gateway_transport::TokenSource;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use crate::caller::{Caller, Scenario, Setup, caller};
use crate::measure::{mib, sample};

/// How long, or how many calls.
#[derive(Debug, Clone, Copy)]
pub enum Length {
    /// Warm up, then measure for a time.
    Timed {
        /// Unmeasured warm-up.
        warmup: Duration,
        /// Measured time.
        measure: Duration,
    },
    /// Exactly this many calls, sampling RSS after each count in the list.
    Count {
        /// Calls.
        calls: u64,
    },
}

/// What a load run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadResult {
    /// The scenario.
    pub scenario: Scenario,
    /// Workers.
    pub concurrency: usize,
    /// Measured calls that succeeded.
    pub requests: u64,
    /// Measured calls that failed.
    pub errors: u64,
    /// Measured wall time, seconds.
    pub seconds: f64,
    /// Calls per second.
    pub rps: f64,
    /// Latency percentiles and maximum, microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Maximum.
    pub max_us: u64,
    /// This process's CPU time per measured call, microseconds.
    pub cpu_us_per_request: f64,
    /// This process's peak RSS, MiB.
    pub peak_rss_mib: f64,
    /// RSS (MiB) after each checkpoint count of calls (memory runs only).
    pub rss_checkpoints: Vec<(u64, f64)>,
}

/// Counters and flags the workers share with the measuring task.
struct Progress {
    histogram: LatencyHistogram,
    done: AtomicU64,
    errors: AtomicU64,
    issued: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Default for Progress {
    /// A precise histogram: at 50 ms upstream a millisecond-wide bucket would hide what
    /// the router adds.
    fn default() -> Self {
        Self {
            histogram: LatencyHistogram::precise(),
            done: AtomicU64::default(),
            errors: AtomicU64::default(),
            issued: AtomicU64::default(),
            measuring: AtomicBool::default(),
            stop: AtomicBool::default(),
            first_error: std::sync::Mutex::default(),
        }
    }
}

impl Progress {
    /// The first failed call's error, taken out.
    fn take_first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn finished(&self) -> u64 {
        self.done.load(Ordering::Relaxed) + self.errors.load(Ordering::Relaxed)
    }
}

/// Starts `concurrency` workers calling back to back until `limit` calls or a stop.
fn spawn_workers(
    caller: &Arc<Caller>,
    progress: &Arc<Progress>,
    concurrency: usize,
    limit: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..concurrency.max(1))
        .map(|_| {
            let (caller, progress) = (Arc::clone(caller), Arc::clone(progress));
            tokio::spawn(async move {
                while !progress.stop.load(Ordering::Relaxed) {
                    let i = progress.issued.fetch_add(1, Ordering::Relaxed);
                    if i >= limit {
                        break;
                    }
                    let started = Instant::now();
                    let result = caller.call(i).await;
                    let took = started.elapsed();
                    if !progress.measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    match result {
                        Ok(()) => {
                            progress.histogram.record(took);
                            progress.done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            progress.errors.fetch_add(1, Ordering::Relaxed);
                            let mut first = progress
                                .first_error
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            first.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
            })
        })
        .collect()
}

/// Makes exactly `calls` calls with `concurrency` workers on an existing caller; fails on
/// the first failed call's error (used where a counter, not a clock, is the measurement).
pub async fn drive(caller: &Arc<Caller>, concurrency: usize, calls: u64) -> anyhow::Result<()> {
    let progress = Arc::new(Progress::default());
    progress.measuring.store(true, Ordering::Relaxed);
    for worker in spawn_workers(caller, &progress, concurrency, calls) {
        worker.await.context("a load worker panicked")?;
    }
    let errors = progress.errors.load(Ordering::Relaxed);
    if let Some(e) = progress.take_first_error() {
        bail!("{errors} of {calls} calls failed, the first: {e}");
    }
    Ok(())
}

/// Runs one load and measures it.
pub async fn run(
    scenario: Scenario,
    concurrency: usize,
    target: &str,
    length: Length,
    checkpoints: &[u64],
    out_dir: &std::path::Path,
    setup: &Setup,
) -> anyhow::Result<LoadResult> {
    let caller = Arc::new(caller(scenario, concurrency, target, out_dir, setup).await?);
    let progress = Arc::new(Progress::default());
    let limit = match length {
        Length::Count { calls } => calls,
        Length::Timed { .. } => u64::MAX,
    };
    progress
        .measuring
        .store(matches!(length, Length::Count { .. }), Ordering::Relaxed);
    let workers = spawn_workers(&caller, &progress, concurrency, limit);

    let mut rss_checkpoints = Vec::new();
    let before;
    let started;
    match length {
        Length::Timed { warmup, measure } => {
            tokio::time::sleep(warmup).await;
            before = sample("self").unwrap_or_default();
            started = Instant::now();
            progress.measuring.store(true, Ordering::Relaxed);
            tokio::time::sleep(measure).await;
            progress.measuring.store(false, Ordering::Relaxed);
            progress.stop.store(true, Ordering::Relaxed);
        }
        Length::Count { .. } => {
            before = sample("self").unwrap_or_default();
            started = Instant::now();
            rss_checkpoints = sample_checkpoints(&progress, &workers, checkpoints).await;
        }
    }
    let measured = match length {
        Length::Timed { measure, .. } => measure.min(started.elapsed()),
        Length::Count { .. } => Duration::ZERO,
    };
    for worker in workers {
        worker.await.context("a load worker panicked")?;
    }
    let measured = if measured.is_zero() {
        started.elapsed()
    } else {
        measured
    };
    let after = sample("self").unwrap_or_default();
    Ok(summarize(
        scenario,
        concurrency,
        &progress,
        measured,
        before,
        after,
        rss_checkpoints,
    ))
}

/// RSS (MiB) as the finished calls pass each count in `checkpoints`.
async fn sample_checkpoints(
    progress: &Progress,
    workers: &[tokio::task::JoinHandle<()>],
    checkpoints: &[u64],
) -> Vec<(u64, f64)> {
    let mut pending: Vec<u64> = checkpoints.to_vec();
    pending.sort_unstable();
    let mut sampled = Vec::with_capacity(pending.len());
    for at in pending {
        while progress.finished() < at && !workers.iter().all(tokio::task::JoinHandle::is_finished)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sampled.push((at, mib(sample("self").unwrap_or_default().rss)));
    }
    sampled
}

fn summarize(
    scenario: Scenario,
    concurrency: usize,
    progress: &Progress,
    measured: Duration,
    before: crate::measure::ProcSample,
    after: crate::measure::ProcSample,
    rss_checkpoints: Vec<(u64, f64)>,
) -> LoadResult {
    let requests = progress.done.load(Ordering::Relaxed);
    let errors = progress.errors.load(Ordering::Relaxed);
    if let Some(e) = progress.take_first_error() {
        eprintln!("{}: {errors} failed calls, the first: {e}", scenario.name());
    }
    let us =
        |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let seconds = measured.as_secs_f64();
    let h = &progress.histogram;
    LoadResult {
        scenario,
        concurrency,
        requests,
        errors,
        seconds,
        rps: requests as f64 / seconds.max(1e-9),
        p50_us: us(h.quantile(0.50)),
        p90_us: us(h.quantile(0.90)),
        p99_us: us(h.quantile(0.99)),
        max_us: us(h.max()),
        cpu_us_per_request: after.cpu.saturating_sub(before.cpu).as_secs_f64() * 1e6
            / requests.max(1) as f64,
        peak_rss_mib: mib(after.peak_rss),
        rss_checkpoints,
    }
}

/// `callers` tasks ask a fresh provider for a token at once; returns the token requests
/// the simulator saw.
pub async fn token_storm(sim: &str, callers: usize) -> anyhow::Result<u64> {
    let before = sim_counter(sim, "tokenRequests").await?;
    let tokens =
        ClientCredentials::builder(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
            .login_base(sim)
            .build()?;
    let barrier = Arc::new(tokio::sync::Barrier::new(callers));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (tokens, barrier) = (tokens.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                tokens.token().await
            })
        })
        .collect();
    for task in tasks {
        task.await
            .context("a caller panicked")?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    counter_growth(
        "tokenRequests",
        before,
        sim_counter(sim, "tokenRequests").await?,
    )
}

/// How much a simulator counter grew between two readings: an error, not a wrapped
/// count, when it went down (the simulator was reset or restarted in between).
pub fn counter_growth(name: &str, before: u64, after: u64) -> anyhow::Result<u64> {
    after.checked_sub(before).with_context(|| {
        format!("the simulator's {name} counter went down from {before} to {after}: was it reset?")
    })
}

/// One counter from the simulator's admin API.
pub async fn sim_counter(sim: &str, name: &str) -> anyhow::Result<u64> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .get(format!("{sim}/__admin/counters").parse()?)
        .await?;
    let body = response.into_body().collect().await?.to_bytes();
    let counters: serde_json::Value = serde_json::from_slice(&body)?;
    counters[name]
        .as_u64()
        .with_context(|| format!("no counter {name} in {counters}"))
}

/// One counter from the simulator's admin API, over TLS trusting `ca` where given.
pub async fn sim_counter_at(
    sim: &str,
    ca: Option<&std::path::Path>,
    name: &str,
) -> anyhow::Result<u64> {
    let mut options = gateway_transport::ClientOptions::default();
    if let Some(ca) = ca {
        options = options.extra_ca_file(ca)?;
    }
    let client = gateway_transport::HttpClient::new(&options)?;
    let uri = client.check_url(&format!("{sim}/__admin/counters"))?;
    let request = http::Request::get(uri).body(Full::default())?;
    let answer = client.send(request, Duration::from_secs(10)).await?;
    let counters: serde_json::Value = serde_json::from_slice(&answer.body)?;
    counters[name]
        .as_u64()
        .with_context(|| format!("no counter {name} in {counters}"))
}

/// [`sim_counter_at`] from a blocking thread of the runtime (the orchestration runs on one).
pub fn sim_counter_blocking(sim: &str, ca: &std::path::Path, name: &str) -> anyhow::Result<u64> {
    tokio::runtime::Handle::current().block_on(sim_counter_at(sim, Some(ca), name))
}

#[cfg(test)]
mod tests {
    use super::counter_growth;

    #[test]
    fn a_counter_that_went_down_is_an_error_not_a_wrapped_count() {
        assert_eq!(counter_growth("connections", 3, 10).unwrap(), 7);
        let err = counter_growth("tokenRequests", 10, 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tokenRequests") && err.contains("reset"),
            "{err}"
        );
    }
}
