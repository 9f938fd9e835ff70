//! A bare hyper client for the simulator's tests: requests over real HTTP on loopback,
//! answers read whole.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use base64::Engine;
use bytes::Bytes;
use gateway_model::GatewayPayload;
use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SimHandle};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The form of a client-credentials grant.
pub const CLIENT_CREDENTIALS: &str = "grant_type=client_credentials";

/// An answer, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; `Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header's text; empty when it is absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or_default())
    }

    /// The body's `message`; empty when it has none.
    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// `Retry-After` in delta seconds.
    pub fn retry_after_secs(&self) -> u64 {
        self.header("retry-after")
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After: {:?}", self.headers.get("retry-after")))
    }
}

/// A client of one simulator.
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    /// A client of `sim`.
    pub fn new(sim: &SimHandle) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: sim.base_url(),
        }
    }

    /// Sends a request; `Err` means the connection closed without an answer.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            builder = builder.header(*k, v);
        }
        let request = builder
            .body(Full::new(body.into()))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends a request that must be answered.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.try_send(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{path} dropped the connection: {e}"))
    }

    /// Asks for a token with `form`, as client `id`.
    pub async fn try_grant(&self, id: &str, secret: &str, form: &str) -> Result<Reply, String> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        self.try_send(
            Method::POST,
            "/oauth/token",
            &[("authorization", format!("Basic {basic}"))],
            form.to_owned(),
        )
        .await
    }

    /// Asks for a token with `form`, as client `id`; the grant must be answered.
    pub async fn grant(&self, id: &str, secret: &str, form: &str) -> Reply {
        self.try_grant(id, secret, form)
            .await
            .unwrap_or_else(|e| panic!("the grant dropped the connection: {e}"))
    }

    /// Asks for a token as the default client.
    pub async fn try_default_grant(&self) -> Result<Reply, String> {
        self.try_grant(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, CLIENT_CREDENTIALS)
            .await
    }

    /// A token for client `id`, which must be granted.
    pub async fn token(&self, id: &str, secret: &str) -> String {
        let reply = self.grant(id, secret, CLIENT_CREDENTIALS).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        reply.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// Sends a prompt call with `body`.
    pub async fn try_prompt(&self, token: &str, body: impl Into<Bytes>) -> Result<Reply, String> {
        self.try_send(
            Method::POST,
            "/api/v2/ai/gateway/prompts",
            &[
                ("authorization", format!("Bearer {token}")),
                ("x-genesys-request-id", "rid-1".into()),
            ],
            body,
        )
        .await
    }

    /// Sends a prompt call with `body`, which must be answered.
    pub async fn prompt(&self, token: &str, body: &Value) -> Reply {
        self.try_prompt(token, serde_json::to_vec(body).unwrap())
            .await
            .unwrap_or_else(|e| panic!("the prompt call dropped the connection: {e}"))
    }

    /// Sends the [`hello`] prompt.
    pub async fn try_prompt_hello(&self, token: &str) -> Result<Reply, String> {
        self.try_prompt(token, serde_json::to_vec(&hello()).unwrap())
            .await
    }

    /// Sends the [`hello`] prompt, which must be answered.
    pub async fn prompt_hello(&self, token: &str) -> Reply {
        self.prompt(token, &hello()).await
    }

    /// Calls the admin API at `/__admin/{path}` with a raw body.
    pub async fn admin(&self, method: Method, path: &str, body: impl Into<Bytes>) -> Reply {
        self.send(method, &format!("/__admin/{path}"), &[], body)
            .await
    }

    /// Calls the admin API with a JSON body; `Null` sends none.
    pub async fn admin_json(&self, method: Method, path: &str, body: Value) -> Reply {
        let body = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        self.admin(method, path, body).await
    }
}

/// A valid prompt payload: `model-gen-4`, "hello".
pub fn hello() -> Value {
    serde_json::to_value(GatewayPayload::builder("model-gen-4", "hello").build_unchecked()).unwrap()
}
