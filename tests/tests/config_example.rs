//! The documented example config (`examples/router.toml`) is valid for the Rust
//! validator and for the exported JSON Schema in `schemas/`.

use gateway_model::schema::FormatCheck;
use gateway_model::{RouterConfig, Validate};
use gateway_tests::repo_root;

#[test]
fn the_example_config_passes_both_validators() {
    let text = std::fs::read_to_string(repo_root().join("examples/router.toml")).unwrap();
    let config = RouterConfig::from_toml_str(&text).unwrap();
    config.validate().unwrap();
    assert_eq!(config.routes.len(), 3);

    // Checked against the committed schema file, the one other teams use.
    let schema_text =
        std::fs::read_to_string(repo_root().join("schemas/router-config.schema.json")).unwrap();
    let schema: schemars::Schema = serde_json::from_str(&schema_text).unwrap();
    let as_json: serde_json::Value = toml::from_str(&text).unwrap();
    FormatCheck::new(&schema).check(&as_json).unwrap();
}

/// The first line is the taplo / Even Better TOML schema directive, naming the committed
/// schema by a path relative to the file, and the loader reads past it (a TOML comment).
#[test]
fn the_example_config_names_its_schema_for_editors() {
    let path = repo_root().join("examples/router.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap();
    let schema = first
        .strip_prefix("#:schema ")
        .unwrap_or_else(|| panic!("examples/router.toml starts with {first:?}"));
    let schema_path = path.parent().unwrap().join(schema);
    assert_eq!(
        schema_path.canonicalize().unwrap(),
        repo_root()
            .join("schemas/router-config.schema.json")
            .canonicalize()
            .unwrap()
    );
    assert!(RouterConfig::from_toml_str(&text).is_ok());
}
