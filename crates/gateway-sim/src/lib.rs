//! A faithful local Genesys Cloud simulator: a real hyper server on loopback that speaks
//! the OAuth client-credentials grant, the AI Gateway prompt endpoint and the model
//! catalogue, with scriptable failures. Every test, the demo and the benchmarks run
//! against it; use it for your own tests too.
//!
//! ```
//! use gateway_sim::{Behaviour, ErrorRate, Latency, Scripted, RetryAfter, Sim, Target};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let sim = Sim::builder()
//!     .seed(7)
//!     .behaviour(Behaviour {
//!         latency: Latency::Fixed { ms: 5.0 },
//!         errors: vec![ErrorRate { status: 503, rate: 0.1 }],
//!         ..Behaviour::default()
//!     })
//!     .start()
//!     .await?;
//! // The next prompt call to model-gen-4 gets a 429, then the behaviour applies again.
//! sim.script(Target::model("model-gen-4"), [Scripted::TooManyRequests { retry_after: RetryAfter::Seconds(1) }]);
//! assert!(sim.base_url().starts_with("http://127.0.0.1:"));
//! assert_eq!(sim.counters().prompt_requests, 0);
//! sim.shutdown().await;
//! # Ok::<(), gateway_sim::SimError>(())
//! # }).unwrap();
//! ```
//!
//! # Endpoints
//!
//! | method and path | what it does |
//! | --- | --- |
//! | `POST /oauth/token` | `Authorization: Basic base64(id:secret)`, form `grant_type=client_credentials`; answers `{"access_token","token_type":"bearer","expires_in"}`, or 401 `invalid_client` / 400 `unsupported_grant_type` / 429 `too_many_requests` (the token limit) in the login service's error shape |
//! | `POST /api/v2/ai/gateway/prompts` | checks the bearer token (401), validates the `GatewayPayload` with `gateway-model`'s rules (400 listing every violation, the first 64 of many), looks up the model (404), applies scripts and behaviours, answers a `GatewayResponse` with deterministic text and token counts |
//! | `GET /api/v2/ai/models?pageNumber=&pageSize=` | the catalogue, in Genesys paging shape |
//! | `GET /api/v2/ai/models/{modelId}` | one model, or 404 |
//!
//! Every answer carries `ININ-Correlation-Id`; errors use the Genesys error body
//! (`message`, `code`, `status`, `contextId`, ...). A scripted rate limit adds
//! `inin-ratelimit-count`, `inin-ratelimit-allowed` and `inin-ratelimit-reset`, and its
//! 429 carries `Retry-After` (seconds or an HTTP date) and code `too.many.requests.retry.after`.
//!
//! # What can be scripted
//!
//! A [`Behaviour`] applies to every call (globally or per model): [`Latency`] (fixed,
//! uniform or exponential), error rates by status, a drop rate (no answer: an HTTP/1.1
//! connection closed, an HTTP/2 stream reset), a per-token [`RateLimit`], [`PolicyRule`]s (422 for prompts containing a
//! text), `restricted` (403 `ai.model.restricted`), [`SlowBody`], and `serve_as` (report
//! another model as the one that answered). A [`Scripted`] answer is used once, before any
//! behaviour: `ok`, `status`, `tooManyRequests`, `policyViolation`, `drop`, `stall`
//! (never answers), `delay`, `oversized`, `raw` (exactly this status, these headers and
//! this body, nothing added: for `Retry-After: 18446744073709551615` or a token answer no
//! real server would send) and, on the token endpoint only, `grant` (a real token with any
//! JSON number as `expires_in`). Scripts target a model, every model (`global`), or the
//! token endpoint (`token`). Tokens can be revoked and their lifetime changed. Random
//! choices come from the seed, so sequential runs repeat.
//!
//! Two limits span every token of an OAuth client, for the whole simulator, and are off
//! unless set ([`SimBuilder::client_rate_limit`], [`SimHandle::set_client_rate_limit`],
//! `/__admin/client-rate-limit`, and the same for `token`): a fixed window of prompt calls
//! per client, counting every authenticated call before its payload is read or a script is
//! used and answering beyond it exactly like the per-token limit (429
//! `too.many.requests.retry.after`, `Retry-After`, `inin-ratelimit-*`, `limit.key`
//! `ai.gateway.prompts.per.client`), and a fixed window of tokens granted per client,
//! answering beyond it 429 `too_many_requests` in the login service's shape with
//! `Retry-After` and `inin-ratelimit-*`. Setting or removing a limit starts its windows
//! afresh. [`Counters`] count the 429s of each (`clientRateLimited`, `tokenRateLimited`).
//!
//! # Ranges
//!
//! Every number has a documented range, checked by the admin API (a 400 naming the
//! field), by [`SimBuilder::start`] ([`SimError::Invalid`]) and by
//! [`SimHandle::try_script`] ([`Behaviour::check`], [`Target::check`],
//! [`Scripted::check_for`]):
//!
//! | value | range |
//! | --- | --- |
//! | token lifetime | 1 to 172,800 s ([`MIN_TOKEN_LIFETIME`], [`MAX_TOKEN_LIFETIME`]); the builder and [`SimHandle::set_token_lifetime`] clamp to it |
//! | latencies (`ms`, `minMs` at most `maxMs`, `meanMs`), `delay`, `slowBody.chunkDelayMs` | 0 to 3,600,000 ms ([`MAX_WAIT_MS`]) |
//! | `errors[].rate`, `dropRate` | 0 to 1 |
//! | `status`, `errors[].status`, `raw.status` | 200 to 999 |
//! | `rateLimit.windowSecs`, a client limit's `windowSecs` | 1 to 86,400 s ([`MAX_WINDOW_SECS`]) |
//! | `rateLimit.allowed`, a client limit's `allowed` | at least 1 (remove the limit to turn it off) |
//! | `slowBody.chunks` | at least 1 |
//! | `slowBody.chunks` × `slowBody.chunkDelayMs` | at most 3,600,000 ms in all ([`MAX_WAIT_MS`]) |
//! | a script's `target.model`, the model of [`SimBuilder::model_behaviour`] | a model id ([`gateway_model::MODEL_ID_PATTERN`], 1 to 128 characters) |
//! | `oversized.bytes` | at most 64 MiB ([`MAX_OVERSIZED_BYTES`]) |
//! | `raw.headers` | names and values HTTP can carry; not `content-length`, `transfer-encoding` or a connection header |
//! | `retryAfter.seconds` | any `u64`, sent as is |
//! | `retryAfter.httpDate` | any `u64`; the date is clamped to 9999-12-31 23:59:59 GMT ([`MAX_HTTP_DATE_SECS`]) |
//!
//! A value the Rust API takes unchecked ([`SimHandle::set_behaviour`],
//! [`SimHandle::script`], the client limits' setters) is clamped where it is used (NaN
//! counts as 0; a slow body's pauses are cut to an hour in all; a rate limit allowing 0
//! refuses every call), so nothing the simulator is told can panic it; a `raw` answer
//! HTTP cannot carry answers a 500 `sim.script.invalid` naming the problem.
//!
//! Every request is recorded (method, path, headers, body, time) in a bounded log
//! ([`SimHandle::requests`]), and [`Counters`] count calls per endpoint, token grants,
//! the 429s of the client limits, answers by status, and the most prompt calls in flight
//! at once.
//!
//! # The admin API
//!
//! The same controls over HTTP under `/__admin/`, so tests in any language and the
//! standalone simulator (`genesys-router sim`) can drive it. Bodies are the JSON form of
//! the Rust types (camelCase), always a JSON object: serde's sequence form of a struct
//! (`[5]` for `{"secs":5}`) is refused, like a value out of its range, with a 400 naming
//! the field. Admin calls are neither recorded nor counted. What the admin API may
//! accumulate is bounded: at most [`MAX_PENDING_SCRIPTS`] one-shot answers pending
//! (holding at most [`MAX_PENDING_SCRIPT_BYTES`] of `raw` bodies and headers, at most
//! [`MAX_RAW_HEADERS`] headers each) and
//! [`MAX_ADMIN_MODELS`] catalogue entries and model behaviours (each with at most
//! [`MAX_BEHAVIOUR_RULES`] error rates and policy rules, their texts at most
//! [`MAX_BEHAVIOUR_TEXT`] bytes; a 400 beyond); the
//! simulator keeps at most [`MAX_LIVE_TOKENS`] tokens, forgetting the one that expires
//! first.
//!
//! ```sh
//! SIM=http://127.0.0.1:8080
//! # Every call to model-gen-4 takes 20-80 ms and 10% of them fail with 503.
//! curl -X PUT $SIM/__admin/models/model-gen-4/behaviour \
//!   -d '{"latency":{"kind":"uniform","minMs":20,"maxMs":80},"errors":[{"status":503,"rate":0.1}]}'
//! # The same for every model without a behaviour of its own.
//! curl -X PUT $SIM/__admin/behaviour -d '{"policyRules":[{"contains":"forbidden"}]}'
//! # The next two calls (any model) get a 429 with Retry-After as an HTTP date, then a 503.
//! curl -X POST $SIM/__admin/script -d '{"target":"global","responses":[
//!   {"kind":"tooManyRequests","retryAfter":{"httpDate":2}},{"kind":"status","status":503}]}'
//! # The next token request fails.
//! curl -X POST $SIM/__admin/script -d '{"target":"token","responses":[{"kind":"status","status":503}]}'
//! # The next call answers exactly this (headers are [name, value] pairs; both optional).
//! curl -X POST $SIM/__admin/script -d '{"target":"global","responses":[{"kind":"raw",
//!   "status":429,"headers":[["Retry-After","18446744073709551615"]],"body":"{}"}]}'
//! # The next token answer says "expires_in":18446744073709551615 (the token is real).
//! curl -X POST $SIM/__admin/script -d '{"target":"token","responses":[
//!   {"kind":"grant","expiresIn":18446744073709551615}]}'
//! curl -X POST $SIM/__admin/tokens/revoke              # every token now answers 401
//! curl -X PUT  $SIM/__admin/token-lifetime -d '{"secs":60}'
//! # At most 300 prompt calls a minute per OAuth client, whatever its tokens; then none.
//! curl -X PUT  $SIM/__admin/client-rate-limit -d '{"allowed":300,"windowSecs":60}'
//! curl -X DELETE $SIM/__admin/client-rate-limit
//! # At most 2 tokens a minute per OAuth client (GET shows the limit in force).
//! curl -X PUT  $SIM/__admin/token-rate-limit -d '{"allowed":2,"windowSecs":60,"retryAfter":"httpDate"}'
//! curl $SIM/__admin/token-rate-limit
//! curl -X PUT  $SIM/__admin/models/model-new           # add a model to the catalogue
//! curl -X DELETE $SIM/__admin/models/model-new         # and remove it
//! curl $SIM/__admin/requests                           # what was received
//! curl $SIM/__admin/counters                           # counts per endpoint and status
//! curl -X POST $SIM/__admin/reset                      # back to the start
//! ```
//!
//! The `{id}` of `models/{id}` and `models/{id}/behaviour` must be a model id
//! ([`gateway_model::MODEL_ID_PATTERN`], 1 to 128 characters, taken as written, not
//! percent-decoded); anything else is a 400 that changes nothing.

mod accept;
mod admin;
mod behaviour;
mod catalogue;
mod check;
mod limit;
mod locks;
mod oauth;
mod pki;
mod prompts;
mod record;
mod reply;
mod server;
mod service;
mod state;

pub use behaviour::{
    Behaviour, ErrorRate, Latency, PolicyRule, RateLimit, RetryAfter, RetryAfterStyle, Scripted,
    SlowBody, Target,
};
pub use check::{
    InputError, MAX_ADMIN_MODELS, MAX_BEHAVIOUR_RULES, MAX_BEHAVIOUR_TEXT, MAX_CONNECTION_TIMEOUT,
    MAX_HTTP_DATE_SECS, MAX_LIVE_TOKENS, MAX_OVERSIZED_BYTES, MAX_PENDING_SCRIPT_BYTES,
    MAX_PENDING_SCRIPTS, MAX_RAW_HEADERS, MAX_TOKEN_LIFETIME, MAX_WAIT_MS, MAX_WINDOW_SECS,
    MIN_TOKEN_LIFETIME,
};
pub use pki::TestPki;
pub use record::{Counters, MAX_RECORDED_BYTES, RecordedRequest};
pub use server::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_MAX_CONNECTIONS, DEFAULT_MODELS,
    DEFAULT_RECORD_CAPACITY, Sim, SimBuilder, SimError, SimHandle,
};
