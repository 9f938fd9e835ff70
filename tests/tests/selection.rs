//! Sticky weighted splits: deterministic, close to the weights, and minimal movement when
//! a weight changes — checked on 10,000 keys, and on real calls at the simulator.

use std::collections::HashMap;

use gateway_model::{ModelId, RouteConfig, RouteRequest, SplitEntry};
use gateway_router::StickySelector;
use gateway_sim::Sim;
use gateway_tests::{config_for, router_for};

const KEYS: usize = 10_000;

fn split(weights: &[(&str, u32)]) -> Vec<SplitEntry> {
    weights
        .iter()
        .map(|(m, w)| SplitEntry {
            model: (*m).into(),
            weight: *w,
        })
        .collect()
}

fn keys() -> impl Iterator<Item = String> {
    (0..KEYS).map(|i| format!("conversation-{i:05}"))
}

fn assign(selector: &StickySelector) -> Vec<ModelId> {
    keys()
        .map(|k| selector.select(&k).unwrap().clone())
        .collect()
}

fn shares(picks: &[ModelId]) -> HashMap<String, f64> {
    let mut counts: HashMap<String, f64> = HashMap::new();
    for m in picks {
        *counts.entry(m.to_string()).or_default() += 1.0;
    }
    for c in counts.values_mut() {
        *c /= picks.len() as f64;
    }
    counts
}

#[test]
fn the_same_key_always_gets_the_same_model_in_any_selector() {
    let weights = split(&[("a", 50), ("b", 30), ("c", 20)]);
    let first = assign(&StickySelector::new(&weights));
    // A selector built separately (as in another process or after a restart) agrees.
    let second = assign(&StickySelector::new(&weights.clone()));
    assert_eq!(first, second);
}

#[test]
fn shares_follow_the_weights() {
    let picks = assign(&StickySelector::new(&split(&[
        ("a", 50),
        ("b", 30),
        ("c", 20),
    ])));
    let shares = shares(&picks);
    // Within 2 percentage points of the weights (about 4 standard deviations at 10,000 keys).
    for (model, want) in [("a", 0.5), ("b", 0.3), ("c", 0.2)] {
        let got = shares[model];
        assert!(
            (got - want).abs() < 0.02,
            "{model}: {got:.4} for a weight share of {want}"
        );
    }
}

#[test]
fn changing_one_weight_moves_only_its_share() {
    let before = assign(&StickySelector::new(&split(&[
        ("a", 50),
        ("b", 30),
        ("c", 20),
    ])));
    // Lower a's weight: a's share drops from 50 % to 30/80 = 37.5 %.
    let after = assign(&StickySelector::new(&split(&[
        ("a", 30),
        ("b", 30),
        ("c", 20),
    ])));
    let mut moved = 0u32;
    for (old, new) in before.iter().zip(&after) {
        if old != new {
            moved += 1;
            assert_eq!(old.as_str(), "a", "only keys of the changed model move");
            assert_ne!(new.as_str(), "a");
        }
    }
    let fraction = f64::from(moved) / KEYS as f64;
    assert!(
        (fraction - 0.125).abs() < 0.02,
        "{fraction:.4} of keys moved; 0.125 is a's lost share"
    );

    // Adding a model takes keys only from the others; none move between old models.
    let grown = assign(&StickySelector::new(&split(&[
        ("a", 50),
        ("b", 30),
        ("c", 20),
        ("d", 25),
    ])));
    for (old, new) in before.iter().zip(&grown) {
        assert!(old == new || new.as_str() == "d", "{old} -> {new}");
    }
}

#[tokio::test]
async fn real_calls_reach_the_selected_model() {
    let sim = Sim::builder().start().await.unwrap();
    let route = RouteConfig {
        model: None,
        split: split(&[("model-gen-4", 70), ("model-gen-5", 30)]),
        ..RouteConfig::default()
    };
    let router = router_for(config_for(&sim).with_route("reply", route))
        .build()
        .await
        .unwrap();
    for i in 0..200 {
        let key = format!("conversation-{i}");
        let expected = router.select("reply", &key).unwrap().clone();
        let outcome = router
            .route(RouteRequest::new("reply", "Where is my parcel?").sticky_key(&key))
            .await
            .unwrap();
        assert_eq!(outcome.requested_model, expected);
        assert_eq!(outcome.served_model, expected);
        let seen = sim.prompt_requests();
        assert_eq!(
            seen.last().unwrap().model_id().as_deref(),
            Some(expected.as_str())
        );
    }
    // Without a sticky key the prompt text is the key: the same prompt, the same model.
    let a = router
        .route(RouteRequest::new("reply", "same prompt"))
        .await
        .unwrap();
    let b = router
        .route(RouteRequest::new("reply", "same prompt"))
        .await
        .unwrap();
    assert_eq!(a.requested_model, b.requested_model);
}
