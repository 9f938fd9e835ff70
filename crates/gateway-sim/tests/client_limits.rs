//! The limits per OAuth client: prompt calls across all of a client's tokens, and tokens
//! granted, set by the builder, the handle and the admin API. Driven over real HTTP on
//! loopback with a bare hyper client; windows are 60 s on tokio's real clock, far longer
//! than a test, so no test crosses a window's end.

use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, RateLimit, RetryAfterStyle, Sim};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::{CLIENT_CREDENTIALS, Http};

mod support;

const OTHER_ID: &str = "other-client";
const OTHER_SECRET: &str = "other-secret";

fn per_minute(allowed: u32) -> RateLimit {
    RateLimit {
        allowed,
        window_secs: 60,
        retry_after: RetryAfterStyle::Seconds,
    }
}

fn two_clients() -> gateway_sim::SimBuilder {
    Sim::builder()
        .client(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
        .client(OTHER_ID, OTHER_SECRET)
}

#[tokio::test]
async fn two_tokens_of_one_client_share_its_limit_and_another_client_is_apart() {
    let sim = two_clients()
        .client_rate_limit(per_minute(3))
        .start()
        .await
        .unwrap();
    let http = Http::new(&sim);
    let first = http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;
    let second = http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;
    let other = http.token(OTHER_ID, OTHER_SECRET).await;

    for (n, token) in [&first, &second, &first].into_iter().enumerate() {
        let reply = http.prompt_hello(token).await;
        assert_eq!(reply.status, StatusCode::OK, "call {}", n + 1);
        assert_eq!(reply.header("inin-ratelimit-count"), (n + 1).to_string());
        assert_eq!(reply.header("inin-ratelimit-allowed"), "3");
    }
    let limited = http.prompt_hello(&second).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let body = limited.json();
    assert_eq!(body["code"], "too.many.requests.retry.after");
    assert_eq!(body["status"], 429);
    assert_eq!(body["limit"]["key"], "ai.gateway.prompts.per.client");
    assert_eq!(body["limit"]["value"], 3);
    assert!((1..=60).contains(&limited.retry_after_secs()));
    assert_eq!(limited.header("inin-ratelimit-count"), "4");
    assert_eq!(limited.header("inin-ratelimit-allowed"), "3");
    let reset: u64 = limited.header("inin-ratelimit-reset").parse().unwrap();
    assert!((1..=60).contains(&reset), "{reset}");

    let apart = http.prompt_hello(&other).await;
    assert_eq!(
        apart.status,
        StatusCode::OK,
        "another client has its own window"
    );
    assert_eq!(apart.header("inin-ratelimit-count"), "1");

    let counters = sim.counters();
    assert_eq!(counters.client_rate_limited, 1);
    assert_eq!(counters.prompt_requests, 5);
    assert_eq!(counters.by_status.get(&429), Some(&1));
    assert_eq!(counters.token_rate_limited, 0);
}

#[tokio::test]
async fn the_token_limit_grants_at_most_allowed_tokens_per_window() {
    let sim = two_clients()
        .token_rate_limit(per_minute(2))
        .start()
        .await
        .unwrap();
    let http = Http::new(&sim);
    let refused = http
        .grant(DEFAULT_CLIENT_ID, "wrong", CLIENT_CREDENTIALS)
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "not counted");

    let first = http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;
    http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;
    let limited = http
        .grant(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, CLIENT_CREDENTIALS)
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=60).contains(&limited.retry_after_secs()));
    assert_eq!(limited.header("inin-ratelimit-count"), "3");
    assert_eq!(limited.header("inin-ratelimit-allowed"), "2");
    let body = limited.json();
    assert_eq!(body["error"], "too_many_requests");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("[2] token requests for 60 seconds"),
        "{body}"
    );
    assert_eq!(body["description"], body["error_description"]);

    http.token(OTHER_ID, OTHER_SECRET).await;
    assert_eq!(
        http.prompt_hello(&first).await.status,
        StatusCode::OK,
        "tokens granted before the limit stay valid"
    );
    let counters = sim.counters();
    assert_eq!(counters.token_requests, 5);
    assert_eq!(counters.token_grants, 3);
    assert_eq!(counters.token_rate_limited, 1);
    assert_eq!(counters.client_rate_limited, 0);
}

#[tokio::test]
async fn the_handle_sets_and_removes_the_limits_at_run_time() {
    let sim = Sim::builder().start().await.unwrap();
    let http = Http::new(&sim);
    let token = http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;
    let mut limit = per_minute(1);
    limit.retry_after = RetryAfterStyle::HttpDate;
    sim.set_client_rate_limit(Some(limit));
    assert_eq!(http.prompt_hello(&token).await.status, StatusCode::OK);
    let limited = http.prompt_hello(&token).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(httpdate::parse_http_date(limited.header("retry-after")).is_ok());
    sim.set_client_rate_limit(None);
    assert_eq!(http.prompt_hello(&token).await.status, StatusCode::OK);

    sim.set_token_rate_limit(Some(per_minute(1)));
    http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;
    let limited = http
        .grant(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, CLIENT_CREDENTIALS)
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    sim.set_token_rate_limit(None);
    http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;
    let counters = sim.counters();
    assert_eq!(
        (counters.client_rate_limited, counters.token_rate_limited),
        (1, 1)
    );
}

#[tokio::test]
async fn the_admin_api_sets_reads_and_clears_each_limit() {
    let sim = Sim::builder()
        .token_rate_limit(per_minute(5))
        .start()
        .await
        .unwrap();
    let http = Http::new(&sim);
    let token = http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;

    let none = http
        .admin_json(Method::GET, "client-rate-limit", Value::Null)
        .await;
    assert_eq!(none.json(), json!({ "clientRateLimit": null }));
    let set = http
        .admin_json(
            Method::PUT,
            "client-rate-limit",
            json!({"allowed": 1, "windowSecs": 60}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK);
    let expected =
        json!({"clientRateLimit": {"allowed": 1, "windowSecs": 60, "retryAfter": "seconds"}});
    assert_eq!(set.json(), expected);
    let read = http
        .admin_json(Method::GET, "client-rate-limit", Value::Null)
        .await;
    assert_eq!(read.json(), expected);
    assert_eq!(http.prompt_hello(&token).await.status, StatusCode::OK);
    assert_eq!(
        http.prompt_hello(&token).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let cleared = http
        .admin_json(Method::DELETE, "client-rate-limit", Value::Null)
        .await;
    assert_eq!(cleared.json(), json!({ "clientRateLimit": null }));
    assert_eq!(http.prompt_hello(&token).await.status, StatusCode::OK);

    let set = http
        .admin_json(
            Method::PUT,
            "token-rate-limit",
            json!({"allowed": 1, "windowSecs": 60, "retryAfter": "httpDate"}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(set.json()["tokenRateLimit"]["allowed"], 1);
    http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;
    let limited = http
        .grant(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, CLIENT_CREDENTIALS)
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(httpdate::parse_http_date(limited.header("retry-after")).is_ok());
    http.admin_json(Method::DELETE, "token-rate-limit", Value::Null)
        .await;
    http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;

    let counters = http
        .send(Method::GET, "/__admin/counters", &[], "")
        .await
        .json();
    assert_eq!(counters["clientRateLimited"], 1);
    assert_eq!(counters["tokenRateLimited"], 1);
    assert_eq!(counters["tokenGrants"], 3);

    // Reset restores the limits the simulator started with.
    http.admin_json(Method::POST, "reset", json!({})).await;
    let restored = http
        .admin_json(Method::GET, "token-rate-limit", Value::Null)
        .await;
    assert_eq!(restored.json()["tokenRateLimit"]["allowed"], 5);
    let cleared = http
        .admin_json(Method::GET, "client-rate-limit", Value::Null)
        .await;
    assert_eq!(cleared.json(), json!({ "clientRateLimit": null }));
    let wrong = http
        .admin_json(Method::POST, "token-rate-limit", Value::Null)
        .await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
}
