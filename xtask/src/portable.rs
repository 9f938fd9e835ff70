//! The portable subset of JSON Schema 2020-12 that every file in `schemas/` keeps, so
//! any team's validator or code generator reads it the same way (Ajv in strict mode,
//! Python's `jsonschema`, the Rust `jsonschema` crate, quicktype, ...).
//!
//! The subset:
//!
//! - **Keywords**: only those in [`KEYWORDS`]: the core identifiers (`$schema`, `$id`,
//!   `$ref`, `$defs`, `$comment`), the applicators, the validation keywords, the
//!   annotations and `format`. Left out: `$anchor`, `$dynamicRef`, `$dynamicAnchor` and
//!   `$vocabulary` (dynamic scopes many tools do not follow), `unevaluatedProperties`
//!   and `unevaluatedItems` (unsupported by older validators and by code generators),
//!   the `content*` keywords (annotations some validators assert), draft-07's
//!   `definitions` and `dependencies`, OpenAPI 3.0's `nullable`, and any vendor or
//!   unknown keyword (Ajv's `strictSchema` refuses them).
//! - **Formats**: only the standard ones, [`gateway_model::schema::STANDARD_FORMATS`]
//!   (`date-time`, `uuid`, `uri`, ...); schemars' `uint32`, `int64`, `double` are not
//!   formats any other validator knows.
//! - **`required`** names only properties declared in the same schema object's
//!   `properties` (Ajv's `strictRequired`).
//! - **`$ref`** inside a file points into that file (`#/...`) and resolves.
//! - **`$id`**: every standalone `*.schema.json` has an absolute `https://` `$id` ending
//!   in `/schemas/<its file name>`.
//!
//! In `openapi.json` (not itself a JSON Schema) the subset applies to every schema under
//! `components/schemas` and every `schema` of a parameter, request or response under
//! `paths`.

use std::fmt;
use std::fs;
use std::path::Path;

use gateway_model::schema::STANDARD_FORMATS;
use serde_json::{Map, Value};

/// Every keyword a portable schema may use.
pub const KEYWORDS: &[&str] = &[
    // Core.
    "$schema",
    "$id",
    "$ref",
    "$defs",
    "$comment",
    // Applicators.
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "prefixItems",
    "items",
    "contains",
    "properties",
    "patternProperties",
    "additionalProperties",
    "propertyNames",
    // Validation.
    "type",
    "enum",
    "const",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxContains",
    "minContains",
    "maxProperties",
    "minProperties",
    "required",
    "dependentRequired",
    // Annotations.
    "title",
    "description",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "examples",
    // Format (as an annotation; validators may assert the standard ones).
    "format",
];

/// Keywords whose value is one subschema.
const ONE_SUBSCHEMA: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "items",
    "contains",
    "additionalProperties",
    "propertyNames",
];
/// Keywords whose value is an array of subschemas.
const SUBSCHEMA_ARRAYS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const SUBSCHEMA_MAPS: &[&str] = &[
    "$defs",
    "properties",
    "patternProperties",
    "dependentSchemas",
];

/// What is outside the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breach {
    /// A keyword not in [`KEYWORDS`].
    Keyword(String),
    /// A `format` value not in [`STANDARD_FORMATS`].
    Format(String),
    /// A `required` entry with no sibling `properties` entry.
    Required(String),
    /// A `$ref` that is not a local pointer resolving in the same file.
    Ref(String),
    /// A standalone schema file without a proper `$id`; says what is wrong.
    Id(String),
    /// A keyword's value has the wrong JSON type (a `format` that is not a string, ...).
    Shape(&'static str),
}

/// One breach of the subset: the file, the JSON Pointer of the schema object in it, and
/// what breaks the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The file, as `schemas/<name>`.
    pub file: String,
    /// JSON Pointer of the offending schema object within the file (`""` is the root).
    pub pointer: String,
    /// What is outside the subset.
    pub breach: Breach,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "(root)"
        } else {
            &self.pointer
        };
        write!(f, "{} at {pointer}: ", self.file)?;
        match &self.breach {
            Breach::Keyword(k) => write!(f, "keyword `{k}` is outside the portable subset"),
            Breach::Format(v) => write!(f, "format `{v}` is not a standard JSON Schema format"),
            Breach::Required(p) => write!(
                f,
                "`required` names `{p}`, which this object's `properties` does not declare"
            ),
            Breach::Ref(r) => write!(f, "`$ref` `{r}` does not resolve within the file"),
            Breach::Id(why) => write!(f, "`$id` {why}"),
            Breach::Shape(why) => f.write_str(why),
        }
    }
}

/// Checks one standalone schema file (`file` is its name in `schemas/`).
pub fn check_schema_file(file: &str, document: &Value) -> Vec<Violation> {
    let mut walk = Walk::new(file, document);
    match document.get("$id").map(Value::as_str) {
        None => walk.breach("", Breach::Id("is missing".into())),
        Some(None) => walk.breach("", Breach::Id("is not a string".into())),
        Some(Some(id)) => {
            let suffix = format!("/schemas/{file}");
            if !id.starts_with("https://") || !id.ends_with(&suffix) {
                walk.breach(
                    "",
                    Breach::Id(format!(
                        "`{id}` is not an https:// URI ending in `{suffix}`"
                    )),
                );
            }
        }
    }
    walk.schema(document, &mut String::new());
    walk.found
}

/// Checks the schemas inside an OpenAPI 3.1 document (`file` is its name in `schemas/`).
pub fn check_openapi_file(file: &str, document: &Value) -> Vec<Violation> {
    let mut walk = Walk::new(file, document);
    if let Some(components) = document
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    {
        for (name, schema) in components {
            walk.schema(schema, &mut format!("/components/schemas/{}", escape(name)));
        }
    }
    if let Some(paths) = document.get("paths") {
        walk.schemas_in_operations(paths, &mut "/paths".to_owned());
    }
    walk.found
}

/// Checks every `*.schema.json` and `openapi.json` in `root/schemas`; the error names
/// every violation, one a line.
pub fn check(root: &Path) -> Result<usize, String> {
    let dir = root.join("schemas");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".schema.json") || n == "openapi.json")
        .collect();
    names.sort();
    let mut found = Vec::new();
    for name in &names {
        let path = dir.join(name);
        let text =
            fs::read_to_string(&path).map_err(|e| format!("cannot read schemas/{name}: {e}"))?;
        let document: Value =
            serde_json::from_str(&text).map_err(|e| format!("schemas/{name} is not JSON: {e}"))?;
        found.extend(if name == "openapi.json" {
            check_openapi_file(name, &document)
        } else {
            check_schema_file(name, &document)
        });
    }
    if found.is_empty() {
        return Ok(names.len());
    }
    let lines: Vec<String> = found.iter().map(|v| format!("  {v}")).collect();
    Err(format!(
        "schemas/ leaves the portable JSON Schema subset (xtask/src/portable.rs):\n{}",
        lines.join("\n")
    ))
}

/// A JSON Pointer reference token: `~` as `~0`, `/` as `~1`.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

struct Walk<'a> {
    file: &'a str,
    document: &'a Value,
    found: Vec<Violation>,
}

impl<'a> Walk<'a> {
    fn new(file: &'a str, document: &'a Value) -> Self {
        Self {
            file,
            document,
            found: Vec::new(),
        }
    }

    fn breach(&mut self, pointer: &str, breach: Breach) {
        self.found.push(Violation {
            file: format!("schemas/{}", self.file),
            pointer: pointer.to_owned(),
            breach,
        });
    }

    /// Walks the schema at `pointer` and all its subschemas (`pointer` is restored on
    /// return).
    fn schema(&mut self, schema: &Value, pointer: &mut String) {
        let Some(object) = schema.as_object() else {
            if !schema.is_boolean() {
                self.breach(
                    pointer,
                    Breach::Shape("a schema must be an object or a boolean"),
                );
            }
            return;
        };
        for (keyword, value) in object {
            if !KEYWORDS.contains(&keyword.as_str()) {
                self.breach(pointer, Breach::Keyword(keyword.clone()));
                continue;
            }
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&escape(keyword));
            self.keyword(keyword, value, pointer);
            pointer.truncate(len);
        }
        self.required(object, pointer);
    }

    /// Walks the subschemas of one keyword, checks `format` and `$ref`.
    fn keyword(&mut self, keyword: &str, value: &Value, pointer: &mut String) {
        let parent = || pointer[..pointer.rfind('/').unwrap_or(0)].to_owned();
        if ONE_SUBSCHEMA.contains(&keyword) {
            self.schema(value, pointer);
        } else if SUBSCHEMA_ARRAYS.contains(&keyword) {
            if !value.is_array() {
                let parent = parent();
                self.breach(
                    &parent,
                    Breach::Shape("`allOf`, `anyOf`, `oneOf` and `prefixItems` must be arrays"),
                );
            }
            for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                self.schema(item, pointer);
                pointer.truncate(len);
            }
        } else if SUBSCHEMA_MAPS.contains(&keyword) {
            if !value.is_object() {
                let parent = parent();
                self.breach(&parent, Breach::Shape("`$defs`, `properties`, `patternProperties` and `dependentSchemas` must be objects"));
            }
            for (name, item) in value.as_object().into_iter().flatten() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&escape(name));
                self.schema(item, pointer);
                pointer.truncate(len);
            }
        } else if keyword == "format" {
            let parent = parent();
            match value.as_str() {
                Some(format) if STANDARD_FORMATS.contains(&format) => {}
                Some(format) => self.breach(&parent, Breach::Format(format.to_owned())),
                None => self.breach(&parent, Breach::Shape("`format` must be a string")),
            }
        } else if keyword == "$ref" {
            let parent = parent();
            let target = value.as_str().unwrap_or_default();
            let resolves = target
                .strip_prefix('#')
                .is_some_and(|p| p.is_empty() || self.document.pointer(p).is_some());
            if !resolves {
                self.breach(&parent, Breach::Ref(target.to_owned()));
            }
        }
    }

    /// Every `required` entry is declared in the sibling `properties`.
    fn required(&mut self, object: &Map<String, Value>, pointer: &str) {
        let Some(required) = object.get("required") else {
            return;
        };
        let Some(required) = required.as_array() else {
            self.breach(pointer, Breach::Shape("`required` must be an array"));
            return;
        };
        let properties = object.get("properties").and_then(Value::as_object);
        for name in required {
            let name = name.as_str().unwrap_or_default();
            if properties.is_none_or(|p| !p.contains_key(name)) {
                self.breach(pointer, Breach::Required(name.to_owned()));
            }
        }
    }

    /// Finds the `schema` of every parameter, request body and response under `paths`.
    fn schemas_in_operations(&mut self, value: &Value, pointer: &mut String) {
        let Some(object) = value.as_object() else {
            if let Some(items) = value.as_array() {
                for (i, item) in items.iter().enumerate() {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&i.to_string());
                    self.schemas_in_operations(item, pointer);
                    pointer.truncate(len);
                }
            }
            return;
        };
        for (key, item) in object {
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&escape(key));
            if key == "schema" {
                self.schema(item, pointer);
            } else {
                self.schemas_in_operations(item, pointer);
            }
            pointer.truncate(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "https://example.com/repo/schemas/t.schema.json";

    fn breaches(document: &Value) -> Vec<(String, Breach)> {
        check_schema_file("t.schema.json", document)
            .into_iter()
            .map(|v| (v.pointer, v.breach))
            .collect()
    }

    #[test]
    fn a_portable_schema_passes() {
        let doc = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": ID,
            "type": "object",
            "properties": { "at": { "type": "string", "format": "date-time" },
                            "n": { "$ref": "#/$defs/N" } },
            "required": ["at"],
            "$defs": { "N": { "type": "integer", "minimum": 0, "maximum": 65535 } }
        });
        assert_eq!(breaches(&doc), []);
    }

    #[test]
    fn a_non_standard_format_is_named_with_its_pointer() {
        let doc = json!({ "$id": ID, "properties": {
            "a/b": { "type": "integer", "format": "uint32" },
            "c": { "anyOf": [{ "type": "null" }, { "type": "number", "format": "double" }] }
        }});
        assert_eq!(
            breaches(&doc),
            [
                ("/properties/a~1b".into(), Breach::Format("uint32".into())),
                (
                    "/properties/c/anyOf/1".into(),
                    Breach::Format("double".into())
                ),
            ]
        );
        let text = check_schema_file("t.schema.json", &doc)[0].to_string();
        assert_eq!(
            text,
            "schemas/t.schema.json at /properties/a~1b: format `uint32` is not a standard JSON Schema format"
        );
    }

    #[test]
    fn a_keyword_outside_the_subset_is_named() {
        let doc = json!({ "$id": ID, "$defs": { "X": {
            "type": ["string", "null"], "nullable": true, "x-rust-type": "String"
        }}, "unevaluatedProperties": false });
        assert_eq!(
            breaches(&doc),
            [
                ("/$defs/X".into(), Breach::Keyword("nullable".into())),
                ("/$defs/X".into(), Breach::Keyword("x-rust-type".into())),
                (
                    String::new(),
                    Breach::Keyword("unevaluatedProperties".into())
                ),
            ]
        );
    }

    #[test]
    fn required_must_name_a_sibling_property() {
        // The shape schemars' `oneOf` branches had: `required` alone in a branch.
        let doc = json!({ "$id": ID, "type": "object",
            "properties": { "region": { "type": "string" } },
            "oneOf": [ { "required": ["region"] },
                       { "properties": { "api_base": true }, "required": ["api_base", "x"] } ] });
        assert_eq!(
            breaches(&doc),
            [
                ("/oneOf/0".into(), Breach::Required("region".into())),
                ("/oneOf/1".into(), Breach::Required("x".into())),
            ]
        );
    }

    #[test]
    fn a_missing_or_misplaced_id_fails() {
        assert_eq!(
            breaches(&json!({ "type": "string" })),
            [(String::new(), Breach::Id("is missing".into()))]
        );
        let wrong = breaches(&json!({ "$id": "http://example.com/other.json" }));
        assert!(
            matches!(&wrong[..], [(p, Breach::Id(_))] if p.is_empty()),
            "{wrong:?}"
        );
        assert_eq!(
            breaches(&json!({ "$id": 7 })),
            [(String::new(), Breach::Id("is not a string".into()))]
        );
    }

    #[test]
    fn a_ref_must_resolve_within_the_file() {
        let doc = json!({ "$id": ID, "properties": {
            "a": { "$ref": "#/$defs/Missing" },
            "b": { "$ref": "other.schema.json" }
        }, "$defs": {} });
        assert_eq!(
            breaches(&doc),
            [
                (
                    "/properties/a".into(),
                    Breach::Ref("#/$defs/Missing".into())
                ),
                (
                    "/properties/b".into(),
                    Breach::Ref("other.schema.json".into())
                ),
            ]
        );
    }

    #[test]
    fn openapi_components_and_operation_schemas_are_walked_without_an_id() {
        let doc = json!({
            "openapi": "3.1.0",
            "paths": { "/x": { "get": { "responses": { "200": { "content": {
                "application/json": { "schema": { "type": "integer", "format": "int64" } },
                "text/event-stream": { "schema": { "type": "string" }, "x-chunk-schema": {} }
            }}}}}},
            "components": { "schemas": {
                "A": { "type": "object", "required": ["b"] },
                "B": { "$ref": "#/components/schemas/A" }
            }}
        });
        let found: Vec<(String, Breach)> = check_openapi_file("openapi.json", &doc)
            .into_iter()
            .map(|v| (v.pointer, v.breach))
            .collect();
        assert_eq!(
            found,
            [
                ("/components/schemas/A".into(), Breach::Required("b".into())),
                (
                    "/paths/~1x/get/responses/200/content/application~1json/schema".into(),
                    Breach::Format("int64".into())
                ),
            ]
        );
    }

    /// The committed `schemas/` are inside the subset.
    #[test]
    fn committed_schemas_are_portable() {
        let root = crate::repo_root().unwrap();
        let files = check(&root).unwrap_or_else(|e| panic!("{e}"));
        assert!(files > 10, "only {files} files checked");
    }

    /// Regression: a subschema keyword of the wrong JSON type (`allOf` as an object,
    /// `properties` as an array) was skipped, not refused.
    #[test]
    fn a_subschema_keyword_of_the_wrong_shape_is_a_breach() {
        let doc = json!({ "$id": ID, "allOf": { "x": { "type": "string" } } });
        assert_eq!(breaches(&doc).len(), 1, "{:?}", breaches(&doc));
        let doc = json!({ "$id": ID, "properties": [ { "type": "string" } ] });
        assert_eq!(breaches(&doc).len(), 1, "{:?}", breaches(&doc));
    }
}
