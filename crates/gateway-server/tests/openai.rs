//! The OpenAI-compatible door, driven by a real third-party OpenAI client (`async-openai`)
//! against a real sidecar backed by the simulator, with a real audit file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestMessageContentPartImage,
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    ChatCompletionRequestUserMessageContent, ChatCompletionRequestUserMessageContentPart,
    ChatCompletionStreamOptions, CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
    CreateChatCompletionStreamResponse, FinishReason, ImageUrl,
};
use bytes::Bytes;
use futures_util::StreamExt;
use gateway_auth::Credentials;
use gateway_model::{
    EnvironmentConfig, Outcome, RouteConfig, RouterConfig, SplitEntry, TemperatureMatrix,
};
use gateway_router::Router;
use gateway_server::{ApiKeys, Sidecar, SidecarOptions};
use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Scripted, Sim, SimHandle, Target};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

mod openai_contract;
mod openai_responses;

const KEY: &str = "k-openai-test";

/// A sidecar with two routes: `reply` splits 50/50 between two models with the band
/// 0.2..=0.8, `summarize` goes to one model.
struct Door {
    sim: SimHandle,
    sidecar: Sidecar,
    audit: PathBuf,
    _dir: tempfile::TempDir,
}

impl Door {
    async fn start() -> Self {
        let sim = Sim::builder().start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit.jsonl");
        let reply = RouteConfig {
            model: None,
            split: vec![
                SplitEntry {
                    model: "model-gen-4".into(),
                    weight: 50,
                },
                SplitEntry {
                    model: "model-gen-5".into(),
                    weight: 50,
                },
            ],
            temperature: TemperatureMatrix {
                low: 0.2,
                default: 0.5,
                high: 0.8,
            },
            ..RouteConfig::default()
        };
        let mut config = RouterConfig::new(EnvironmentConfig::at(sim.base_url()))
            .with_route("reply", reply)
            .with_route("summarize", RouteConfig::to_model("model-gen-4"));
        config.audit.file = audit.clone();
        config.retry.max_attempts = 1;
        let router = Router::builder(config)
            .credentials(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
            .build()
            .await
            .unwrap();
        let options = SidecarOptions {
            api_keys: ApiKeys::parse(KEY),
            ..SidecarOptions::default()
        };
        let sidecar = Sidecar::start_with(router, None, "127.0.0.1:0".parse().unwrap(), options)
            .await
            .unwrap();
        Self {
            sim,
            sidecar,
            audit,
            _dir: dir,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.sidecar.addr())
    }

    fn client(&self) -> Client<OpenAIConfig> {
        self.client_with_key(KEY)
    }

    fn client_with_key(&self, key: &str) -> Client<OpenAIConfig> {
        Client::with_config(
            OpenAIConfig::new()
                .with_api_base(self.base_url())
                .with_api_key(key),
        )
    }

    /// The JSON payloads the simulator received, in order.
    fn payloads(&self) -> Vec<Value> {
        self.sim
            .prompt_requests()
            .iter()
            .map(|r| r.json().expect("a JSON payload"))
            .collect()
    }

    /// Sends `body` as JSON to `path` with `headers`: the status, headers and JSON body.
    async fn raw<V: AsRef<[u8]>>(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, V)],
        body: Option<Value>,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.sidecar.addr()));
        for (name, value) in headers {
            let value = http::HeaderValue::from_bytes(value.as_ref()).unwrap();
            request = request.header(*name, value);
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let response = client
            .request(request.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, parts.headers, json)
    }

    /// POSTs `body` as JSON to `path` with the door's API key.
    async fn post(&self, path: &str, body: Value) -> (StatusCode, http::HeaderMap, Value) {
        let auth = format!("Bearer {KEY}");
        self.raw(Method::POST, path, &[("authorization", &auth)], Some(body))
            .await
    }

    /// A one-line chat call to `summarize` after model-gen-4's next answer is `answer`.
    async fn chat_after(&self, answer: Scripted) -> (StatusCode, http::HeaderMap, Value) {
        self.sim.script(Target::model("model-gen-4"), [answer]);
        let chat = json!({"model": "summarize", "messages": [{"role": "user", "content": "hi"}]});
        self.post("/v1/chat/completions", chat).await
    }

    /// Scripts the gateway's next answer: a 200 with `body` as it is.
    fn answer_next(&self, body: &Value) {
        self.sim.script(
            Target::Global,
            [Scripted::Raw {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.to_string(),
            }],
        );
    }

    /// The chunks of a streamed completion of `reply` that asks for usage.
    async fn stream_with_usage(&self) -> Vec<CreateChatCompletionStreamResponse> {
        let request = conversation("reply")
            .stream_options(ChatCompletionStreamOptions {
                include_usage: Some(true),
                include_obfuscation: None,
            })
            .build()
            .unwrap();
        let mut stream = self.client().chat().create_stream(request).await.unwrap();
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.next().await {
            chunks.push(chunk.unwrap());
        }
        chunks
    }

    async fn shutdown(self) -> Vec<gateway_model::AuditEntry> {
        self.sidecar.shutdown().await.unwrap();
        audit_entries(&self.audit)
    }
}

fn audit_entries(path: &Path) -> Vec<gateway_model::AuditEntry> {
    gateway_audit::read_jsonl(path).unwrap().entries
}

fn user(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestUserMessageArgs::default()
        .content(text)
        .build()
        .unwrap()
        .into()
}

fn system(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestSystemMessageArgs::default()
        .content(text)
        .build()
        .unwrap()
        .into()
}

fn conversation(model: &str) -> CreateChatCompletionRequestArgs {
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model(model)
        .messages([system("Be brief."), user("Where is my parcel?")])
        .user("conversation-7f3a");
    args
}

/// The API error of a refused call: status, `param`, `code`, `type`.
fn api_error(
    result: Result<impl std::fmt::Debug, OpenAIError>,
) -> (u16, Option<String>, Option<String>, Option<String>) {
    match result {
        Err(OpenAIError::ApiError(e)) => (
            e.status_code.as_u16(),
            e.api_error.param,
            e.api_error.code,
            e.api_error.r#type,
        ),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_plain_completion_renders_the_conversation_and_answers_as_openai_does() {
    let door = Door::start().await;
    let request = conversation("reply").temperature(0.6).build().unwrap();
    let answer = door.client().chat().create(request).await.unwrap();

    let payloads = door.payloads();
    assert_eq!(payloads.len(), 1);
    let sent = &payloads[0];
    assert_eq!(
        sent["prompt"],
        "System: Be brief.\n\nUser: Where is my parcel?"
    );
    assert_eq!(sent["parameters"]["temperature"], 0.6);
    assert_eq!(answer.object, "chat.completion");
    assert_eq!(
        answer.model,
        sent["modelId"].as_str().unwrap(),
        "the served model"
    );
    let recorded = &door.sim.prompt_requests()[0];
    assert_eq!(
        Some(answer.id.as_str()),
        recorded.header("x-genesys-request-id"),
        "the id is the router's request id"
    );
    let choice = &answer.choices[0];
    let content = choice.message.content.as_deref().unwrap();
    assert!(content.contains("Where is my parcel?"), "{content}");
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    let usage = answer.usage.unwrap();
    assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );

    let entries = door.shutdown().await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].outcome, Outcome::Success);
    assert_eq!(entries[0].route, "reply");
}

#[tokio::test]
async fn a_streamed_completion_reassembles_to_the_plain_answer_and_ends_with_usage() {
    let door = Door::start().await;
    let plain = door
        .client()
        .chat()
        .create(conversation("reply").build().unwrap())
        .await
        .unwrap();

    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    let mut ids = BTreeSet::new();
    for chunk in door.stream_with_usage().await {
        assert_eq!(chunk.model, plain.model);
        ids.insert(chunk.id.clone());
        for choice in &chunk.choices {
            text.push_str(choice.delta.content.as_deref().unwrap_or_default());
            finish = finish.or(choice.finish_reason);
        }
        usage = usage.or(chunk.usage);
    }
    assert_eq!(
        Some(text.as_str()),
        plain.choices[0].message.content.as_deref()
    );
    assert_eq!(finish, Some(FinishReason::Stop));
    assert_eq!(ids.len(), 1, "every chunk carries the same id");
    assert_eq!(usage, plain.usage, "the last chunk carries the usage");
    door.shutdown().await;
}

#[tokio::test]
async fn a_stream_asked_for_usage_the_gateway_did_not_report_says_null_not_zero() {
    let door = Door::start().await;
    door.answer_next(&json!({"id": "x", "modelId": "model-gen-4", "output": "o"}));
    let chunks = door.stream_with_usage().await;
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty(), "the usage chunk comes last");
    assert_eq!(last.usage, None);
    assert!(chunks.iter().all(|c| c.usage.is_none()));
    door.shutdown().await;
}

#[tokio::test]
async fn the_routes_are_the_models() {
    let door = Door::start().await;
    let models = door.client().models().list().await.unwrap();
    let ids: Vec<&str> = models.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["reply", "summarize"]);
    assert!(models.data.iter().all(|m| m.owned_by == "genesys-router"));
    let one = door.client().models().retrieve("summarize").await.unwrap();
    assert_eq!(one.id, "summarize");
    let (status, param, code, _) = api_error(door.client().models().retrieve("nope").await);
    assert_eq!(
        (status, param.as_deref(), code.as_deref()),
        (404, Some("model"), Some("model_not_found"))
    );
    door.shutdown().await;
}

#[tokio::test]
async fn refused_requests_name_the_parameter_and_never_reach_the_gateway() {
    let door = Door::start().await;
    let client = door.client();
    let image = ChatCompletionRequestUserMessageArgs::default()
        .content(ChatCompletionRequestUserMessageContent::Array(vec![
            ChatCompletionRequestUserMessageContentPart::ImageUrl(
                ChatCompletionRequestMessageContentPartImage {
                    image_url: ImageUrl {
                        url: "https://example.invalid/a.png".into(),
                        detail: None,
                    },
                    prompt_cache_breakpoint: None,
                },
            ),
        ]))
        .build()
        .unwrap();
    let two_halves = "x".repeat(3_995);
    let cases: Vec<(&str, CreateChatCompletionRequest, u16, &str, &str)> = vec![
        (
            "an unknown model",
            conversation("nope").build().unwrap(),
            404,
            "model",
            "model_not_found",
        ),
        (
            "a temperature outside the route's band",
            conversation("reply").temperature(1.5).build().unwrap(),
            400,
            "temperature",
            "out_of_range",
        ),
        (
            "a prompt over 8,000 characters",
            conversation("reply")
                .messages([user(&"x".repeat(8_001))])
                .build()
                .unwrap(),
            400,
            "messages",
            "context_length_exceeded",
        ),
        (
            "two messages that fit alone but not rendered together",
            conversation("reply")
                .messages([user(&two_halves), user(&two_halves)])
                .build()
                .unwrap(),
            400,
            "messages",
            "context_length_exceeded",
        ),
        (
            "more than one choice",
            conversation("reply").n(2).build().unwrap(),
            400,
            "n",
            "unsupported_parameter",
        ),
        (
            "an image part",
            conversation("reply")
                .messages([image.into()])
                .build()
                .unwrap(),
            400,
            "messages[0].content[0].type",
            "unsupported_value",
        ),
        (
            "a token limit above the route's cap",
            conversation("reply")
                .max_completion_tokens(100_000_u32)
                .build()
                .unwrap(),
            400,
            "max_completion_tokens",
            "out_of_range",
        ),
    ];
    for (what, request, status, param, code) in cases {
        let (got_status, got_param, got_code, kind) =
            api_error(client.chat().create(request).await);
        assert_eq!(
            (got_status, got_param.as_deref(), got_code.as_deref()),
            (status, Some(param), Some(code)),
            "{what}"
        );
        // OpenAI's class for every 4xx but 429, an unknown model's 404 too.
        assert_eq!(kind.as_deref(), Some("invalid_request_error"), "{what}");
    }
    assert!(
        door.payloads().is_empty(),
        "nothing refused reached the gateway"
    );
    door.shutdown().await;
}

#[tokio::test]
async fn the_audit_entry_of_a_refused_request_keeps_the_labels_a_valid_request_can_carry() {
    use gateway_model::{
        AuditEntry, FormatCheck, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_CHARS,
        MAX_METADATA_VALUE_CHARS,
    };
    let door = Door::start().await;
    let mut many: serde_json::Map<String, Value> = (0..=MAX_METADATA_ENTRIES)
        .map(|n| (format!("k{n:02}"), json!("v".repeat(10_000))))
        .collect();
    for key in [
        "a".repeat(200),
        "\u{0}".into(),
        "ключ".into(),
        String::new(),
    ] {
        many.insert(key, json!("x"));
    }
    let auth = format!("Bearer {KEY}");
    let (status, _, body) = door
        .raw(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", &auth)],
            Some(json!({"model": "reply", "messages": [{"role": "user", "content": "hi"}], "metadata": many})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The Genesys door refuses the same labels, and an over-long prompt, the same way.
    for request in [
        json!({"route": "reply", "prompt": "hi", "metadata": many}),
        json!({"route": "reply", "prompt": "p".repeat(9_000)}),
    ] {
        let (status, _, body) = door
            .raw(
                Method::POST,
                "/v1/route",
                &[("authorization", &auth)],
                Some(request),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], "router.invalid.request", "{body}");
    }
    assert!(door.payloads().is_empty());
    let entries = door.shutdown().await;
    assert_eq!(entries.len(), 3, "each door audits the request it refuses");
    let schema = FormatCheck::for_type::<AuditEntry>();
    for entry in &entries {
        let json = serde_json::to_value(entry).unwrap();
        assert!(schema.is_valid(&json), "{json:#}");
        assert_eq!(json["requestId"], "", "no model was tried");
    }
    assert_eq!(entries[2].prompt_chars, 9_000);
    for labels in [&entries[0].metadata, &entries[1].metadata] {
        assert_eq!(labels.len(), MAX_METADATA_ENTRIES);
        for (key, value) in labels {
            assert!(key.starts_with('k') && key.len() == 3, "{key}");
            assert!(key.chars().count() <= MAX_METADATA_KEY_CHARS);
            assert_eq!(value.chars().count(), MAX_METADATA_VALUE_CHARS);
        }
    }
}

#[tokio::test]
async fn a_served_model_id_of_any_length_comes_back_cut_as_the_audit_keeps_it() {
    use gateway_model::MAX_UPSTREAM_TEXT_CHARS;
    let door = Door::start().await;
    let long = "m".repeat(100_000);
    door.answer_next(&json!({"id": "x", "modelId": long, "output": "o"}));
    let (status, headers, answer) = door
        .raw(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", &format!("Bearer {KEY}"))],
            Some(json!({"model": "reply", "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let model = answer["model"].as_str().unwrap();
    assert_eq!(model.chars().count(), MAX_UPSTREAM_TEXT_CHARS);
    assert!(model.ends_with('…'));
    let header = headers.get("x-genesys-router-model");
    assert!(
        header.is_none_or(|h| h.len() <= 4 * MAX_UPSTREAM_TEXT_CHARS),
        "{header:?}"
    );
    let entries = door.shutdown().await;
    assert_eq!(entries[0].served_model.as_ref().unwrap().as_str(), model);
}

#[tokio::test]
async fn the_band_is_named_and_tuning_picks_the_routes_temperature() {
    let door = Door::start().await;
    let (status, headers, body) = door
        .raw(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", &format!("Bearer {KEY}"))],
            Some(json!({"model": "reply", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.9})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A refused call names its route too (the access log reads it).
    assert_eq!(headers["x-genesys-router-route"], "reply");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("0.2..=0.8"), "{message}");

    let (status, _, body) = door
        .raw(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", &format!("Bearer {KEY}"))],
            Some(json!({"model": "reply", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5, "tuning": "high"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "tuning");
    assert_eq!(body["error"]["code"], "conflicting_parameters");
    assert!(door.payloads().is_empty());

    let (status, headers, body) = door
        .raw(
            Method::POST,
            "/v1/chat/completions",
            &[
                ("authorization", format!("Bearer {KEY}").as_str()),
                ("x-request-id", "caller-7"),
            ],
            Some(json!({"model": "reply", "messages": [{"role": "user", "content": "hi"}], "tuning": "high"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(door.payloads()[0]["parameters"]["temperature"], 0.8);
    assert_eq!(headers["x-genesys-router-route"], "reply");
    assert_eq!(
        headers["x-genesys-router-model"],
        body["model"].as_str().unwrap()
    );
    assert_eq!(headers["x-genesys-router-fallbacks"], "0");
    assert_eq!(headers["x-request-id"], "caller-7");
    let entries = door.shutdown().await;
    let answered: Vec<_> = entries
        .iter()
        .filter(|e| e.outcome == Outcome::Success)
        .collect();
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].caller_request_id.as_deref(), Some("caller-7"));
}

#[tokio::test]
async fn the_same_user_always_reaches_the_same_model() {
    let door = Door::start().await;
    let client = door.client();
    let mut served = BTreeSet::new();
    for n in 0..8 {
        let user = format!("conversation-{n}");
        let mut models = BTreeSet::new();
        for _ in 0..3 {
            let request = conversation("reply").user(user.as_str()).build().unwrap();
            models.insert(client.chat().create(request).await.unwrap().model);
        }
        assert_eq!(
            models.len(),
            1,
            "{user} always reaches one model: {models:?}"
        );
        served.extend(models);
    }
    assert_eq!(
        served.len(),
        2,
        "different users reach both models of the split"
    );

    // A key that is not text, is empty or comes twice is refused, not dropped or picked
    // (which would reach a model the caller did not mean).
    let auth = format!("Bearer {KEY}");
    let keys: [&[&[u8]]; 3] = [
        &[b"\xff\xfe"],
        &[b""],
        &[b"conversation-0", b"conversation-1"],
    ];
    for sent in keys {
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("authorization", auth.as_bytes()),
            ("content-type", b"application/json"),
        ];
        headers.extend(sent.iter().map(|key| ("x-sticky-key", *key)));
        let chat = json!({"model": "reply", "messages": [{"role": "user", "content": "hi"}]});
        let (status, _, body) = door
            .raw(Method::POST, "/v1/chat/completions", &headers, Some(chat))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["param"], "X-Sticky-Key", "{body}");
    }

    // An `X-Sticky-Key` header wins over `user`.
    let keyed = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(door.base_url())
            .with_api_key(KEY)
            .with_header("x-sticky-key", "conversation-0")
            .unwrap(),
    );
    let by_user = client
        .chat()
        .create(
            conversation("reply")
                .user("conversation-0")
                .build()
                .unwrap(),
        )
        .await
        .unwrap()
        .model;
    for n in 1..4 {
        let request = conversation("reply")
            .user(format!("someone-{n}"))
            .build()
            .unwrap();
        assert_eq!(keyed.chat().create(request).await.unwrap().model, by_user);
    }
    door.shutdown().await;
}

#[tokio::test]
async fn a_missing_or_wrong_api_key_is_an_openai_authentication_error() {
    let door = Door::start().await;
    let (status, _, code, kind) = api_error(
        door.client_with_key("k-wrong")
            .chat()
            .create(conversation("reply").build().unwrap())
            .await,
    );
    assert_eq!(status, 401);
    assert_eq!(code.as_deref(), Some("invalid_api_key"));
    assert_eq!(kind.as_deref(), Some("invalid_request_error"));
    let (status, ..) = api_error(door.client_with_key("k-wrong").models().list().await);
    assert_eq!(status, 401, "the models list is behind the keys too");

    let (status, headers, body) = door
        .raw(
            Method::POST,
            "/v1/chat/completions",
            &[] as &[(&str, &str)],
            Some(json!({"model": "reply", "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"].as_object().unwrap().contains_key("param"));

    // Two keys, even a right one beside a wrong one, are a malformed request.
    let (right, wrong) = (format!("Bearer {KEY}"), "Bearer k-wrong".to_owned());
    let (status, headers, body) = door
        .raw(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", &right), ("authorization", &wrong)],
            Some(json!({"model": "reply", "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        headers["www-authenticate"],
        r#"Bearer error="invalid_request""#
    );
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
    assert!(door.payloads().is_empty());
    door.shutdown().await;
}

#[tokio::test]
async fn many_mistakes_are_counted_before_the_first_are_named() {
    let door = Door::start().await;
    let auth = format!("Bearer {KEY}");
    let metadata: serde_json::Map<String, Value> =
        (0..100).map(|i| (format!("!{i}"), json!(""))).collect();
    let (status, _, body) = door
        .raw(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", &auth)],
            Some(json!({
                "model": "reply",
                "messages": [{"role": "user", "content": "hi"}],
                "metadata": metadata,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("101 problems, the first 64: `metadata`"),
        "{message}"
    );
}

/// A label the gateway cannot carry is named by its key: OpenAI takes any key, the
/// gateway only `[A-Za-z0-9_.-]`.
#[tokio::test]
async fn a_label_the_gateway_cannot_carry_is_named_by_its_key() {
    let door = Door::start().await;
    let (status, _, body) = door
        .post(
            "/v1/chat/completions",
            json!({
                "model": "reply",
                "messages": [{"role": "user", "content": "hi"}],
                "metadata": {"tenant": "t1", "user/id": "u"},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "metadata.user/id", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("^[A-Za-z0-9_.-]+$"), "{message}");
    assert!(door.payloads().is_empty());
    door.shutdown().await;
}

/// A body of more JSON values than the door keeps (each a `serde_json::Value` of about
/// 80 bytes, however short its JSON) is refused before it is parsed, by either door.
#[tokio::test]
async fn a_body_of_too_many_json_values_is_refused_before_it_is_read() {
    let door = Door::start().await;
    let many = vec![json!({}); 120_000];
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "reply", "messages": [{"role": "user", "content": many}]}),
        ),
        ("/v1/responses", json!({"model": "reply", "input": many})),
    ] {
        let (status, _, body) = door.post(path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "too_many_values", "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("more than 100000 JSON values"),
            "{message}"
        );
    }
    assert!(door.payloads().is_empty());
}

#[tokio::test]
async fn the_doors_own_errors_keep_openais_shape() {
    let door = Door::start().await;
    let auth = format!("Bearer {KEY}");
    let (status, headers, body) = door
        .raw(
            Method::GET,
            "/v1/chat/completions",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (status, _, body) = door
        .raw(
            Method::POST,
            "/v1/embeddings",
            &[("authorization", &auth)],
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "unknown_url");
    // A model name that does not decode to text gets OpenAI's error shape too.
    let (status, _, body) = door
        .raw(
            Method::GET,
            "/v1/models/%ff%fe",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "model", "{body}");
    let (status, _, body) = door
        .raw(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", &auth)],
            Some(json!([1])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let huge = json!({"model": "summarize", "messages": [{"role": "user", "content": "x".repeat(1_100_000)}]});
    let (status, _, body) = door
        .raw(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", &auth)],
            Some(huge),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "request_too_large");

    // A compressed body is refused as such on both doors, not read as broken JSON.
    let gzip = [
        ("authorization", auth.as_str()),
        ("content-encoding", "gzip"),
    ];
    let chat = json!({"model": "summarize", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, body) = door
        .raw(Method::POST, "/v1/chat/completions", &gzip, Some(chat))
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_content_encoding");
    let (status, _, body) = door
        .raw(
            Method::POST,
            "/v1/route",
            &gzip,
            Some(json!({"route": "summarize", "prompt": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["code"], "router.body.encoded");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Content-Encoding: gzip"),
        "{body}"
    );

    // Every model refusing on policy is OpenAI's content policy error.
    let (status, _, body) = door.chat_after(Scripted::PolicyViolation).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "content_policy_violation");

    // Every model rate limited is a 429 with Retry-After.
    let (status, headers, body) = door
        .chat_after(Scripted::Status {
            status: 429,
            code: None,
        })
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["type"], "requests");
    assert!(headers.contains_key("retry-after"));

    door.shutdown().await;
}

/// A route whose every model is unavailable for longer than the router waits ends in a
/// 502 that passes the gateway's `Retry-After` on, and says why it stopped.
#[tokio::test]
async fn a_route_whose_every_model_is_unavailable_passes_the_gateways_retry_after_on() {
    let door = Door::start().await;
    let (status, headers, body) = door
        .chat_after(Scripted::Raw {
            status: 503,
            headers: vec![("retry-after".into(), "600".into())],
            body: String::new(),
        })
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(headers["retry-after"], "600");
    // Longer than OpenAI's SDKs wait out: they would retry within seconds instead.
    assert_eq!(headers["x-should-retry"], "false");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 503 Service Unavailable; retry after 600s"),
        "{body}"
    );
    door.shutdown().await;
}

/// OpenAI's SDKs retry any 5xx twice unless the answer says `x-should-retry: false`. A
/// failure the router knows will not pass by trying again (the gateway refusing its
/// credentials after a refresh) says so; one that may pass says `true`.
#[tokio::test]
async fn each_failure_tells_the_sdks_whether_to_retry() {
    let door = Door::start().await;
    let refused = Scripted::Status {
        status: 401,
        code: None,
    };
    door.sim
        .script(Target::model("model-gen-4"), [refused.clone(), refused]);
    let auth = format!("Bearer {KEY}");
    let (status, headers, body) = door
        .raw(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", &auth)],
            Some(json!({"model": "summarize", "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    assert!(status.is_server_error(), "{status} {body}");
    assert_eq!(headers["x-should-retry"], "false", "{body}");

    let (status, headers, body) = door
        .chat_after(Scripted::Status {
            status: 503,
            code: None,
        })
        .await;
    assert!(status.is_server_error(), "{status} {body}");
    assert_eq!(headers["x-should-retry"], "true", "{body}");
    door.shutdown().await;
}

/// A route whose every model is restricted ends in an error OpenAI's SDKs do not retry,
/// and no Retry-After invites a retry either.
#[tokio::test]
async fn a_route_whose_every_model_is_restricted_is_not_an_error_to_retry() {
    let door = Door::start().await;
    let (status, headers, body) = door
        .chat_after(Scripted::Status {
            status: 403,
            code: Some("ai.model.restricted".into()),
        })
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "permission_denied");
    assert!(!headers.contains_key("retry-after"), "{headers:?}");
    door.shutdown().await;
}

#[tokio::test]
async fn a_client_that_drops_a_stream_still_leaves_an_audit_entry() {
    let door = Door::start().await;
    // Dropped after the first chunk.
    let mut stream = door
        .client()
        .chat()
        .create_stream(conversation("reply").build().unwrap())
        .await
        .unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    drop(stream);

    // Dropped while the call is still at the gateway, before the first byte.
    door.sim
        .script(Target::model("model-gen-4"), [Scripted::Delay { ms: 300 }]);
    let url = format!("http://{}/v1/chat/completions", door.sidecar.addr());
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::post(url)
        .header("authorization", format!("Bearer {KEY}"))
        .body(Full::new(Bytes::from(
            json!({"model": "summarize", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )))
        .unwrap();
    let waiting = tokio::spawn(async move { client.request(request).await });
    // Wait (bounded) for the call to reach the simulator, then hang up.
    let mut reached = false;
    for _ in 0..100_000 {
        if door.sim.prompt_requests().len() == 2 {
            reached = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(reached, "the second call reached the simulator");
    waiting.abort();

    let entries = door.shutdown().await;
    assert_eq!(entries.len(), 2, "both calls are audited");
    assert!(
        entries.iter().all(|e| e.outcome == Outcome::Success),
        "{entries:?}"
    );
}
