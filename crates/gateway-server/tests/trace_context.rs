//! W3C trace context and request ids travel from the caller through the sidecar to the
//! gateway and into the audit trail: a real sidecar, the simulator, a real audit file.

use bytes::Bytes;
use gateway_model::{AuditEntry, EnvironmentConfig, RouteConfig, RouterConfig, TraceParent};
use gateway_server::{Sidecar, SidecarOptions};
use gateway_sim::{Scripted, Sim, SimHandle, Target};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};

mod support;

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn sidecar(sim: &SimHandle, audit: &std::path::Path) -> Sidecar {
    let mut route = RouteConfig::to_model("model-gen-4");
    route.fallbacks = vec!["model-fallback-3".into()];
    let mut config =
        RouterConfig::new(EnvironmentConfig::at(sim.base_url())).with_route("summarize", route);
    config.audit.file = audit.to_owned();
    config.retry.max_attempts = 1;
    let router = support::router(config).await;
    Sidecar::start_with(
        router,
        None,
        "127.0.0.1:0".parse().unwrap(),
        SidecarOptions::default(),
    )
    .await
    .unwrap()
}

/// Sends one routed call with `headers`; its status and the audit entry it left.
async fn route(
    sidecar: &Sidecar,
    audit: &std::path::Path,
    headers: &[(&str, &str)],
) -> (StatusCode, AuditEntry) {
    let body = r#"{"route":"summarize","prompt":"hello"}"#;
    let (status, _, entry) = route_with(sidecar, audit, headers, body).await;
    (status, entry)
}

/// Sends `body` to `/v1/route` with `headers`; the answer's status and headers, and the
/// audit entry the call left.
async fn route_with(
    sidecar: &Sidecar,
    audit: &std::path::Path,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, AuditEntry) {
    let client = support::client();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}/v1/route", sidecar.addr()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = Full::new(Bytes::copy_from_slice(body.as_bytes()));
    let response = client.request(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let answer_headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let outcome: serde_json::Value = serde_json::from_slice(&body).unwrap();
    // An answer names its entry; a refusal does not, and its entry is the last one.
    let audit_id = outcome["auditId"].as_str().map(str::to_owned);
    let entries = gateway_audit::read_jsonl(audit).unwrap().entries;
    let entry = match audit_id {
        Some(id) => entries.into_iter().find(|e| e.id.to_string() == id),
        None => entries.into_iter().last(),
    }
    .expect("the call's audit entry");
    (status, answer_headers, entry)
}

fn sent_traceparents(sim: &SimHandle) -> Vec<TraceParent> {
    sim.prompt_requests()
        .iter()
        .map(|r| TraceParent::parse(r.header("traceparent").expect("a traceparent")).unwrap())
        .collect()
}

#[tokio::test]
async fn the_callers_trace_reaches_every_model_tried_and_the_audit_entry() {
    let sim = Sim::builder().start().await.unwrap();
    // The first model fails once, so the call reaches two models.
    sim.script(
        Target::model("model-gen-4"),
        [Scripted::Status {
            status: 503,
            code: None,
        }],
    );
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let sidecar = sidecar(&sim, &audit).await;

    let (status, entry) = route(
        &sidecar,
        &audit,
        &[
            ("traceparent", CALLER),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-request-id", "caller-42"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(entry.fallbacks_used, 1);
    assert_eq!(entry.trace_id.as_deref(), Some(TRACE_ID));
    assert_eq!(entry.caller_request_id.as_deref(), Some("caller-42"));

    let sent = sent_traceparents(&sim);
    assert_eq!(sent.len(), 2, "one request per model");
    for parent in &sent {
        assert_eq!(parent.trace_id_hex(), TRACE_ID, "the same trace");
        assert!(parent.sampled(), "the caller's sampling decision is kept");
        assert_ne!(
            parent.to_string(),
            CALLER,
            "with a parent id of the router's own"
        );
    }
    assert_ne!(sent[0], sent[1], "each model gets its own parent id");
    for request in sim.prompt_requests() {
        assert_eq!(request.header("tracestate"), Some("congo=t61rcWkgMzE"));
    }
    sidecar.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_valid_traceparent_the_router_starts_a_trace_and_audits_it() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let sidecar = sidecar(&sim, &audit).await;

    for headers in [
        &[][..],
        &[
            (
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            ("tracestate", "a=b"),
        ][..],
        &[("traceparent", "not a traceparent")][..],
    ] {
        sim.reset();
        let (status, entry) = route(&sidecar, &audit, headers).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a bad traceparent is ignored, not refused"
        );
        let sent = sent_traceparents(&sim);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            entry.trace_id.as_deref(),
            Some(sent[0].trace_id_hex().as_str())
        );
        assert_ne!(sent[0].trace_id_hex(), "0".repeat(32));
        assert!(!sent[0].sampled());
        assert_eq!(sim.prompt_requests()[0].header("tracestate"), None);
        // The sidecar made up a request id and recorded it as the caller's.
        assert!(entry.caller_request_id.is_some_and(|id| !id.is_empty()));
    }
    sidecar.shutdown().await.unwrap();
}

/// A `callerRequestId` in the body is the one audited, over the header's, and so the one
/// echoed: the caller finds its call in the trail by the id it got back.
#[tokio::test]
async fn the_id_echoed_is_the_one_audited_when_the_body_gives_its_own() {
    let sim = Sim::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let sidecar = sidecar(&sim, &audit).await;
    let body = r#"{"route":"summarize","prompt":"hello","callerRequestId":"body-1"}"#;

    for headers in [&[("x-request-id", "header-2")][..], &[][..]] {
        let (status, answer, entry) = route_with(&sidecar, &audit, headers, body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(entry.caller_request_id.as_deref(), Some("body-1"));
        assert_eq!(answer["x-request-id"], "body-1", "{headers:?}");
    }
    // A refused call is audited with the body's id too, and echoes it.
    let refused = r#"{"route":"summarize","prompt":"","callerRequestId":"body-3"}"#;
    let (status, answer, entry) =
        route_with(&sidecar, &audit, &[("x-request-id", "header-4")], refused).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(entry.caller_request_id.as_deref(), Some("body-3"));
    assert_eq!(answer["x-request-id"], "body-3");
    // Spaces around the body's id are taken off, as a header's are (a client would read
    // the echo without them), so the trail keeps what was echoed; an id of spaces only
    // is none, and the header's is taken (regression: the trail kept them).
    for (id, header, kept) in [
        (" body-5 ", "header-6", "body-5"),
        ("   ", "header-7", "header-7"),
    ] {
        let body = format!(r#"{{"route":"summarize","prompt":"hello","callerRequestId":"{id}"}}"#);
        let (status, answer, entry) =
            route_with(&sidecar, &audit, &[("x-request-id", header)], &body).await;
        assert_eq!(status, StatusCode::OK, "{id:?}");
        assert_eq!(entry.caller_request_id.as_deref(), Some(kept), "{id:?}");
        assert_eq!(answer["x-request-id"], kept, "{id:?}");
    }
    sidecar.shutdown().await.unwrap();
}
