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
use crate::measure::{ProcSample, mib, sample};

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
    /// Calls that failed, warm-up and drain included (a run with any fails).
    pub errors: u64,
    /// Measured wall time, seconds: the window as it really lasted.
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
    /// Wall time between the two CPU samples (the window's start, and its end after the
    /// calls in flight drained), seconds.
    #[serde(default)]
    pub sampled_seconds: f64,
    /// The other processes (`--sample-pid`), sampled at the same two instants as this one.
    #[serde(default)]
    pub sampled: Vec<PidSample>,
}

impl LoadResult {
    /// What the run measured of process `pid`.
    pub fn sampled(&self, pid: u32) -> Option<&PidSample> {
        self.sampled.iter().find(|s| s.pid == pid)
    }
}

/// Another process's CPU over a load run's window, and its peak RSS at the window's end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PidSample {
    /// The process id.
    pub pid: u32,
    /// User plus system CPU time it used between the two samples, seconds.
    pub cpu_seconds: f64,
    /// Its `VmHWM` at the second sample, MiB.
    pub peak_rss_mib: f64,
}

/// What one load run does: a scenario at a concurrency against a target.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// The scenario.
    pub scenario: Scenario,
    /// Workers calling back to back.
    pub concurrency: usize,
    /// The simulator's (or sidecar's) base URL.
    pub target: &'a str,
    /// How long, or how many calls.
    pub length: Length,
    /// Call counts at which a fixed-count run samples its memory.
    pub checkpoints: &'a [u64],
    /// Where the scenario's files go.
    pub out_dir: &'a std::path::Path,
    /// How the scenario's caller is set up.
    pub setup: &'a Setup,
    /// Other processes whose CPU is sampled at the same instants as this one's.
    pub sample_pids: &'a [u32],
}

/// How long the calls in flight when a window closes may take to finish, beyond the
/// call timeout that bounds each of them.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

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

    /// Records one call: a success only inside the window, a failure wherever it happens.
    fn record(&self, result: anyhow::Result<()>, took: Duration) {
        match result {
            Ok(()) if self.measuring.load(Ordering::Relaxed) => {
                self.histogram.record(took);
                self.done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = self
                    .first_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                first.get_or_insert_with(|| format!("{e:#}"));
            }
        }
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
                    progress.record(result, started.elapsed());
                }
            })
        })
        .collect()
}

/// Waits for the workers at most `within`; those still busy then are aborted and the
/// run fails.
async fn drain(
    mut workers: Vec<tokio::task::JoinHandle<()>>,
    within: Duration,
) -> anyhow::Result<()> {
    let now = tokio::time::Instant::now();
    // `within` comes from a flag: a sum past the clock's range waits a year instead.
    let deadline = now
        .checked_add(within)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400));
    for n in 0..workers.len() {
        if let Ok(joined) = tokio::time::timeout_at(deadline, &mut workers[n]).await {
            joined.context("a load worker panicked")?;
        } else {
            workers[n..].iter().for_each(tokio::task::JoinHandle::abort);
            bail!(
                "{} of {} load workers were still calling {} s after the window closed",
                workers.len() - n,
                workers.len(),
                within.as_secs()
            );
        }
    }
    Ok(())
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

/// This process's CPU and memory and the other processes' at one instant.
struct Samples {
    own: ProcSample,
    others: Vec<(u32, ProcSample)>,
    at: Instant,
}

/// Samples this process and each of `pids`; an error if one of those cannot be read.
fn sample_all(pids: &[u32]) -> anyhow::Result<Samples> {
    let own = sample("self").unwrap_or_default();
    let others = pids
        .iter()
        .map(|&pid| {
            sample(&pid.to_string())
                .map(|s| (pid, s))
                .with_context(|| format!("cannot read /proc/{pid}: has process {pid} exited?"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Samples {
        own,
        others,
        at: Instant::now(),
    })
}

/// Runs one load and measures it; an error if any call failed, warm-up included.
pub async fn run(spec: &Spec<'_>) -> anyhow::Result<LoadResult> {
    let caller = caller(
        spec.scenario,
        spec.concurrency,
        spec.target,
        spec.out_dir,
        spec.setup,
    )
    .await?;
    let caller = Arc::new(caller);
    let progress = Arc::new(Progress::default());
    let limit = match spec.length {
        Length::Count { calls } => calls,
        Length::Timed { .. } => u64::MAX,
    };
    progress.measuring.store(
        matches!(spec.length, Length::Count { .. }),
        Ordering::Relaxed,
    );
    let workers = spawn_workers(&caller, &progress, spec.concurrency, limit);

    let mut rss_checkpoints = Vec::new();
    let (start, window) = match spec.length {
        Length::Timed { warmup, measure } => {
            tokio::time::sleep(warmup).await;
            let start = sample_all(spec.sample_pids)?;
            let window = timed_window(&progress, measure).await;
            (start, Some(window))
        }
        Length::Count { .. } => {
            let start = sample_all(spec.sample_pids)?;
            rss_checkpoints = sample_checkpoints(&progress, &workers, spec.checkpoints).await;
            (start, None)
        }
    };
    drain(
        workers,
        spec.setup.call_timeout().saturating_add(DRAIN_GRACE),
    )
    .await?;
    let end = sample_all(spec.sample_pids)?;
    let window = window.unwrap_or_else(|| end.at.duration_since(start.at));
    let mut result = summarize(spec, &progress, window, &start, &end);
    result.rss_checkpoints = rss_checkpoints;
    if let Some(e) = progress.take_first_error() {
        bail!(
            "{}: {} calls failed (warm-up included), the first: {e}",
            spec.scenario.name(),
            result.errors
        );
    }
    Ok(result)
}

/// Measures for `measure` from now, then stops the workers: the window as it really
/// lasted, up to the moment the measuring stopped (a late timer lengthens it).
async fn timed_window(progress: &Progress, measure: Duration) -> Duration {
    let started = Instant::now();
    progress.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(measure).await;
    progress.measuring.store(false, Ordering::Relaxed);
    let window = started.elapsed();
    progress.stop.store(true, Ordering::Relaxed);
    window
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

/// The result of a run measured over `window`, between the samples `start` and `end`.
fn summarize(
    spec: &Spec<'_>,
    progress: &Progress,
    window: Duration,
    start: &Samples,
    end: &Samples,
) -> LoadResult {
    let requests = progress.done.load(Ordering::Relaxed);
    let us =
        |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let seconds = window.as_secs_f64();
    let h = &progress.histogram;
    let sampled = end
        .others
        .iter()
        .zip(&start.others)
        .map(|((pid, after), (_, before))| PidSample {
            pid: *pid,
            cpu_seconds: after.cpu.saturating_sub(before.cpu).as_secs_f64(),
            peak_rss_mib: mib(after.peak_rss),
        })
        .collect();
    LoadResult {
        scenario: spec.scenario,
        concurrency: spec.concurrency,
        requests,
        errors: progress.errors.load(Ordering::Relaxed),
        seconds,
        rps: requests as f64 / seconds.max(1e-9),
        p50_us: us(h.quantile(0.50)),
        p90_us: us(h.quantile(0.90)),
        p99_us: us(h.quantile(0.99)),
        max_us: us(h.max()),
        cpu_us_per_request: end.own.cpu.saturating_sub(start.own.cpu).as_secs_f64() * 1e6
            / requests.max(1) as f64,
        peak_rss_mib: mib(end.own.peak_rss),
        rss_checkpoints: Vec::new(),
        sampled_seconds: end.at.duration_since(start.at).as_secs_f64(),
        sampled,
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
    use super::*;
    use gateway_sim::{Behaviour, Latency, Scripted, Sim, Target};

    /// A timed run of the baseline scenario against `sim`, sampling this process too.
    async fn timed_run(sim: &str, setup: &Setup, warmup: Duration) -> anyhow::Result<LoadResult> {
        let dir = tempfile::tempdir()?;
        run(&Spec {
            scenario: Scenario::Baseline,
            concurrency: 2,
            target: sim,
            length: Length::Timed {
                warmup,
                measure: Duration::from_millis(100),
            },
            checkpoints: &[],
            out_dir: dir.path(),
            setup,
            sample_pids: &[std::process::id()],
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_healthy_run_divides_by_the_window_it_measured_and_samples_the_pids_given() {
        let sim = Sim::builder().start().await.unwrap();
        let result = timed_run(&sim.base_url(), &Setup::default(), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(result.errors, 0);
        assert!(result.requests > 0 && result.seconds >= 0.1, "{result:?}");
        assert_eq!(result.rps, result.requests as f64 / result.seconds);
        let me = result
            .sampled(std::process::id())
            .expect("this process sampled");
        assert!(me.peak_rss_mib > 0.0 && result.sampled_seconds >= result.seconds);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_calls_fail_the_run_with_the_first_error() {
        let sim = Sim::builder()
            .behaviour(Behaviour::failing(500))
            .start()
            .await
            .unwrap();
        let err = timed_run(&sim.base_url(), &Setup::default(), Duration::ZERO)
            .await
            .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("calls failed") && err.contains("HTTP 500"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_failing_in_the_warm_up_fails_the_run() {
        // Only the first two calls fail: both are made in the warm-up.
        let sim = Sim::builder()
            .script(
                Target::model("model-gen-4"),
                std::iter::repeat_n(
                    Scripted::Status {
                        status: 500,
                        code: None,
                    },
                    2,
                ),
            )
            .start()
            .await
            .unwrap();
        let err = timed_run(
            &sim.base_url(),
            &Setup::default(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("2 calls failed") && err.contains("HTTP 500"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_that_never_answers_fails_after_the_call_timeout() {
        let sim = Sim::builder()
            .behaviour(Behaviour {
                latency: Latency::Fixed { ms: 3_600_000.0 },
                ..Behaviour::default()
            })
            .start()
            .await
            .unwrap();
        let setup = Setup {
            call_timeout: Some(Duration::from_millis(200)),
            ..Setup::default()
        };
        let err = timed_run(&sim.base_url(), &setup, Duration::ZERO)
            .await
            .unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("no answer within 200 ms"), "{err}");
    }

    #[test]
    fn the_window_is_the_time_it_really_lasted_when_the_timer_fires_late() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let progress = Arc::new(Progress::default());
        let hog = Duration::from_millis(150);
        let window = runtime.block_on(async {
            // Once the window opens, this task holds the only thread for `hog`, as an
            // overloaded machine would: the window's timer can only fire after it.
            let busy = Arc::clone(&progress);
            tokio::spawn(async move {
                while !busy.measuring.load(Ordering::Relaxed) {
                    tokio::task::yield_now().await;
                }
                let until = Instant::now() + hog;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            });
            timed_window(&progress, Duration::from_millis(10)).await
        });
        assert!(window >= hog, "the nominal 10 ms, not the real {window:?}");
        assert!(progress.stop.load(Ordering::Relaxed));
        assert!(!progress.measuring.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn workers_still_busy_after_the_drain_deadline_are_aborted_and_fail_the_run() {
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stuck = tokio::spawn(async move {
            let _ = rx.await;
        });
        let done = tokio::spawn(async {});
        let err = drain(vec![done, stuck], Duration::from_millis(50))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 of 2 load workers were still calling"),
            "{err}"
        );
    }

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
