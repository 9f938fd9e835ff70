//! Deterministic, sticky model selection: weighted rendezvous hashing.
//!
//! For a key `k` (a conversation id, say) each model `m` of a split gets the score
//!
//! ```text
//! h(m, k) = xxh3_64_with_seed(k, seed = xxh3_64(m))          (XXH3, 64-bit)
//! u       = ((h >> 11) + 0.5) / 2^53                          (uniform in (0, 1))
//! score   = weight(m) / -ln(u)                                (ln from libm)
//! ```
//!
//! and the highest score wins (ties go to the model listed first). Properties:
//!
//! - **Stable**: XXH3 is a published, fixed algorithm and `libm`'s `log` is a portable
//!   port of musl's, so the same key picks the same model in every process, on every
//!   platform, after every restart.
//! - **Weighted**: a model wins for a share `weight / Σ weights` of keys.
//! - **Minimal movement**: changing one model's weight moves keys only to or from that
//!   model; keys never move between two other models. Adding a model takes keys only
//!   from the others in proportion; removing one gives its keys back the same way.

use gateway_model::{ModelId, SplitEntry};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// One candidate of a split, with its precomputed seed.
#[derive(Debug, Clone)]
struct Candidate {
    model: ModelId,
    weight: f64,
    seed: u64,
}

/// Picks a model for a key among weighted candidates.
///
/// ```
/// use gateway_model::SplitEntry;
/// use gateway_router::StickySelector;
///
/// let selector = StickySelector::new(&[
///     SplitEntry { model: "model-gen-4".into(), weight: 90 },
///     SplitEntry { model: "model-gen-5".into(), weight: 10 },
/// ]);
/// let first = selector.select("conversation-7f3a").cloned();
/// // The same key always gets the same model.
/// assert_eq!(selector.select("conversation-7f3a"), first.as_ref());
/// assert_eq!(StickySelector::new(&[]).select("any key"), None);
/// ```
#[derive(Debug, Clone)]
pub struct StickySelector {
    candidates: Vec<Candidate>,
}

impl StickySelector {
    /// A selector over `split` (weights as configured; a zero-weight entry wins only
    /// when no entry has weight, which config validation rules out).
    pub fn new(split: &[SplitEntry]) -> Self {
        let candidates = split
            .iter()
            .map(|e| Candidate {
                model: e.model.clone(),
                weight: f64::from(e.weight),
                seed: xxh3_64(e.model.as_str().as_bytes()),
            })
            .collect();
        Self { candidates }
    }

    /// A selector that always picks `model`.
    pub fn single(model: ModelId) -> Self {
        Self::new(&[SplitEntry { model, weight: 1 }])
    }

    /// The models, in configured order.
    pub fn models(&self) -> impl Iterator<Item = &ModelId> {
        self.candidates.iter().map(|c| &c.model)
    }

    /// The model for `key` (`None` only for a selector over no model, which config
    /// validation rules out).
    pub fn select(&self, key: &str) -> Option<&ModelId> {
        self.candidates.get(self.position(key)).map(|c| &c.model)
    }

    /// The position of the model for `key` among [`StickySelector::models`] (0 for a
    /// selector over no model, which config validation rules out).
    pub fn position(&self, key: &str) -> usize {
        if self.candidates.len() < 2 {
            return 0;
        }
        let mut best: Option<(usize, f64)> = None;
        for (i, candidate) in self.candidates.iter().enumerate() {
            let score = score(candidate, key.as_bytes());
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.map_or(0, |(i, _)| i)
    }
}

/// The rendezvous score of `candidate` for `key`.
fn score(candidate: &Candidate, key: &[u8]) -> f64 {
    if candidate.weight <= 0.0 {
        return f64::NEG_INFINITY;
    }
    let h = xxh3_64_with_seed(key, candidate.seed);
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    candidate.weight / -libm::log(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weights: &[(&str, u32)]) -> StickySelector {
        StickySelector::new(
            &weights
                .iter()
                .map(|(m, w)| SplitEntry {
                    model: (*m).into(),
                    weight: *w,
                })
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn known_keys_pick_known_models() {
        // Pinned values: a change here means every deployment would reshuffle its users.
        let s = split(&[("a", 50), ("b", 50)]);
        let picks: String = (0..24)
            .map(|i| s.select(&format!("key-{i}")).unwrap().as_str().to_owned())
            .collect();
        assert_eq!(picks, PINNED_PICKS);
    }

    const PINNED_PICKS: &str = "baaabbbbbbabaaabaabababb";

    #[test]
    fn a_single_model_is_always_chosen() {
        let s = StickySelector::single("m".into());
        assert_eq!(s.select("anything").unwrap(), "m");
    }

    #[test]
    fn zero_weight_never_wins() {
        let s = split(&[("a", 0), ("b", 1)]);
        assert!((0..1000).all(|i| s.select(&i.to_string()).unwrap() == "b"));
    }
}
