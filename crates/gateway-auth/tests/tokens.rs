//! The client-credentials provider against the simulator's real token endpoint, wired
//! into the real transport. Time-based tests run on tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine;
use gateway_auth::{AuthError, ClientCredentials, Credentials};
use gateway_model::{EnvironmentConfig, GatewayPayload, RouterConfig};
use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Scripted, Sim, SimHandle, Target};
use gateway_transport::{Call, ErrorKind, RetryPolicy, TokenSource, Transport, TransportConfig};

/// A simulator granting tokens that live `secs` seconds.
async fn with_token_life(secs: u64) -> SimHandle {
    Sim::builder()
        .token_lifetime(Duration::from_secs(secs))
        .start()
        .await
        .unwrap()
}

fn provider(sim: &SimHandle) -> ClientCredentials {
    ClientCredentials::builder(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
        .login_base(sim.base_url())
        .build()
        .unwrap()
}

fn transport(sim: &SimHandle, tokens: &ClientCredentials) -> Transport {
    let mut config = TransportConfig::new(sim.base_url());
    config.retry = RetryPolicy {
        jitter: false,
        ..RetryPolicy::default()
    };
    Transport::new(config)
        .unwrap()
        .with_token_source(tokens.clone())
}

fn prompt(transport: &Transport, id: &str) -> Call {
    let payload = GatewayPayload::builder("model-gen-4", "Summarize this transcript")
        .build()
        .unwrap();
    Call::post(
        transport.url("/api/v2/ai/gateway/prompts").unwrap(),
        serde_json::to_vec(&payload).unwrap(),
        id,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cold_callers_cause_one_token_request() {
    let sim = Sim::builder().start().await.unwrap();
    let tokens = provider(&sim);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.token().await })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap().unwrap());
    }
    assert!(
        seen.windows(2).all(|w| w[0].same_as(&w[1])),
        "every caller got the same token"
    );
    assert_eq!(sim.counters().token_requests, 1);
    assert_eq!(tokens.token_requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_short_lived_token_is_refreshed_before_it_expires() {
    let sim = with_token_life(30).await;
    let tokens = provider(&sim);
    let t = transport(&sim, &tokens);

    // One call a second for 200 virtual seconds: almost seven token lifetimes.
    for i in 0..200 {
        let answer = t.execute(prompt(&t, &format!("call-{i}"))).await.unwrap();
        assert!(
            !answer.stats.token_refreshed,
            "call {i} needed a 401 refresh"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let counters = sim.counters();
    assert_eq!(
        counters.by_status.get(&401),
        None,
        "no call ever sent an expired token"
    );
    // Refreshed in the background, ahead of expiry: every 15-ish s (half of 30 s).
    assert!(
        (12..=16).contains(&counters.token_grants),
        "{} grants",
        counters.token_grants
    );
    assert_eq!(counters.token_requests, counters.token_grants);
}

/// What a fleet renews its shared token with: `refresh_in` says when a token falls due,
/// and `renew` fetches one successor however many ask, and none for a token already
/// replaced.
#[tokio::test(start_paused = true)]
async fn a_due_token_is_renewed_once_and_refresh_in_says_when_it_falls_due() {
    let sim = with_token_life(30).await;
    let tokens = provider(&sim);
    let first = tokens.token().await.unwrap();
    // Half of a 30 s life is its refresh margin: due 15 s after it was granted.
    let due_in = tokens.refresh_in(&first).unwrap();
    assert!(
        (Duration::from_secs(14)..=Duration::from_secs(15)).contains(&due_in),
        "{due_in:?}"
    );
    tokio::time::sleep(due_in).await;

    let (a, b) = tokio::join!(tokens.renew(&first), tokens.renew(&first));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(!a.same_as(&first) && a.same_as(&b), "one successor");
    assert_eq!(sim.counters().token_requests, 2);
    let again = tokens.renew(&first).await.unwrap();
    assert!(again.same_as(&a), "the first was already replaced");
    assert_eq!(sim.counters().token_requests, 2);
    assert!(tokens.refresh_in(&a).unwrap() > Duration::from_secs(14));
    assert_eq!(tokens.refresh_in(&first), None, "no longer cached");
}

#[tokio::test(start_paused = true)]
async fn a_revoked_token_is_refreshed_once_and_the_call_succeeds() {
    let sim = Sim::builder().start().await.unwrap();
    let tokens = provider(&sim);
    let t = transport(&sim, &tokens);
    t.execute(prompt(&t, "before")).await.unwrap();

    sim.revoke_tokens();
    let answer = t.execute(prompt(&t, "after")).await.unwrap();
    assert!(answer.stats.token_refreshed);
    assert_eq!(answer.stats.attempts, 2);
    assert_eq!(sim.counters().token_grants, 2);

    // A second 401 right after the refresh fails cleanly instead of looping.
    sim.script(
        Target::Global,
        [
            Scripted::Status {
                status: 401,
                code: None,
            },
            Scripted::Status {
                status: 401,
                code: None,
            },
        ],
    );
    let err = t.execute(prompt(&t, "twice")).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Unauthorized { .. }),
        "{err}"
    );
    assert_eq!(err.attempts(), 2);
    assert_eq!(
        sim.counters().token_grants,
        3,
        "one refresh for the failed call, not a loop"
    );
}

#[tokio::test(start_paused = true)]
async fn every_call_getting_a_401_does_not_hammer_the_token_endpoint() {
    let sim = Sim::builder().start().await.unwrap();
    let tokens = provider(&sim);
    let t = transport(&sim, &tokens);
    sim.script(
        Target::Global,
        vec![
            Scripted::Status {
                status: 401,
                code: None
            };
            400
        ],
    );

    let started = tokio::time::Instant::now();
    for i in 0..200 {
        let err = t.execute(prompt(&t, &format!("c{i}"))).await.unwrap_err();
        // Refused, or (while the forced refreshes are spent) not sent: the token just
        // refused is never sent again.
        assert!(
            matches!(err.kind(), ErrorKind::Unauthorized { .. })
                || matches!(err.kind(), ErrorKind::Token(e) if e.retryable),
            "{err}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first grant, a burst of 3, then one per 10 s (calls may wait for one).
    let grants = sim.counters().token_requests;
    let tens = started.elapsed().as_secs() / 10;
    assert!(
        (4..=5 + tens).contains(&grants),
        "{grants} token requests in {:?}",
        started.elapsed()
    );
    let sent = sim.prompt_requests();
    let mut bearers: Vec<_> = sent
        .iter()
        .filter_map(|r| r.header("authorization"))
        .collect();
    let all = bearers.len();
    bearers.sort_unstable();
    bearers.dedup();
    assert_eq!(bearers.len(), all, "a refused token was sent again");
}

/// Regression: once the refreshes 401s may force were spent, the token just refused
/// stayed cached, so the call's one refresh sent it again (a certain 401, counted as a
/// refresh), and every later call did the same.
#[tokio::test(start_paused = true)]
async fn a_refused_token_is_never_sent_again_even_when_no_refresh_may_be_forced() {
    let sim = Sim::builder().start().await.unwrap();
    let tokens =
        ClientCredentials::builder(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
            .login_base(sim.base_url())
            .forced_refresh_limit(1, Duration::from_secs(3600))
            .build()
            .unwrap();
    let t = transport(&sim, &tokens);
    t.execute(prompt(&t, "warm")).await.unwrap();
    sim.revoke_tokens();
    t.execute(prompt(&t, "first-401")).await.unwrap(); // the one forced refresh
    let second = tokens.ready_token().unwrap();
    sim.revoke_tokens();
    let before = tokio::time::Instant::now();
    let err = t.execute(prompt(&t, "second-401")).await.unwrap_err();
    assert_eq!(err.attempts(), 1, "{err}");
    // The next forced refresh is an hour away, past the deadline: it fails at once.
    assert_eq!(before.elapsed(), Duration::ZERO, "{err}");
    let ErrorKind::Token(why) = err.kind() else {
        panic!("{err}")
    };
    assert!(why.retryable && why.message.contains("401"), "{why:?}");
    assert!(
        tokens.ready_token().is_none(),
        "the refused token is handed out"
    );
    assert_eq!(tokens.valid_for(&second), None);
    assert_eq!(tokens.refresh_in(&second), Some(Duration::ZERO));
    assert_eq!(sim.counters().token_requests, 2, "no login past the limit");
    let AuthError::BackingOff { retry_in, .. } = tokens.current_token().await.unwrap_err() else {
        panic!("not backing off")
    };
    assert!(retry_in <= Duration::from_secs(3600), "{retry_in:?}");

    // Once a refresh may be forced again, the next call gets a new token.
    tokio::time::advance(Duration::from_secs(3600)).await;
    t.execute(prompt(&t, "later")).await.unwrap();
    assert_eq!(sim.counters().token_requests, 3);
}

/// Regression: a 404 (or a redirect, a 405...) from the token endpoint, the mark of a
/// wrong login URL, was a transient failure, asked again until each call's deadline.
#[tokio::test(start_paused = true)]
async fn a_token_endpoint_that_is_not_there_is_a_configuration_error_asked_once() {
    for status in [301, 403, 404, 405] {
        let sim = Sim::builder().start().await.unwrap();
        let answer = || Scripted::Raw {
            status,
            headers: vec![],
            body: String::new(),
        };
        sim.script(Target::Token, std::iter::repeat_with(answer).take(50));
        let tokens = provider(&sim);
        let err = tokens.prefetch().await.unwrap_err();
        assert!(
            matches!(err, AuthError::Misdirected { status: s, .. } if s == status),
            "{err:?}"
        );
        assert!(
            !err.is_transient() && err.to_string().contains("login URL"),
            "{err}"
        );
        let t = transport(&sim, &tokens);
        let call = t.execute(prompt(&t, "c")).await.unwrap_err();
        assert!(
            matches!(call.kind(), ErrorKind::Token(e) if !e.retryable),
            "{call}"
        );
        assert_eq!(
            sim.counters().token_requests,
            1,
            "HTTP {status}: asked again"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_token_endpoint_during_a_background_refresh_does_not_fail_calls() {
    let sim = with_token_life(120).await;
    let refreshes = Arc::new((AtomicU32::new(0), AtomicU32::new(0)));
    let counts = Arc::clone(&refreshes);
    let tokens =
        ClientCredentials::builder(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
            .login_base(sim.base_url())
            .on_refresh(move |ok| {
                let counter = if ok { &counts.0 } else { &counts.1 };
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap();
    let t = transport(&sim, &tokens);
    t.execute(prompt(&t, "warm")).await.unwrap();

    // The next three token requests fail: 503, 500 and a dropped connection.
    sim.script(
        Target::Token,
        [
            Scripted::Status {
                status: 503,
                code: None,
            },
            Scripted::Status {
                status: 500,
                code: None,
            },
            Scripted::Drop,
        ],
    );
    for i in 0..150 {
        t.execute(prompt(&t, &format!("call-{i}"))).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        refreshes.1.load(Ordering::SeqCst),
        3,
        "three failed refreshes"
    );
    assert!(
        refreshes.0.load(Ordering::SeqCst) >= 2,
        "then a successful one"
    );
    assert_eq!(
        sim.counters().by_status.get(&401),
        None,
        "no call went out with an expired token"
    );
    assert_eq!(sim.pending_scripts(), 0);
}

/// Once the cached token is past its use (a login outage longer than its life), a failed
/// token request backs off on the schedule (1 s, then longer), as with no token at all:
/// it once waited only 100 ms, so every caller asked the login host ten times a second.
#[tokio::test(start_paused = true)]
async fn a_failed_login_after_the_token_expired_backs_off_on_the_schedule() {
    let sim = with_token_life(120).await;
    let tokens = provider(&sim);
    tokens.prefetch().await.unwrap();
    sim.script(
        Target::Token,
        vec![
            Scripted::Status {
                status: 503,
                code: None,
            };
            5
        ],
    );
    tokio::time::advance(Duration::from_secs(130)).await;

    let failed = tokens.current_token().await.unwrap_err();
    assert!(matches!(failed, AuthError::Unreachable { .. }), "{failed}");
    let again = tokens.current_token().await.unwrap_err();
    let AuthError::BackingOff { retry_in, .. } = again else {
        panic!("backing off, not {again}");
    };
    assert!(retry_in >= Duration::from_millis(500), "{retry_in:?}");
    assert_eq!(tokens.token_requests(), 2, "one grant, one failure");
}

/// A token whose life ended before its answer arrived (a short `expires_in`, a slow
/// login host) is a bad answer that backs off, not a success that resets the backoff and
/// sends the next caller straight back to the login host.
#[tokio::test(start_paused = true)]
async fn a_token_expired_on_arrival_is_a_bad_answer() {
    let sim = with_token_life(1).await;
    let tokens = provider(&sim);
    sim.script(Target::Token, [Scripted::Delay { ms: 2_000 }]);
    let err = tokens.current_token().await.unwrap_err();
    assert!(
        matches!(&err, AuthError::BadAnswer { reason, .. } if reason.contains("no longer usable")),
        "{err}"
    );
    let again = tokens.current_token().await.unwrap_err();
    assert!(matches!(again, AuthError::BackingOff { .. }), "{again}");
    assert_eq!(tokens.token_requests(), 1);
}

#[tokio::test]
async fn wrong_credentials_name_the_client_but_never_the_secret() {
    let sim = Sim::builder().start().await.unwrap();
    let tokens = ClientCredentials::builder(Credentials::new("ops-router", "s3cr3t-value"))
        .login_base(sim.base_url())
        .build()
        .unwrap();
    let err = tokens.prefetch().await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, AuthError::Rejected { status: 401, .. }),
        "{err:?}"
    );
    assert!(
        text.contains("ops-router")
            && text.contains("invalid_client")
            && text.contains("authentication failed"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t") && !format!("{err:?}").contains("s3cr3t"));

    // A second try right away is refused without another request.
    let again = tokens.prefetch().await.unwrap_err();
    assert_eq!(again, err);
    assert_eq!(sim.counters().token_requests, 1);

    // Through the transport, the call fails with the same explanation.
    let t = transport(&sim, &tokens);
    let call_err = t.execute(prompt(&t, "x")).await.unwrap_err();
    assert!(matches!(call_err.kind(), ErrorKind::Token(_)), "{call_err}");
    assert!(call_err.to_string().contains("ops-router"));
    assert!(!call_err.to_string().contains("s3cr3t"));
}

#[tokio::test]
async fn a_login_answer_that_repeats_the_credentials_reaches_no_error_with_them() {
    let sim = Sim::builder().start().await.unwrap();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}"));
    // A login host (or a proxy before it) that quotes the request's header back.
    sim.script(
        Target::Token,
        [Scripted::Raw {
            status: 401,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!(
                r#"{{"error":"invalid_client {DEFAULT_CLIENT_SECRET}","description":"got Authorization: Basic {basic}"}}"#
            ),
        }],
    );
    let err = provider(&sim).prefetch().await.unwrap_err();
    assert!(
        matches!(&err, AuthError::Rejected { description: Some(d), .. }
            if d == "got Authorization: Basic <redacted>"),
        "{err:?}"
    );
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("invalid_client <redacted>"), "{shown}");
    assert!(
        !shown.contains(&basic) && !shown.contains(DEFAULT_CLIENT_SECRET),
        "{shown}"
    );

    // A grant that repeats the header where the token type belongs.
    sim.script(
        Target::Token,
        [Scripted::Raw {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!(
                r#"{{"access_token":"t-1","token_type":"Basic {basic}","expires_in":3600}}"#
            ),
        }],
    );
    let err = provider(&sim).prefetch().await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, AuthError::BadAnswer { .. }), "{shown}");
    // The value is not quoted at all: redaction cannot miss an escaped form of it.
    assert!(
        shown.contains("token_type is not bearer") && !shown.contains(&basic),
        "{shown}"
    );
}

#[tokio::test]
async fn debug_output_and_errors_never_contain_the_secret_or_the_token() {
    let sim = Sim::builder().start().await.unwrap();
    let tokens = provider(&sim);
    let token = tokens.current_token().await.unwrap();
    let raw = token.expose().to_owned();
    assert!(raw.starts_with("sim-"));
    let shown = format!("{tokens:?} {token:?} {token}");
    assert!(!shown.contains(&raw), "{shown}");
    assert!(!shown.contains(DEFAULT_CLIENT_SECRET), "{shown}");
    assert!(shown.contains(DEFAULT_CLIENT_ID));
}

#[tokio::test(start_paused = true)]
async fn a_call_with_no_token_waits_out_the_logins_backoff_and_asks_again() {
    let sim = Sim::builder().start().await.unwrap();
    let unavailable = || Scripted::Status {
        status: 503,
        code: None,
    };
    sim.script(Target::Token, [unavailable(), Scripted::Drop]);
    let tokens = provider(&sim);
    let t = transport(&sim, &tokens);
    let started = tokio::time::Instant::now();
    let answer = t.execute(prompt(&t, "cold")).await.unwrap();
    assert_eq!(
        answer.stats.attempts, 1,
        "one prompt request, once a token came"
    );
    assert_eq!(sim.counters().token_requests, 3);
    // The provider's own backoff (equal jitter): 0.5 to 1 s after the first failure,
    // 1 to 2 s after the second.
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(1500)..=Duration::from_secs(3)).contains(&waited),
        "{waited:?}"
    );

    // A login host that keeps failing: the call gives up when the next request would
    // come after its deadline, with the login's failure and when it is asked again.
    sim.script(Target::Token, std::iter::repeat_with(unavailable).take(10));
    let tokens = provider(&sim);
    let mut config = TransportConfig::new(sim.base_url());
    config.deadline = Duration::from_secs(3);
    let t = Transport::new(config)
        .unwrap()
        .with_token_source(tokens.clone());
    let before = sim.counters().token_requests;
    let started = tokio::time::Instant::now();
    let err = t.execute(prompt(&t, "down")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");
    let ErrorKind::Token(token) = err.kind() else {
        panic!("{err}")
    };
    assert!(token.retryable, "{err}");
    assert!(
        token.retry_in.is_some_and(|wait| wait > Duration::ZERO),
        "{token:?}"
    );
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert_eq!(err.attempts(), 0, "no prompt request without a token");
    let asked = sim.counters().token_requests - before;
    assert!((2..=3).contains(&asked), "{asked} token requests in 3 s");
}

#[tokio::test]
async fn an_unreachable_login_host_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tokens = ClientCredentials::builder(Credentials::new("c", "s"))
        .login_base(format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let err = tokens.prefetch().await.unwrap_err();
    assert!(
        matches!(&err, AuthError::Unreachable { host, .. } if host == &format!("127.0.0.1:{port}")),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("no token from the login host 127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_configs_login_timeout_bounds_each_token_request() {
    let sim = Sim::builder().start().await.unwrap();
    let provider_giving_up_after = |ms| {
        let mut config = RouterConfig::new(EnvironmentConfig::at(sim.base_url()));
        config.limits.login_timeout_ms = ms;
        let credentials = Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET);
        ClientCredentials::from_router_config(&config, credentials)
            .unwrap()
            .build()
            .unwrap()
    };
    sim.script(Target::Token, [Scripted::Delay { ms: 1_000 }]);
    let err = provider_giving_up_after(500).prefetch().await.unwrap_err();
    assert!(matches!(err, AuthError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("login timeout of 500ms"), "{err}");

    sim.script(Target::Token, [Scripted::Delay { ms: 1_000 }]);
    provider_giving_up_after(2_000).prefetch().await.unwrap();
    assert_eq!(sim.counters().token_requests, 2);
}

#[test]
fn plain_http_login_hosts_are_refused_unless_loopback() {
    let err = ClientCredentials::builder(Credentials::new("c", "s"))
        .login_base("http://login.example.com")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("plain http"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_does_not_abort_or_repeat_the_token_request() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(Target::Token, [Scripted::Delay { ms: 1_000 }]);
    let tokens = provider(&sim);
    // The first caller stops waiting after 100 ms, mid-request.
    let gave_up = tokio::time::timeout(Duration::from_millis(100), tokens.token()).await;
    assert!(gave_up.is_err());
    // The next caller gets the token from that same request.
    tokens.token().await.unwrap();
    assert_eq!(sim.counters().token_requests, 1);
    assert_eq!(tokens.token_requests(), 1);
}

/// Issue 10, item 2: `expires_in` = 18446744073709551615 panicked the token task
/// (`Instant + Duration` overflow), so no token was ever had. It is now clamped to 48 h.
#[tokio::test(start_paused = true)]
async fn a_huge_expires_in_is_clamped_to_48_hours_and_the_token_is_used() {
    let sim = Sim::builder().start().await.unwrap();
    sim.try_script(
        Target::Token,
        [Scripted::Grant {
            expires_in: u64::MAX.into(),
        }],
    )
    .unwrap();
    let tokens = provider(&sim);
    let t = transport(&sim, &tokens);
    let answer = t.execute(prompt(&t, "huge-lifetime")).await.unwrap();
    assert!(!answer.stats.token_refreshed);
    assert_eq!(tokens.token_lifetime(), Some(Duration::from_secs(172_800)));
    t.execute(prompt(&t, "again")).await.unwrap();
    assert_eq!(tokens.token_requests(), 1, "the clamped token stays cached");
}

/// The same through a raw answer, for numbers beyond u64 and in exponent form.
/// A simulator whose next token answer is 200 with exactly `body`.
async fn sim_granting(body: &str) -> SimHandle {
    let sim = Sim::builder().start().await.unwrap();
    sim.try_script(
        Target::Token,
        [Scripted::Raw {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_owned(),
        }],
    )
    .unwrap();
    sim
}

#[tokio::test(start_paused = true)]
async fn raw_token_answers_with_absurd_lifetimes_are_clamped() {
    for expires_in in [
        "18446744073709551616",
        "12345678901234567890123",
        "1e300",
        "172801",
    ] {
        let sim = sim_granting(&format!(
            r#"{{"access_token":"raw-token","token_type":"bearer","expires_in":{expires_in}}}"#
        ))
        .await;
        let tokens = provider(&sim);
        tokens.prefetch().await.unwrap();
        assert_eq!(
            tokens.token_lifetime(),
            Some(Duration::from_secs(172_800)),
            "{expires_in}"
        );
    }
}

/// A lifetime below a second, or one that is not a whole number, is refused with a typed
/// error naming `expires_in`; the provider backs off and recovers with the next grant.
#[tokio::test(start_paused = true)]
async fn an_unusable_expires_in_is_a_typed_error_and_the_next_grant_recovers() {
    for (expires_in, rule) in [
        (serde_json::Number::from(0), "at least 1 s"),
        (serde_json::Number::from(-5), "at least 1 s"),
        (serde_json::Number::from_f64(90.5).unwrap(), "whole number"),
    ] {
        let sim = Sim::builder().start().await.unwrap();
        sim.try_script(
            Target::Token,
            [Scripted::Grant {
                expires_in: expires_in.clone(),
            }],
        )
        .unwrap();
        let tokens = provider(&sim);
        let err = tokens.prefetch().await.unwrap_err();
        assert!(
            matches!(&err, AuthError::InvalidLifetime { reason, .. } if reason.to_string().contains(rule)),
            "{expires_in}: {err:?}"
        );
        assert!(err.to_string().contains("`expires_in`"), "{err}");
        assert!(err.is_transient());
        tokio::time::sleep(Duration::from_secs(2)).await; // past the first backoff
        tokens.prefetch().await.unwrap();
        assert_eq!(tokens.token_lifetime(), Some(Duration::from_secs(86_400)));
    }
}

/// An answer whose `access_token` is empty or could not be a bearer token is a typed
/// error, not a token sent as `Bearer `.
#[tokio::test]
async fn an_empty_or_spaced_access_token_is_refused() {
    for access_token in ["", "   ", "two words"] {
        let sim = sim_granting(&format!(
            r#"{{"access_token":"{access_token}","token_type":"bearer","expires_in":86400}}"#
        ))
        .await;
        let err = provider(&sim).prefetch().await.unwrap_err();
        assert!(
            err.to_string().contains("the access token is empty"),
            "{access_token:?}: {err}"
        );
    }
}

/// Regression: a 429 from the login host was "cannot reach the login host", and its
/// `Retry-After` was dropped: the provider asked again on its own 1 s schedule.
#[tokio::test(start_paused = true)]
async fn a_rate_limited_login_waits_out_its_retry_after_within_a_bound() {
    let sim = Sim::builder().start().await.unwrap();
    let tokens = provider(&sim);
    let limited = |after: &str| Scripted::Raw {
        status: 429,
        headers: vec![("retry-after".into(), after.into())],
        body: String::new(),
    };
    sim.script(Target::Token, [limited("120")]);
    let err = tokens.prefetch().await.unwrap_err();
    assert!(
        matches!(err, AuthError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(120)),
        "{err:?}"
    );
    assert!(
        err.is_transient() && err.to_string().contains("HTTP 429"),
        "{err}"
    );
    let again = tokens.current_token().await.unwrap_err();
    let AuthError::BackingOff { retry_in, .. } = again else {
        panic!("backing off, not {again}");
    };
    assert!(retry_in > Duration::from_secs(119), "{retry_in:?}");
    tokio::time::advance(Duration::from_secs(121)).await;
    tokens.prefetch().await.unwrap();

    // A day asked for holds requests back five minutes at most.
    let tokens = provider(&sim);
    sim.script(Target::Token, [limited("86400")]);
    tokens.prefetch().await.unwrap_err();
    let AuthError::BackingOff { retry_in, .. } = tokens.current_token().await.unwrap_err() else {
        panic!("backing off");
    };
    assert!(retry_in <= Duration::from_secs(300), "{retry_in:?}");
    assert_eq!(sim.counters().token_requests, 3);
}

/// A login host's refusal goes into every error and log line: it is cut, and a newline
/// or terminal escape in it is shown escaped, not written.
#[tokio::test]
async fn a_login_refusals_text_is_cut_and_its_control_characters_escaped() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(
        Target::Token,
        [Scripted::Raw {
            status: 400,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!(
                r#"{{"error":"bad\nline \u001b[31mred","description":"{}"}}"#,
                "d".repeat(10_000)
            ),
        }],
    );
    let err = provider(&sim).prefetch().await.unwrap_err();
    let AuthError::Rejected {
        error, description, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(error, r"bad\nline \u{1b}[31mred");
    assert_eq!(description.as_ref().map(|d| d.chars().count()), Some(256));
    assert!(!err.to_string().contains('\n'), "{err}");
}

/// Regression: the refresh hook ran before the result was kept, so a hook that panicked
/// lost a granted token and set no backoff.
#[tokio::test]
async fn a_panicking_refresh_hook_loses_no_token() {
    let sim = Sim::builder().start().await.unwrap();
    let tokens =
        ClientCredentials::builder(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
            .login_base(sim.base_url())
            .on_refresh(|_| panic!("a hook of the caller's"))
            .build()
            .unwrap();
    // The hook's panic changes nothing: the caller gets the token granted.
    let first = tokens.current_token().await.unwrap();
    assert!(tokens.current_token().await.unwrap().same_as(&first));
    assert_eq!(
        sim.counters().token_requests,
        1,
        "the granted token was kept"
    );
}

/// Regression: a status scripted for the token endpoint answered the API's error shape
/// (`message`, `code`), so a refusal read as `unknown_error`; and a scripted 429 carried
/// no `Retry-After` the provider could honour.
#[tokio::test(start_paused = true)]
async fn scripted_login_failures_answer_in_the_login_services_shape() {
    let sim = Sim::builder().start().await.unwrap();
    sim.script(
        Target::Token,
        [Scripted::Status {
            status: 401,
            code: None,
        }],
    );
    let err = provider(&sim).prefetch().await.unwrap_err();
    assert!(
        matches!(&err, AuthError::Rejected { error, description: Some(d), .. }
            if error == "invalid_client" && d.contains("Unauthorized")),
        "{err:?}"
    );
    sim.script(
        Target::Token,
        [Scripted::TooManyRequests {
            retry_after: gateway_sim::RetryAfter::Seconds(30),
        }],
    );
    let err = provider(&sim).prefetch().await.unwrap_err();
    assert!(
        matches!(err, AuthError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(30)),
        "{err:?}"
    );
}

/// Regression: a login host answering with a bare JSON string (the token where the
/// object belongs) put serde's message, quoting the whole token, into the error, and into
/// every "backing off" error after it, at any length up to the body cap.
#[tokio::test]
async fn a_token_answer_that_is_a_bare_string_is_not_quoted_in_errors() {
    let token = format!("eyJSECRET{}", "A".repeat(100_000));
    let sim = sim_granting(&format!("\"{token}\"")).await;
    let tokens = provider(&sim);
    let first = tokens.current_token().await.unwrap_err().to_string();
    let again = tokens.token().await.unwrap_err().message;
    for err in [first, again] {
        assert!(!err.contains("eyJSECRET"), "{err:.300}");
        assert!(err.len() < 1_000, "{} bytes: {err:.300}", err.len());
        assert!(err.contains("not the expected JSON"), "{err}");
    }
}

/// Regression: a background refresh whose task was dropped before its first poll (its
/// runtime shut down) left the provider's "refresh running" flag set for good, so no
/// background refresh started again: each token was fetched only once it had expired.
#[test]
fn a_background_refresh_dropped_before_it_ran_lets_a_later_one_start() {
    let paused = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    };
    // A 20 s token is due 10 s after it is granted and usable for 19 s.
    let first = paused();
    let tokens = first.block_on(async {
        let sim = with_token_life(20).await;
        let tokens = provider(&sim);
        tokens.current_token().await.unwrap();
        tokio::time::advance(Duration::from_secs(12)).await;
        // Due: a background refresh is spawned, and never polled on this runtime.
        assert!(tokens.ready_token().is_some());
        tokens
    });
    drop(first);
    assert_eq!(tokens.token_requests(), 1);

    // Another runtime's clock starts at the real time again: 13 s on, the token is due
    // and still usable. The simulator went with the first runtime, so the refresh fails,
    // but it is asked for.
    paused().block_on(async {
        tokio::time::advance(Duration::from_secs(13)).await;
        assert!(tokens.ready_token().is_some());
        for _ in 0..10_000 {
            if tokens.token_requests() > 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(tokens.token_requests(), 2, "a background refresh started");
    });
}
