//! How a benchmark run is made: quick or full, where its files go, which binaries it
//! runs, and the lengths and counts that follow from that.

use std::path::PathBuf;
use std::time::Duration;

/// How the benchmark runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Short runs (a smoke check, under a minute).
    pub quick: bool,
    /// Where results go (`target/bench`).
    pub out_dir: PathBuf,
    /// The `genesys-router` binary for the sidecar runs.
    pub cli: PathBuf,
    /// Where criterion wrote its estimates, if it ran.
    pub criterion_dir: Option<PathBuf>,
}

impl Plan {
    /// Warm-up and measured window of each load run.
    pub(crate) fn timing(&self) -> (Duration, Duration) {
        if self.quick {
            (Duration::from_millis(300), Duration::from_millis(1500))
        } else {
            (Duration::from_secs(1), Duration::from_secs(8))
        }
    }

    pub(crate) fn memory_calls(&self) -> u64 {
        if self.quick { 100_000 } else { 1_000_000 }
    }

    /// Baseline/library pairs per level for the median ratios (one run varies by ±0.2).
    pub(crate) fn repeats(&self) -> usize {
        if self.quick { 1 } else { 3 }
    }

    /// Callers at once in the realistic scenario: levels where the machine keeps up,
    /// then thousands (hundreds in quick mode), where a 2-core machine cannot.
    pub(crate) fn realistic_levels(&self) -> Vec<usize> {
        if self.quick {
            vec![16, 200]
        } else {
            vec![1, 16, 64, 2_000]
        }
    }
}
