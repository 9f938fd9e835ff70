//! The example documents in `schemas/examples/` against both validators: the Rust
//! rules (`Validate`) and the compiled JSON Schema. Valid ones pass both; invalid ones
//! fail both with an error at the path `schemas/examples/invalid.tsv` names.

use std::fs;
use std::path::{Path, PathBuf};

use gateway_model::schema::{self, FormatCheck, SchemaEntry};
use gateway_model::{ValidationErrors, Violation};
use serde_json::Value;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/examples")
}

/// `(file name, schema entry, document)` for every `*.json` in `dir`.
fn documents(dir: &str) -> Vec<(String, &'static SchemaEntry, Value)> {
    let mut docs = Vec::new();
    for entry in fs::read_dir(examples_dir().join(dir)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            path.extension().is_some_and(|e| e == "json"),
            "unexpected file {name} in examples/{dir}"
        );
        let stem = name.split('.').next().unwrap();
        let schema = schema::entry(stem).unwrap_or_else(|| {
            panic!("{name}: no schema named `{stem}` (files are named <schema-name>.<case>.json)")
        });
        let doc: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        docs.push((name, schema, doc));
    }
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    docs
}

/// `path` equals `expected` or lies below it, segment-wise.
fn at_or_below(path: &str, expected: &str) -> bool {
    path == expected || path.starts_with(&format!("{expected}/")) || expected.is_empty()
}

fn paths(err: &ValidationErrors) -> Vec<&str> {
    err.violations()
        .iter()
        .map(|v: &Violation| v.path.as_str())
        .collect()
}

#[test]
fn valid_examples_pass_both_validators() {
    let docs = documents("valid");
    assert!(
        docs.len() >= 12,
        "expected an example per schema, found {}",
        docs.len()
    );
    for (name, entry, doc) in &docs {
        let check = FormatCheck::new(&entry.schema());
        if let Err(e) = check.check(doc) {
            panic!("{name} fails the JSON Schema: {e}");
        }
        if let Err(e) = (entry.validate)(doc) {
            panic!("{name} fails the Rust validator: {e}");
        }
    }
    // Every schema has at least one valid example.
    for entry in schema::SCHEMAS {
        assert!(
            docs.iter().any(|(_, e, _)| e.name == entry.name),
            "no valid example for {}",
            entry.name
        );
    }
}

#[test]
fn invalid_examples_fail_both_validators_at_the_expected_path() {
    let table = fs::read_to_string(examples_dir().join("invalid.tsv")).unwrap();
    let expected: Vec<(&str, &str)> = table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split('\t');
            (cols.next().unwrap(), cols.next().unwrap_or(""))
        })
        .collect();

    let docs = documents("invalid");
    assert_eq!(
        docs.len(),
        expected.len(),
        "invalid.tsv must list every file in examples/invalid"
    );
    for (name, entry, doc) in &docs {
        let (_, path) = expected
            .iter()
            .find(|(file, _)| file == name)
            .unwrap_or_else(|| panic!("{name} is not listed in invalid.tsv"));

        let schema_err = FormatCheck::new(&entry.schema())
            .check(doc)
            .expect_err(&format!("{name} passes the JSON Schema"));
        assert!(
            paths(&schema_err).iter().any(|p| at_or_below(p, path)),
            "{name}: schema errors {:?} miss {path}",
            paths(&schema_err)
        );

        let rust_err =
            (entry.validate)(doc).expect_err(&format!("{name} passes the Rust validator"));
        assert!(
            paths(&rust_err).iter().any(|p| at_or_below(p, path)),
            "{name}: Rust errors {:?} miss {path}\n{rust_err}",
            paths(&rust_err)
        );
    }
}
