//! The Prometheus exporter: a recorder with this crate's bucket layout, installed globally
//! or kept local for tests. It renders in-process ([`MetricsHandle::render`]) and serves
//! nothing itself: `[metrics] listen` is served by `gateway-server` (`genesys-router
//! serve`), whose listener has a connection cap and timeouts.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::metric_names::{
    HTTP_REQUEST_DURATION_SECONDS, LIMITER_WAIT_BUCKETS, LIMITER_WAIT_SECONDS, OVERHEAD_BUCKETS,
    OVERHEAD_SECONDS, REQUEST_DURATION_BUCKETS, REQUEST_DURATION_SECONDS,
};
use crate::recording::describe;

/// How often an installed recorder folds buffered histogram samples into its buckets.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// How many [`LocalMetrics::scope`] calls are running on this thread.
    static LOCAL_SCOPES: Cell<u32> = const { Cell::new(0) };
}

/// Whether metrics registered on this thread now reach a recorder this crate set up:
/// the global one of [`install`], or a [`LocalMetrics::scope`] that is
/// running. A recorder installed with `metrics::set_global_recorder` directly is not
/// seen (the `metrics` crate cannot tell it from none).
///
/// ```
/// use gateway_telemetry::{LocalMetrics, recorder_installed};
///
/// let metrics = LocalMetrics::new();
/// assert!(!recorder_installed());
/// assert!(metrics.scope(recorder_installed));
/// ```
pub fn recorder_installed() -> bool {
    INSTALLED.load(Ordering::SeqCst) || LOCAL_SCOPES.with(Cell::get) > 0
}

/// Why the Prometheus exporter could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExporterError {
    /// A global `metrics` recorder is already installed (by this crate or another).
    #[error(
        "a global metrics recorder is already installed; install the exporter once per process"
    )]
    AlreadyInstalled,
    /// The background thread that drains histogram samples could not be started.
    #[error("could not start the metrics upkeep thread: {0}")]
    Upkeep(#[source] std::io::Error),
}

/// Renders the Prometheus exposition text of a recorder, in-process.
#[derive(Clone)]
pub struct MetricsHandle {
    inner: PrometheusHandle,
}

impl MetricsHandle {
    /// The current exposition text (`text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        self.inner.render()
    }

    /// Folds buffered histogram samples into buckets (an installed recorder does this
    /// every [`UPKEEP_INTERVAL`]; a local one on every render, or when called).
    pub fn run_upkeep(&self) {
        self.inner.run_upkeep();
    }
}

impl fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsHandle").finish_non_exhaustive()
    }
}

/// A Prometheus builder with this crate's histogram buckets (request duration, overhead,
/// limiter wait); every other histogram is rendered as a summary.
pub fn prometheus_builder() -> PrometheusBuilder {
    let layout = [
        (REQUEST_DURATION_SECONDS, REQUEST_DURATION_BUCKETS),
        (OVERHEAD_SECONDS, OVERHEAD_BUCKETS),
        (LIMITER_WAIT_SECONDS, LIMITER_WAIT_BUCKETS),
        (HTTP_REQUEST_DURATION_SECONDS, REQUEST_DURATION_BUCKETS),
    ];
    layout
        .into_iter()
        .fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
            builder
                .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
                .expect("bucket layouts are non-empty constants")
        })
}

/// Installs the global Prometheus recorder, with an upkeep thread that folds histogram
/// samples into buckets every [`UPKEEP_INTERVAL`], and registers metric descriptions.
/// Render with the returned handle; serve it with `gateway-server`.
///
/// A second call fails with [`ExporterError::AlreadyInstalled`]; it never panics.
pub fn install() -> Result<MetricsHandle, ExporterError> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Err(ExporterError::AlreadyInstalled);
    }
    let result = install_once();
    if result.is_err() {
        INSTALLED.store(false, Ordering::SeqCst);
    }
    result
}

fn install_once() -> Result<MetricsHandle, ExporterError> {
    let recorder = prometheus_builder().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| ExporterError::AlreadyInstalled)?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("genesys-metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })
        .map_err(ExporterError::Upkeep)?;
    describe();
    Ok(MetricsHandle { inner: handle })
}

/// A Prometheus recorder that is not installed globally: for tests, or to keep one
/// component's metrics apart. Run code under it with [`LocalMetrics::scope`].
///
/// It has no upkeep thread: histogram samples are held until the next
/// [`render`](Self::render) (or `handle().run_upkeep()`), so one that records steadily
/// must be rendered, or kept up, every few seconds, as [`install`]'s thread does.
pub struct LocalMetrics {
    recorder: PrometheusRecorder,
    handle: MetricsHandle,
}

impl LocalMetrics {
    /// A fresh recorder with this crate's bucket layout and descriptions.
    pub fn new() -> Self {
        let recorder = prometheus_builder().build_recorder();
        let handle = MetricsHandle {
            inner: recorder.handle(),
        };
        let local = Self { recorder, handle };
        local.scope(describe);
        local
    }

    /// Runs `f` with this recorder current on this thread (`metrics::with_local_recorder`).
    ///
    /// Handles created inside (such as [`ModelMetrics`](crate::ModelMetrics), or the
    /// [`AuditCounters`](crate::AuditCounters) of an audit sink built there) stay bound to
    /// this recorder wherever they are used afterwards.
    pub fn scope<T>(&self, f: impl FnOnce() -> T) -> T {
        /// Counts the scope out however `f` ends.
        struct Entered;
        impl Drop for Entered {
            fn drop(&mut self) {
                LOCAL_SCOPES.with(|n| n.set(n.get().saturating_sub(1)));
            }
        }
        LOCAL_SCOPES.with(|n| n.set(n.get().saturating_add(1)));
        let _entered = Entered;
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// The handle that renders this recorder's exposition text.
    pub fn handle(&self) -> &MetricsHandle {
        &self.handle
    }

    /// The current exposition text.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// The underlying recorder.
    pub fn recorder(&self) -> &PrometheusRecorder {
        &self.recorder
    }
}

impl Default for LocalMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LocalMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalMetrics").finish_non_exhaustive()
    }
}
