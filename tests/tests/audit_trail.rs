//! The audit trail matches what the gateway saw: one entry per call, written before the
//! call returns, with the ids, models and attempts the simulator recorded, and never the
//! prompt itself.

use std::sync::Arc;

use gateway_audit::{JsonlOptions, JsonlSink, PromptDigest, read_jsonl};
use gateway_model::{
    AuditEntry, FormatCheck, FsyncPolicy, Outcome, RouteConfig, RouteRequest, Validate,
};
use gateway_sim::{Scripted, Sim, Target};
use gateway_tests::{config_for, router_for};

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
async fn audit_entries_match_what_the_simulator_saw() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sink = JsonlSink::open_with(
        &path,
        JsonlOptions {
            fsync: FsyncPolicy::Never,
            ..JsonlOptions::default()
        },
    )
    .unwrap();
    let sim = Sim::builder().start().await.unwrap();
    let route = RouteConfig {
        fallbacks: vec!["model-fallback-3".into()],
        ..RouteConfig::to_model("model-gen-4")
    };
    let router = router_for(config_for(&sim).with_route("s", route))
        .audit_sink(Arc::new(sink))
        .build()
        .await
        .unwrap();

    // A plain success, a success after a 429 retry, a fallback, and a refused call.
    let secret_prompt = "Customer 4711 says the parcel never arrived";
    let mut outcomes = Vec::new();
    outcomes.push(
        router
            .route(RouteRequest::new("s", secret_prompt).metadata("ticket", "T-1"))
            .await
            .unwrap(),
    );
    sim.script(
        Target::model("model-gen-4"),
        [Scripted::TooManyRequests {
            retry_after: gateway_sim::RetryAfter::Seconds(0),
        }],
    );
    outcomes.push(
        router
            .route(RouteRequest::new("s", secret_prompt))
            .await
            .unwrap(),
    );
    sim.script(
        Target::model("model-gen-4"),
        vec![
            Scripted::Status {
                status: 504,
                code: None
            };
            3
        ],
    );
    outcomes.push(
        router
            .route(RouteRequest::new("s", secret_prompt))
            .await
            .unwrap(),
    );
    sim.script(
        Target::model("model-gen-4"),
        [Scripted::Status {
            status: 400,
            code: None,
        }],
    );
    let refused = router
        .route(RouteRequest::new("s", secret_prompt))
        .await
        .unwrap_err();

    // Written before the calls returned: read right away, no flush.
    let report = read_jsonl(&path).unwrap();
    assert!(report.skipped.is_empty());
    let entries = report.entries;
    keep_the_exported_schema(&entries);
    assert_eq!(entries.len(), 4);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("parcel never arrived"),
        "the prompt itself is never written"
    );

    let digest = PromptDigest::of(secret_prompt);
    let seen = sim.prompt_requests();
    for (entry, outcome) in entries.iter().zip(&outcomes) {
        assert_eq!(Some(entry.id), outcome.audit_id);
        assert_eq!(entry.correlation_id, outcome.correlation_id);
        assert_eq!(entry.prompt_sha256, digest.sha256);
        assert_eq!(entry.prompt_chars, digest.chars);
        assert_eq!(entry.attempts, outcome.attempts);
        assert_eq!(entry.models_tried, outcome.models_tried);
        assert_eq!(entry.served_model.as_ref(), Some(&outcome.served_model));
        // Every attempt the simulator saw for this call carries the call's ids.
        let calls: Vec<_> = seen
            .iter()
            .filter(|r| r.header("x-correlation-id") == Some(entry.correlation_id.as_str()))
            .collect();
        assert_eq!(calls.len() as u32, entry.attempts);
        for attempt in &entry.models_tried {
            let for_model: Vec<_> = calls
                .iter()
                .filter(|r| r.model_id().as_deref() == Some(attempt.model_id.as_str()))
                .collect();
            assert_eq!(for_model.len() as u32, attempt.attempts);
            assert!(
                for_model
                    .iter()
                    .all(|r| r.request_id() == Some(attempt.request_id.as_str()))
            );
        }
    }
    assert_eq!(entries[0].metadata.get("ticket"), Some("T-1"));
    assert_eq!((entries[1].attempts, entries[1].fallbacks_used), (2, 0));
    assert_eq!((entries[2].attempts, entries[2].fallbacks_used), (4, 1));
    assert_eq!(entries[2].models_tried[0].status, Some(504));

    let failed = &entries[3];
    assert_eq!(failed.outcome, Outcome::ClientError);
    assert_eq!(
        (failed.status, failed.error_code.as_deref()),
        (Some(400), Some("bad.request"))
    );
    assert_eq!(Some(failed.id), refused.trace().unwrap().audit_id);
    assert!(failed.served_model.is_none());
}

/// Asserts that each entry is what the exported schema (schemas/audit-entry.schema.json)
/// and `Validate` promise.
fn keep_the_exported_schema(entries: &[AuditEntry]) {
    let schema = FormatCheck::for_type::<AuditEntry>();
    for entry in entries {
        let json = serde_json::to_value(entry).unwrap();
        if let Err(errors) = schema.check(&json) {
            panic!("{errors}\n{json:#}");
        }
        assert!(entry.validate().is_ok(), "{:?}", entry.validate());
    }
}

/// A simulator, and a router with one route, `s` (model-gen-4), its config changed by
/// `tune`, writing its trail to a file in a new directory: the directory (removed when
/// dropped), the file, the simulator and the router.
async fn audited(
    tune: impl FnOnce(gateway_model::RouterConfig) -> gateway_model::RouterConfig,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    gateway_sim::SimHandle,
    gateway_router::Router,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sim = Sim::builder().start().await.unwrap();
    let sink = JsonlSink::open_with(&path, JsonlOptions::default()).unwrap();
    let config = tune(config_for(&sim).with_route("s", RouteConfig::to_model("model-gen-4")));
    let router = router_for(config)
        .audit_sink(Arc::new(sink))
        .build()
        .await
        .unwrap();
    (dir, path, sim, router)
}

#[tokio::test]
async fn invalid_requests_are_audited_without_reaching_the_gateway() {
    let (_dir, path, sim, router) = audited(|config| config).await;
    let many_labels = (0..40).fold(RouteRequest::new("s", "hi"), |request, n| {
        request.metadata(format!("k{n:02}"), "v")
    });
    let refused = [
        RouteRequest::new("s", ""),
        RouteRequest::new("s", "p".repeat(gateway_model::MAX_PROMPT_CHARS + 1_000)),
        RouteRequest::new("s", "hi")
            .metadata("\u{0}", "nul")
            .metadata("ключ", "cyrillic")
            .metadata("", "empty")
            .metadata("k".repeat(100), "long key")
            .metadata("fine", "v".repeat(10_000)),
        many_labels,
        RouteRequest::new("s", "hi")
            .temperature(5.0)
            .max_tokens(u32::MAX)
            .sticky_key("s".repeat(100_000))
            .caller_request_id("r".repeat(100_000)),
        // Regression: a temperature that is not a number was audited as `null`, a line
        // the trail's own reader skipped.
        RouteRequest::new("s", "hi").temperature(f64::NAN),
        RouteRequest::new("s", "hi")
            .temperature(f64::INFINITY)
            .top_p(f64::NAN),
    ];
    for request in refused {
        router.route(request).await.unwrap_err();
    }
    let read = read_jsonl(&path).unwrap();
    assert!(read.skipped.is_empty(), "{:?}", read.skipped);
    let entries = read.entries;
    assert_eq!(entries.len(), 7);
    keep_the_exported_schema(&entries);
    for entry in &entries {
        assert_eq!(entry.outcome, Outcome::ClientError);
        assert!(entry.models_tried.is_empty());
    }
    assert_eq!(
        entries[1].prompt_chars, 9_000,
        "the length asked for is kept"
    );
    let labels: Vec<&str> = entries[2]
        .metadata
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        labels,
        ["fine"],
        "labels a valid request cannot carry are left out"
    );
    assert_eq!(
        entries[3].metadata.len(),
        gateway_model::MAX_METADATA_ENTRIES
    );
    assert_eq!(sim.counters().prompt_requests, 0);
}

#[tokio::test]
async fn what_an_answer_can_put_into_an_entry_is_bounded() {
    let (_dir, path, sim, router) = audited(|mut config| {
        config.retry.max_attempts = 1;
        config
    })
    .await;
    let json = vec![("content-type".to_owned(), "application/json".to_owned())];
    let long = "x".repeat(200_000);
    let mut headers = json.clone();
    headers.push(("inin-correlation-id".into(), "c".repeat(4_000)));
    sim.script(
        Target::model("model-gen-4"),
        [
            Scripted::Raw {
                status: 200,
                headers,
                body: format!(
                    r#"{{"id":"c1","modelId":"model-{}","output":"ok","usage":{{"promptTokens":3,"completionTokens":1,"totalTokens":4,"junk":"{long}"}},"safety":{{"verdict":"{}"}}}}"#,
                    "m".repeat(1_000),
                    "v".repeat(1_000),
                ),
            },
            Scripted::Raw {
                status: 503,
                headers: json,
                // Within the 64 KiB the transport reads of an error's body.
                body: format!(
                    r#"{{"code":"{}","message":"down","status":503}}"#,
                    "x".repeat(60_000)
                ),
            },
        ],
    );
    router.route(RouteRequest::new("s", "hi")).await.unwrap();
    router
        .route(RouteRequest::new("s", "hi"))
        .await
        .unwrap_err();

    let read = read_jsonl(&path).unwrap();
    assert!(read.skipped.is_empty(), "{:?}", read.skipped);
    keep_the_exported_schema(&read.entries);
    let [answered, failed] = &read.entries[..] else {
        panic!("two entries: {:?}", read.entries);
    };
    let max = gateway_model::MAX_UPSTREAM_TEXT_CHARS;
    let chars = |text: &str| text.chars().count();
    let usage = answered.usage.as_ref().unwrap();
    assert_eq!(usage.total_tokens, 4, "the counts are kept");
    assert!(
        usage.extra.is_empty(),
        "oversized unknown usage fields are left out"
    );
    assert_eq!(chars(answered.served_model.as_ref().unwrap().as_str()), max);
    assert_eq!(
        chars(answered.upstream_correlation_id.as_deref().unwrap()),
        max
    );
    assert_eq!(
        chars(answered.safety_verdict.as_ref().unwrap().as_str()),
        max
    );
    assert_eq!(chars(failed.error_code.as_deref().unwrap()), max);
    assert_eq!(
        chars(failed.models_tried[0].error_code.as_deref().unwrap()),
        max
    );
    let line = std::fs::read_to_string(&path).unwrap();
    assert!(line.len() < 16_384, "{} bytes", line.len());
}

/// Regression: a 200 answer whose served model, safety verdict or unknown usage fields
/// quoted what the request carried (a proxy repeating its `Authorization`) put it into
/// the audit entry and the outcome, where an error's text had it taken out; and (found by
/// a black-box run) its finish reason, triggered filters, unknown safety fields and
/// unknown top-level fields reached the outcome, which `/v1/route` hands its caller.
#[tokio::test]
async fn an_answer_quoting_a_secret_leaves_it_out_of_the_entry_and_the_outcome() {
    use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
    let (_dir, path, sim, router) = audited(|config| config).await;
    let basic =
        gateway_auth::Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).basic_credential();
    let basic = basic.expose();
    let secret = DEFAULT_CLIENT_SECRET;
    sim.script(
        Target::model("model-gen-4"),
        [Scripted::Raw {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!(
                r#"{{"id":"c1","modelId":"echo Basic {basic}","output":"ok","usage":{{"promptTokens":3,"completionTokens":1,"totalTokens":4,"echo":["{secret}"],"{secret}":1}},"finishReason":"{secret}","safety":{{"verdict":"{secret}","triggered":["{secret}","Basic {basic}"],"echo":"{secret}"}},"top":"id:{secret}"}}"#
            ),
        }],
    );
    let outcome = router.route(RouteRequest::new("s", "hi")).await.unwrap();
    assert_eq!(outcome.served_model.as_str(), "echo Basic <redacted>");
    let answer = serde_json::to_string(&outcome).unwrap();
    assert!(
        !answer.contains(secret) && !answer.contains(basic),
        "{answer}"
    );
    let safety = outcome.response.safety.as_ref().unwrap();
    assert_eq!(safety.triggered, ["<redacted>", "Basic <redacted>"]);
    assert_eq!(outcome.response.extra["top"], "id:<redacted>");

    let trail = std::fs::read_to_string(&path).unwrap();
    assert!(!trail.contains(secret) && !trail.contains(basic), "{trail}");
    let read = read_jsonl(&path).unwrap();
    let [entry] = &read.entries[..] else {
        panic!("one entry: {:?}", read.entries);
    };
    assert_eq!(
        entry.safety_verdict.as_ref().unwrap().as_str(),
        "<redacted>"
    );
    let usage = entry.usage.as_ref().unwrap();
    assert_eq!(usage.total_tokens, 4);
    assert_eq!(usage.extra["echo"], serde_json::json!(["<redacted>"]));
    assert_eq!(usage.extra["<redacted>"], 1);
}
