//! `POST /v1/responses`, OpenAI's Responses API, driven by `async-openai`'s Responses
//! client (which parses every answer and event strictly) against the same door.

use async_openai::types::responses::{CreateResponse, ResponseStreamEvent, Status};
use futures_util::StreamExt;
use gateway_model::Outcome;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Door, KEY};

/// A request built as JSON and read by the client's own types, so what is sent is what
/// `async-openai` sends.
fn create(request: &Value) -> CreateResponse {
    serde_json::from_value(request.clone()).expect("a request async-openai can send")
}

/// A conversation with instructions and an earlier assistant turn sent back.
fn conversation(model: &str) -> Value {
    json!({
        "model": model,
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": "Where is my parcel?"},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
             "content": [{"type": "output_text", "text": "Which order?", "annotations": []}]},
            {"role": "user", "content": [{"type": "input_text", "text": "#42"}]}
        ],
        "temperature": 0.6
    })
}

#[tokio::test]
async fn a_response_renders_instructions_and_input_and_answers_as_openai_does() {
    let door = Door::start().await;
    let answer = door
        .client()
        .responses()
        .create(create(&conversation("reply")))
        .await
        .unwrap();

    let payloads = door.payloads();
    assert_eq!(payloads.len(), 1);
    let sent = &payloads[0];
    assert_eq!(
        sent["prompt"],
        "System: Be brief.\n\nUser: Where is my parcel?\n\nAssistant: Which order?\n\nUser: #42"
    );
    assert_eq!(sent["parameters"]["temperature"], 0.6);
    assert_eq!(answer.object, "response");
    assert_eq!(answer.status, Status::Completed);
    assert_eq!(answer.model, sent["modelId"].as_str().unwrap());
    let recorded = &door.sim.prompt_requests()[0];
    assert_eq!(
        Some(answer.id.as_str()),
        recorded
            .header("x-genesys-request-id")
            .map(|id| format!("resp_{id}"))
            .as_deref(),
        "the id is the router's request id"
    );
    let text = answer.output_text().unwrap();
    assert!(text.contains("Where is my parcel?"), "{text}");
    let usage = answer.usage.unwrap();
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
    assert_eq!(usage.total_tokens, usage.input_tokens + usage.output_tokens);

    // A plain string is one user message, sent as it is.
    let plain = create(&json!({"model": "summarize", "input": "Hello"}));
    door.client().responses().create(plain).await.unwrap();
    assert_eq!(door.payloads()[1]["prompt"], "Hello");

    // Every key OpenAI's specification requires of a `response` is there (null where it
    // allows null), for clients that check them.
    let (status, _, raw) = door
        .post(
            "/v1/responses",
            json!({"model": "summarize", "input": "Hello"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{raw}");
    for key in [
        "id",
        "object",
        "created_at",
        "status",
        "error",
        "incomplete_details",
        "instructions",
        "model",
        "output",
        "parallel_tool_calls",
        "metadata",
        "tool_choice",
        "tools",
        "temperature",
        "top_p",
    ] {
        assert!(raw.get(key).is_some(), "no `{key}`: {raw}");
    }
    // What the request did not give is null; what it gave is repeated, as OpenAI does.
    for key in ["instructions", "metadata", "temperature", "top_p"] {
        assert_eq!(raw[key], Value::Null, "{key}: {raw}");
    }
    let given = json!({"model": "summarize", "input": "Hello", "instructions": "Be brief.",
                       "metadata": {"ticket": "T-1"}, "temperature": 0.25, "top_p": 0.5});
    let (status, _, raw) = door.post("/v1/responses", given.clone()).await;
    assert_eq!(status, StatusCode::OK, "{raw}");
    for key in ["instructions", "metadata", "temperature", "top_p"] {
        assert_eq!(raw[key], given[key], "{key}: {raw}");
    }

    let entries = door.shutdown().await;
    assert_eq!(entries.len(), 4);
    assert!(entries.iter().all(|e| e.outcome == Outcome::Success));
    assert_eq!(entries[0].route, "reply");
}

/// The events of a streamed response of `request`, as the client parsed them.
async fn events(door: &Door, mut request: Value) -> Vec<ResponseStreamEvent> {
    request["stream"] = json!(true);
    let mut stream = door
        .client()
        .responses()
        .create_stream(create(&request))
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.unwrap());
    }
    events
}

/// An event's `type` and `sequence_number`.
fn name_and_number(event: &ResponseStreamEvent) -> (String, u64) {
    let value = serde_json::to_value(event).unwrap();
    (
        value["type"].as_str().unwrap().to_owned(),
        value["sequence_number"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn a_streamed_response_sends_openais_events_in_order_and_reassembles_to_the_answer() {
    let door = Door::start().await;
    let plain = door
        .client()
        .responses()
        .create(create(&conversation("summarize")))
        .await
        .unwrap();
    let events = events(&door, conversation("summarize")).await;

    let (names, numbers): (Vec<String>, Vec<u64>) = events.iter().map(name_and_number).unzip();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(numbers, (0..9).collect::<Vec<u64>>());
    let mut text = String::new();
    let mut last = None;
    for event in events {
        match event {
            ResponseStreamEvent::ResponseOutputTextDelta(delta) => text.push_str(&delta.delta),
            ResponseStreamEvent::ResponseCompleted(done) => last = Some(done.response),
            _ => {}
        }
    }
    let last = last.unwrap();
    assert_eq!(Some(text), plain.output_text());
    assert_eq!(last.output_text(), plain.output_text());
    assert_eq!(last.status, Status::Completed);
    assert_eq!(last.model, plain.model);
    assert_eq!(last.usage, plain.usage, "the last event carries the usage");
    let echoed = serde_json::to_value(&last).unwrap();
    assert_eq!(echoed["instructions"], "Be brief.", "{echoed}");
    // The client reads numbers as `f32`.
    let temperature = echoed["temperature"].as_f64().unwrap();
    assert!((temperature - 0.6).abs() < 1e-6, "{echoed}");
    door.shutdown().await;
}

#[tokio::test]
async fn an_answer_cut_at_the_token_limit_is_incomplete_and_says_why() {
    let door = Door::start().await;
    let cut = json!({"id": "x", "modelId": "model-gen-4", "output": "Your parcel is",
                     "finishReason": "length"});
    door.answer_next(&cut);
    let request = json!({"model": "summarize", "input": "Where?", "max_output_tokens": 4});
    let answer = door
        .client()
        .responses()
        .create(create(&request))
        .await
        .unwrap();
    assert_eq!(door.payloads()[0]["parameters"]["maxTokens"], 4);
    assert_eq!(answer.status, Status::Incomplete);
    let why = serde_json::to_value(answer.incomplete_details.unwrap()).unwrap();
    assert_eq!(why["reason"], "max_output_tokens");

    door.answer_next(&cut);
    let events = events(&door, request).await;
    match events.last().unwrap() {
        ResponseStreamEvent::ResponseIncomplete(last) => {
            assert_eq!(last.response.status, Status::Incomplete);
            assert_eq!(
                last.response.output_text().as_deref(),
                Some("Your parcel is")
            );
        }
        other => panic!("the stream ends with response.incomplete, not {other:?}"),
    }
    door.shutdown().await;
}

/// A one-line request to `reply` with the fields of `extra` set.
fn with(extra: &Value) -> Value {
    let mut body = json!({"model": "reply", "input": "hi"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// Requests the door refuses: the body, and the status, `param` and `code` it answers.
fn refusals() -> Vec<(Value, u16, &'static str, &'static str)> {
    let image = json!({"type": "input_image", "image_url": "https://example.invalid/a.png"});
    vec![
        (
            with(&json!({"model": "nope"})),
            404,
            "model",
            "model_not_found",
        ),
        (
            with(&json!({"tools": [{"type": "function", "name": "f"}]})),
            400,
            "tools",
            "unsupported_parameter",
        ),
        (
            with(&json!({"previous_response_id": "resp_1"})),
            400,
            "previous_response_id",
            "unsupported_parameter",
        ),
        (
            with(&json!({"store": true})),
            400,
            "store",
            "unsupported_parameter",
        ),
        (
            with(&json!({"text": {"format": {"type": "json_object"}}})),
            400,
            "text",
            "unsupported_parameter",
        ),
        (
            with(
                &json!({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}),
            ),
            400,
            "input[0].type",
            "unsupported_value",
        ),
        (
            with(&json!({"input": [{"role": "user", "content": [image]}]})),
            400,
            "input[0].content[0].type",
            "unsupported_value",
        ),
        (with(&json!({"input": []})), 400, "input", "invalid_value"),
        (
            with(&json!({"input": "x".repeat(8_001)})),
            400,
            "input",
            "context_length_exceeded",
        ),
        (
            with(&json!({"temperature": 0.5, "tuning": "low"})),
            400,
            "tuning",
            "conflicting_parameters",
        ),
        (
            with(&json!({"temperature": 1.5})),
            400,
            "temperature",
            "out_of_range",
        ),
        (
            with(&json!({"max_output_tokens": 100_000})),
            400,
            "max_output_tokens",
            "out_of_range",
        ),
        (
            json!({"model": "reply"}),
            400,
            "input",
            "missing_required_parameter",
        ),
        (with(&json!({"input": 42})), 400, "input", "invalid_type"),
        (
            with(&json!({"input": [{"role": "tool", "content": "x"}]})),
            400,
            "input[0].role",
            "invalid_type",
        ),
    ]
}

#[tokio::test]
async fn responses_requests_the_gateway_cannot_honour_are_refused_by_name() {
    let door = Door::start().await;
    let auth = [("authorization", format!("Bearer {KEY}"))];
    for (body, status, param, code) in refusals() {
        let (got, _, answer) = door
            .raw(Method::POST, "/v1/responses", &auth, Some(body.clone()))
            .await;
        assert_eq!(
            got,
            StatusCode::from_u16(status).unwrap(),
            "{body}: {answer}"
        );
        assert_eq!(answer["error"]["param"], param, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(!message.contains("enum"), "no Rust type in {message}");
    }
    // Store off, a plain text format and nulls are what SDKs send by default.
    let neutral = with(
        &json!({"store": false, "text": {"format": {"type": "text"}},
                               "tools": null, "parallel_tool_calls": false}),
    );
    let (ok, _, _) = door
        .raw(Method::POST, "/v1/responses", &auth, Some(neutral))
        .await;
    assert_eq!(ok, StatusCode::OK);
    assert_eq!(
        door.payloads().len(),
        1,
        "nothing refused reached the gateway"
    );
    door.shutdown().await;
}

#[tokio::test]
async fn with_api_keys_a_request_carrying_origin_is_judged_by_its_key_alone() {
    let door = Door::start().await;
    let body = json!({"model": "summarize", "input": "hi"});
    let with_key = [
        ("authorization", format!("Bearer {KEY}")),
        ("origin", "https://app.example".to_owned()),
    ];
    let (status, _, _) = door
        .raw(Method::POST, "/v1/responses", &with_key, Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, answer) = door
        .raw(Method::POST, "/v1/responses", &with_key[1..], Some(body))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    door.shutdown().await;
}

#[tokio::test]
async fn fetching_a_response_again_says_none_is_stored() {
    let door = Door::start().await;
    let auth = [("authorization", format!("Bearer {KEY}"))];
    let (status, _, answer) = door
        .raw::<String>(Method::GET, "/v1/responses/resp_1", &auth, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("not stored"), "{message}");
    door.shutdown().await;
}
