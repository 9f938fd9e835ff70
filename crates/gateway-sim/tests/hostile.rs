//! Hostile input never panics the simulator: raw scripted answers, out-of-range admin
//! values, arrays where objects are meant, and arbitrary bodies on every admin route, all
//! over a real socket. A panic hook counts every panic in this test binary.

use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gateway_sim::{
    Behaviour, Latency, RateLimit, RetryAfter, RetryAfterStyle, Scripted, Sim, SimError, SimHandle,
    SlowBody, Target,
};
use http::{Method, StatusCode};
use proptest::prelude::*;
use serde_json::{Value, json};
use support::Http;

mod support;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts every panic in the process (the simulator's connection tasks included: tokio
/// catches those, so the test would otherwise only see a dropped connection).
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn panics() -> usize {
    PANICS.load(Ordering::SeqCst)
}

fn script(target: &Value, responses: &Value) -> String {
    json!({ "target": target, "responses": responses }).to_string()
}

#[tokio::test]
async fn raw_answers_send_exactly_the_scripted_status_headers_and_body() {
    count_panics();
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    let token_body =
        r#"{"access_token":"t","token_type":"bearer","expires_in":18446744073709551615}"#;
    let queued = http
        .admin(
            Method::POST,
            "script",
            script(
                &json!("token"),
                &json!([{"kind": "raw", "status": 200,
                    "headers": [["Content-Type", "application/json"]], "body": token_body}]),
            ),
        )
        .await;
    assert_eq!(queued.status, StatusCode::OK, "{}", queued.message());
    let token = http.try_default_grant().await.unwrap();
    assert_eq!(token.status, StatusCode::OK);
    assert_eq!(token.body, token_body.as_bytes());
    assert_eq!(token.headers["content-type"], "application/json");
    assert!(
        !token.headers.contains_key("inin-correlation-id"),
        "nothing is added"
    );

    let retry_afters = [
        "18446744073709551615",
        "12345678901234567890123",
        "soon, maybe",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ];
    let responses: Vec<Value> = retry_afters
        .iter()
        .map(|v| json!({"kind": "raw", "status": 429, "headers": [["Retry-After", v], ["x-twice", "1"], ["x-twice", "2"]]}))
        .collect();
    let queued = http
        .admin(
            Method::POST,
            "script",
            script(&json!("global"), &json!(responses)),
        )
        .await;
    assert_eq!(queued.status, StatusCode::OK, "{}", queued.message());
    let real = http.try_default_grant().await.unwrap().json();
    let real = real["access_token"].as_str().unwrap();
    for expected in retry_afters {
        let reply = http.try_prompt_hello(real).await.unwrap();
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(reply.headers["retry-after"], expected);
        assert_eq!(reply.headers.get_all("x-twice").iter().count(), 2);
        assert!(reply.body.is_empty(), "no body unless scripted");
    }
    assert_eq!(
        http.try_prompt_hello(real).await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(panics(), 0);
}

#[tokio::test]
async fn raw_answers_http_cannot_carry_are_refused_with_a_400_naming_the_field() {
    count_panics();
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    let cases = [
        (json!({"kind": "raw", "status": 99}), "responses[0].status"),
        (
            json!({"kind": "raw", "status": 1000}),
            "responses[0].status",
        ),
        // serde reads an internally tagged enum through a buffer: the path stops there.
        (json!({"kind": "raw", "status": 65536}), "responses[0]"),
        (
            json!({"kind": "raw", "status": 200, "headers": [["bad name", "v"]]}),
            "responses[0].headers[0][0]",
        ),
        (
            json!({"kind": "raw", "status": 200, "headers": [["x", "line\nbreak"]]}),
            "responses[0].headers[0][1]",
        ),
        (
            json!({"kind": "raw", "status": 200, "headers": [["Content-Length", "5"]]}),
            "responses[0].headers[0][0]",
        ),
        (
            json!({"kind": "raw", "status": 200, "headers": [["x"]]}),
            "responses[0]",
        ),
        (
            json!({"kind": "raw", "status": 200, "headers": {"x": "y"}}),
            "responses[0]",
        ),
    ];
    for (answer, path) in cases {
        let reply = http
            .admin(
                Method::POST,
                "script",
                script(&json!("global"), &json!([answer])),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            reply.message().contains(&format!("`{path}`")),
            "{answer}: {}",
            reply.message()
        );
    }
    assert_eq!(sim.pending_scripts(), 0, "nothing refused was queued");

    // Through the Rust API: `try_script` says why; `script` answers a 500 naming it.
    let bad = Scripted::Raw {
        status: 200,
        headers: vec![("x".into(), "a\rb".into())],
        body: String::new(),
    };
    let err = sim
        .try_script(Target::Global, [Scripted::Ok, bad.clone()])
        .unwrap_err();
    assert_eq!(err.path, "[1].headers[0][1]");
    assert_eq!(sim.pending_scripts(), 0);
    sim.script(Target::Global, [bad]);
    let token = http.try_default_grant().await.unwrap().json();
    let reply = http
        .try_prompt_hello(token["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.json()["code"], "sim.script.invalid");
    assert!(
        reply.message().contains("headers[0][1]"),
        "{}",
        reply.message()
    );
    assert_eq!(panics(), 0);
}

#[tokio::test]
async fn a_scripted_grant_writes_any_expires_in_and_the_token_works() {
    count_panics();
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    for expires_in in ["18446744073709551615", "-5", "0.5", "1e300", "0"] {
        let body = format!(
            r#"{{"target":"token","responses":[{{"kind":"grant","expiresIn":{expires_in}}}]}}"#
        );
        let queued = http.admin(Method::POST, "script", body).await;
        assert_eq!(queued.status, StatusCode::OK, "{}", queued.message());
        let reply = http.try_default_grant().await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        let written: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            written["expires_in"],
            serde_json::from_str::<Value>(expires_in).unwrap(),
            "{text}"
        );
        let token = written["access_token"].as_str().unwrap();
        assert_eq!(
            http.try_prompt_hello(token).await.unwrap().status,
            StatusCode::OK
        );
    }
    let elsewhere = http
        .admin(
            Method::POST,
            "script",
            script(
                &json!("global"),
                &json!([{"kind": "grant", "expiresIn": 5}]),
            ),
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::BAD_REQUEST);
    assert!(
        elsewhere.message().contains("token"),
        "{}",
        elsewhere.message()
    );
    assert_eq!(panics(), 0);
}

/// Issue 10, item 10: a huge token lifetime was accepted, then the next token request
/// panicked (`Instant + Duration` overflow) and the connection dropped.
#[tokio::test]
async fn an_out_of_range_token_lifetime_is_a_400_and_tokens_keep_coming() {
    count_panics();
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    for secs in [
        "18446744073709551615",
        "0",
        "172801",
        "-1",
        "1.5",
        "1e400",
        "\"60\"",
        "null",
    ] {
        let reply = http
            .admin(
                Method::PUT,
                "token-lifetime",
                format!(r#"{{"secs":{secs}}}"#),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "secs {secs}");
        let token = http
            .try_default_grant()
            .await
            .expect("the token endpoint answers");
        assert_eq!(token.json()["expires_in"], 86_400, "unchanged by {secs}");
    }
    for secs in [1, 172_800] {
        let reply = http
            .admin(
                Method::PUT,
                "token-lifetime",
                json!({ "secs": secs }).to_string(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        let token = http.try_default_grant().await.unwrap();
        assert_eq!(token.json()["expires_in"], secs);
    }
    assert_eq!(panics(), 0);
}

#[tokio::test]
async fn the_rust_api_clamps_token_lifetimes() {
    count_panics();
    let sim = Sim::builder()
        .token_lifetime(Duration::MAX)
        .start()
        .await
        .unwrap();
    let http = Http::new(&sim);
    let token = http
        .try_default_grant()
        .await
        .expect("no panic on the grant");
    assert_eq!(token.json()["expires_in"], 172_800);
    sim.set_token_lifetime(Duration::ZERO);
    assert_eq!(
        http.try_default_grant().await.unwrap().json()["expires_in"],
        1
    );
    sim.set_token_lifetime(Duration::from_secs(u64::MAX));
    assert_eq!(
        http.try_default_grant().await.unwrap().json()["expires_in"],
        172_800
    );
    assert_eq!(panics(), 0);
}

/// `RetryAfter::HttpDate` with a huge number of seconds panicked (`SystemTime + Duration`
/// overflow, then `httpdate`'s four-digit year); the date is now clamped to 9999.
#[tokio::test]
async fn a_far_http_date_retry_after_is_clamped_to_the_year_9999() {
    count_panics();
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    let token = http.try_default_grant().await.unwrap().json();
    let token = token["access_token"].as_str().unwrap();
    for secs in [u64::MAX, 300_000_000_000, 253_402_300_799] {
        sim.script(
            Target::Global,
            [Scripted::TooManyRequests {
                retry_after: RetryAfter::HttpDate(secs),
            }],
        );
        let reply = http
            .try_prompt_hello(token)
            .await
            .expect("an answer, not a drop");
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            reply.headers["retry-after"],
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
    }
    assert_eq!(panics(), 0);
}

#[tokio::test]
async fn admin_bodies_must_be_objects_where_objects_are_meant() {
    count_panics();
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    let cases = [
        (Method::PUT, "token-lifetime", r#"["5"]"#, "."),
        (Method::PUT, "token-lifetime", "[5]", "."),
        (Method::PUT, "behaviour", "[]", "."),
        (Method::PUT, "client-rate-limit", "[3,60]", "."),
        (Method::PUT, "token-rate-limit", r#"[3,60,"seconds"]"#, "."),
        (
            Method::PUT,
            "behaviour",
            r#"{"rateLimit":[5,60]}"#,
            "rateLimit",
        ),
        (
            Method::PUT,
            "behaviour",
            r#"{"latency":["fixed",5]}"#,
            "latency",
        ),
        (
            Method::PUT,
            "behaviour",
            r#"{"errors":[[503,0.5]]}"#,
            "errors[0]",
        ),
        (
            Method::PUT,
            "behaviour",
            r#"{"slowBody":[2,10]}"#,
            "slowBody",
        ),
        (
            Method::PUT,
            "models/model-gen-4/behaviour",
            r#"[{"kind":"none"}]"#,
            ".",
        ),
        (Method::POST, "script", r#"[{"model":"m"},[]]"#, "."),
        (
            Method::POST,
            "script",
            r#"{"target":"global","responses":[["status",503]]}"#,
            "responses[0]",
        ),
        (
            Method::POST,
            "script",
            r#"{"target":"global","responses":[{"kind":"tooManyRequests","retryAfter":["seconds",5]}]}"#,
            "responses[0]",
        ),
    ];
    for (method, route, body, path) in cases {
        let reply = http.admin(method, route, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{route} {body}");
        assert!(
            reply.message().contains(&format!("`{path}`")),
            "{route} {body}: {}",
            reply.message()
        );
    }
    assert_eq!(sim.pending_scripts(), 0);
    let token = http.try_default_grant().await.unwrap();
    assert_eq!(token.json()["expires_in"], 86_400);
    assert_eq!(panics(), 0);
}

/// Behaviour bodies out of range, and the path each 400 names.
const OUT_OF_RANGE_BEHAVIOURS: &[(&str, &str)] = &[
    (r#"{"latency":{"kind":"fixed","ms":-1}}"#, "latency.ms"),
    (r#"{"latency":{"kind":"fixed","ms":1e308}}"#, "latency.ms"),
    (r#"{"latency":{"kind":"fixed","ms":3600001}}"#, "latency.ms"),
    (
        r#"{"latency":{"kind":"uniform","minMs":50,"maxMs":10}}"#,
        "latency.minMs",
    ),
    (
        r#"{"latency":{"kind":"exponential","meanMs":-3}}"#,
        "latency.meanMs",
    ),
    (
        r#"{"errors":[{"status":0,"rate":0.5}]}"#,
        "errors[0].status",
    ),
    (
        r#"{"errors":[{"status":503,"rate":1.5}]}"#,
        "errors[0].rate",
    ),
    (
        r#"{"errors":[{"status":70000,"rate":0.5}]}"#,
        "errors[0].status",
    ),
    (r#"{"dropRate":-0.1}"#, "dropRate"),
    (
        r#"{"rateLimit":{"allowed":5,"windowSecs":0}}"#,
        "rateLimit.windowSecs",
    ),
    (
        r#"{"rateLimit":{"allowed":5,"windowSecs":18446744073709551615}}"#,
        "rateLimit.windowSecs",
    ),
    (
        r#"{"slowBody":{"chunks":0,"chunkDelayMs":1}}"#,
        "slowBody.chunks",
    ),
    (
        r#"{"slowBody":{"chunks":2,"chunkDelayMs":18446744073709551615}}"#,
        "slowBody.chunkDelayMs",
    ),
    // Like a client limit: a limit that allows nothing is removed instead.
    (
        r#"{"rateLimit":{"allowed":0,"windowSecs":1}}"#,
        "rateLimit.allowed",
    ),
    // Each pause is in range; all of them together are not.
    (
        r#"{"slowBody":{"chunks":4294967295,"chunkDelayMs":3600000}}"#,
        "slowBody",
    ),
    (
        r#"{"slowBody":{"chunks":2,"chunkDelayMs":1800001}}"#,
        "slowBody",
    ),
];

#[tokio::test]
async fn out_of_range_admin_numbers_are_400s_naming_the_field() {
    count_panics();
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    for &(body, path) in OUT_OF_RANGE_BEHAVIOURS {
        for route in ["behaviour", "models/model-gen-4/behaviour"] {
            let reply = http.admin(Method::PUT, route, body).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{route} {body}");
            assert!(
                reply.message().contains(&format!("`{path}`")),
                "{route} {body}: {}",
                reply.message()
            );
        }
    }
    let scripts = [
        (json!({"kind": "delay", "ms": u64::MAX}), "responses[0].ms"),
        (
            json!({"kind": "oversized", "bytes": u64::MAX}),
            "responses[0].bytes",
        ),
        (
            json!({"kind": "status", "status": 42}),
            "responses[0].status",
        ),
    ];
    for (answer, path) in scripts {
        let reply = http
            .admin(
                Method::POST,
                "script",
                script(&json!({"model": "model-gen-4"}), &json!([answer])),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            reply.message().contains(&format!("`{path}`")),
            "{answer}: {}",
            reply.message()
        );
    }
    // This route once sliced its path out of bounds and panicked.
    let odd = http.admin(Method::PUT, "models/behaviour", "").await;
    assert_eq!(odd.status, StatusCode::OK);
    let token = http.try_default_grant().await.unwrap().json();
    let reply = http
        .try_prompt_hello(token["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "nothing refused was applied");
    assert_eq!(panics(), 0);
}

#[tokio::test]
async fn out_of_range_client_limits_are_400s_naming_the_field() {
    count_panics();
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    let limits = [
        (r#"{"allowed":0,"windowSecs":60}"#, "allowed"),
        (r#"{"allowed":-1,"windowSecs":60}"#, "allowed"),
        (r#"{"allowed":4294967296,"windowSecs":60}"#, "allowed"),
        (r#"{"allowed":"3","windowSecs":60}"#, "allowed"),
        (r#"{"allowed":3,"windowSecs":0}"#, "windowSecs"),
        (r#"{"allowed":3,"windowSecs":86401}"#, "windowSecs"),
        (
            r#"{"allowed":3,"windowSecs":18446744073709551615}"#,
            "windowSecs",
        ),
        (r#"{"allowed":3,"windowSecs":1e400}"#, "."),
        (r#"{"allowed":3,"windowSecs":60.5}"#, "windowSecs"),
        (r#"{"allowed":3,"windowSecs":null}"#, "windowSecs"),
        (r#"{"allowed":3}"#, "windowSecs"),
        (
            r#"{"allowed":3,"windowSecs":60,"retryAfter":"never"}"#,
            "retryAfter",
        ),
        (r#"{"allowed":3,"windowSecs":60,"burst":1}"#, "burst"),
    ];
    for (body, path) in limits {
        for route in ["client-rate-limit", "token-rate-limit"] {
            let reply = http.admin(Method::PUT, route, body).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{route} {body}");
            assert!(
                reply.message().contains(&format!("`{path}`")),
                "{route} {body}: {}",
                reply.message()
            );
        }
    }
    // Nothing refused was applied: no limit stops a token or a prompt call.
    let token = http.try_default_grant().await.unwrap();
    assert_eq!(token.status, StatusCode::OK);
    let token = token.json()["access_token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(
            http.try_prompt_hello(&token).await.unwrap().status,
            StatusCode::OK
        );
    }
    assert_eq!(panics(), 0);
}

/// Values the Rust API takes unchecked are clamped where they are used: a NaN latency
/// (`Duration::from_secs_f64` panicked), an `oversized` body of `usize::MAX` bytes (the
/// allocation panicked), a `delay` of `u64::MAX` ms (an hour now).
#[tokio::test(start_paused = true)]
async fn unchecked_rust_api_values_are_clamped_where_they_are_used() {
    count_panics();
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    let token = http.try_default_grant().await.unwrap().json();
    let token = token["access_token"].as_str().unwrap();
    sim.set_behaviour(Behaviour {
        latency: Latency::Fixed { ms: f64::NAN },
        ..Behaviour::default()
    });
    assert_eq!(
        http.try_prompt_hello(token).await.unwrap().status,
        StatusCode::OK
    );
    sim.script(Target::Global, [Scripted::Oversized { bytes: usize::MAX }]);
    let big = http.try_prompt_hello(token).await.unwrap();
    assert_eq!(big.body.len(), gateway_sim::MAX_OVERSIZED_BYTES);
    sim.script(Target::Global, [Scripted::Delay { ms: u64::MAX }]);
    let started = tokio::time::Instant::now();
    assert_eq!(
        http.try_prompt_hello(token).await.unwrap().status,
        StatusCode::OK
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3600) && waited < Duration::from_secs(3601),
        "{waited:?}"
    );
    // Four pauses of an hour each are cut to an hour in all.
    sim.set_behaviour(Behaviour {
        slow_body: Some(SlowBody {
            chunks: 4,
            chunk_delay_ms: 3_600_000,
        }),
        ..Behaviour::default()
    });
    let started = tokio::time::Instant::now();
    let slow = http.try_prompt_hello(token).await.unwrap();
    assert_eq!(slow.status, StatusCode::OK);
    assert!(slow.body.len() >= 4, "the body comes in four parts");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3600) && waited < Duration::from_secs(3601),
        "{waited:?}"
    );
    sim.set_behaviour(Behaviour::default());
    // A window of u64::MAX seconds is a day; allowed 0 refuses every call.
    sim.set_client_rate_limit(Some(RateLimit {
        allowed: 0,
        window_secs: u64::MAX,
        retry_after: RetryAfterStyle::HttpDate,
    }));
    let limited = http.try_prompt_hello(token).await.unwrap();
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers["inin-ratelimit-reset"], "86400");
    sim.set_token_rate_limit(Some(RateLimit {
        allowed: u32::MAX,
        window_secs: 0,
        retry_after: RetryAfterStyle::Seconds,
    }));
    assert_eq!(
        http.try_default_grant().await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(panics(), 0);
}

#[tokio::test]
async fn the_builder_refuses_out_of_range_set_ups() {
    let err = Sim::builder()
        .behaviour(Behaviour {
            latency: Latency::Fixed { ms: f64::NAN },
            ..Behaviour::default()
        })
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimError::Invalid(e) if e.path == "behaviour.latency.ms"),
        "{err}"
    );
    let err = Sim::builder()
        .script(
            Target::Global,
            [Scripted::Grant {
                expires_in: 5.into(),
            }],
        )
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("script[0].kind"), "{err}");
    let limit = |allowed, window_secs| RateLimit {
        allowed,
        window_secs,
        retry_after: RetryAfterStyle::Seconds,
    };
    let err = Sim::builder()
        .client_rate_limit(limit(0, 60))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimError::Invalid(e) if e.path == "clientRateLimit.allowed"),
        "{err}"
    );
    let err = Sim::builder()
        .behaviour(Behaviour {
            rate_limit: Some(limit(0, 1)),
            ..Behaviour::default()
        })
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimError::Invalid(e) if e.path == "behaviour.rateLimit.allowed"
            && e.rule.contains("remove the limit to turn it off")),
        "{err}"
    );
    let err = Sim::builder()
        .model_behaviour(
            "model-gen-4",
            Behaviour {
                slow_body: Some(SlowBody {
                    chunks: u32::MAX,
                    chunk_delay_ms: 3_600_000,
                }),
                ..Behaviour::default()
            },
        )
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimError::Invalid(e) if e.path == "models.model-gen-4.slowBody"),
        "{err}"
    );
    let err = Sim::builder()
        .token_rate_limit(limit(3, 0))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimError::Invalid(e) if e.path == "tokenRateLimit.windowSecs"),
        "{err}"
    );
}

/// A script for a model no call can name would wait forever, counting against
/// `MAX_PENDING_SCRIPTS`: its target must be a model id, as in `/__admin/models/{id}`.
#[tokio::test]
async fn script_and_behaviour_targets_must_be_model_ids() {
    count_panics();
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    let long = "m".repeat(100_000);
    for model in ["", long.as_str(), "a/b", "-dash", "model gen"] {
        let reply = http
            .admin(
                Method::POST,
                "script",
                script(&json!({ "model": model }), &json!([{"kind": "ok"}])),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{model:.20}");
        assert!(
            reply.message().contains("`target.model`") && reply.message().len() < 400,
            "{model:.20}: {}",
            reply.message()
        );
        let err = sim
            .try_script(Target::model(model), [Scripted::Ok])
            .unwrap_err();
        assert_eq!(err.path, "target.model", "{model:.20}");
    }
    assert_eq!(sim.pending_scripts(), 0, "nothing refused was queued");
    let ok = script(&json!({"model": "model-gen-4"}), &json!([{"kind": "ok"}]));
    assert_eq!(
        http.admin(Method::POST, "script", ok).await.status,
        StatusCode::OK
    );
    assert_eq!(sim.pending_scripts(), 1);

    let err = Sim::builder()
        .script(Target::model(""), [Scripted::Ok])
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimError::Invalid(e) if e.path == "script.target.model"),
        "{err}"
    );
    let err = Sim::builder()
        .model_behaviour("a/b", Behaviour::default())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimError::Invalid(e) if e.path == "models" && e.rule.contains("`a/b`")),
        "{err}"
    );
    assert_eq!(panics(), 0);
}

/// JSON values built from the admin API's own field names and kinds, with hostile numbers,
/// so that generated bodies reach the range checks and not only the parser.
fn hostile_json() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        Just(json!(18_446_744_073_709_551_615_u64)),
        Just(json!(0)),
        Just(json!(1)),
        Just(json!(0.5)),
    ];
    let word = prop::sample::select(vec![
        "kind",
        "ms",
        "minMs",
        "maxMs",
        "meanMs",
        "status",
        "rate",
        "errors",
        "dropRate",
        "rateLimit",
        "allowed",
        "windowSecs",
        "retryAfter",
        "slowBody",
        "chunks",
        "chunkDelayMs",
        "latency",
        "secs",
        "target",
        "responses",
        "headers",
        "body",
        "bytes",
        "expiresIn",
        "seconds",
        "httpDate",
        "absent",
        "fixed",
        "uniform",
        "exponential",
        "none",
        "raw",
        "grant",
        "delay",
        "oversized",
        "tooManyRequests",
        "global",
        "token",
        "model",
        "stall",
        "drop",
        "ok",
        "Retry-After",
        "content-length",
        "\n",
        "",
    ]);
    let leaf = prop_oneof![
        number,
        word.clone().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((word.clone(), inner), 0..5).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the body, every admin route answers 200 or 400 (never a dropped
    /// connection), nothing panics, and the token endpoint still answers afterwards.
    #[test]
    fn arbitrary_admin_bodies_get_an_answer_and_never_panic(body in hostile_json(), route in 0..7usize) {
        count_panics();
        let runtime = shared_runtime();
        let outcome: Result<(), TestCaseError> = runtime.block_on(async {
            let (sim, http) = shared_sim().await;
            let (method, path) = [
                (Method::PUT, "token-lifetime"),
                (Method::PUT, "behaviour"),
                (Method::PUT, "models/model-gen-4/behaviour"),
                (Method::POST, "script"),
                (Method::POST, "reset"),
                (Method::PUT, "client-rate-limit"),
                (Method::PUT, "token-rate-limit"),
            ][route].clone();
            let reply = http
                .try_send(method, &format!("/__admin/{path}"), &[], body.to_string())
                .await
                .map_err(|e| TestCaseError::fail(format!("{path} {body}: dropped: {e}")))?;
            prop_assert!(
                reply.status == StatusCode::OK || reply.status == StatusCode::BAD_REQUEST,
                "{} {}: {}", path, body, reply.status
            );
            // Whatever was accepted is undone, so a scripted stall cannot hang the check.
            http.try_send(Method::POST, "/__admin/reset", &[], "").await.map_err(TestCaseError::fail)?;
            let token = http.try_default_grant().await.map_err(TestCaseError::fail)?;
            prop_assert_eq!(token.status, StatusCode::OK);
            prop_assert_eq!(sim.pending_scripts(), 0);
            Ok(())
        });
        outcome?;
        prop_assert_eq!(panics(), 0);
    }
}

fn shared_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

async fn shared_sim() -> &'static (SimHandle, Http) {
    static SIM: tokio::sync::OnceCell<(SimHandle, Http)> = tokio::sync::OnceCell::const_new();
    SIM.get_or_init(|| async {
        let sim = Sim::builder().start().await.unwrap();
        let http = Http::new(&sim);
        (sim, http)
    })
    .await
}

fn any_ms() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-1.0),
        Just(1e300),
        0.0..500.0,
    ]
}

/// Rate limits with any numbers at all.
fn any_rate_limit() -> impl Strategy<Value = RateLimit> {
    (any::<u32>(), any::<u64>(), any::<bool>()).prop_map(|(allowed, window_secs, date)| RateLimit {
        allowed,
        window_secs,
        retry_after: if date {
            RetryAfterStyle::HttpDate
        } else {
            RetryAfterStyle::Seconds
        },
    })
}

/// Behaviours with any numbers at all, as the Rust API lets anyone set them unchecked.
fn any_behaviour() -> impl Strategy<Value = Behaviour> {
    let latency = prop_oneof![
        Just(Latency::None),
        any_ms().prop_map(|ms| Latency::Fixed { ms }),
        (any_ms(), any_ms()).prop_map(|(min_ms, max_ms)| Latency::Uniform { min_ms, max_ms }),
        any_ms().prop_map(|mean_ms| Latency::Exponential { mean_ms }),
    ];
    let errors = prop::collection::vec(
        (any::<u16>(), any::<f64>())
            .prop_map(|(status, rate)| gateway_sim::ErrorRate { status, rate }),
        0..3,
    );
    let rate_limit = prop::option::of(any_rate_limit());
    let slow_body = prop::option::of((any::<u32>(), any::<u64>()).prop_map(
        |(chunks, chunk_delay_ms)| gateway_sim::SlowBody {
            chunks,
            chunk_delay_ms,
        },
    ));
    (latency, errors, any::<f64>(), rate_limit, slow_body).prop_map(
        |(latency, errors, drop_rate, rate_limit, slow_body)| Behaviour {
            latency,
            errors,
            drop_rate,
            rate_limit,
            slow_body,
            ..Behaviour::default()
        },
    )
}

/// Scripted answers with any numbers and any header text (`stall` left out: it never
/// answers, by design).
fn any_script() -> impl Strategy<Value = Scripted> {
    prop_oneof![
        Just(Scripted::Ok),
        any::<u16>().prop_map(|status| Scripted::Status { status, code: None }),
        any::<u64>().prop_map(|s| Scripted::TooManyRequests {
            retry_after: RetryAfter::HttpDate(s)
        }),
        any::<u64>().prop_map(|s| Scripted::TooManyRequests {
            retry_after: RetryAfter::Seconds(s)
        }),
        Just(Scripted::PolicyViolation),
        Just(Scripted::Drop),
        any::<u64>().prop_map(|ms| Scripted::Delay { ms }),
        prop_oneof![Just(usize::MAX), 0..4096usize].prop_map(|bytes| Scripted::Oversized { bytes }),
        (
            any::<u16>(),
            prop::collection::vec((".{0,8}", ".{0,8}"), 0..3),
            ".{0,16}"
        )
            .prop_map(|(status, headers, body)| Scripted::Raw {
                status,
                headers,
                body
            }),
        any::<i64>().prop_map(|n| Scripted::Grant {
            expires_in: n.into()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// What the Rust API takes unchecked is clamped at use: every prompt call gets an
    /// answer or a drop the simulator counts as deliberate, and nothing panics. On
    /// tokio's paused clock, so hour-long latencies cost nothing.
    #[test]
    fn unchecked_rust_api_values_never_panic(
        behaviour in any_behaviour(),
        answer in any_script(),
        client_limit in prop::option::of(any_rate_limit()),
        token_limit in prop::option::of(any_rate_limit()),
    ) {
        count_panics();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let outcome: Result<(), TestCaseError> = runtime.block_on(async {
            let sim = Sim::builder().start().await.unwrap();
            sim.set_behaviour(behaviour);
            sim.script(Target::Global, [answer]);
            sim.set_client_rate_limit(client_limit);
            sim.set_token_rate_limit(token_limit);
            let http = Http::new(&sim);
            let token = http.try_default_grant().await.map_err(TestCaseError::fail)?.json();
            let token = token["access_token"].as_str().unwrap_or_default().to_owned();
            // The first call takes the script, the second the behaviour.
            for _ in 0..2 {
                let dropped = sim.counters().dropped_connections;
                if let Err(e) = http.try_prompt_hello(&token).await {
                    prop_assert!(
                        sim.counters().dropped_connections > dropped,
                        "the connection dropped without a scripted drop: {}", e
                    );
                }
            }
            sim.shutdown().await;
            Ok(())
        });
        outcome?;
        prop_assert_eq!(panics(), 0);
    }
}

/// Regression: the counts were bounded, the bytes were not: 2,000 scripted `raw` answers
/// of 500 KB each took the simulator from 23 MB to 1 GB.
#[tokio::test]
async fn the_bytes_the_admin_api_keeps_are_bounded() {
    use gateway_sim::{MAX_BEHAVIOUR_RULES, MAX_BEHAVIOUR_TEXT, MAX_PENDING_SCRIPT_BYTES};
    count_panics();
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    let body = "x".repeat(400_000);
    let raw = script(
        &json!("global"),
        &json!([{"kind": "raw", "status": 200, "body": body}]),
    );
    let fit = MAX_PENDING_SCRIPT_BYTES / 400_000;
    for _ in 0..fit {
        let queued = http.admin(Method::POST, "script", raw.clone()).await;
        assert_eq!(queued.status, StatusCode::OK, "{}", queued.message());
    }
    let refused = http.admin(Method::POST, "script", raw.clone()).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused
            .message()
            .contains(&format!("at most {MAX_PENDING_SCRIPT_BYTES} bytes")),
        "{}",
        refused.message()
    );
    // Headers are counted too, and more than a raw answer may hold (or than `HeaderMap`
    // takes: 32,768 names panicked the simulator) are refused.
    let names: Vec<Value> = (0..33_000).map(|i| json!([format!("x{i}"), ""])).collect();
    let crowded = script(
        &json!("global"),
        &json!([{"kind": "raw", "status": 200, "headers": names}]),
    );
    let refused = http.admin(Method::POST, "script", crowded).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.message().contains("at most 100 headers"),
        "{}",
        refused.message()
    );
    // An answer used gives its bytes back.
    let token = http
        .token(
            gateway_sim::DEFAULT_CLIENT_ID,
            gateway_sim::DEFAULT_CLIENT_SECRET,
        )
        .await;
    let payload = json!({"modelId": "model-gen-4", "prompt": "hi",
        "parameters": {"temperature": 0.3, "maxTokens": 64, "topP": 0.9}});
    let answered = http.prompt(&token, &payload).await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.message());
    let queued = http.admin(Method::POST, "script", raw).await;
    assert_eq!(queued.status, StatusCode::OK, "{}", queued.message());

    let many = vec![json!({"contains": "x"}); MAX_BEHAVIOUR_RULES + 1];
    let long = vec![json!({"contains": "x".repeat(MAX_BEHAVIOUR_TEXT + 1)})];
    for (rules, path) in [(many, "policyRules"), (long, "policyRules[0].contains")] {
        let refused = http
            .admin(
                Method::PUT,
                "models/model-gen-4/behaviour",
                json!({"policyRules": rules}).to_string(),
            )
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(refused.message().contains(path), "{}", refused.message());
    }
    assert_eq!(panics(), 0);
}

#[tokio::test]
async fn what_the_admin_api_accumulates_is_bounded() {
    use gateway_sim::{MAX_ADMIN_MODELS, MAX_PENDING_SCRIPTS};
    count_panics();
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    let oks = |n: usize| {
        script(
            &json!("global"),
            &Value::Array(vec![json!({"kind": "ok"}); n]),
        )
    };
    let queued = http
        .admin(Method::POST, "script", oks(MAX_PENDING_SCRIPTS - 1))
        .await;
    assert_eq!(queued.status, StatusCode::OK, "{}", queued.message());
    let refused = http.admin(Method::POST, "script", oks(2)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused
            .message()
            .contains(&format!("at most {MAX_PENDING_SCRIPTS} scripted answers")),
        "{}",
        refused.message()
    );
    assert_eq!(sim.pending_scripts(), MAX_PENDING_SCRIPTS - 1);
    let last = http.admin(Method::POST, "script", oks(1)).await;
    assert_eq!(last.status, StatusCode::OK, "{}", last.message());

    // The Rust API is the test's own and unbounded: fill up to the bound through it.
    for n in 0..MAX_ADMIN_MODELS {
        sim.add_model(&format!("model-extra-{n}"));
        sim.set_model_behaviour(format!("model-extra-{n}"), Behaviour::default());
    }
    let behaviour = "{}";
    for (path, body) in [
        ("models/model-one-more", ""),
        ("models/model-one-more/behaviour", behaviour),
    ] {
        let refused = http.admin(Method::PUT, path, body).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            refused
                .message()
                .contains(&format!("at most {MAX_ADMIN_MODELS} models")),
            "{}",
            refused.message()
        );
    }
    // Replacing what is there is still allowed.
    let existing = format!("model-extra-{}", MAX_ADMIN_MODELS - 1);
    for path in [
        format!("models/{existing}"),
        format!("models/{existing}/behaviour"),
    ] {
        let body = if path.ends_with("behaviour") {
            behaviour
        } else {
            ""
        };
        assert_eq!(
            http.admin(Method::PUT, &path, body).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    // A reset brings the catalogue back to the one the simulator started with.
    let reset = http.admin(Method::POST, "reset", "{}").await;
    assert_eq!(reset.status, StatusCode::OK);
    let added = http.admin(Method::PUT, "models/model-one-more", "").await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.message());
    assert_eq!(sim.pending_scripts(), 0);
    assert_eq!(panics(), 0);
    sim.shutdown().await;
}

/// The simulator's catalogue, as its models page lists it.
async fn catalogue(http: &Http) -> Bytes {
    let token: Value =
        serde_json::from_slice(&http.try_default_grant().await.unwrap().body).unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let page = http
        .try_send(
            Method::GET,
            "/api/v2/ai/models?pageSize=100",
            &[("authorization", bearer)],
            "",
        )
        .await
        .unwrap();
    assert_eq!(page.status, StatusCode::OK);
    page.body
}

#[tokio::test]
async fn a_model_path_whose_id_no_model_can_have_is_a_400_and_changes_nothing() {
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    let before = catalogue(&http).await;
    for (method, path, body) in [
        (Method::PUT, "models//behaviour", "{}"),
        (Method::PUT, "models/a%2Fb", ""),
        (Method::PUT, "models/a/b", ""),
        (Method::PUT, "models/a/b/behaviour", "{}"),
        (Method::DELETE, "models/-leading-dash", ""),
    ] {
        let refused = http.admin(method.clone(), path, body).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{method} {path}");
        assert!(
            refused.message().contains("is not a model id"),
            "{method} {path}: {}",
            refused.message()
        );
    }
    assert_eq!(catalogue(&http).await, before, "the catalogue changed");
    // A well-formed id still works, with or without `/behaviour`.
    for (path, body) in [("models/model-x", ""), ("models/model-x/behaviour", "{}")] {
        let added = http.admin(Method::PUT, path, body).await;
        assert_eq!(added.status, StatusCode::OK, "{path}: {}", added.message());
    }
    sim.shutdown().await;
}

/// How long `stream` stayed open (read to its end) and what it sent; fails if it is
/// still open after three times `timeout`.
async fn closed_after<S>(mut stream: S, timeout: Duration) -> (Duration, String)
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;

    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    // The end of the stream, or (over TLS, without a close_notify) an error.
    let read = tokio::time::timeout(timeout * 3, stream.read_to_end(&mut rest)).await;
    let waited = started.elapsed();
    assert!(read.is_ok(), "still open after {waited:?}");
    (waited, String::from_utf8_lossy(&rest).into_owned())
}

/// A simulator whose connection timeout is `timeout`.
async fn timed_sim(timeout: Duration) -> gateway_sim::SimHandle {
    Sim::builder()
        .connection_timeout(timeout)
        .start()
        .await
        .unwrap()
}

/// With a connection timeout, a connection that sends nothing, or only part of a
/// request's headers, or waits between requests, is closed when it runs out; one that
/// sends in time is served.
#[tokio::test(start_paused = true)]
async fn the_connection_timeout_closes_silent_and_slow_connections() {
    use tokio::io::AsyncWriteExt;

    let timeout = Duration::from_secs(10);
    let sim = timed_sim(timeout).await;
    let connect = || tokio::net::TcpStream::connect(sim.addr());

    // Closed at the timeout, not before: the read sees the end of the stream.
    let silent = connect().await.unwrap();
    let (waited, _) = closed_after(silent, timeout).await;
    assert!(waited >= timeout && waited < timeout * 2, "{waited:?}");

    let mut slow = connect().await.unwrap();
    slow.write_all(b"GET /__admin/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (waited, _) = closed_after(slow, timeout).await;
    assert!(waited >= timeout && waited < timeout * 2, "{waited:?}");

    let mut prompt = connect().await.unwrap();
    prompt
        .write_all(b"GET /__admin/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (waited, answer) = closed_after(prompt, timeout).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        waited >= timeout && waited < timeout * 2,
        "kept alive for the next request until the timeout: {waited:?}"
    );

    // Regression: once a request's headers were in, nothing bounded its body, so a
    // client that stopped sending held the connection for good.
    let mut stalled = connect().await.unwrap();
    stalled
        .write_all(
            b"POST /api/v2/ai/gateway/prompts HTTP/1.1\r\nHost: x\r\n\
              Content-Length: 512000\r\n\r\n{\"modelId\"",
        )
        .await
        .unwrap();
    let (waited, answer) = closed_after(stalled, timeout).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request.timeout"), "{answer}");
    assert!(waited >= timeout && waited < timeout * 2, "{waited:?}");
    sim.shutdown().await;
}

/// A connection timeout hyper cannot add to its clock (it panicked in every connection),
/// or one that closes every connection at once, is refused at start.
#[tokio::test]
async fn a_connection_timeout_out_of_range_is_refused() {
    for timeout in [Duration::ZERO, Duration::MAX, Duration::from_secs(3_601)] {
        let err = Sim::builder()
            .connection_timeout(timeout)
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("connectionTimeout"), "{err}");
    }
    let longest = Sim::builder()
        .connection_timeout(gateway_sim::MAX_CONNECTION_TIMEOUT)
        .start()
        .await
        .unwrap();
    longest.shutdown().await;
}

/// A connection that stops inside the HTTP/2 preface, or sends a whole preface and then
/// no request, is closed at the connection timeout too: hyper's header timer covers
/// HTTP/1.1 only.
#[tokio::test(start_paused = true)]
async fn the_connection_timeout_closes_a_stalled_http2_preface() {
    use tokio::io::AsyncWriteExt;

    let timeout = Duration::from_secs(10);
    let sim = timed_sim(timeout).await;
    for sent in [
        &b"PRI * HTTP/2.0\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        let mut stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
        stream.write_all(sent).await.unwrap();
        let (waited, _) = closed_after(stream, timeout).await;
        assert!(waited >= timeout && waited < timeout * 2, "{waited:?}");
    }
    sim.shutdown().await;
}

/// Over TLS, a connection that finishes its handshake and then says nothing is closed at
/// the connection timeout too, whichever version ALPN chose.
#[tokio::test(start_paused = true)]
async fn the_connection_timeout_holds_after_a_tls_handshake() {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use std::sync::Arc;

    let pki = gateway_sim::TestPki::generate().unwrap();
    let timeout = Duration::from_secs(10);
    let sim = Sim::builder()
        .tls(pki.cert_pem.clone(), pki.key_pem.clone())
        .connection_timeout(timeout)
        .start()
        .await
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let (waited, _) = closed_after(tls, timeout).await;
        assert!(waited >= timeout && waited < timeout * 2, "{waited:?}");
    }
    sim.shutdown().await;
}

/// Regression: nothing capped the connections served, so clients that never finished
/// could take every file descriptor. Past the cap, a connection waits until one closes.
#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let sim = Sim::builder().max_connections(1).start().await.unwrap();
    let held = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let mut waiting = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    waiting
        .write_all(b"GET /__admin/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut read = Box::pin(waiting.read_to_end(&mut answer));
    // The window only gives a wrong answer room to show; a right one never fails here.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut read).await;
    assert!(early.is_err(), "answered past the cap");
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("answered once the held connection closed")
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let err = Sim::builder().max_connections(0).start().await.unwrap_err();
    assert!(err.to_string().contains("maxConnections"), "{err}");
    // A cap past what tokio's semaphore can count is no cap, not a panic.
    let unbounded = Sim::builder()
        .max_connections(usize::MAX)
        .start()
        .await
        .unwrap();
    let health = admin_health(unbounded.addr()).await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

/// `GET /__admin/health` over a plain connection: the answer's text.
async fn admin_health(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /__admin/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}
