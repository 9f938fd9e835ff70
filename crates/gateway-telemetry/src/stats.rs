//! In-process routing statistics per model (hit rate, latency percentiles, retries,
//! fallbacks) with memory fixed at construction.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gateway_model::Outcome;

use crate::latency_histogram::LatencyHistogram;
use crate::recording::outcome_index;

/// The name under which calls to models not given to [`Stats::new`] are counted.
///
/// It cannot collide with a real model id (parentheses are not allowed in one).
pub const OTHER_MODEL: &str = "(other)";

struct ModelSlot {
    name: Box<str>,
    outcomes: [AtomicU64; Outcome::ALL.len()],
    retries: AtomicU64,
    fallbacks: AtomicU64,
    latency: LatencyHistogram,
}

impl ModelSlot {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            retries: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            latency: LatencyHistogram::new(),
        }
    }

    fn snapshot(&self) -> ModelSnapshot {
        let outcomes: [u64; Outcome::ALL.len()] =
            std::array::from_fn(|i| self.outcomes[i].load(Ordering::Relaxed));
        let requests = outcomes.iter().sum();
        let successes = outcomes[0];
        let q = self.latency.quantiles(&[0.5, 0.9, 0.99]);
        ModelSnapshot {
            model: self.name.to_string(),
            requests,
            successes,
            hit_rate: (requests > 0).then(|| successes as f64 / requests as f64),
            outcomes: Outcome::ALL.into_iter().zip(outcomes).collect(),
            retries: self.retries.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            p50: q[0],
            p90: q[1],
            p99: q[2],
            max: self.latency.max(),
            mean: self.latency.mean(),
        }
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() - std::mem::size_of::<LatencyHistogram>()
            + self.latency.memory_bytes()
            + self.name.len()
    }
}

/// Per-model routing statistics, shared by every task of the router (`&self` methods,
/// lock-free atomics). Models come from config; any other id is counted under
/// [`OTHER_MODEL`], so memory is fixed whatever ids and however many calls arrive.
///
/// ```
/// use std::time::Duration;
/// use gateway_model::Outcome;
/// use gateway_telemetry::Stats;
///
/// let stats = Stats::new(["model-gen-4", "model-fallback-3"]);
/// stats.record("model-gen-4", Outcome::Success, Duration::from_millis(120));
/// stats.record("model-gen-4", Outcome::Timeout, Duration::from_secs(30));
/// stats.record_fallback("model-gen-4");
/// let gen4 = stats.model("model-gen-4").unwrap();
/// assert_eq!((gen4.requests, gen4.successes, gen4.fallbacks), (2, 1, 1));
/// assert_eq!(gen4.hit_rate, Some(0.5));
/// assert_eq!(gen4.max, Some(Duration::from_secs(30)));
/// ```
pub struct Stats {
    slots: Box<[ModelSlot]>,
    index: HashMap<Box<str>, usize>,
}

impl Stats {
    /// Statistics for `models` (duplicates are merged), plus the [`OTHER_MODEL`] slot.
    pub fn new<I, S>(models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut slots = Vec::new();
        let mut index = HashMap::new();
        for model in models {
            let model = model.as_ref();
            if !index.contains_key(model) {
                index.insert(Box::<str>::from(model), slots.len());
                slots.push(ModelSlot::new(model));
            }
        }
        slots.push(ModelSlot::new(OTHER_MODEL));
        index.shrink_to_fit();
        Self {
            slots: slots.into_boxed_slice(),
            index,
        }
    }

    fn slot(&self, model: &str) -> &ModelSlot {
        let i = self
            .index
            .get(model)
            .copied()
            .unwrap_or(self.slots.len() - 1);
        &self.slots[i]
    }

    /// Records one finished call to `model`: its outcome and latency.
    pub fn record(&self, model: &str, outcome: Outcome, latency: Duration) {
        let slot = self.slot(model);
        slot.outcomes[outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
        slot.latency.record(latency);
    }

    /// Records one call that skipped `model` because its circuit was open: a request
    /// with outcome [`Outcome::CircuitOpen`] and no latency (nothing was sent).
    pub fn record_skipped(&self, model: &str) {
        let slot = self.slot(model);
        slot.outcomes[outcome_index(Outcome::CircuitOpen)].fetch_add(1, Ordering::Relaxed);
    }

    /// Records one retry of `model`.
    pub fn record_retry(&self, model: &str) {
        self.slot(model).retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one fallback away from `model` (to the next model in the chain).
    pub fn record_fallback(&self, model: &str) {
        self.slot(model).fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Every configured model in the order given, then [`OTHER_MODEL`] if it saw any call.
    pub fn snapshot(&self) -> Vec<ModelSnapshot> {
        let (other, models) = self
            .slots
            .split_last()
            .expect("the other slot always exists");
        let mut out: Vec<ModelSnapshot> = models.iter().map(ModelSlot::snapshot).collect();
        let other = other.snapshot();
        if other.requests + other.retries + other.fallbacks > 0 {
            out.push(other);
        }
        out
    }

    /// One model's snapshot (`OTHER_MODEL` included), or `None` if it is not tracked.
    pub fn model(&self, model: &str) -> Option<ModelSnapshot> {
        if model == OTHER_MODEL {
            return self.slots.last().map(ModelSlot::snapshot);
        }
        self.index.get(model).map(|&i| self.slots[i].snapshot())
    }

    /// Bytes held by this structure (slots, histograms, names, index); fixed at
    /// construction, whatever is recorded afterwards.
    pub fn memory_bytes(&self) -> usize {
        let slots: usize = self.slots.iter().map(ModelSlot::memory_bytes).sum();
        let index = self.index.capacity() * (std::mem::size_of::<(Box<str>, usize)>() + 1)
            + self.index.keys().map(|k| k.len()).sum::<usize>();
        std::mem::size_of::<Self>() + slots + index
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats")
            .field(
                "models",
                &self.slots.iter().map(|s| &*s.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// One model's statistics at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSnapshot {
    /// The model id (or [`OTHER_MODEL`]).
    pub model: String,
    /// Finished calls, every outcome, calls that skipped the model on its open circuit
    /// included (as [`Outcome::CircuitOpen`]).
    pub requests: u64,
    /// Calls that ended in [`Outcome::Success`].
    pub successes: u64,
    /// `successes / requests` (skips on an open circuit count as calls not served);
    /// `None` before the first call.
    pub hit_rate: Option<f64>,
    /// Calls per outcome, in [`Outcome::ALL`] order.
    pub outcomes: Vec<(Outcome, u64)>,
    /// Retries.
    pub retries: u64,
    /// Fallbacks away from this model.
    pub fallbacks: u64,
    /// Median latency (every outcome but a skip on an open circuit, which sent nothing),
    /// within 1.6 %.
    pub p50: Option<Duration>,
    /// 90th percentile latency, within 1.6 %.
    pub p90: Option<Duration>,
    /// 99th percentile latency, within 1.6 %.
    pub p99: Option<Duration>,
    /// Largest latency (exact).
    pub max: Option<Duration>,
    /// Mean latency.
    pub mean: Option<Duration>,
}
