//! Plain-text tables for the terminal.

use std::fmt::Write as _;
use std::time::Duration;

use gateway_telemetry::ModelSnapshot;

/// Milliseconds with one decimal, or `-`.
fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1}", d.as_secs_f64() * 1000.0),
    )
}

/// The per-model summary: requests, hit rate, p50/p99 latency, retries, fallbacks,
/// sorted by model id. Models that saw no call are left out.
pub fn model_table(models: &[ModelSnapshot]) -> String {
    let mut models: Vec<&ModelSnapshot> = models.iter().collect();
    models.sort_by(|a, b| a.model.cmp(&b.model));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "model", "requests", "hit rate", "p50 ms", "p99 ms", "retries", "fallbacks"
    );
    for m in models
        .into_iter()
        .filter(|m| m.requests > 0 || m.fallbacks > 0)
    {
        let hit = m
            .hit_rate
            .map_or_else(|| "-".to_owned(), |h| format!("{:.1}%", h * 100.0));
        let _ = writeln!(
            out,
            "{:<18} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9}",
            m.model,
            m.requests,
            hit,
            ms(m.p50),
            ms(m.p99),
            m.retries,
            m.fallbacks
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_model::Outcome;
    use gateway_telemetry::Stats;

    #[test]
    fn the_table_lists_models_that_saw_calls() {
        let stats = Stats::new(["a", "b"]);
        stats.record("a", Outcome::Success, Duration::from_millis(20));
        stats.record("a", Outcome::UpstreamError, Duration::from_millis(40));
        stats.record_retry("a");
        let table = model_table(&stats.snapshot());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(
            lines[1].starts_with("a ") && lines[1].contains("50.0%"),
            "{table}"
        );
    }
}
