//! The Rust validator and the compiled JSON Schema agree on generated payloads.
//!
//! 12,000 payloads, valid and invalid, are generated around every bound the rules
//! state (lengths in multi-byte and astral characters, ranges, NaN, duplicates,
//! unknown names, metadata limits). For each one the two validators must agree on
//! validity and on *where* the problems are: every Rust violation path must be
//! covered by a schema error path (one a prefix of the other), and vice versa.
//!
//! One rule is Rust-only by nature: a fallback equal to `modelId` (JSON Schema cannot
//! compare two fields). Those violations are checked to be reported by Rust and are
//! left out of the comparison.

use std::sync::atomic::{AtomicUsize, Ordering};

use gateway_model::{
    FormatCheck, GatewayPayload, MAX_FALLBACKS, MAX_METADATA_ENTRIES, MAX_PROMPT_CHARS,
    MAX_TOKENS_CAP, Metadata, ModelId, Parameters, RouteRequest, Rule, SafetyFilter, Validate,
    payload_format,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

// Each field is drawn from its everyday valid values most of the time, and from the
// values around its bounds (valid and invalid) otherwise, so about half the payloads
// are valid and the rest break one or a few rules.

fn model_id() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[A-Za-z0-9][A-Za-z0-9._:-]{0,24}",
        1 => prop_oneof![
            Just(String::new()),
            "[ -/]{1,3}[a-z]{0,5}".prop_map(String::from),      // leading punctuation, spaces, slashes
            "[a-z]{1,5}[ /\t\u{e9}][a-z]{0,5}".prop_map(String::from), // a bad character inside
            (126usize..131).prop_map(|n| "m".repeat(n)),
        ],
    ]
}

fn prompt() -> impl Strategy<Value = String> {
    let unit = prop_oneof![Just("a"), Just("é"), Just("語"), Just("🦀"), Just(" ")];
    prop_oneof![
        10 => "[ -~]{1,200}",
        1 => Just(String::new()),
        // Around the bound, in characters that take 1, 2, 3 and 4 bytes.
        2 => (unit, MAX_PROMPT_CHARS - 2..=MAX_PROMPT_CHARS + 2).prop_map(|(u, n)| u.repeat(n)),
    ]
}

fn temperature() -> impl Strategy<Value = f64> {
    prop_oneof![
        20 => 0.0..=2.0f64,
        1 => Just(0.0),
        1 => Just(2.0),
        1 => Just(-0.1),
        1 => Just(2.1),
        1 => Just(f64::NAN),
        1 => Just(2.000_000_000_000_000_4),
        1 => -5.0..-1e-9f64,
        1 => 2.000_001..100.0f64,
    ]
}

fn top_p() -> impl Strategy<Value = f64> {
    prop_oneof![
        20 => 1e-9..=1.0f64,
        1 => Just(0.0),
        1 => Just(1.0),
        1 => Just(1.000_000_1),
        1 => Just(-0.5),
        1 => Just(f64::INFINITY),
    ]
}

fn max_tokens() -> impl Strategy<Value = u32> {
    prop_oneof![
        20 => 1..=MAX_TOKENS_CAP,
        1 => Just(0u32),
        1 => Just(MAX_TOKENS_CAP),
        1 => Just(MAX_TOKENS_CAP + 1),
        1 => MAX_TOKENS_CAP..u32::MAX,
    ]
}

fn fallbacks() -> impl Strategy<Value = Vec<String>> {
    // A small pool makes duplicates and "fallback equals the primary" common.
    let pool =
        proptest::sample::select(vec!["model-gen-4", "model-fallback-3", "m2", "bad id", ""]);
    prop_oneof![
        10 => proptest::collection::vec("f-[a-z0-9]{1,12}", 0..=3),
        2 => proptest::collection::vec(pool.prop_map(String::from), 0..=MAX_FALLBACKS + 2),
    ]
}

fn safety_filters() -> impl Strategy<Value = Vec<SafetyFilter>> {
    let any_filter = prop_oneof![
        4 => proptest::sample::select(SafetyFilter::KNOWN).prop_map(SafetyFilter::from),
        1 => "[a-z-]{1,12}".prop_map(SafetyFilter::from),
    ];
    prop_oneof![
        10 => proptest::sample::subsequence(SafetyFilter::KNOWN, 0..=3)
            .prop_map(|names| names.into_iter().map(SafetyFilter::from).collect()),
        1 => proptest::collection::vec(any_filter, 0..5),
    ]
}

fn metadata() -> impl Strategy<Value = Metadata> {
    let everyday = proptest::collection::btree_map("[A-Za-z0-9_.-]{1,20}", "[ -~]{0,40}", 0..4);
    let key = prop_oneof![
        4 => "[A-Za-z0-9_.-]{1,20}".prop_map(String::from),
        1 => Just(String::new()),
        1 => "[a-z]{1,4}[ /~\u{e9}][a-z]{0,4}".prop_map(String::from),
        1 => (63usize..67).prop_map(|n| "k".repeat(n)),
    ];
    let value = prop_oneof![
        4 => "[ -~]{0,40}".prop_map(String::from),
        1 => (510usize..515).prop_map(|n| "v".repeat(n)),
        1 => (510usize..515).prop_map(|n| "ü".repeat(n)),
    ];
    let count =
        prop_oneof![1 => 0usize..4, 1 => MAX_METADATA_ENTRIES - 1..=MAX_METADATA_ENTRIES + 2];
    // Duplicate keys collapse, so the count is an upper bound.
    let edge = count.prop_flat_map(move |n| {
        proptest::collection::vec((key.clone(), value.clone()), n)
            .prop_map(|pairs| pairs.into_iter().collect())
    });
    prop_oneof![10 => everyday, 1 => edge].prop_map(Metadata)
}

fn payload() -> impl Strategy<Value = GatewayPayload> {
    (
        prop_oneof![5 => model_id(), 1 => Just("model-gen-4".to_owned())],
        prompt(),
        (temperature(), max_tokens(), top_p()),
        fallbacks(),
        safety_filters(),
        metadata(),
    )
        .prop_map(
            |(model, prompt, (temperature, max_tokens, top_p), fallbacks, filters, metadata)| {
                GatewayPayload {
                    model_id: ModelId::new(model),
                    prompt,
                    parameters: Parameters {
                        temperature,
                        max_tokens,
                        top_p,
                        extra: serde_json::Map::new(),
                    },
                    fallback_models: fallbacks.into_iter().map(ModelId::new).collect(),
                    safety_filters: filters,
                    metadata,
                }
            },
        )
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').skip(1).collect()
}

/// One path is a segment-wise prefix of the other.
fn related(a: &str, b: &str) -> bool {
    let (a, b) = (segments(a), segments(b));
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

#[test]
fn rust_validator_and_json_schema_agree() {
    const CASES: u32 = 12_000;
    let valid = AtomicUsize::new(0);
    let invalid = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });

    runner
        .run(&payload(), |payload| {
            let json = serde_json::to_value(&payload).expect("payloads serialise");
            let rust = payload.validate();
            let schema = payload_format().check(&json);

            let rust_violations = rust
                .as_ref()
                .err()
                .map(|e| e.violations().to_vec())
                .unwrap_or_default();
            let (cross_field, comparable): (Vec<_>, Vec<_>) = rust_violations
                .iter()
                .partition(|v| matches!(v.rule, Rule::FallbackIsPrimary { .. }));
            let schema_paths: Vec<String> = schema
                .as_ref()
                .err()
                .map(|e| e.violations().iter().map(|v| v.path.clone()).collect())
                .unwrap_or_default();

            prop_assert_eq!(
                comparable.is_empty(),
                schema.is_ok(),
                "validity differs\nrust: {:?}\nschema: {:?}",
                comparable,
                schema_paths
            );
            for v in &comparable {
                prop_assert!(
                    schema_paths.iter().any(|p| related(p, &v.path)),
                    "rust violation {} has no schema counterpart in {:?}",
                    v,
                    schema_paths
                );
            }
            for p in &schema_paths {
                prop_assert!(
                    comparable.iter().any(|v| related(p, &v.path)),
                    "schema error at {} has no rust counterpart in {:?}",
                    p,
                    comparable
                );
            }
            if payload.fallback_models.contains(&payload.model_id) {
                prop_assert!(
                    !cross_field.is_empty() || rust.is_err(),
                    "a fallback equal to modelId went unreported"
                );
            }

            if rust.is_ok() { &valid } else { &invalid }.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();

    let (valid, invalid) = (valid.into_inner(), invalid.into_inner());
    assert_eq!(valid + invalid, CASES as usize);
    // Both sides of every bound must be exercised, not just one.
    assert!(
        valid > 1000 && invalid > 1000,
        "valid {valid}, invalid {invalid}"
    );
}

/// Whether the Rust validator and the compiled schema accept `prompt`, as a payload's and
/// as a route request's; panics if they disagree.
fn prompt_accepted(prompt: &str, request_format: &FormatCheck) -> bool {
    let payload = GatewayPayload::builder("model-gen-4", prompt).build_unchecked();
    let request = RouteRequest::new("summarize", prompt);
    let sides = [
        ("payload, rust", payload.validate().is_ok()),
        (
            "payload, schema",
            payload_format().is_valid(&serde_json::to_value(&payload).unwrap()),
        ),
        ("request, rust", request.validate().is_ok()),
        (
            "request, schema",
            request_format.is_valid(&serde_json::to_value(&request).unwrap()),
        ),
    ];
    assert!(
        sides.iter().all(|(_, ok)| *ok == sides[0].1),
        "validators disagree on {prompt:?}: {sides:?}"
    );
    sides[0].1
}

#[test]
fn blank_prompts_agree_on_every_white_space_character() {
    let request_format = FormatCheck::for_type::<RouteRequest>();
    // Every character on its own is refused exactly when it is Unicode White_Space:
    // each of the Basic Multilingual Plane (where every White_Space character lies)
    // and a sample of the astral planes (a full sweep takes minutes in a debug build).
    let astral = (0x1_0000..=0x10_FFFF)
        .step_by(251)
        .chain([0x1_F980, 0x10_FFFF]);
    let mut white_space = Vec::new();
    for c in (0..0x1_0000).chain(astral).filter_map(char::from_u32) {
        let accepted = prompt_accepted(c.encode_utf8(&mut [0; 4]), &request_format);
        assert_eq!(
            accepted,
            !c.is_whitespace(),
            "{:?} (U+{:04X})",
            c,
            u32::from(c)
        );
        if !accepted {
            white_space.push(c);
        }
    }
    assert_eq!(
        white_space.len(),
        25,
        "Unicode White_Space has 25 code points"
    );

    // U+FEFF is in JavaScript's `\s` but is not White_Space: a prompt of it is text.
    // U+200B (zero width space) and U+180E (Mongolian vowel separator) are not either.
    for text in [
        "\u{feff}",
        "\u{200b}",
        "\u{180e}",
        " \u{feff} ",
        "\u{200b}\u{3000}",
    ] {
        assert!(prompt_accepted(text, &request_format), "{text:?}");
    }
    let all: String = white_space.iter().collect();
    assert!(!prompt_accepted(&all, &request_format));
    assert!(!prompt_accepted(&all.repeat(3), &request_format));
    for one in ["a", "\u{feff}", "\u{200b}", "語", "🦀"] {
        assert!(
            prompt_accepted(&format!("{all}{one}{all}"), &request_format),
            "{one:?}"
        );
    }
}
