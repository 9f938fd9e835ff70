//! The limits per OAuth client: prompt calls across all of a client's tokens, and tokens
//! granted, set by the builder, the handle and the admin API. Driven over real HTTP on
//! loopback with a bare hyper client; windows are 60 s on tokio's real clock, far longer
//! than a test, so no test crosses a window's end.

use base64::Engine;
use bytes::Bytes;
use gateway_model::GatewayPayload;
use gateway_sim::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, RateLimit, RetryAfterStyle, Sim, SimHandle,
};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const OTHER_ID: &str = "other-client";
const OTHER_SECRET: &str = "other-secret";

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or_default())
    }

    /// `Retry-After` in delta seconds.
    fn retry_after_secs(&self) -> u64 {
        self.header("retry-after")
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After: {:?}", self.headers.get("retry-after")))
    }
}

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    fn new(sim: &SimHandle) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: sim.base_url(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            builder = builder.header(*k, v);
        }
        let response = self
            .client
            .request(builder.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn token_reply(&self, id: &str, secret: &str) -> Reply {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        self.send(
            Method::POST,
            "/oauth/token",
            &[("authorization", format!("Basic {basic}"))],
            "grant_type=client_credentials",
        )
        .await
    }

    async fn token(&self, id: &str, secret: &str) -> String {
        let reply = self.token_reply(id, secret).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        reply.json()["access_token"].as_str().unwrap().to_owned()
    }

    async fn prompt(&self, token: &str) -> Reply {
        let payload = GatewayPayload::builder("model-gen-4", "hello").build_unchecked();
        self.send(
            Method::POST,
            "/api/v2/ai/gateway/prompts",
            &[("authorization", format!("Bearer {token}"))],
            serde_json::to_vec(&payload).unwrap(),
        )
        .await
    }

    async fn admin(&self, method: Method, path: &str, body: Value) -> Reply {
        let body = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        self.send(method, &format!("/__admin/{path}"), &[], body)
            .await
    }
}

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
        let reply = http.prompt(token).await;
        assert_eq!(reply.status, StatusCode::OK, "call {}", n + 1);
        assert_eq!(reply.header("inin-ratelimit-count"), (n + 1).to_string());
        assert_eq!(reply.header("inin-ratelimit-allowed"), "3");
    }
    let limited = http.prompt(&second).await;
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

    let apart = http.prompt(&other).await;
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
    let refused = http.token_reply(DEFAULT_CLIENT_ID, "wrong").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "not counted");

    let first = http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;
    http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;
    let limited = http
        .token_reply(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
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
        http.prompt(&first).await.status,
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
    assert_eq!(http.prompt(&token).await.status, StatusCode::OK);
    let limited = http.prompt(&token).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(httpdate::parse_http_date(limited.header("retry-after")).is_ok());
    sim.set_client_rate_limit(None);
    assert_eq!(http.prompt(&token).await.status, StatusCode::OK);

    sim.set_token_rate_limit(Some(per_minute(1)));
    http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;
    let limited = http
        .token_reply(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
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
        .admin(Method::GET, "client-rate-limit", Value::Null)
        .await;
    assert_eq!(none.json(), json!({ "clientRateLimit": null }));
    let set = http
        .admin(
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
        .admin(Method::GET, "client-rate-limit", Value::Null)
        .await;
    assert_eq!(read.json(), expected);
    assert_eq!(http.prompt(&token).await.status, StatusCode::OK);
    assert_eq!(
        http.prompt(&token).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let cleared = http
        .admin(Method::DELETE, "client-rate-limit", Value::Null)
        .await;
    assert_eq!(cleared.json(), json!({ "clientRateLimit": null }));
    assert_eq!(http.prompt(&token).await.status, StatusCode::OK);

    let set = http
        .admin(
            Method::PUT,
            "token-rate-limit",
            json!({"allowed": 1, "windowSecs": 60, "retryAfter": "httpDate"}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(set.json()["tokenRateLimit"]["allowed"], 1);
    http.token(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).await;
    let limited = http
        .token_reply(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(httpdate::parse_http_date(limited.header("retry-after")).is_ok());
    http.admin(Method::DELETE, "token-rate-limit", Value::Null)
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
    http.admin(Method::POST, "reset", json!({})).await;
    let restored = http
        .admin(Method::GET, "token-rate-limit", Value::Null)
        .await;
    assert_eq!(restored.json()["tokenRateLimit"]["allowed"], 5);
    let cleared = http
        .admin(Method::GET, "client-rate-limit", Value::Null)
        .await;
    assert_eq!(cleared.json(), json!({ "clientRateLimit": null }));
    let wrong = http
        .admin(Method::POST, "token-rate-limit", Value::Null)
        .await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
}
