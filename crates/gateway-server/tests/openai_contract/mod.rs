//! The door's errors name what the caller sent, in OpenAI's words, and follow the rules
//! `/v1/route` follows (regressions of a review of the door).

use gateway_sim::{Scripted, Target};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::Door;

/// One user message.
fn hi() -> Value {
    json!([{"role": "user", "content": "x"}])
}

/// Regression: `serde_json` reads a name of the wrong JSON type (`"role": 5`) as a
/// syntax error, so a well-formed body was answered "the body is not JSON", naming
/// nothing, where `/v1/route` names the field.
#[tokio::test]
async fn a_name_of_the_wrong_type_is_named_not_called_bad_json() {
    let door = Door::start().await;
    for (path, body, param) in [
        (
            "/v1/chat/completions",
            json!({"model": "summarize", "messages": [{"role": 5, "content": "x"}]}),
            "messages[0].role",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "summarize", "messages": [{"role": null, "content": "x"}]}),
            "messages[0].role",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "summarize", "messages": hi(), "tuning": 5}),
            "tuning",
        ),
        (
            "/v1/responses",
            json!({"model": "summarize", "input": "x", "tuning": true}),
            "tuning",
        ),
    ] {
        let (status, _, json) = door.post(path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["error"]["param"], param, "{body}: {json}");
        assert_eq!(json["error"]["code"], "invalid_type", "{body}: {json}");
    }
    // A body that is not JSON is still said to be so.
    let (status, _, json) = door
        .raw(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", &format!("Bearer {}", super::KEY))],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["error"]["code"], "invalid_json", "{json}");
    door.shutdown().await;
}

/// Regression: an input item whose `role` is null was named as the item, `invalid_type`;
/// and a Chat Completions message's `name` and `refusal`, which a Responses item does not
/// have, were taken into the prompt.
#[tokio::test]
async fn a_responses_item_is_read_by_the_responses_rules() {
    let door = Door::start().await;
    for (input, param, code) in [
        (
            json!([{"role": null, "content": "x"}]),
            "input[0].role",
            "missing_required_parameter",
        ),
        (
            json!([{"role": "user", "content": "hi", "name": "bob"}]),
            "input[0].name",
            "unsupported_parameter",
        ),
        (
            json!([{"role": "user", "content": "x"}, {"role": "assistant", "content": "hi", "refusal": "no"}]),
            "input[1].refusal",
            "unsupported_parameter",
        ),
    ] {
        let body = json!({"model": "summarize", "input": input});
        let (status, _, json) = door.post("/v1/responses", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}: {json}");
        assert_eq!(json["error"]["param"], param, "{input}: {json}");
        assert_eq!(json["error"]["code"], code, "{input}: {json}");
    }
    assert!(door.payloads().is_empty(), "nothing refused was sent");
    door.shutdown().await;
}

/// Regression: the chat door refused `verbosity: "medium"`, the default the Responses
/// door takes as `text.verbosity`.
#[tokio::test]
async fn the_default_verbosity_is_taken_by_both_doors() {
    let door = Door::start().await;
    let (status, _, json) = door
        .post(
            "/v1/responses",
            json!({"model": "summarize", "input": "x", "text": {"verbosity": "medium"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let chat =
        |verbosity: &str| json!({"model": "summarize", "messages": hi(), "verbosity": verbosity});
    let (status, _, json) = door.post("/v1/chat/completions", chat("medium")).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (status, _, json) = door.post("/v1/chat/completions", chat("low")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["error"]["param"], "verbosity", "{json}");
    door.shutdown().await;
}

/// Regression: the door answered Anthropic's error classes (`authentication_error`,
/// `not_found_error`, `api_error`), which OpenAI's API never sends.
#[tokio::test]
async fn error_classes_are_openais() {
    let door = Door::start().await;
    let (status, _, json) = door
        .raw(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", "Bearer wrong-key-wrong-key")],
            Some(json!({"model": "summarize", "messages": hi()})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"]["type"], "invalid_request_error", "{json}");
    let (status, _, json) = door
        .post(
            "/v1/chat/completions",
            json!({"model": "nope", "messages": hi()}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"]["type"], "invalid_request_error", "{json}");
    let (status, _, json) = door
        .chat_after(Scripted::Status {
            status: 500,
            code: None,
        })
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(json["error"]["type"], "server_error", "{json}");
    door.shutdown().await;
}

/// Regression: an empty `user`, an optional parameter, was said to be required.
#[tokio::test]
async fn an_empty_sticky_key_is_refused_as_empty_not_as_missing() {
    let door = Door::start().await;
    let (status, _, json) = door
        .post(
            "/v1/chat/completions",
            json!({"model": "summarize", "messages": hi(), "user": ""}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["error"]["param"], "user", "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("must not be empty when given") && !message.contains("required"),
        "{message}"
    );
    door.shutdown().await;
}

/// Regression: the door made up `Retry-After: 1` for a gateway failure that said
/// nothing of when to come back, where `/v1/route` (and the OpenAPI document) send none,
/// so the SDKs retried the whole routed call after exactly a second.
#[tokio::test]
async fn a_502_says_when_to_come_back_as_route_does() {
    let door = Door::start().await;
    let failed = Scripted::Status {
        status: 500,
        code: None,
    };
    let (status, headers, json) = door.chat_after(failed.clone()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{json}");
    let openai = headers.get("retry-after").cloned();
    door.sim.script(Target::model("model-gen-4"), [failed]);
    let (status, headers, json) = door
        .post("/v1/route", json!({"route": "summarize", "prompt": "hi"}))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{json}");
    assert_eq!(openai, None);
    assert_eq!(headers.get("retry-after"), None);
    door.shutdown().await;
}

/// The headers the OpenAPI document promises on the door's answers are on them (the
/// document listed none).
#[tokio::test]
async fn the_documented_headers_are_on_the_answers() {
    let door = Door::start().await;
    let document = gateway_server::openapi::document();
    let documented = |status: &str| -> Vec<String> {
        document["paths"]["/v1/chat/completions"]["post"]["responses"][status]["headers"]
            .as_object()
            .map(|h| h.keys().cloned().collect())
            .unwrap_or_default()
    };
    let (status, headers, json) = door
        .post(
            "/v1/chat/completions",
            json!({"model": "summarize", "messages": hi()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let ok = documented("200");
    assert_eq!(ok.len(), 4, "{ok:?}");
    for name in ok {
        assert!(
            headers.contains_key(name.as_str()),
            "no {name}: {headers:?}"
        );
    }
    let (status, headers, json) = door
        .chat_after(Scripted::Status {
            status: 500,
            code: None,
        })
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{json}");
    // Retry-After is documented on a 502 only when the gateway said when.
    for name in documented("502").iter().filter(|n| *n != "retry-after") {
        assert!(
            headers.contains_key(name.as_str()),
            "no {name}: {headers:?}"
        );
    }
    door.shutdown().await;
}
