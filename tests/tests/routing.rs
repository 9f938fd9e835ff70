//! The router end to end against the simulator: tuning, fallbacks (and when not to fall
//! back), circuit breakers, cool-downs, validation before sending, model checks.

use std::time::Duration;

use gateway_model::{
    MAX_PROMPT_CHARS, Outcome, RouteConfig, RouteRequest, SafetyFilter, TemperatureMatrix, Tuning,
};
use gateway_router::{BreakerState, BuildError, RouteErrorKind, Router};
use gateway_sim::{Behaviour, PolicyRule, RetryAfter, Scripted, Sim, SimHandle, Target};
use gateway_tests::{config_for, router_for};

fn chain(primary: &str, fallbacks: &[&str]) -> RouteConfig {
    RouteConfig {
        fallbacks: fallbacks.iter().map(|m| (*m).into()).collect(),
        ..RouteConfig::to_model(primary)
    }
}

/// A router with one route, `s`: model-gen-4, falling back to model-fallback-3.
async fn gen4_with_fallback(sim: &SimHandle) -> Router {
    router_for(config_for(sim).with_route("s", chain("model-gen-4", &["model-fallback-3"])))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn temperature_from_the_matrix_and_route_settings_reach_the_gateway() {
    let sim = Sim::builder().start().await.unwrap();
    let route = RouteConfig {
        temperature: TemperatureMatrix {
            low: 0.1,
            default: 0.5,
            high: 0.9,
        },
        max_tokens: 300,
        top_p: 0.8,
        safety_filters: vec![SafetyFilter::Pii],
        ..chain("model-gen-4", &["model-fallback-3"])
    };
    let router = router_for(config_for(&sim).with_route("summarize", route))
        .build()
        .await
        .unwrap();

    for (tuning, want) in [
        (Tuning::Low, 0.1),
        (Tuning::Default, 0.5),
        (Tuning::High, 0.9),
    ] {
        let request = RouteRequest::new("summarize", "Summarize this")
            .tuning(tuning)
            .metadata("queue", "billing");
        router.route(request).await.unwrap();
        let body = sim.prompt_requests().last().unwrap().json().unwrap();
        assert_eq!(body["parameters"]["temperature"], want, "{tuning}");
        assert_eq!(body["parameters"]["maxTokens"], 300);
        assert_eq!(body["parameters"]["topP"], 0.8);
        assert_eq!(body["safetyFilters"], serde_json::json!(["pii"]));
        assert_eq!(
            body["fallbackModels"],
            serde_json::json!(["model-fallback-3"]),
            "the chain is sent too"
        );
        assert_eq!(body["metadata"]["queue"], "billing");
        assert_eq!(body["metadata"]["dispatchSource"], "genesys-router");
    }
}

#[tokio::test]
async fn a_503_after_retries_falls_back_with_the_same_correlation_id() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(
        Target::model("model-gen-4"),
        vec![
            Scripted::Status {
                status: 503,
                code: None
            };
            3
        ],
    );
    let router = gen4_with_fallback(&sim).await;

    let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
    assert_eq!(
        (
            outcome.requested_model.as_str(),
            outcome.served_model.as_str()
        ),
        ("model-gen-4", "model-fallback-3")
    );
    assert_eq!(outcome.attempts, 4);
    assert_eq!(outcome.fallbacks_used, 1);
    let tried: Vec<_> = outcome
        .models_tried
        .iter()
        .map(|a| (a.model_id.as_str(), a.outcome, a.attempts))
        .collect();
    assert_eq!(
        tried,
        [
            ("model-gen-4", Outcome::UpstreamError, 3),
            ("model-fallback-3", Outcome::Success, 1)
        ]
    );

    let seen = sim.prompt_requests();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter()
            .all(|r| r.header("x-correlation-id") == Some(outcome.correlation_id.as_str()))
    );
    let ids: Vec<_> = seen
        .iter()
        .map(|r| r.request_id().unwrap().to_owned())
        .collect();
    assert!(
        ids[0] == ids[1] && ids[1] == ids[2],
        "retries keep the request id"
    );
    assert_ne!(
        ids[2], ids[3],
        "a fallback is a new logical call with a new request id"
    );
    assert_eq!(ids[3], outcome.request_id);
    // The fallback's own payload lists no further fallback.
    assert!(seen[3].json().unwrap().get("fallbackModels").is_none());
}

#[tokio::test]
async fn a_policy_violation_falls_back() {
    let sim = Sim::builder()
        .model_behaviour(
            "model-gen-4",
            Behaviour {
                policy_rules: vec![PolicyRule {
                    contains: "account".into(),
                    code: None,
                }],
                ..Behaviour::default()
            },
        )
        .start()
        .await
        .unwrap();
    let router = gen4_with_fallback(&sim).await;
    let outcome = router
        .route(RouteRequest::new("s", "my account number is 1234"))
        .await
        .unwrap();
    assert_eq!(outcome.served_model.as_str(), "model-fallback-3");
    assert_eq!(outcome.models_tried[0].outcome, Outcome::PolicyViolation);
    assert_eq!(outcome.models_tried[0].attempts, 1, "a 422 is not retried");
}

#[tokio::test]
async fn a_400_and_a_client_403_do_not_fall_back() {
    let sim = Sim::builder().start().await.unwrap();
    let router = gen4_with_fallback(&sim).await;

    sim.script(
        Target::model("model-gen-4"),
        [Scripted::Status {
            status: 400,
            code: None,
        }],
    );
    let err = router
        .route(RouteRequest::new("s", "hello"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), RouteErrorKind::Refused { status: 400, .. }),
        "{err}"
    );
    assert_eq!(
        sim.prompt_requests().len(),
        1,
        "the fallback was not called"
    );

    sim.script(
        Target::model("model-gen-4"),
        [Scripted::Status {
            status: 403,
            code: None,
        }],
    );
    let err = router
        .route(RouteRequest::new("s", "hello"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err.kind(), RouteErrorKind::Forbidden { .. }),
        "{err}"
    );
    assert!(
        text.contains("OAuth client's roles")
            && text.contains("missing.permissions")
            && text.contains("contextId"),
        "{text}"
    );
    assert_eq!(err.http_status(), 403);
    assert_eq!(sim.prompt_requests().len(), 2);

    // A 403 about the model itself does fall back.
    sim.set_model_behaviour(
        "model-gen-4",
        Behaviour {
            restricted: true,
            ..Behaviour::default()
        },
    );
    let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
    assert_eq!(outcome.served_model.as_str(), "model-fallback-3");
}

#[tokio::test]
async fn a_redirect_or_a_status_outside_https_classes_is_the_upstreams_failure() {
    let sim = Sim::builder().start().await.unwrap();
    let router = gen4_with_fallback(&sim).await;
    for status in [302, 308, 601, 999] {
        sim.script(
            Target::model("model-gen-4"),
            [Scripted::Status { status, code: None }],
        );
        let outcome = router.route(RouteRequest::new("s", "hello")).await;
        let outcome = outcome.unwrap_or_else(|e| panic!("{status}: {e}"));
        assert_eq!(
            outcome.served_model.as_str(),
            "model-fallback-3",
            "{status}"
        );
        assert_eq!(
            outcome.models_tried[0].outcome,
            gateway_model::Outcome::UpstreamError,
            "{status}"
        );
    }
}

/// A 4xx that says nothing wrong of the request itself is the gateway's failure, which
/// another model may not share: the call falls back, and (but for a model unknown or
/// gone) the model's circuit does not hear of it, so a prompt that draws a 451 cannot
/// close a model to every caller. One that blames the request (its method, media type,
/// size, headers) would be refused by every model, and stops the call.
#[tokio::test(start_paused = true)]
async fn only_a_4xx_that_blames_the_request_stops_the_call() {
    let sim = Sim::builder().start().await.unwrap();
    let status = |status| Scripted::Status { status, code: None };
    let router = gen4_with_fallback(&sim).await;
    for code in [402, 407, 409, 418, 451, 499] {
        // Six of each, past the breaker's five.
        for _ in 0..6 {
            sim.script(Target::model("model-gen-4"), [status(code)]);
            let outcome = router.route(RouteRequest::new("s", "hello")).await;
            let outcome = outcome.unwrap_or_else(|e| panic!("{code}: {e}"));
            assert_eq!(outcome.served_model.as_str(), "model-fallback-3", "{code}");
            let outcome = &outcome.models_tried[0].outcome;
            assert_eq!(*outcome, gateway_model::Outcome::UpstreamError, "{code}");
        }
        let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
        assert_eq!(
            outcome.served_model.as_str(),
            "model-gen-4",
            "{code}: closed"
        );
    }
    // A model gone is as good as unknown: its failures count.
    let router = gen4_with_fallback(&sim).await;
    for _ in 0..5 {
        sim.script(Target::model("model-gen-4"), [status(410)]);
        let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
        assert_eq!(outcome.served_model.as_str(), "model-fallback-3");
        let outcome = &outcome.models_tried[0].outcome;
        assert_eq!(*outcome, gateway_model::Outcome::ClientError);
    }
    let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
    assert_eq!(outcome.served_model.as_str(), "model-fallback-3", "open");
    // Not processed: early data is sent again first; a misdirected request is not (it
    // asks for another connection, and the pool would pick the same one).
    let router = gen4_with_fallback(&sim).await;
    for (code, attempts) in [(425, 3), (421, 1)] {
        sim.script(Target::model("model-gen-4"), vec![status(code); attempts]);
        let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
        assert_eq!(outcome.served_model.as_str(), "model-fallback-3", "{code}");
        assert_eq!(
            outcome.models_tried[0].attempts as usize, attempts,
            "{code}"
        );
    }
    let sent = sim.prompt_requests().len();
    for code in [405, 415, 431] {
        sim.script(Target::model("model-gen-4"), [status(code)]);
        let err = router
            .route(RouteRequest::new("s", "hello"))
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), RouteErrorKind::Refused { status, .. } if *status == code),
            "{code}: {err}"
        );
    }
    assert_eq!(
        sim.prompt_requests().len(),
        sent + 3,
        "no fallback was called"
    );
}

/// A 408 says the request was not taken in time, so it was not processed: it is sent
/// again, and after the last attempt the call falls back, as after a timeout.
#[tokio::test(start_paused = true)]
async fn a_408_is_sent_again_then_falls_back() {
    let sim = Sim::builder().start().await.unwrap();
    let router = gen4_with_fallback(&sim).await;
    let late = Scripted::Status {
        status: 408,
        code: None,
    };
    sim.script(Target::model("model-gen-4"), [late.clone()]);
    let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
    assert_eq!(outcome.served_model.as_str(), "model-gen-4");
    assert_eq!(outcome.models_tried[0].attempts, 2, "sent again");

    sim.script(
        Target::model("model-gen-4"),
        [late.clone(), late.clone(), late],
    );
    let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
    assert_eq!(outcome.served_model.as_str(), "model-fallback-3");
    assert_eq!(
        outcome.models_tried[0].outcome,
        gateway_model::Outcome::Timeout
    );
}

#[tokio::test]
async fn an_open_circuit_skips_the_model_without_a_request() {
    let sim = Sim::builder()
        .model_behaviour("model-gen-4", Behaviour::failing(500))
        .start()
        .await
        .unwrap();
    let mut config = config_for(&sim)
        .with_route("s", chain("model-gen-4", &["model-fallback-3"]))
        .with_route("solo", RouteConfig::to_model("model-gen-4"));
    config.circuit_breaker.failure_threshold = 2;
    config.retry.max_attempts = 1;
    let cooldown = Duration::from_millis(config.circuit_breaker.cooldown_ms);
    let router = router_for(config).build().await.unwrap();

    for _ in 0..2 {
        let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
        assert_eq!(outcome.served_model.as_str(), "model-fallback-3");
    }
    assert!(matches!(
        router.breaker_state("model-gen-4"),
        Some(BreakerState::Open { .. })
    ));
    let to_gen4 = |sim: &gateway_sim::SimHandle| {
        sim.prompt_requests()
            .iter()
            .filter(|r| r.model_id().as_deref() == Some("model-gen-4"))
            .count()
    };
    let before = to_gen4(&sim);

    let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
    assert_eq!(outcome.models_tried[0].outcome, Outcome::CircuitOpen);
    assert_eq!(outcome.models_tried[0].attempts, 0);
    assert_eq!(to_gen4(&sim), before, "no request went to the open model");

    // A route whose only model is open fails at once, also without a request.
    let err = router
        .route(RouteRequest::new("solo", "hello"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), RouteErrorKind::Exhausted { .. }),
        "{err}"
    );
    assert_eq!(
        err.trace().unwrap().models_tried[0].outcome,
        Outcome::CircuitOpen
    );
    assert_eq!(to_gen4(&sim), before);
    // It says when the circuit lets a call through: the rest of the cooldown.
    let wait = err
        .retry_after()
        .expect("a wait until the circuit half-opens");
    assert!(
        wait <= cooldown && wait > cooldown / 2,
        "{wait:?} of a {cooldown:?} cooldown"
    );
}

/// A `Retry-After` of at least `cool_down_on_retry_after_s` (the threshold itself
/// included: it was once waited out, then cooled the model down all the same) cools
/// the model down, and the call fails over at once.
#[tokio::test(start_paused = true)]
async fn a_long_retry_after_cools_the_model_down_and_fails_over_at_once() {
    let threshold = gateway_model::CircuitBreakerConfig::default().cool_down_on_retry_after_s;
    for seconds in [threshold, 30] {
        let sim = Sim::builder().start().await.unwrap();
        sim.script(
            Target::model("model-gen-4"),
            [Scripted::TooManyRequests {
                retry_after: RetryAfter::Seconds(seconds),
            }],
        );
        let router = gen4_with_fallback(&sim).await;

        let started = tokio::time::Instant::now();
        let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "it failed over instead of waiting {seconds} s"
        );
        assert_eq!(outcome.models_tried[0].outcome, Outcome::RateLimited);
        assert_eq!(outcome.served_model.as_str(), "model-fallback-3");

        // Other calls go straight to the fallback while the model cools down...
        let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
        assert_eq!(outcome.models_tried[0].outcome, Outcome::CircuitOpen);
        // ...and the model is tried again once the wait is over.
        tokio::time::advance(Duration::from_secs(seconds + 1)).await;
        let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
        assert_eq!(
            outcome.served_model.as_str(),
            "model-gen-4",
            "after {seconds} s"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_absurd_retry_after_fails_over_and_cools_down_no_longer_than_the_cap() {
    // Regression: these once panicked at `Instant + Duration` in the breaker, or kept
    // the circuit open for the whole wait with no probe ever sent.
    for retry_after in [
        RetryAfter::Seconds(u64::MAX),
        RetryAfter::Seconds(9_223_372_036_854_775_807),
        RetryAfter::Seconds(100_000),
        // 2100-01-01: an HTTP date decades ahead.
        RetryAfter::HttpDate(4_102_444_800 - now_unix()),
    ] {
        let sim = Sim::builder().start().await.unwrap();
        sim.script(
            Target::model("model-gen-4"),
            [Scripted::TooManyRequests { retry_after }],
        );
        let router = gen4_with_fallback(&sim).await;
        let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
        assert_eq!(
            outcome.models_tried[0].outcome,
            Outcome::RateLimited,
            "{retry_after:?}"
        );
        assert_eq!(outcome.served_model.as_str(), "model-fallback-3");

        // The circuit opens for at most max_retry_after_s (180 s by default)...
        let cap = Duration::from_secs(router.config().retry.max_retry_after_s);
        match router.breaker_state("model-gen-4") {
            Some(BreakerState::Open { until }) => assert!(
                until <= tokio::time::Instant::now() + cap,
                "{retry_after:?} opened the circuit past the cap"
            ),
            other => panic!("{retry_after:?}: the circuit should be open: {other:?}"),
        }
        // ...then one probe goes to the model again.
        tokio::time::advance(cap + Duration::from_secs(1)).await;
        let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
        assert_eq!(
            outcome.served_model.as_str(),
            "model-gen-4",
            "{retry_after:?}"
        );
        assert_eq!(
            router.breaker_state("model-gen-4"),
            Some(BreakerState::Closed { failures: 0 })
        );
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn every_model_failing_is_one_clear_error() {
    let sim = Sim::builder()
        .behaviour(Behaviour::failing(502))
        .start()
        .await
        .unwrap();
    let router = gen4_with_fallback(&sim).await;
    let err = router
        .route(RouteRequest::new("s", "hello"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("model-gen-4: upstream_error")
            && text.contains("model-fallback-3: upstream_error"),
        "{text}"
    );
    assert!(
        text.contains("bad.gateway"),
        "the Genesys code of the last failure: {text}"
    );
    assert_eq!(err.http_status(), 502);
    assert_eq!(err.trace().unwrap().models_tried.len(), 2);
}

/// `s` (model-gen-4, then model-fallback-3) against a simulator whose two models answer
/// with `gen4` and `fallback`.
async fn route_against(gen4: Behaviour, fallback: Behaviour) -> gateway_router::RouteError {
    let sim = Sim::builder()
        .model_behaviour("model-gen-4", gen4)
        .model_behaviour("model-fallback-3", fallback)
        .start()
        .await
        .unwrap();
    let router = gen4_with_fallback(&sim).await;
    router
        .route(RouteRequest::new("s", "my account number is 1234"))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_request_every_model_refuses_is_a_refusal_not_a_failure_to_retry() {
    let restricted = || Behaviour {
        restricted: true,
        ..Behaviour::default()
    };
    let policy = || Behaviour {
        policy_rules: vec![PolicyRule {
            contains: "account".into(),
            code: None,
        }],
        ..Behaviour::default()
    };

    let err = route_against(restricted(), restricted()).await;
    let outcomes: Vec<_> = err
        .trace()
        .unwrap()
        .models_tried
        .iter()
        .map(|a| (a.outcome, a.status))
        .collect();
    assert_eq!(
        outcomes,
        [
            (Outcome::ClientError, Some(403)),
            (Outcome::ClientError, Some(403))
        ],
        "both models were tried"
    );
    assert_eq!(err.http_status(), 403, "restricted everywhere: {err}");
    assert_eq!(err.code(), "router.all.models.failed");
    assert!(err.is_refused() && !err.is_retryable(), "{err}");
    assert_eq!(err.retry_after(), None);

    let err = route_against(policy(), policy()).await;
    assert_eq!(
        err.http_status(),
        422,
        "a policy violation everywhere: {err}"
    );
    assert!(err.is_refused() && !err.is_retryable());

    let err = route_against(restricted(), policy()).await;
    assert_eq!(err.http_status(), 422, "refusals that differ: {err}");
    assert!(err.is_refused() && !err.is_retryable());

    // One model failing on its side makes the whole call worth another try; a 404
    // counts against the model's health, so it is such a failure.
    for status in [502, 404] {
        let err = route_against(restricted(), Behaviour::failing(status)).await;
        assert_eq!(err.http_status(), 502, "{status}: {err}");
        assert!(!err.is_refused() && err.is_retryable(), "{status}");
    }
}

#[tokio::test]
async fn invalid_requests_never_reach_the_gateway() {
    let sim = Sim::builder().start().await.unwrap();
    let router = router_for(config_for(&sim).with_route("s", RouteConfig::to_model("model-gen-4")))
        .build()
        .await
        .unwrap();

    let err = router
        .route(RouteRequest::new("s", "x".repeat(MAX_PROMPT_CHARS + 1)))
        .await
        .unwrap_err();
    let violations = err.violations().expect("a validation error");
    assert_eq!(violations.violations()[0].path, "/prompt");
    assert_eq!(err.http_status(), 400);

    let err = router
        .route(RouteRequest::new("s", "hi").metadata("bad key", "v"))
        .await
        .unwrap_err();
    assert!(
        err.violations().unwrap().has_path("/metadata/bad key"),
        "{err}"
    );

    let err = router
        .route(RouteRequest::new("nope", "hi"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown route `nope`; configured routes: s"),
        "{err}"
    );
    assert_eq!(sim.counters().prompt_requests, 0);
}

/// Labels that fit a request but not beside the route's own are refused with the room
/// the route leaves and the count the caller sent: the refusal once counted the labels
/// of both ("has 33" for 31 sent).
#[tokio::test]
async fn labels_past_the_room_a_route_leaves_are_refused_with_that_room() {
    let sim = Sim::builder().start().await.unwrap();
    let route = RouteConfig {
        metadata: [("team", "care")].into_iter().collect(),
        ..RouteConfig::to_model("model-gen-4")
    };
    let router = router_for(config_for(&sim).with_route("s", route))
        .build()
        .await
        .unwrap();
    let with_labels = |n: usize| {
        (0..n).fold(RouteRequest::new("s", "hi"), |request, i| {
            request.metadata(format!("k{i:02}"), "v")
        })
    };
    // `team`, `routingVersion` and `dispatchSource` leave room for 29.
    router.route(with_labels(29)).await.unwrap();
    let err = router.route(with_labels(31)).await.unwrap_err();
    let violations = err.violations().expect("a validation error");
    assert_eq!(violations.violations().len(), 1, "{err}");
    let text = violations.violations()[0].to_string();
    assert!(
        text.starts_with("/metadata") && text.contains("room of 29 labels beside its own 3"),
        "{text}"
    );
    assert!(text.contains("(is 31)"), "{text}");
    // A caller's label may override one of the route's, which then takes no room.
    router
        .route(with_labels(29).metadata("team", "billing"))
        .await
        .unwrap();
    assert_eq!(sim.counters().prompt_requests, 2);
}

#[tokio::test]
async fn configured_models_are_checked_against_the_catalogue() {
    let sim = Sim::builder().start().await.unwrap();
    let mut config = config_for(&sim).with_route("s", chain("model-gen-4", &["model-retired-1"]));
    config.environment.validate_models = true;
    let err = router_for(config.clone()).build().await.unwrap_err();
    assert!(
        matches!(&err, BuildError::UnknownModels { unknown } if unknown.len() == 1),
        "{err}"
    );
    assert!(err.to_string().contains("`model-retired-1`"), "{err}");

    sim.add_model("model-retired-1");
    let router = router_for(config).build().await.unwrap();
    assert!(router.last_model_check().unwrap().all_known());
    sim.remove_model("model-gen-4");
    let check = router.check_models().await.unwrap();
    assert_eq!(check.unknown, [gateway_model::ModelId::new("model-gen-4")]);
}

#[tokio::test]
async fn the_catalogue_is_read_until_every_configured_model_is_found() {
    // 250 models: three pages of 100.
    let ids: Vec<String> = (0..250).map(|n| format!("model-{n:04}")).collect();
    let sim = Sim::builder().models(&ids).start().await.unwrap();
    let mut config = config_for(&sim).with_route("s", chain("model-0000", &["model-0099"]));
    config.environment.validate_models = true;
    let router = router_for(config.clone()).build().await.unwrap();
    assert!(router.last_model_check().unwrap().all_known());
    assert_eq!(
        sim.counters().model_requests,
        1,
        "both are on the first page"
    );

    sim.reset();
    config
        .routes
        .insert("t".into(), chain("model-0249", &["model-9999"]));
    let err = router_for(config).build().await.unwrap_err();
    assert!(
        matches!(&err, BuildError::UnknownModels { unknown } if unknown.len() == 1),
        "{err}"
    );
    assert!(err.to_string().contains("`model-9999`"), "{err}");
    assert_eq!(
        sim.counters().model_requests,
        3,
        "a missing model reads every page"
    );
}

/// A catalogue on a raw loopback server answering `page(n)` for `pageNumber=n`; counts
/// the requests.
async fn raw_catalogue(
    page: fn(u32) -> String,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&asked);
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut head = [0u8; 4096];
            let read = stream.read(&mut head).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&head[..read]);
            let n = head
                .split("pageNumber=")
                .nth(1)
                .and_then(|rest| rest.split('&').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let body = page(n);
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    (addr, asked, server)
}

/// A gateway that ignores `pageNumber`, answering its first page, which claims a second,
/// to every request: the check reads two pages, not a thousand. One that pages but
/// leaves `pageNumber` out is read to its last page.
#[tokio::test]
async fn a_catalogue_is_read_by_the_pages_it_claims_whatever_pages_it_names() {
    let sim = Sim::builder().start().await.unwrap();
    let build = |addr: std::net::SocketAddr| {
        let mut config = config_for(&sim).with_route("s", chain("model-gen-4", &[]));
        config.environment.api_base = Some(format!("http://{addr}"));
        config.environment.login_base = Some(sim.base_url());
        config.environment.validate_models = true;
        router_for(config).build()
    };
    let (addr, asked, server) = raw_catalogue(|_| {
        r#"{"entities":[{"id":"model-other"}],"pageNumber":1,"pageCount":2}"#.into()
    })
    .await;
    let err = build(addr).await.unwrap_err();
    assert!(matches!(&err, BuildError::UnknownModels { .. }), "{err}");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);
    server.abort();

    let (addr, asked, server) = raw_catalogue(|n| {
        let id = if n == 3 {
            "model-gen-4".into()
        } else {
            format!("model-{n}")
        };
        format!(r#"{{"entities":[{{"id":"{id}"}}],"pageCount":3}}"#)
    })
    .await;
    build(addr).await.unwrap();
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 3);
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn a_slow_catalogue_gets_one_deadline_for_all_its_pages() {
    // Four pages of 100, each answering in 25 s: 100 s in all, past the 90 s deadline
    // although each page is well within it.
    let ids: Vec<String> = (0..350).map(|n| format!("model-{n:04}")).collect();
    let sim = Sim::builder().models(&ids).start().await.unwrap();
    sim.set_catalogue_delay(std::time::Duration::from_secs(25));
    let mut config = config_for(&sim).with_route("s", chain("model-0000", &["model-9999"]));
    config.environment.validate_models = true;
    config.limits.deadline_ms = 90_000;
    config.limits.attempt_timeout_ms = 30_000;

    let started = tokio::time::Instant::now();
    let err = router_for(config).build().await.unwrap_err();
    assert!(
        matches!(&err, BuildError::Catalogue(e) if e.is_timeout()),
        "{err}"
    );
    assert!(
        started.elapsed() <= std::time::Duration::from_secs(91),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        sim.counters().model_requests,
        4,
        "the fourth page was cut off"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_model_leaves_time_for_its_fallback() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(Target::model("model-gen-4"), vec![Scripted::Stall; 5]);
    let mut config = config_for(&sim).with_route("s", chain("model-gen-4", &["model-fallback-3"]));
    config.limits.deadline_ms = 10_000;
    config.limits.attempt_timeout_ms = 10_000;
    let router = router_for(config).build().await.unwrap();

    let started = tokio::time::Instant::now();
    let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
    // The first model gets half the deadline, the fallback the rest.
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(outcome.models_tried[0].outcome, Outcome::Timeout);
    assert_eq!(outcome.served_model.as_str(), "model-fallback-3");
    // Running out of the caller's time says nothing about the model's health.
    assert_eq!(
        router.breaker_state("model-gen-4"),
        Some(BreakerState::Closed { failures: 0 })
    );
}

/// With the default shape (three attempts, each a third of the deadline), a hanging
/// model's last attempt is always cut by the call's deadline rather than by its own
/// timeout. The timeouts before it are the model's failures all the same: its breaker
/// opens, instead of every call waiting its whole time on a dead model.
#[tokio::test(start_paused = true)]
async fn a_hanging_model_opens_its_breaker_when_the_deadline_cuts_its_last_attempt() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(Target::model("model-gen-4"), vec![Scripted::Stall; 6]);
    let mut config = config_for(&sim).with_route("solo", RouteConfig::to_model("model-gen-4"));
    config.limits.deadline_ms = 6_000;
    config.limits.attempt_timeout_ms = 2_000;
    config.circuit_breaker.failure_threshold = 2;
    let router = router_for(config).build().await.unwrap();

    for _ in 0..2 {
        let err = router
            .route(RouteRequest::new("solo", "hello"))
            .await
            .unwrap_err();
        let tried = &err.trace().unwrap().models_tried[0];
        assert_eq!(
            (tried.attempts, tried.outcome),
            (3, Outcome::Timeout),
            "{err}"
        );
    }
    assert!(
        matches!(
            router.breaker_state("model-gen-4"),
            Some(BreakerState::Open { .. })
        ),
        "{:?}",
        router.breaker_state("model-gen-4")
    );
}

/// A 425 (or 408) says the request was not processed, through no fault of the model: when
/// the deadline then cuts the attempt that follows it, the model has failed at nothing,
/// and its breaker does not hear of it (a 5xx before the cut would count).
#[tokio::test(start_paused = true)]
async fn a_deadline_cut_after_a_425_does_not_count_against_the_model() {
    let sim = Sim::builder().start().await.unwrap();
    let mut config = config_for(&sim).with_route("solo", RouteConfig::to_model("model-gen-4"));
    config.limits.deadline_ms = 2_000;
    config.limits.attempt_timeout_ms = 2_000;
    config.circuit_breaker.failure_threshold = 1;
    let router = router_for(config).build().await.unwrap();
    for (status, opens) in [(425, false), (408, false), (503, true)] {
        let first = Scripted::Status { status, code: None };
        sim.script(Target::model("model-gen-4"), [first, Scripted::Stall]);
        let err = router
            .route(RouteRequest::new("solo", "hello"))
            .await
            .unwrap_err();
        let tried = &err.trace().unwrap().models_tried[0];
        assert_eq!(
            (tried.attempts, tried.outcome),
            (2, Outcome::Timeout),
            "{err}"
        );
        let state = router.breaker_state("model-gen-4");
        let open = matches!(state, Some(BreakerState::Open { .. }));
        assert_eq!(open, opens, "{status}: {state:?}");
    }
}

/// A model's share of the deadline is split only among the models that can still be
/// tried: a fallback whose circuit stays open past the deadline will be skipped, so its
/// share goes to the others instead of cutting a slow but working model short.
#[tokio::test(start_paused = true)]
async fn a_fallback_open_past_the_deadline_leaves_its_share_to_the_others() {
    let sim = Sim::builder().start().await.unwrap();
    let mut config = config_for(&sim)
        .with_route(
            "s",
            chain("model-gen-4", &["model-fallback-3", "model-small-1"]),
        )
        .with_route("small", RouteConfig::to_model("model-small-1"));
    config.limits.deadline_ms = 9_000;
    config.limits.attempt_timeout_ms = 9_000;
    config.retry.max_attempts = 1;
    config.circuit_breaker.failure_threshold = 1;
    config.circuit_breaker.cooldown_ms = 60_000;
    let router = router_for(config).build().await.unwrap();
    // model-small-1 fails once: its circuit opens for a minute, past any deadline below.
    sim.script(
        Target::model("model-small-1"),
        [Scripted::Status {
            status: 500,
            code: None,
        }],
    );
    router
        .route(RouteRequest::new("small", "hello"))
        .await
        .unwrap_err();

    // Three models, one of them skipped: model-gen-4 gets half the 9 s, not a third,
    // and answers in 4 s.
    sim.script(
        Target::model("model-gen-4"),
        [Scripted::Delay { ms: 4_000 }],
    );
    let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
    assert_eq!(outcome.served_model.as_str(), "model-gen-4");
}

#[tokio::test]
async fn an_unknown_model_falls_back_and_a_refused_token_stops() {
    let sim = Sim::builder().start().await.unwrap();
    sim.remove_model("model-gen-4");
    let router = gen4_with_fallback(&sim).await;
    let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
    assert_eq!(outcome.models_tried[0].status, Some(404));
    assert_eq!(outcome.served_model.as_str(), "model-fallback-3");

    sim.add_model("model-gen-4");
    sim.script(
        Target::model("model-gen-4"),
        vec![
            Scripted::Status {
                status: 401,
                code: None
            };
            2
        ],
    );
    let err = router
        .route(RouteRequest::new("s", "hello"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), RouteErrorKind::Unauthorized { .. }),
        "{err}"
    );
    assert_eq!(
        err.trace().unwrap().models_tried.len(),
        1,
        "a refused token is not the model's fault"
    );
}

/// Revokes any token the simulator granted, and answers the next `times` token
/// requests 503.
fn login_fails(sim: &SimHandle, times: usize) {
    sim.revoke_tokens();
    let unavailable = || Scripted::Status {
        status: 503,
        code: None,
    };
    sim.script(
        Target::Token,
        std::iter::repeat_with(unavailable).take(times),
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_login_host_ends_the_call_as_its_trouble_with_a_time_to_come_back() {
    let sim = Sim::builder().start().await.unwrap();
    let router = gen4_with_fallback(&sim).await;
    login_fails(&sim, 50);
    let err = router
        .route(RouteRequest::new("s", "hello"))
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), RouteErrorKind::Token(_)), "{err}");
    assert!(err.is_retryable() && !err.is_auth(), "{err}");
    assert!(
        err.retry_after().is_some_and(|wait| wait > Duration::ZERO),
        "{err:?}"
    );
    let tried = &err.trace().unwrap().models_tried;
    assert_eq!(tried.len(), 1, "the login host's trouble is no model's");
    assert_eq!(tried[0].outcome, Outcome::UpstreamError, "not the client's");
    assert!(
        sim.counters().token_requests >= 3,
        "the login host was asked again within the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn a_login_host_down_for_longer_than_one_models_share_costs_no_model() {
    let sim = Sim::builder().start().await.unwrap();
    let mut config = config_for(&sim).with_route(
        "s",
        chain("model-gen-4", &["model-gen-5", "model-fallback-3"]),
    );
    // Three models: the first gets a third of the 45 s, 15 s.
    config.limits.deadline_ms = 45_000;
    let router = router_for(config).build().await.unwrap();
    // The provider backs off 0.5 to 1 s, then twice as long after each failure: the
    // sixth token request goes out 15.5 to 31 s after the first, past the first model's
    // share and within the call's deadline.
    login_fails(&sim, 5);
    let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
    assert_eq!(sim.pending_scripts(), 0, "the five failures were answered");
    assert_eq!(sim.counters().token_requests, 6, "then a token");
    for tried in &outcome.models_tried {
        assert!(
            matches!(tried.outcome, Outcome::Success | Outcome::Timeout),
            "{tried:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_releases_everything_and_is_audited_as_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sink =
        gateway_audit::JsonlSink::open_with(&path, gateway_audit::JsonlOptions::default()).unwrap();
    let sim = Sim::builder().start().await.unwrap();
    let mut config = config_for(&sim).with_route("s", RouteConfig::to_model("model-gen-4"));
    config.limits.max_concurrency = 1;
    let router = router_for(config)
        .audit_sink(std::sync::Arc::new(sink))
        .build()
        .await
        .unwrap();

    sim.script(Target::model("model-gen-4"), [Scripted::Stall]);
    let dropped = tokio::time::timeout(
        Duration::from_secs(2),
        router.route(RouteRequest::new("s", "hello")),
    )
    .await;
    assert!(dropped.is_err(), "the caller gave up");
    assert_eq!(
        router.transport().limiter().available(),
        1,
        "the slot came back"
    );

    // The cancelled entry is written in the background.
    let mut entries = Vec::new();
    for _ in 0..1_000 {
        entries = gateway_audit::read_jsonl(&path).unwrap().entries;
        if !entries.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].outcome, Outcome::Cancelled);
    assert_eq!(entries[0].models_tried[0].model_id.as_str(), "model-gen-4");
    assert!(
        !entries[0].request_id.is_empty(),
        "the request that was in flight is named"
    );
    // It reached the gateway, and the entry says so, with the time it was out.
    assert_eq!(sim.prompt_requests().len(), 1);
    let tried = &entries[0].models_tried[0];
    assert_eq!((entries[0].attempts, tried.attempts), (1, 1), "{tried:?}");
    assert!(tried.latency_us > 0, "{tried:?}");
    assert!(tried.latency_us <= entries[0].latency_us, "{tried:?}");

    // The router still works.
    router.route(RouteRequest::new("s", "hello")).await.unwrap();
}

/// The gateway is never sent the OAuth client's secret, but a proxy in front of it may
/// know it and quote it: it reaches no error, as the request's token does not.
#[tokio::test]
async fn a_gateway_error_quoting_the_client_secret_reaches_no_error_with_it() {
    use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
    let sim = Sim::builder().start().await.unwrap();
    let router = router_for(config_for(&sim).with_route("s", chain("model-gen-4", &[])))
        .build()
        .await
        .unwrap();
    let basic =
        gateway_auth::Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).basic_credential();
    let basic = basic.expose();
    sim.script(
        Target::model("model-gen-4"),
        [Scripted::Raw {
            status: 400,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("inin-correlation-id".into(), format!("corr-{basic}")),
            ],
            body: format!(
                r#"{{"message":"proxy saw secret {DEFAULT_CLIENT_SECRET} and Basic {basic}","code":"bad.request","status":400}}"#
            ),
        }],
    );
    let err = router
        .route(RouteRequest::new("s", "hello"))
        .await
        .unwrap_err();
    let everything = format!("{err} {err:?}");
    assert!(
        !everything.contains(DEFAULT_CLIENT_SECRET) && !everything.contains(basic),
        "{everything}"
    );
    assert!(everything.contains("<redacted>"), "{everything}");
}

/// Regression: a fallback whose circuit stays open past the deadline (it will be
/// skipped) still counted as one at hand, so a short 429 on the primary failed over to
/// it instead of being waited out, and the call failed with a 429.
#[tokio::test(start_paused = true)]
async fn a_fallback_that_will_be_skipped_lets_the_primary_wait_out_a_short_429() {
    let sim = Sim::builder().start().await.unwrap();
    let config = config_for(&sim)
        .with_route("s", chain("model-gen-4", &["model-fallback-3"]))
        .with_route("b", chain("model-fallback-3", &[]));
    let router = router_for(config).build().await.unwrap();
    let too_many = |seconds| Scripted::TooManyRequests {
        retry_after: RetryAfter::Seconds(seconds),
    };
    // The fallback cools down for 120 s, past the call's deadline.
    sim.script(Target::model("model-fallback-3"), [too_many(120)]);
    router
        .route(RouteRequest::new("b", "hello"))
        .await
        .unwrap_err();
    assert!(matches!(
        router.breaker_state("model-fallback-3"),
        Some(BreakerState::Open { .. })
    ));

    sim.script(Target::model("model-gen-4"), [too_many(6)]);
    let outcome = router.route(RouteRequest::new("s", "hello")).await.unwrap();
    assert_eq!(outcome.served_model.as_str(), "model-gen-4");
    assert_eq!(outcome.models_tried.len(), 1, "{:?}", outcome.models_tried);
    assert_eq!(
        outcome.models_tried[0].attempts, 2,
        "the 429 was waited out"
    );
    assert_eq!(
        router.breaker_state("model-gen-4"),
        Some(BreakerState::Closed { failures: 0 })
    );
}

/// Shared circuits that never answer a notice (a store gone silent with no bound of its
/// own), counting the openings they are told.
#[derive(Default)]
struct Unanswering {
    opened: std::sync::atomic::AtomicUsize,
}

impl gateway_transport::SharedCircuits for Unanswering {
    fn open_for(&self, _: &str) -> gateway_transport::BoxFuture<'_, Option<Duration>> {
        Box::pin(std::future::ready(None))
    }
    fn claim_probe(&self, _: &str, _: u64) -> gateway_transport::BoxFuture<'_, bool> {
        Box::pin(std::future::ready(true))
    }
    fn opened(&self, _: &str, _: Duration) -> gateway_transport::BoxFuture<'_, ()> {
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::pin(std::future::pending())
    }
    fn released(&self, _: &str, _: u64) -> gateway_transport::BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
    fn closed(&self, _: &str) -> gateway_transport::BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
}

/// Regression: a call waited for the fleet to take its circuit's opening with no bound
/// but the store's own (a `SharedCircuits` without one held the call for ever, with no
/// audit entry written); it waits until its deadline, and the notice goes on without it.
#[tokio::test(start_paused = true)]
async fn a_fleet_that_never_takes_a_notice_holds_no_call_past_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sink =
        gateway_audit::JsonlSink::open_with(&path, gateway_audit::JsonlOptions::default()).unwrap();
    let sim = Sim::builder()
        .model_behaviour("model-gen-4", Behaviour::failing(503))
        .start()
        .await
        .unwrap();
    let mut config = config_for(&sim).with_route("s", RouteConfig::to_model("model-gen-4"));
    config.limits.deadline_ms = 1_000;
    config.limits.attempt_timeout_ms = 1_000;
    config.retry.max_attempts = 1;
    config.circuit_breaker.failure_threshold = 1;
    let circuits = std::sync::Arc::new(Unanswering::default());
    let router = router_for(config)
        .shared_circuits(circuits.clone())
        .audit_sink(std::sync::Arc::new(sink))
        .build()
        .await
        .unwrap();

    let started = tokio::time::Instant::now();
    let ended = tokio::time::timeout(
        Duration::from_secs(30),
        router.route(RouteRequest::new("s", "hello")),
    )
    .await
    .expect("the call ends");
    assert!(ended.is_err());
    assert!(
        started.elapsed() <= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        circuits.opened.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let trail = std::fs::read_to_string(&path).unwrap();
    let entries: Vec<serde_json::Value> = trail
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{trail}");
    assert_eq!(entries[0]["outcome"], "upstream_error", "{trail}");
}

/// Found by a black-box run: an answer whose text held half of a UTF-16 surrogate pair
/// (a service that cut an emoji in two) was refused whole, and the call failed over to
/// the next model, and failed when every model answered alike.
#[tokio::test]
async fn an_answer_with_half_an_emoji_is_read_with_a_replacement_character() {
    let sim = Sim::builder().start().await.unwrap();
    let router = gen4_with_fallback(&sim).await;
    sim.script(
        Target::model("model-gen-4"),
        [Scripted::Raw {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: r#"{"id":"c1","modelId":"model-gen-4","output":"cut \ud83d"}"#.into(),
        }],
    );
    let outcome = router.route(RouteRequest::new("s", "hi")).await.unwrap();
    assert_eq!(outcome.served_model.as_str(), "model-gen-4", "no fallback");
    assert_eq!(outcome.response.output, "cut \u{fffd}");
}
