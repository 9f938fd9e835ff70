//! The Rust validator and the compiled JSON Schema agree, on payloads, route requests
//! and router configurations.
//!
//! - 12,000 typed payloads, valid and invalid, are generated around every bound the
//!   rules state (lengths in multi-byte and astral characters, ranges, NaN, duplicates,
//!   unknown names, metadata limits).
//! - Router configurations and route requests start from valid documents with every
//!   field present and take up to three schema-guided mutations each (`mutate`): values
//!   one below, at and one above each bound the schema states, odd characters, `null`,
//!   wrong types, lists and maps emptied, duplicated or overfilled.
//! - Every prompt made of one character agrees on Unicode `White_Space`.
//!
//! For each document the two validators must agree on validity and on *where* the
//! problems are: every Rust violation path must be covered by a schema error path (one
//! a prefix of the other), and vice versa. Rules JSON Schema cannot state are Rust's
//! alone and left out of the comparison ([`rust_only`]: rules across fields, URL and
//! socket-address parsing); the payload test checks the cross-field one is reported.

mod mutate;

use std::sync::atomic::{AtomicUsize, Ordering};

use gateway_model::schema::schema_for;
use gateway_model::{
    EnvironmentConfig, ErrorBody, FormatCheck, GatewayPayload, MAX_FALLBACKS, MAX_METADATA_ENTRIES,
    MAX_PROMPT_CHARS, MAX_TOKENS_CAP, Metadata, ModelId, Parameters, RouteConfig, RouteRequest,
    RouterConfig, Rule, SafetyFilter, SplitEntry, TemperatureMatrix, Tuning, Validate,
    ValidationErrors, Violation, WebhookConfig, payload_format,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use schemars::Schema;
use serde_json::{Value, json};

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
    prop_oneof![10 => everyday, 1 => edge].prop_map(Metadata::from)
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

/// A Rust violation JSON Schema cannot state, so the schema is not expected to report
/// it: a rule across fields (an order, a fallback equal to a primary model, split
/// entries distinct by model, two settings naming the same env var, a route's labels
/// with the two every payload carries), or one that parses a URL or a socket address.
fn rust_only(v: &Violation) -> bool {
    let segments = segments(&v.path);
    let split_model = segments.len() >= 5 && segments[2] == "split" && segments[4] == "model";
    let env_var_twice = v.path.ends_with("_env") && matches!(v.rule, Rule::Conflict { .. });
    let route_labels = v.path.ends_with("/metadata") && matches!(v.rule, Rule::Conflict { .. });
    matches!(
        v.rule,
        Rule::Order { .. } | Rule::FallbackIsPrimary { .. } | Rule::Url { .. }
    ) || (split_model && matches!(v.rule, Rule::Duplicate { .. }))
        || env_var_twice
        || route_labels
        || (v.path == "/metrics/listen" && matches!(v.rule, Rule::Pattern { .. }))
}

/// Checks that the two verdicts on one document agree: on validity, and on *where*
/// (every Rust violation path is covered by a schema error path, one a prefix of the
/// other, and vice versa), leaving out the violations [`rust_only`] names.
fn compare(
    rust: &Result<(), ValidationErrors>,
    schema: &Result<(), ValidationErrors>,
) -> Result<(), TestCaseError> {
    let comparable: Vec<&Violation> = rust
        .as_ref()
        .err()
        .map(|e| e.violations().iter().filter(|v| !rust_only(v)).collect())
        .unwrap_or_default();
    let schema_paths: Vec<&str> = schema
        .as_ref()
        .err()
        .map(|e| e.violations().iter().map(|v| v.path.as_str()).collect())
        .unwrap_or_default();
    prop_assert_eq!(
        comparable.is_empty(),
        schema.is_ok(),
        "validity differs\nrust: {:?}\nschema: {:?}",
        comparable,
        schema.as_ref().err()
    );
    // Past `MAX_VIOLATIONS` each side lists its first ones in its own order, so only
    // the verdicts can be compared.
    let listed_all = |verdict: &Result<(), ValidationErrors>| {
        verdict.as_ref().err().is_none_or(|e| e.omitted() == 0)
    };
    if !listed_all(rust) || !listed_all(schema) {
        return Ok(());
    }
    for v in &comparable {
        prop_assert!(
            schema_paths.iter().any(|p| related(p, &v.path)),
            "rust violation {} has no schema counterpart in {:?}",
            v,
            schema_paths
        );
    }
    // A document Rust cannot read at all (a wrong type, a missing field) stops at its
    // first problem, so the schema's other errors have no Rust twin to look for.
    let unreadable = comparable
        .iter()
        .any(|v| matches!(v.rule, Rule::Malformed { .. } | Rule::Missing));
    for p in schema_paths.iter().filter(|_| !unreadable) {
        prop_assert!(
            comparable.iter().any(|v| related(p, &v.path)),
            "schema error at {} has no rust counterpart in {:?}",
            p,
            comparable
        );
    }
    Ok(())
}

/// How many documents each verdict got.
#[derive(Debug, Default)]
struct Tally {
    valid: AtomicUsize,
    invalid: AtomicUsize,
}

impl Tally {
    fn count(&self, valid: bool) {
        if valid { &self.valid } else { &self.invalid }.fetch_add(1, Ordering::Relaxed);
    }

    /// Both sides of the bounds were exercised: at least `share` of the cases each.
    fn assert_both_sides(self, cases: u32, share: f64) {
        let (valid, invalid) = (self.valid.into_inner(), self.invalid.into_inner());
        assert_eq!(valid + invalid, cases as usize);
        eprintln!("{cases} cases: {valid} valid, {invalid} invalid");
        let least = (f64::from(cases) * share) as usize;
        assert!(
            valid > least && invalid > least,
            "valid {valid}, invalid {invalid}"
        );
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// A runner that repeats (a fixed seed) and reports the first failure as found.
fn fixed_runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5EED),
        max_shrink_iters: 0,
        ..Config::default()
    })
}

#[test]
fn rust_validator_and_json_schema_agree() {
    const CASES: u32 = 12_000;
    let tally = Tally::default();
    runner(CASES)
        .run(&payload(), |payload| {
            let json = serde_json::to_value(&payload).expect("payloads serialise");
            let rust = payload.validate();
            compare(&rust, &payload_format().check(&json))?;
            if payload.fallback_models.contains(&payload.model_id) {
                prop_assert!(rust.is_err(), "a fallback equal to modelId went unreported");
            }
            // The wire encoder skips the compiled schema for typed payloads on the
            // strength of this agreement: what it sends is what the schema accepts.
            match payload.to_json_bytes() {
                Ok(bytes) => {
                    prop_assert!(rust.is_ok());
                    let sent: Value = serde_json::from_slice(&bytes).expect("bytes are JSON");
                    prop_assert!(
                        payload_format().check(&sent).is_ok(),
                        "sent bytes fail the schema"
                    );
                    prop_assert_eq!(&bytes, &serde_json::to_vec(&json).unwrap());
                }
                // By their text: a NaN in a violation is not equal to itself.
                Err(refused) => prop_assert_eq!(
                    Some(refused.to_string()),
                    rust.as_ref().err().map(ToString::to_string)
                ),
            }
            tally.count(rust.is_ok());
            Ok(())
        })
        .unwrap();
    tally.assert_both_sides(CASES, 1000.0 / 12_000.0);
}

/// Mutates `bases` (valid documents of the schema named `name`) with up to three
/// schema-guided mutations each and checks the Rust validator (deserialise, then
/// `validate()`) and `schema`, compiled, agree on every result.
fn documents_agree(
    name: &str,
    schema: &Schema,
    bases: &[Value],
    mut runner: TestRunner,
) -> Result<Tally, String> {
    let entry = gateway_model::schema::entry(name).expect("an exported schema");
    let format = FormatCheck::new(schema);
    for base in bases {
        (entry.validate)(base).expect("a valid base for rust");
        format.check(base).expect("a valid base for the schema");
    }
    let tally = Tally::default();
    let mutations = (
        0..bases.len(),
        proptest::collection::vec(any::<u64>(), 0..=3),
    );
    runner
        .run(&mutations, |(base, seeds)| {
            let mut doc = bases[base].clone();
            for seed in seeds {
                mutate::mutate(schema.as_value(), &mut doc, seed);
            }
            let rust = (entry.validate)(&doc);
            compare(&rust, &format.check(&doc))
                .map_err(|e| TestCaseError::fail(format!("{e}\ndocument: {doc}")))?;
            tally.count(rust.is_ok());
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    Ok(tally)
}

/// Valid configurations with every section and optional field present, so that every
/// field is there to be mutated: one at a region, one at explicit base URLs.
fn config_bases() -> Vec<Value> {
    let summarize = RouteConfig {
        fallbacks: vec!["model-fallback-3".into(), "model-small-1".into()],
        temperature: TemperatureMatrix {
            low: 0.1,
            default: 0.3,
            high: 0.7,
        },
        max_tokens: 512,
        top_p: 0.9,
        safety_filters: vec!["pii".into(), "toxicity".into()],
        metadata: Metadata::from_iter([("team", "care")]),
        ..RouteConfig::to_model("model-gen-4")
    };
    let reply = RouteConfig {
        model: None,
        split: vec![
            SplitEntry {
                model: "model-gen-4".into(),
                weight: 90,
            },
            SplitEntry {
                model: "model-gen-5".into(),
                weight: 10,
            },
        ],
        fallbacks: vec!["model-fallback-3".into()],
        ..RouteConfig::default()
    };
    let mut config = RouterConfig::new(EnvironmentConfig {
        region: Some("eu-west-1".into()),
        ..EnvironmentConfig::default()
    })
    .with_route("summarize", summarize)
    .with_route("reply", reply);
    config.credentials.client_id = Some("client-1".into());
    config.audit.webhook = Some(WebhookConfig {
        url: "https://audit.example.com/hook".into(),
        secret_env: "AUDIT_WEBHOOK_SECRET".into(),
        spool_dir: "audit/spool".into(),
        batch_size: 100,
        queue_capacity: 10_000,
        request_timeout_ms: 10_000,
        max_spool_bytes: 1 << 30,
    });
    config.metrics.listen = Some("127.0.0.1:9464".into());
    config.tls.extra_ca_file = Some("certs/ca.pem".into());
    let mut at_api = config.clone();
    at_api.environment = EnvironmentConfig {
        login_base: Some("http://127.0.0.1:8081".into()),
        ..EnvironmentConfig::at("http://127.0.0.1:8080")
    };
    [config, at_api]
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect()
}

fn request_bases() -> Vec<Value> {
    let full = RouteRequest::new("summarize", "Summarize this transcript")
        .tuning(Tuning::Low)
        .sticky_key("conversation-7f3a")
        .metadata("queue", "billing")
        .trace_context(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later",
            Some("congo=t61rcWkgMzE".to_owned()),
        );
    let short = RouteRequest::new("reply", "hi").trace_context(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        None,
    );
    [full, short]
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect()
}

#[test]
fn router_configs_agree() {
    const CASES: u32 = 6_000;
    let schema = schema_for::<RouterConfig>();
    documents_agree("router-config", &schema, &config_bases(), runner(CASES))
        .unwrap()
        .assert_both_sides(CASES, 0.2);
}

#[test]
fn route_requests_agree() {
    const CASES: u32 = 4_000;
    let schema = schema_for::<RouteRequest>();
    documents_agree("route-request", &schema, &request_bases(), runner(CASES))
        .unwrap()
        .assert_both_sides(CASES, 0.2);
}

/// Error bodies as services write them: one with every field, one with the three the
/// schema requires.
fn error_body_bases() -> Vec<Value> {
    vec![
        json!({
            "message": "Rate limit exceeded",
            "code": "too.many.requests.retry.after",
            "status": 429,
            "contextId": "ctx-1",
            "details": [{"errorCode": "x"}],
            "errors": [{"message": "m", "code": "c", "status": 429}],
            "entityId": "e-1",
            "entityName": "model-gen-4",
            "messageWithParams": "limit {n}",
            "messageParams": {"n": "300"},
            "limit": {"key": "token.rate.per.minute", "namespace": "platform.api", "value": 300},
        }),
        json!({"message": "m", "code": "c", "status": 400}),
    ]
}

#[test]
fn error_bodies_agree() {
    const CASES: u32 = 2_000;
    let schema = schema_for::<ErrorBody>();
    // Most of an error body is optional and loosely typed: about one mutated document
    // in nine breaks a rule.
    documents_agree("error-body", &schema, &error_body_bases(), runner(CASES))
        .unwrap()
        .assert_both_sides(CASES, 0.05);
}

/// The document tests can fail: a schema whose bound was edited (as if by hand, or by
/// a change to one side only) disagrees with the Rust validator on some document.
#[test]
fn an_edited_schema_bound_is_caught() {
    let edits = [
        (
            "router-config",
            "/$defs/ServerConfig/properties/max_connections/maximum",
            json!(1_000_001),
        ),
        (
            "router-config",
            "/$defs/LimitsConfig/properties/deadline_ms/minimum",
            json!(0),
        ),
        (
            "router-config",
            "/$defs/SplitEntry/properties/weight/maximum",
            json!(9_999),
        ),
        (
            "router-config",
            "/$defs/CredentialsConfig/properties/client_id/maxLength",
            json!(257),
        ),
        (
            "router-config",
            "/$defs/AuditConfig/properties/file/minLength",
            json!(0),
        ),
        (
            "route-request",
            "/properties/stickyKey/maxLength",
            json!(255),
        ),
        ("route-request", "/properties/prompt/maxLength", json!(8001)),
    ];
    for (name, pointer, value) in edits {
        let (schema, bases) = match name {
            "router-config" => (schema_for::<RouterConfig>(), config_bases()),
            _ => (schema_for::<RouteRequest>(), request_bases()),
        };
        let mut schema = Value::from(schema);
        let bound = schema
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{name} has no {pointer}"));
        assert_ne!(*bound, value, "{pointer}");
        *bound = value;
        let schema = Schema::try_from(schema).unwrap();
        let Err(found) = documents_agree(name, &schema, &bases, fixed_runner(20_000)) else {
            panic!("editing {name} {pointer} went unnoticed");
        };
        // Caught at the edited field, not for some other reason.
        let field = pointer.rsplit('/').nth(1).unwrap();
        let verdicts = found.split("\ndocument:").next().unwrap();
        assert!(verdicts.contains(field), "{pointer}: {found}");
    }
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
