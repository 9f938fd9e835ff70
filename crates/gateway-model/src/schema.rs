//! JSON Schemas of every wire and config type, and the compiled format check.
//!
//! [`SCHEMAS`] is the single list `cargo xtask schema` writes to `schemas/`; the
//! format check compiles the same generated schema, so the file other teams read and
//! the check the router runs cannot drift apart (`cargo xtask schema --check` fails
//! when the files differ from the code).

use schemars::generate::SchemaSettings;
use schemars::transform::{RecursiveTransform, Transform};
use schemars::{JsonSchema, Schema};
use serde_json::Value;

use serde::de::DeserializeOwned;

use crate::validation::{Rule, Validate, ValidationErrors, Violation, from_json_value};
use crate::{
    AuditEntry, ErrorBody, GatewayPayload, GatewayResponse, Metadata, ModelEntity,
    ModelEntityListing, Parameters, RouteOutcome, RouteRequest, RouterConfig, SafetyFilter,
    TemperatureMatrix, Tuning,
};

/// One exported schema: its file stem and how to generate it.
#[derive(Debug, Clone, Copy)]
pub struct SchemaEntry {
    /// File stem: the schema is written to `schemas/<name>.schema.json`.
    pub name: &'static str,
    /// Generates the schema from the Rust type.
    pub generate: fn() -> Schema,
    /// Reads a JSON document as the Rust type and runs its [`Validate`] rules: the
    /// Rust-side twin of the schema.
    pub validate: fn(&Value) -> Result<(), ValidationErrors>,
}

impl SchemaEntry {
    /// The schema as exported: generated, with its `$id` ([`SchemaEntry::id`]).
    pub fn schema(&self) -> Schema {
        with_id((self.generate)(), &self.id())
    }

    /// The schema as the exact text written to disk: pretty JSON, stable key order,
    /// trailing newline.
    pub fn render(&self) -> String {
        render(&self.schema())
    }

    /// The schema's `$id`: `<repository>/schemas/<file name>`, the same on every build.
    pub fn id(&self) -> String {
        format!("{SCHEMA_BASE_URI}{}", self.file_name())
    }

    /// The file name, `<name>.schema.json`.
    pub fn file_name(&self) -> String {
        format!("{}.schema.json", self.name)
    }
}

/// Every exported schema, in the order they are documented.
pub const SCHEMAS: &[SchemaEntry] = &[
    entry_for::<GatewayPayload>("gateway-payload"),
    entry_for::<Parameters>("parameters"),
    entry_for::<TemperatureMatrix>("temperature-matrix"),
    entry_for::<Tuning>("tuning"),
    entry_for::<SafetyFilter>("safety-filter"),
    entry_for::<Metadata>("metadata"),
    entry_for::<GatewayResponse>("gateway-response"),
    entry_for::<ErrorBody>("error-body"),
    entry_for::<ModelEntity>("model-entity"),
    entry_for::<ModelEntityListing>("model-entity-listing"),
    entry_for::<AuditEntry>("audit-entry"),
    entry_for::<RouterConfig>("router-config"),
    entry_for::<RouteRequest>("route-request"),
    entry_for::<RouteOutcome>("route-outcome"),
];

const fn entry_for<T: JsonSchema + DeserializeOwned + Validate>(name: &'static str) -> SchemaEntry {
    SchemaEntry {
        name,
        generate: schema_for::<T>,
        validate: validate_as::<T>,
    }
}

/// Reads `value` as `T` and validates it, discarding the result.
fn validate_as<T: DeserializeOwned + Validate>(value: &Value) -> Result<(), ValidationErrors> {
    from_json_value::<T>(value).map(drop)
}

/// Finds an exported schema by file stem.
pub fn entry(name: &str) -> Option<&'static SchemaEntry> {
    SCHEMAS.iter().find(|e| e.name == name)
}

/// Where the exported schemas live: the workspace's `repository` URL (root
/// `Cargo.toml`) followed by `/schemas/`; each file's `$id` is this plus its name.
pub const SCHEMA_BASE_URI: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/schemas/");

/// The `format` values the exported schemas may use: the formats JSON Schema 2020-12
/// defines (section 7.3 of the validation vocabulary), which every conforming validator
/// knows. schemars' own (`uint32`, `int64`, `double`, `ip`, ...) are removed in
/// generation by [`Portable`]; `cargo xtask schema --check` refuses any other.
pub const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// The settings every exported schema is generated with: draft 2020-12 and the
/// [`Portable`] transform (`gateway-server`'s OpenAPI document uses them too).
pub fn settings() -> SchemaSettings {
    SchemaSettings::draft2020_12().with_transform(RecursiveTransform(Portable))
}

/// The JSON Schema (draft 2020-12) of `T`, as generated (without an `$id`:
/// [`SchemaEntry::schema`] adds it).
pub fn schema_for<T: JsonSchema>() -> Schema {
    settings().into_generator().into_root_schema_for::<T>()
}

/// `schema` with `$id` set to `id` (schemars writes `$id` first, then `$schema`).
fn with_id(mut schema: Schema, id: &str) -> Schema {
    schema.insert("$id".into(), id.into());
    schema
}

/// The schemars transform (applied to every subschema) that keeps the exported schemas
/// within what any draft 2020-12 validator reads the same way: a `format` that is not in
/// [`STANDARD_FORMATS`] is removed, and an integer whose format named its width keeps
/// that width as `minimum`/`maximum` where no bound is stated already (a tighter bound
/// from `bounds` is kept). `uint`/`int` (`usize`/`isize`) are taken as 64-bit;
/// 128-bit integers keep only `minimum: 0` when unsigned (their bounds exceed what JSON
/// numbers carry portably).
#[derive(Debug, Clone, Copy, Default)]
pub struct Portable;

impl Transform for Portable {
    fn transform(&mut self, schema: &mut Schema) {
        let Some(object) = schema.as_object_mut() else {
            return;
        };
        let Some(format) = object.get("format").and_then(Value::as_str) else {
            return;
        };
        if STANDARD_FORMATS.contains(&format) {
            return;
        }
        let (min, max) = integer_range(format);
        object.shift_remove("format");
        for (bound, exclusive, value) in [
            ("minimum", "exclusiveMinimum", min),
            ("maximum", "exclusiveMaximum", max),
        ] {
            if let Some(value) = value
                && !object.contains_key(bound)
                && !object.contains_key(exclusive)
            {
                object.insert(bound.into(), value);
            }
        }
    }
}

/// The range a schemars integer format stands for; `None` where there is none to state.
fn integer_range(format: &str) -> (Option<Value>, Option<Value>) {
    match format {
        "uint8" => (Some(0.into()), Some(u8::MAX.into())),
        "uint16" => (Some(0.into()), Some(u16::MAX.into())),
        "uint32" => (Some(0.into()), Some(u32::MAX.into())),
        "uint64" | "uint" => (Some(0.into()), Some(u64::MAX.into())),
        "uint128" => (Some(0.into()), None),
        "int8" => (Some(i8::MIN.into()), Some(i8::MAX.into())),
        "int16" => (Some(i16::MIN.into()), Some(i16::MAX.into())),
        "int32" => (Some(i32::MIN.into()), Some(i32::MAX.into())),
        "int64" | "int" => (Some(i64::MIN.into()), Some(i64::MAX.into())),
        _ => (None, None),
    }
}

/// Pretty JSON with a trailing newline: the on-disk form of a schema.
pub fn render(schema: &Schema) -> String {
    let mut text =
        serde_json::to_string_pretty(schema).expect("a schema is plain JSON and always serialises");
    text.push('\n');
    text
}

/// A JSON Schema compiled once, reporting failures as [`Violation`]s with JSON Pointers.
pub struct FormatCheck {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for FormatCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormatCheck").finish_non_exhaustive()
    }
}

impl FormatCheck {
    /// Compiles `schema` (draft 2020-12), its `format`s checked as rules (a `uuid` or a
    /// `date-time` the Rust types read as one), not read as notes as the draft's default
    /// has it. Panics only if the schema itself is invalid, which for the generated
    /// schemas a test rules out.
    pub fn new(schema: &Schema) -> Self {
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(schema.as_value())
            .unwrap_or_else(|e| panic!("generated schema does not compile: {e}"));
        Self { validator }
    }

    /// Compiles the schema of `T`.
    pub fn for_type<T: JsonSchema>() -> Self {
        Self::new(&schema_for::<T>())
    }

    /// Whether `instance` matches, without collecting errors.
    pub fn is_valid(&self, instance: &Value) -> bool {
        self.validator.is_valid(instance)
    }

    /// Checks `instance`; on failure returns every schema violation with its JSON Pointer.
    pub fn check(&self, instance: &Value) -> Result<(), ValidationErrors> {
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        // The first violations are listed, the rest only counted; a message quotes the
        // value at fault, so it and its path are cut as a parser's message is.
        let mut errors = self.validator.iter_errors(instance);
        let listed = errors
            .by_ref()
            .take(crate::MAX_VIOLATIONS)
            .map(|e| {
                let mut path = e.instance_path().as_str().to_owned();
                crate::cut_to(&mut path, crate::MAX_MALFORMED_CHARS);
                let mut message = e.to_string();
                crate::cut_to(&mut message, crate::MAX_MALFORMED_CHARS);
                Violation {
                    path,
                    rule: Rule::Schema {
                        keyword: e.kind().keyword().to_owned(),
                        message,
                    },
                }
            })
            .collect();
        let Some(mut found) = ValidationErrors::from_violations(listed) else {
            return Err(ValidationErrors::single(
                "",
                Rule::Schema {
                    keyword: String::new(),
                    message: "invalid".into(),
                },
            ));
        };
        found.count_omitted(errors.count());
        Err(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn portable_drops_schemars_formats_and_states_integer_widths() {
        let mut schema = schemars::json_schema!({ "type": "object", "properties": {
            "a": { "type": "integer", "format": "uint32", "minimum": 0 },
            "b": { "type": ["integer", "null"], "format": "uint64", "minimum": 1, "maximum": 10 },
            "c": { "type": "integer", "format": "int64" },
            "d": { "anyOf": [{ "type": "number", "format": "double" }, { "type": "null" }] },
            "e": { "type": "string", "format": "uuid" },
            "f": { "type": "string", "format": "ip" },
            "g": { "type": "integer", "format": "uint16", "exclusiveMinimum": 0, "maximum": 99 }
        }});
        RecursiveTransform(Portable).transform(&mut schema);
        assert_eq!(
            schema.as_value()["properties"],
            json!({
                "a": { "type": "integer", "minimum": 0, "maximum": u32::MAX },
                "b": { "type": ["integer", "null"], "minimum": 1, "maximum": 10 },
                "c": { "type": "integer", "minimum": i64::MIN, "maximum": i64::MAX },
                "d": { "anyOf": [{ "type": "number" }, { "type": "null" }] },
                "e": { "type": "string", "format": "uuid" },
                "f": { "type": "string" },
                "g": { "type": "integer", "exclusiveMinimum": 0, "maximum": 99 }
            })
        );
    }

    #[test]
    fn every_exported_schema_has_its_id_and_only_standard_formats() {
        for e in SCHEMAS {
            let text = e.render();
            assert!(
                text.contains(&format!("\"$id\": \"{}\"", e.id())),
                "{}",
                e.name
            );
            let mut formats = Vec::new();
            collect_formats(e.schema().as_value(), &mut formats);
            for format in formats {
                assert!(
                    STANDARD_FORMATS.contains(&format.as_str()),
                    "{}: {format}",
                    e.name
                );
            }
        }
    }

    fn collect_formats(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(f)) = map.get("format") {
                    out.push(f.clone());
                }
                map.values().for_each(|v| collect_formats(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_formats(v, out)),
            _ => {}
        }
    }
}
