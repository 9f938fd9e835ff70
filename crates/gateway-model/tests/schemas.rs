//! The exported schemas themselves: valid draft 2020-12, compilable, deterministic, and
//! in agreement with what the Rust types serialise.

use gateway_model::schema::{FormatCheck, SCHEMAS, entry, render, schema_for};
use gateway_model::{
    EnvironmentConfig, GatewayPayload, RouteConfig, RouterConfig, SplitEntry, Validate,
    payload_format,
};

#[test]
fn every_schema_is_valid_draft_2020_12_and_compiles() {
    for e in SCHEMAS {
        let schema = e.schema();
        assert_eq!(
            schema.as_value()["$schema"],
            "https://json-schema.org/draft/2020-12/schema",
            "{}",
            e.name
        );
        if let Err(err) = jsonschema::draft202012::meta::validate(schema.as_value()) {
            panic!("{} is not a valid 2020-12 schema: {err}", e.name);
        }
        let _ = FormatCheck::new(&schema);
    }
}

#[test]
fn rendering_is_deterministic_with_a_trailing_newline() {
    for e in SCHEMAS {
        let a = e.render();
        assert_eq!(a, e.render(), "{}", e.name);
        assert!(a.ends_with("}\n") && !a.ends_with("\n\n"), "{}", e.name);
    }
    // The file is the generated schema with its `$id` added (written first), nothing else.
    let payload = entry("gateway-payload").unwrap();
    let mut generated = schema_for::<GatewayPayload>().to_value();
    let mut exported = payload.schema().to_value();
    assert_eq!(
        exported.as_object_mut().unwrap().shift_remove("$id"),
        Some(payload.id().into())
    );
    assert_eq!(exported, generated.take());
    assert!(payload.render().starts_with(&format!(
        "{{\n  \"$id\": \"{}\",\n  \"$schema\": ",
        payload.id()
    )));
    assert_eq!(
        payload.id(),
        "https://github.com/genesys-router/genesys-router/schemas/gateway-payload.schema.json"
    );
    assert_eq!(render(&payload.schema()), payload.render());
}

#[test]
fn names_are_unique_kebab_case() {
    for (i, e) in SCHEMAS.iter().enumerate() {
        assert!(
            e.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{}",
            e.name
        );
        assert!(
            SCHEMAS[i + 1..].iter().all(|o| o.name != e.name),
            "{} twice",
            e.name
        );
    }
}

#[test]
fn built_payloads_pass_the_compiled_format_check() {
    let payload = GatewayPayload::builder("model-gen-4", "Summarize this transcript")
        .fallbacks(["model-fallback-3"])
        .safety_filters(["pii", "self-harm"])
        .parameter("stop", serde_json::json!(["\n"]))
        .build()
        .unwrap();
    payload_format()
        .check(&serde_json::to_value(&payload).unwrap())
        .unwrap();
}

#[test]
fn a_programmatic_config_passes_its_schema() {
    let config = RouterConfig::new(EnvironmentConfig::at("http://127.0.0.1:9000"))
        .with_route("summarize", RouteConfig::to_model("model-gen-4"))
        .with_route(
            "reply",
            RouteConfig {
                model: None,
                split: vec![
                    SplitEntry {
                        model: "a".into(),
                        weight: 3,
                    },
                    SplitEntry {
                        model: "b".into(),
                        weight: 1,
                    },
                ],
                ..RouteConfig::default()
            },
        );
    config.validate().unwrap();
    let json = serde_json::to_value(&config).unwrap();
    FormatCheck::for_type::<RouterConfig>()
        .check(&json)
        .unwrap();
}

/// A failed check lists at most `MAX_VIOLATIONS` violations and counts the rest, and cuts
/// what each quotes of the document (a review found every one kept, each with the whole
/// failing value in its message).
#[test]
fn a_failed_format_check_is_bounded() {
    use gateway_model::{MAX_MALFORMED_CHARS, MAX_VIOLATIONS, Rule};
    let payload = GatewayPayload::builder("model-gen-4", "hi")
        .build()
        .unwrap();
    let mut doc = serde_json::to_value(&payload).unwrap();
    doc["modelId"] = serde_json::json!("bad id ".repeat(10_000));
    let bad: Vec<String> = (0..100).map(|i| format!("bad id {i}")).collect();
    doc["fallbackModels"] = serde_json::json!(bad);
    let errors = payload_format().check(&doc).unwrap_err();
    assert_eq!(errors.violations().len(), MAX_VIOLATIONS);
    assert!(
        errors.len() > 100,
        "every violation counted: {}",
        errors.len()
    );
    for violation in errors.violations() {
        assert!(violation.path.chars().count() <= MAX_MALFORMED_CHARS);
        let Rule::Schema { message, .. } = &violation.rule else {
            panic!("{violation:?}");
        };
        assert!(message.chars().count() <= MAX_MALFORMED_CHARS, "{message}");
    }
}
