//! The dispatch loop against the real simulator on loopback: retries, `Retry-After`,
//! backoff, deadlines, the limiter, cancellation, body limits, dropped connections, 401.
//!
//! Time-sensitive tests run on tokio's paused clock: sleeps and timeouts advance virtual
//! time, so a 2 s `Retry-After` costs no wall-clock time and the simulator's recorded
//! arrival times (also on tokio's clock) show the exact waits.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use gateway_model::{GatewayPayload, RetryReason};
use gateway_sim::{
    Behaviour, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Latency, RateLimit, RetryAfter,
    RetryAfterStyle, Scripted, Sim, SimHandle, Target,
};
use gateway_transport::{
    AccessToken, BoxFuture, Call, ErrorKind, REQUEST_ID, RetryPolicy, StaticToken, TokenError,
    TokenSource, Transport, TransportConfig,
};
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::Full;

const PROMPTS: &str = "/api/v2/ai/gateway/prompts";

fn payload(model: &str) -> Bytes {
    let p = GatewayPayload::builder(model, "Summarize this transcript")
        .build()
        .unwrap();
    Bytes::from(serde_json::to_vec(&p).unwrap())
}

/// Obtains a token from the simulator's `/oauth/token` the way a client would.
async fn sim_token(transport: &Transport, sim: &SimHandle) -> String {
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}"));
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/oauth/token", sim.base_url()))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(
            b"grant_type=client_credentials",
        )))
        .unwrap();
    let answer = transport
        .client()
        .send(request, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    json["access_token"].as_str().unwrap().to_owned()
}

fn config(sim: &SimHandle) -> TransportConfig {
    let mut config = TransportConfig::new(sim.base_url());
    config.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        max_retry_after: Duration::from_secs(180),
        jitter: false,
    };
    config.budget_ratio = 1.0;
    config
}

/// A transport with a valid static token from the simulator.
async fn transport(sim: &SimHandle, config: TransportConfig) -> Transport {
    let bare = Transport::new(config.clone()).unwrap();
    let token = sim_token(&bare, sim).await;
    Transport::new(config)
        .unwrap()
        .with_token_source(StaticToken::new(&token).unwrap())
}

fn prompt_call(transport: &Transport, request_id: &str) -> Call {
    Call::post(
        transport.url(PROMPTS).unwrap(),
        payload("model-gen-4"),
        request_id,
    )
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_is_honoured_with_the_same_request_id() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(
        Target::Global,
        [Scripted::TooManyRequests {
            retry_after: RetryAfter::Seconds(2),
        }],
    );
    let t = transport(&sim, config(&sim)).await;

    let answer = t.execute(prompt_call(&t, "req-1")).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.stats.attempts, 2);
    assert_eq!(answer.stats.retries_for(RetryReason::RateLimited), 1);

    let seen = sim.prompt_requests();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|r| r.request_id() == Some("req-1")),
        "one idempotency key for every attempt"
    );
    let gap = seen[1].at_ms - seen[0].at_ms;
    assert!(
        (2000.0..2100.0).contains(&gap),
        "waited {gap} ms for Retry-After: 2"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_of_zero_still_waits_the_backoff() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(
        Target::Global,
        [
            Scripted::TooManyRequests {
                retry_after: RetryAfter::Seconds(0),
            },
            Scripted::TooManyRequests {
                retry_after: RetryAfter::Seconds(0),
            },
        ],
    );
    let t = transport(&sim, config(&sim)).await;
    let answer = t.execute(prompt_call(&t, "zero")).await.unwrap();
    assert_eq!(answer.stats.attempts, 3);
    let seen = sim.prompt_requests();
    // The backoff without jitter: 100 ms, then 200 ms.
    let gaps = [seen[1].at_ms - seen[0].at_ms, seen[2].at_ms - seen[1].at_ms];
    assert!(
        (100.0..150.0).contains(&gaps[0]) && (200.0..250.0).contains(&gaps[1]),
        "{gaps:?} ms"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_is_honoured() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(
        Target::Global,
        [Scripted::TooManyRequests {
            retry_after: RetryAfter::HttpDate(3),
        }],
    );
    let t = transport(&sim, config(&sim)).await;

    t.execute(prompt_call(&t, "req-date")).await.unwrap();
    let seen = sim.prompt_requests();
    let gap = seen[1].at_ms - seen[0].at_ms;
    // An HTTP date has whole-second resolution, so the wait is 2 to 3 s.
    assert!(
        (2000.0..=3100.0).contains(&gap),
        "waited {gap} ms for a date 3 s ahead"
    );
    assert_eq!(seen[0].request_id(), seen[1].request_id());
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_and_stops_at_the_deadline() {
    let sim = Sim::builder()
        .behaviour(Behaviour::failing(503))
        .start()
        .await
        .unwrap();
    let mut config = config(&sim);
    config.retry.max_attempts = 10;
    config.deadline = Duration::from_millis(1_000);
    let t = transport(&sim, config).await;

    let started = tokio::time::Instant::now();
    let err = t.execute(prompt_call(&t, "req-backoff")).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(err.code(), Some("service.unavailable"));
    assert!(
        started.elapsed() <= Duration::from_millis(1_000),
        "stopped at the deadline"
    );

    let seen = sim.prompt_requests();
    let gaps: Vec<f64> = seen
        .windows(2)
        .map(|w| (w[1].at_ms - w[0].at_ms).round())
        .collect();
    // 100, 200, 400 ms; the next (800 ms) would end past the 1 s deadline.
    assert_eq!(gaps, [100.0, 200.0, 400.0]);
    assert_eq!(err.attempts(), 4);
    assert!(seen.iter().all(|r| r.request_id() == Some("req-backoff")));
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_not_retried() {
    let sim = Sim::builder()
        .model_behaviour(
            "model-gen-5",
            Behaviour {
                restricted: true,
                ..Behaviour::default()
            },
        )
        .start()
        .await
        .unwrap();
    let t = transport(&sim, config(&sim)).await;
    let url = t.url(PROMPTS).unwrap();

    sim.script(
        Target::Global,
        [Scripted::Status {
            status: 400,
            code: None,
        }],
    );
    let err = t
        .execute(Call::post(url.clone(), payload("model-gen-4"), "r400"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code(), err.attempts()),
        (Some(StatusCode::BAD_REQUEST), Some("bad.request"), 1)
    );

    let err = t
        .execute(Call::post(url.clone(), payload("model-gen-5"), "r403"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(StatusCode::FORBIDDEN), Some("ai.model.restricted"))
    );
    assert!(err.context_id().is_some(), "Genesys' contextId is kept");

    let err = t
        .execute(Call::post(url.clone(), payload("no-such-model"), "r404"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));

    sim.script(Target::Global, [Scripted::PolicyViolation]);
    let err = t
        .execute(Call::post(url.clone(), payload("model-gen-4"), "r422"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (
            Some(StatusCode::UNPROCESSABLE_ENTITY),
            Some("ai.gateway.policy.violation")
        )
    );

    sim.script(
        Target::Global,
        [Scripted::Status {
            status: 501,
            code: None,
        }],
    );
    let err = t
        .execute(Call::post(url, payload("model-gen-4"), "r501"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_IMPLEMENTED));

    // One request each: nothing was retried.
    let counts: Vec<_> = ["r400", "r403", "r404", "r422", "r501"]
        .iter()
        .map(|id| {
            sim.prompt_requests()
                .iter()
                .filter(|r| r.request_id() == Some(id))
                .count()
        })
        .collect();
    assert_eq!(counts, [1, 1, 1, 1, 1]);
}

#[tokio::test(start_paused = true)]
async fn rate_limited_after_retries_is_an_error_not_an_answer() {
    let sim = Sim::builder().start().await.unwrap();
    let mut config = config(&sim);
    config.retry.max_attempts = 3;
    sim.script(
        Target::Global,
        vec![
            Scripted::TooManyRequests {
                retry_after: RetryAfter::Seconds(1)
            };
            3
        ],
    );
    let t = transport(&sim, config).await;

    let err = t.execute(prompt_call(&t, "req-429")).await.unwrap_err();
    match err.kind() {
        ErrorKind::RateLimited {
            retry_after,
            over_cap,
            body,
        } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(1)));
            assert!(!over_cap);
            assert_eq!(
                body.as_ref().and_then(|b| b.code.as_deref()),
                Some("too.many.requests.retry.after")
            );
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(err.attempts(), 3);
    assert_eq!(sim.counters().by_status.get(&429), Some(&3));
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_cap_fails_at_once() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(
        Target::Global,
        [Scripted::TooManyRequests {
            retry_after: RetryAfter::Seconds(600),
        }],
    );
    let t = transport(&sim, config(&sim)).await;

    let started = tokio::time::Instant::now();
    let err = t.execute(prompt_call(&t, "req-cap")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(600)));
    assert!(matches!(
        err.kind(),
        ErrorKind::RateLimited { over_cap: true, .. }
    ));
    assert_eq!(err.attempts(), 1);
    assert!(err.to_string().ends_with("retry after 600s"), "{err}");

    // An absurd wait is read at the ceiling, and not reported as a number never sent.
    sim.script(
        Target::Global,
        [Scripted::Raw {
            status: 429,
            headers: vec![("retry-after".into(), "99999999999999999999".into())],
            body: String::new(),
        }],
    );
    let err = t.execute(prompt_call(&t, "req-absurd")).await.unwrap_err();
    assert!(
        err.to_string().ends_with("retry after a day or more"),
        "{err}"
    );

    // No wait at all, as a number or as a date past, is said so, not as "0ns".
    // (Such a 429 is retried, so each of the four attempts gets one.)
    for now in ["0", "Thu, 01 Jan 1970 00:00:00 GMT"] {
        let refusal = Scripted::Raw {
            status: 429,
            headers: vec![("retry-after".into(), now.into())],
            body: String::new(),
        };
        sim.script(Target::Global, vec![refusal; 4]);
        let err = t.execute(prompt_call(&t, "req-now")).await.unwrap_err();
        let said = err.to_string();
        assert!(
            said.contains("; retry at once") && !said.contains("0ns"),
            "{now}: {said}"
        );
        assert_eq!(sim.pending_scripts(), 0, "{now}: four attempts");
    }
}

#[tokio::test(start_paused = true)]
async fn a_5xx_says_when_to_come_back_and_one_beyond_the_cap_fails_at_once() {
    let sim = Sim::builder().start().await.unwrap();
    let unavailable = |after: &str| Scripted::Raw {
        status: 503,
        headers: vec![("retry-after".into(), after.into())],
        body: String::new(),
    };
    sim.script(Target::Global, [unavailable("600")]);
    let t = transport(&sim, config(&sim)).await;

    let started = tokio::time::Instant::now();
    let err = t.execute(prompt_call(&t, "req-503")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(600)));
    assert!(err.to_string().ends_with("retry after 600s"), "{err}");

    // One within the cap is waited out; the last answer, a 5xx without one, says nothing
    // of when.
    let failed = || Scripted::Status {
        status: 500,
        code: None,
    };
    sim.script(
        Target::Global,
        [unavailable("2"), failed(), failed(), failed()],
    );
    let started = tokio::time::Instant::now();
    let err = t.execute(prompt_call(&t, "req-500")).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(err.attempts(), 4);
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(err.retry_after(), None);
    assert!(!err.to_string().contains("retry after"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_empty_retry_budget_stops_retries() {
    let sim = Sim::builder()
        .behaviour(Behaviour::failing(502))
        .start()
        .await
        .unwrap();
    let mut config = config(&sim);
    config.budget_ratio = 0.0;
    config.budget_min_per_sec = 0;
    let t = transport(&sim, config).await;
    let err = t.execute(prompt_call(&t, "req-budget")).await.unwrap_err();
    assert_eq!(err.attempts(), 1);
    assert!(err.stats().budget_exhausted);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_connection_is_retried() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(Target::Global, [Scripted::Drop]);
    let t = transport(&sim, config(&sim)).await;
    let answer = t.execute(prompt_call(&t, "req-drop")).await.unwrap();
    assert_eq!(answer.stats.attempts, 2);
    assert_eq!(answer.stats.retries_for(RetryReason::Connection), 1);
    assert_eq!(sim.counters().dropped_connections, 1);
}

#[tokio::test(start_paused = true)]
async fn an_oversized_body_is_refused() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(
        Target::Global,
        [Scripted::Oversized {
            bytes: 5 * 1024 * 1024,
        }],
    );
    let mut config = config(&sim);
    config.client.max_response_bytes = 4 * 1024 * 1024;
    let t = transport(&sim, config).await;
    let err = t.execute(prompt_call(&t, "req-big")).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::BodyTooLarge { limit } if *limit == 4 * 1024 * 1024),
        "{err}"
    );
    assert_eq!(err.attempts(), 1);
}

/// An error answer whose body is larger than the transport reads of one (or than the
/// whole answer cap) keeps its status: a 503 is retried, not refused as too large.
#[tokio::test(start_paused = true)]
async fn an_error_answer_with_an_oversized_body_keeps_its_status() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(
        Target::Global,
        [Scripted::Raw {
            status: 503,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!(r#"{{"message":"{}"}}"#, "x".repeat(100 * 1024)),
        }],
    );
    let mut config = config(&sim);
    config.client.max_response_bytes = 80 * 1024;
    let t = transport(&sim, config).await;
    let answer = t.execute(prompt_call(&t, "req-big-error")).await.unwrap();
    assert_eq!(answer.stats.attempts, 2, "the 503 was retried");
    const { assert!(gateway_transport::MAX_ERROR_BODY_BYTES < 100 * 1024) };
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_is_retried_then_reported() {
    let sim = Sim::builder().start().await.unwrap();
    // A 503 first: the status the call ends with is its last attempt's, which had none.
    let unavailable = Scripted::Status {
        status: 503,
        code: None,
    };
    sim.script(
        Target::Global,
        [unavailable, Scripted::Stall, Scripted::Stall],
    );
    let mut config = config(&sim);
    config.attempt_timeout = Duration::from_millis(300);
    config.retry.max_attempts = 3;
    let t = transport(&sim, config).await;
    let err = t.execute(prompt_call(&t, "req-stall")).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Timeout(d) if *d == Duration::from_millis(300)),
        "{err}"
    );
    assert_eq!(err.stats().retries_for(RetryReason::Timeout), 1);
    assert!(err.is_timeout());
    assert_eq!(err.stats().last_status, None, "not the earlier 503");
}

#[tokio::test(start_paused = true)]
async fn the_limiter_never_lets_more_than_n_requests_reach_the_gateway() {
    const N: usize = 8;
    let sim = Sim::builder()
        .behaviour(Behaviour {
            latency: Latency::Fixed { ms: 20.0 },
            ..Behaviour::default()
        })
        .start()
        .await
        .unwrap();
    let mut config = config(&sim);
    config.max_concurrency = N;
    config.limiter_timeout = Duration::from_secs(60);
    config.deadline = Duration::from_secs(120);
    let t = transport(&sim, config).await;

    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move { t.execute(prompt_call(&t, &format!("req-{i}"))).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let counters = sim.counters();
    assert_eq!(counters.prompt_successes, 500);
    assert_eq!(
        counters.max_prompts_in_flight,
        i64::try_from(N).unwrap(),
        "the simulator saw exactly the limit, never more"
    );
    assert_eq!(t.limiter().available(), N);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_caller_gives_up_with_a_limiter_timeout() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(Target::Global, [Scripted::Stall]);
    let mut config = config(&sim);
    config.max_concurrency = 1;
    config.limiter_timeout = Duration::from_millis(250);
    let t = transport(&sim, config).await;

    let holder = tokio::spawn({
        let t = t.clone();
        async move { t.execute(prompt_call(&t, "holder")).await }
    });
    wait_until(|| sim.counters().prompts_in_flight == 1).await;
    let err = t.execute(prompt_call(&t, "waiter")).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::LimiterTimeout(_)), "{err}");
    assert!(err.to_string().contains("no concurrency slot"), "{err}");
    assert_eq!(err.attempts(), 0);

    // Cancelling the caller that holds the slot gives it back.
    holder.abort();
    let _ = holder.await;
    assert_eq!(t.limiter().available(), 1);
}

/// A wait for a slot that the call's deadline cuts short, before the limiter's own
/// timeout, is the deadline's doing: reported as such, not as an overloaded router
/// (which would stop a router's call instead of letting a fallback have its share).
#[tokio::test(start_paused = true)]
async fn a_slot_wait_cut_by_the_deadline_is_a_deadline_not_an_overload() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(Target::Global, [Scripted::Stall]);
    let mut config = config(&sim);
    config.max_concurrency = 1;
    config.limiter_timeout = Duration::from_secs(10);
    let t = transport(&sim, config).await;

    let _holder = tokio::spawn({
        let t = t.clone();
        async move { t.execute(prompt_call(&t, "holder")).await }
    });
    wait_until(|| sim.counters().prompts_in_flight == 1).await;
    let started = tokio::time::Instant::now();
    let call = prompt_call(&t, "waiter").deadline(started + Duration::from_millis(300));
    let err = t.execute(call).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::DeadlineExceeded { .. }),
        "{err}"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(err.attempts(), 0);
    assert_eq!(err.stats().limiter_wait, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_caller_sleeping_in_backoff_holds_no_slot_and_cancelling_it_leaks_nothing() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(
        Target::Global,
        [Scripted::TooManyRequests {
            retry_after: RetryAfter::Seconds(30),
        }],
    );
    let mut config = config(&sim);
    config.max_concurrency = 1;
    config.limiter_timeout = Duration::from_millis(100);
    let t = transport(&sim, config).await;

    let sleeper = tokio::spawn({
        let t = t.clone();
        async move { t.execute(prompt_call(&t, "sleeper")).await }
    });
    wait_until(|| sim.counters().by_status.get(&429) == Some(&1)).await;
    // The sleeper waits 30 s for its retry; meanwhile another call gets the only slot.
    let answer = t.execute(prompt_call(&t, "meanwhile")).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);

    sleeper.abort();
    assert!(sleeper.await.unwrap_err().is_cancelled());
    assert_eq!(t.limiter().available(), 1);
    assert_eq!(
        sim.prompt_requests()
            .iter()
            .filter(|r| r.request_id() == Some("sleeper"))
            .count(),
        1
    );
}

/// A simulator that lets two prompt calls per token through every five seconds, and
/// says so in its `inin-ratelimit-*` headers.
async fn two_calls_per_five_seconds() -> SimHandle {
    Sim::builder()
        .behaviour(Behaviour {
            rate_limit: Some(RateLimit {
                allowed: 2,
                window_secs: 5,
                retry_after: RetryAfterStyle::Seconds,
            }),
            ..Behaviour::default()
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_spent_rate_limit_pauses_sending_instead_of_collecting_429s() {
    let sim = two_calls_per_five_seconds().await;
    let t = transport(&sim, config(&sim)).await;
    for i in 0..3 {
        t.execute(prompt_call(&t, &format!("paced-{i}")))
            .await
            .unwrap();
    }
    let seen = sim.prompt_requests();
    assert_eq!(
        sim.counters().by_status.get(&429),
        None,
        "no request was sent into the spent limit"
    );
    let gap = seen[2].at_ms - seen[1].at_ms;
    assert!(
        (4900.0..5100.0).contains(&gap),
        "the third call waited for the window to reset ({gap} ms)"
    );
}

/// A token source that fetches real tokens from the simulator and counts refreshes.
struct SimTokens {
    transport: Transport,
    base: String,
    current: tokio::sync::Mutex<Option<AccessToken>>,
    fetched: AtomicU32,
}

impl TokenSource for SimTokens {
    fn token(&self) -> BoxFuture<'_, Result<AccessToken, TokenError>> {
        Box::pin(async move {
            let mut current = self.current.lock().await;
            if let Some(token) = current.as_ref() {
                return Ok(token.clone());
            }
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}"));
            let request = Request::post(format!("{}/oauth/token", self.base))
                .header("authorization", format!("Basic {basic}"))
                .body(Full::new(Bytes::from_static(
                    b"grant_type=client_credentials",
                )))
                .unwrap();
            let answer = self
                .transport
                .client()
                .send(request, Duration::from_secs(5))
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            let token = AccessToken::new(json["access_token"].as_str().unwrap()).unwrap();
            self.fetched.fetch_add(1, Ordering::SeqCst);
            *current = Some(token.clone());
            Ok(token)
        })
    }

    fn invalidate(&self, token: &AccessToken) {
        let mut current = self.current.try_lock().unwrap();
        if current.as_ref().is_some_and(|c| c.same_as(token)) {
            *current = None;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_401_refreshes_the_token_once_then_fails_cleanly() {
    let sim = Sim::builder().start().await.unwrap();
    let config = config(&sim);
    let tokens = Arc::new(SimTokens {
        transport: Transport::new(config.clone()).unwrap(),
        base: sim.base_url(),
        current: tokio::sync::Mutex::new(None),
        fetched: AtomicU32::new(0),
    });
    let t = Transport::new(config)
        .unwrap()
        .with_shared_token_source(tokens.clone());

    t.execute(prompt_call(&t, "first")).await.unwrap();
    sim.revoke_tokens();
    let answer = t.execute(prompt_call(&t, "after-revoke")).await.unwrap();
    assert!(answer.stats.token_refreshed);
    assert_eq!(answer.stats.attempts, 2);
    assert_eq!(tokens.fetched.load(Ordering::SeqCst), 2);

    // A source whose token is refused again fails after one refresh, without looping.
    let revoked = sim_token(&t, &sim).await;
    sim.revoke_tokens();
    let stuck = Transport::new(TransportConfig::new(sim.base_url()))
        .unwrap()
        .with_token_source(StaticToken::new(&revoked).unwrap());
    let err = stuck
        .execute(prompt_call(&stuck, "stuck"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Unauthorized { .. }),
        "{err}"
    );
    assert_eq!(err.attempts(), 2);
    assert_eq!(err.code(), Some("bad.credentials"));
}

#[tokio::test]
async fn an_error_body_that_repeats_the_token_reaches_no_error_with_it() {
    let sim = Sim::builder().start().await.unwrap();
    let t = transport(&sim, config(&sim)).await;
    let token = sim_token(&t, &sim).await;
    let t = Transport::new(config(&sim))
        .unwrap()
        .with_token_source(StaticToken::new(&token).unwrap());
    // A debugging proxy's 400 and 401 that quote the request's headers back, once in
    // plain text and once with JSON escapes.
    let escaped = token.chars().fold(String::new(), |mut out, c| {
        write!(out, "\\u{:04x}", u32::from(c)).unwrap();
        out
    });
    let echo = |status: u16, code: &str| Scripted::Raw {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: format!(
            r#"{{"message":"got Authorization: Bearer {token}","code":"{code}","status":{status},"details":[{{"header":"{escaped}"}}],"{token}":true}}"#
        ),
    };
    sim.script(
        Target::Global,
        [
            echo(400, "bad.request"),
            echo(401, "bad.credentials"),
            echo(401, "bad.credentials"),
        ],
    );
    for (call, kind) in [("bad-request", "Status"), ("unauthorized", "Unauthorized")] {
        let err = t.execute(prompt_call(&t, call)).await.unwrap_err();
        let body = err.error_body().expect("the error body is kept");
        assert_eq!(
            body.message.as_deref(),
            Some("got Authorization: Bearer <redacted>"),
            "{kind}"
        );
        let everything = format!("{err} {err:?} {}", serde_json::to_string(body).unwrap());
        assert!(!everything.contains(&token), "{kind}: {everything}");
        assert!(everything.contains("<redacted>"), "{kind}: {everything}");
    }
    assert_eq!(sim.pending_scripts(), 0, "each echo was answered");

    // A 200 that puts the header where a count belongs: the decoding error quotes the
    // value it could not read, without the token.
    sim.script(
        Target::Global,
        [Scripted::Raw {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!(
                r#"{{"id":"c","modelId":"m","output":"o","usage":{{"promptTokens":"Bearer {token}","completionTokens":1,"totalTokens":1}}}}"#
            ),
        }],
    );
    let answer = t.execute(prompt_call(&t, "decode")).await.unwrap();
    let err = answer
        .json::<gateway_model::GatewayResponse>()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Bearer <redacted>") && !err.contains(&token),
        "{err}"
    );

    // An answer, or a refusal, whose correlation id repeats the token: the id the
    // caller, the audit trail and the logs get is without it.
    let echoing = |status: u16| {
        Scripted::Raw {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("inin-correlation-id".into(), format!("corr-{token}")),
        ],
        body: r#"{"id":"c","modelId":"m","output":"o","message":"no","code":"bad.request","status":400}"#
            .into(),
    }
    };
    sim.script(Target::Global, [echoing(200), echoing(400)]);
    let answer = t.execute(prompt_call(&t, "correlated")).await.unwrap();
    let kept = answer.stats.upstream_correlation_id.clone().unwrap();
    assert_eq!(kept, "corr-<redacted>");
    assert_eq!(answer.upstream_correlation_id().unwrap(), "corr-<redacted>");
    let err = t.execute(prompt_call(&t, "refused")).await.unwrap_err();
    let kept = err.stats().upstream_correlation_id.clone().unwrap();
    assert_eq!(kept, "corr-<redacted>");
    assert!(!format!("{err} {err:?}").contains(&token));
}

#[tokio::test]
async fn plain_http_is_refused_unless_loopback_or_allowed() {
    let err = Transport::new(TransportConfig::new("http://gateway.example.com")).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Url(_)), "{err}");
    assert!(err.to_string().contains("plain http"), "{err}");
    let mut config = TransportConfig::new("http://gateway.example.com");
    config.client.allow_insecure_http = true;
    Transport::new(config).unwrap();
    Transport::new(TransportConfig::new("http://[::1]:9")).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_names_the_host() {
    // Bind then drop a listener: its port now refuses connections.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = TransportConfig::new(format!("http://127.0.0.1:{port}"));
    config.retry.max_attempts = 2;
    config.retry.jitter = false;
    let t = Transport::new(config).unwrap();
    let err = t
        .execute(Call::get(t.url("/api/v2/ai/models").unwrap(), "conn"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Connect { host, .. } if host == &format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert_eq!(err.attempts(), 2, "connect failures are retried");
}

/// Polls `condition` on tokio's clock until it holds (at most 10 virtual seconds).
async fn wait_until(mut condition: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("condition not reached");
}

#[tokio::test(start_paused = true)]
async fn a_deadline_reached_during_an_attempt_is_reported_as_such() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(Target::Global, [Scripted::Stall]);
    let mut config = config(&sim);
    config.attempt_timeout = Duration::from_secs(30);
    config.deadline = Duration::from_millis(500);
    let t = transport(&sim, config).await;
    let started = tokio::time::Instant::now();
    let err = t
        .execute(prompt_call(&t, "req-deadline"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::DeadlineExceeded { deadline, .. } if *deadline == Duration::from_millis(500)),
        "{err}"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert_eq!(err.attempts(), 1);
}

/// A token source that never answers.
struct HangingTokens;

impl TokenSource for HangingTokens {
    fn token(&self) -> BoxFuture<'_, Result<AccessToken, TokenError>> {
        Box::pin(std::future::pending())
    }

    fn invalidate(&self, _: &AccessToken) {}
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_token_holds_no_slot_and_ends_at_the_deadline() {
    let sim = Sim::builder().start().await.unwrap();
    let mut config = config(&sim);
    config.max_concurrency = 1;
    config.deadline = Duration::from_millis(800);
    let t = Transport::new(config)
        .unwrap()
        .with_token_source(HangingTokens);
    let waiting = tokio::spawn({
        let t = t.clone();
        async move { t.execute(prompt_call(&t, "no-token")).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        t.limiter().available(),
        1,
        "no slot is held while the token is awaited"
    );
    let err = waiting.await.unwrap().unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::DeadlineExceeded { last: Some(last), .. }
            if last == "no access token: the login host has not answered"),
        "the wait is named, not taken for the model's slowness: {err}"
    );
    assert_eq!(err.attempts(), 0);
    assert_eq!(
        err.stats().token_wait,
        Duration::from_millis(800),
        "the wait is counted as a token wait, not as the router's own time"
    );
    assert_eq!(sim.counters().prompt_requests, 0);
}

#[tokio::test]
async fn every_attempt_carries_one_host_and_the_transports_own_headers_win() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(
        Target::model("model-gen-4"),
        [Scripted::Status {
            status: 503,
            code: None,
        }],
    );
    let mut config = config(&sim);
    config.retry.base_delay = Duration::from_millis(1);
    let t = transport(&sim, config).await;
    let call = prompt_call(&t, "host-1")
        .header(http::header::HOST, HeaderValue::from_static("elsewhere"))
        .header(REQUEST_ID, HeaderValue::from_static("not-this-one"))
        .header(
            HeaderName::from_static("x-extra"),
            HeaderValue::from_static("a"),
        )
        .header(
            HeaderName::from_static("x-extra"),
            HeaderValue::from_static("b"),
        );
    t.execute(call).await.unwrap();

    let sent = sim.prompt_requests();
    assert_eq!(sent.len(), 2, "a 503, then the retry");
    for request in sent {
        let values = |name: &str| request.header_values(name);
        assert_eq!(values("host"), [format!("127.0.0.1:{}", sim.addr().port())]);
        assert_eq!(values("x-genesys-request-id"), ["host-1"]);
        assert_eq!(
            values("x-extra"),
            ["a", "b"],
            "the call's own headers, every value"
        );
    }
}

/// A server on loopback that answers every connection with `head` (a status line and
/// headers) and the start of a body, then either closes (`stall` false) or keeps the
/// connection open without sending more; and how many requests it took.
async fn broken_body_server(head: &'static str, stall: bool) -> (String, Arc<AtomicU32>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                // One request per connection: read until its body has come (this
                // server's callers send small bodies in one go).
                let mut buf = vec![0u8; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = stream
                    .write_all(format!("{head}{{\"code\":\"bad").as_bytes())
                    .await;
                if stall {
                    let _ = stream.read(&mut buf).await;
                }
            });
        }
    });
    (base, requests)
}

/// Regression: a body that broke off after an error's status became a connection error,
/// so a 400 was retried (and fell back to every model), a 429 lost its `Retry-After`;
/// one that stalled became the attempt's timeout. The status now stands without it.
#[tokio::test]
async fn an_error_whose_body_breaks_off_or_stalls_keeps_its_status() {
    for (head, stall, status) in [
        (
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n",
            false,
            StatusCode::BAD_REQUEST,
        ),
        (
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 600\r\ncontent-length: 100\r\n\r\n",
            true,
            StatusCode::TOO_MANY_REQUESTS,
        ),
    ] {
        let (base, requests) = broken_body_server(head, stall).await;
        let mut config = TransportConfig::new(&base);
        config.retry.max_retry_after = Duration::from_secs(60);
        config.attempt_timeout = Duration::from_secs(30);
        let t = Transport::new(config)
            .unwrap()
            .with_token_source(StaticToken::new("t-1").unwrap());
        let call = Call::post(t.url(PROMPTS).unwrap(), payload("model-gen-4"), "r-1");
        let err = t.execute(call).await.unwrap_err();
        assert_eq!(err.status(), Some(status), "{err}");
        assert_eq!(err.attempts(), 1, "not retried: {err}");
        assert_eq!(requests.load(Ordering::SeqCst), 1);
        if stall {
            // The 600 s asked for is past the cap: the call fails at once, saying so.
            assert!(err.to_string().contains("600"), "{err}");
        }
    }
}

/// Regression: a rate-budget slot was spent whether or not its request went out, so a
/// call dropped while waiting for its slot (a caller hanging up, a drain) pushed every
/// later call back by one interval. Its slot is now given back.
#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_sending_gives_its_rate_slot_back() {
    let sim = Sim::builder().start().await.unwrap();
    let budget = Arc::new(gateway_transport::LocalRateBudget::new(60, 0)); // one a second
    let t = transport(&sim, config(&sim))
        .await
        .with_rate_budget(Arc::clone(&budget) as Arc<dyn gateway_transport::RateBudget>);
    t.execute(prompt_call(&t, "first")).await.unwrap();
    // The second call's slot is a second away: it waits for it, and is dropped.
    let second = t.execute(prompt_call(&t, "second"));
    let dropped = tokio::time::timeout(Duration::from_millis(100), second).await;
    assert!(dropped.is_err(), "still waiting for its slot");
    // The next slot is the one the dropped call held (0.9 s away), not the one after.
    let wait = budget.try_reserve(Duration::from_secs(5)).unwrap();
    assert!(wait < Duration::from_secs(1), "{wait:?}");
    assert_eq!(
        sim.prompt_requests().len(),
        1,
        "the second call sent nothing"
    );
}

/// Regression: the `inin-ratelimit-*` pause was checked once, before an attempt's
/// waits, so a call queued at the limiter while another call's answer spent the limit
/// was sent into it, and collected a 429. It waits out the pause now.
#[tokio::test(start_paused = true)]
async fn a_call_queued_while_the_limit_was_spent_waits_out_the_pause() {
    let sim = two_calls_per_five_seconds().await;
    let mut config = config(&sim);
    config.max_concurrency = 1;
    config.limiter_timeout = Duration::from_secs(10);
    let t = transport(&sim, config).await;
    let mut calls = Vec::new();
    for i in 0..3 {
        let t = t.clone();
        calls.push(tokio::spawn(async move {
            t.execute(prompt_call(&t, &format!("queued-{i}"))).await
        }));
    }
    for call in calls {
        let answer = call.await.unwrap().unwrap();
        assert_eq!(answer.stats.attempts, 1, "{:?}", answer.stats);
    }
    assert_eq!(
        sim.counters().by_status.get(&429),
        None,
        "none sent into the limit"
    );
}

/// A call's own headers: at most `MAX_CALL_HEADERS` values (a regression: 25,000 made
/// the request's header map panic), and the transport's own replace them only where
/// it sends one (a regression: a caller's `Authorization` was dropped though no token
/// source was set, and the call went out with none).
#[tokio::test]
async fn a_calls_own_headers_are_bounded_and_kept_where_the_transport_sends_none() {
    let sim = Sim::builder().start().await.unwrap();
    let t = transport(&sim, config(&sim)).await;
    let mut call = prompt_call(&t, "many-headers");
    let name = HeaderName::from_static("x-extra");
    for _ in 0..25_000 {
        call.headers
            .append(name.clone(), HeaderValue::from_static("a"));
    }
    let err = t.execute(call).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::TooManyHeaders { count: 25_000, .. }),
        "{err}"
    );
    assert_eq!(sim.counters().prompt_requests, 0);

    let bare = Transport::new(config(&sim)).unwrap();
    let token = sim_token(&bare, &sim).await;
    let call = prompt_call(&bare, "own-authorization").header(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let answer = bare.execute(call).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
}

/// Regression: a hand-built `Call` whose https URL carried credentials was sent, and the
/// password shown in the error; such a URL is refused before anything is sent, shown
/// without them.
#[tokio::test]
async fn a_call_url_with_credentials_is_refused_without_showing_them() {
    let t = Transport::new(TransportConfig::new("https://127.0.0.1:9")).unwrap();
    let uri: http::Uri = "https://user:hunter2@127.0.0.1:9/api/v2/ai/models"
        .parse()
        .unwrap();
    let err = t.execute(Call::get(uri, "userinfo")).await.unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    assert!(matches!(err.kind(), ErrorKind::Url(_)), "{err}");
}

/// Regression: `execute_tracked` counted what `progress` held before against the new
/// call: a dropped call's two attempts cut the next one's `max_attempts` to two.
#[tokio::test(start_paused = true)]
async fn a_tracked_call_starts_from_empty_figures() {
    let sim = Sim::builder()
        .behaviour(Behaviour::failing(503))
        .start()
        .await
        .unwrap();
    let t = transport(&sim, config(&sim)).await;
    let mut progress = gateway_transport::CallStats {
        attempts: 2,
        ..gateway_transport::CallStats::default()
    };
    let err = t
        .execute_tracked(prompt_call(&t, "second"), &mut progress)
        .await
        .unwrap_err();
    assert_eq!(sim.prompt_requests().len(), 4, "{err}");
    assert_eq!(err.stats().attempts, 4);
}

/// A source whose first token stops being usable when `first_gone` is set: it is then at
/// hand no more, and `token` gives the second.
struct Succession {
    first: AccessToken,
    second: AccessToken,
    first_gone: std::sync::atomic::AtomicBool,
    asked: AtomicU32,
}

impl Succession {
    fn current(&self) -> Option<AccessToken> {
        (!self.first_gone.load(Ordering::SeqCst)).then(|| self.first.clone())
    }
}

impl TokenSource for Succession {
    fn token(&self) -> BoxFuture<'_, Result<AccessToken, TokenError>> {
        Box::pin(async move { Ok(self.current().unwrap_or_else(|| self.second.clone())) })
    }

    fn ready_token(&self) -> Option<AccessToken> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.current()
    }

    fn invalidate(&self, _: &AccessToken) {}
}

/// Regression: a call whose token stopped being usable (expired, or refused by another
/// call) while it waited a second or more for a limiter slot sent that token anyway when
/// the source had no other at hand.
#[tokio::test(start_paused = true)]
async fn a_token_gone_during_a_long_slot_wait_is_replaced_before_sending() {
    let sim = Sim::builder().start().await.unwrap();
    let mut config = config(&sim);
    config.max_concurrency = 1;
    let bare = Transport::new(config.clone()).unwrap();
    let tokens = Arc::new(Succession {
        first: AccessToken::new(&sim_token(&bare, &sim).await).unwrap(),
        second: AccessToken::new(&sim_token(&bare, &sim).await).unwrap(),
        first_gone: std::sync::atomic::AtomicBool::new(false),
        asked: AtomicU32::new(0),
    });
    let t = Transport::new(config)
        .unwrap()
        .with_token_source(Arc::clone(&tokens) as Arc<dyn TokenSource>);
    sim.script(
        Target::model("model-gen-4"),
        [Scripted::Delay { ms: 1_500 }],
    );
    let holding = tokio::spawn({
        let t = t.clone();
        async move { t.execute(prompt_call(&t, "holds-the-slot")).await }
    });
    wait_until(|| sim.prompt_requests().len() == 1).await;
    let waiting = tokio::spawn({
        let t = t.clone();
        async move { t.execute(prompt_call(&t, "waits-for-it")).await }
    });
    // The waiting call has taken the first token; then it goes.
    wait_until(|| tokens.asked.load(Ordering::SeqCst) >= 2).await;
    tokens.first_gone.store(true, Ordering::SeqCst);
    holding.await.unwrap().unwrap();
    waiting.await.unwrap().unwrap();
    let sent = sim.prompt_requests();
    let bearer = |i: usize| sent[i].header("authorization").unwrap().to_owned();
    assert_ne!(
        bearer(0),
        bearer(1),
        "the second call sent the token that went"
    );
}
