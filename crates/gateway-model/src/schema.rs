//! JSON Schemas of every wire and config type, and the compiled format check.
//!
//! [`SCHEMAS`] is the single list `cargo xtask schema` writes to `schemas/`; the
//! format check compiles the same generated schema, so the file other teams read and
//! the check the router runs cannot drift apart (`cargo xtask schema --check` fails
//! when the files differ from the code).

use std::sync::LazyLock;

use schemars::generate::SchemaSettings;
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
    /// The schema as the exact text written to disk: pretty JSON, stable key order,
    /// trailing newline.
    pub fn render(&self) -> String {
        render(&(self.generate)())
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

/// The JSON Schema (draft 2020-12) of `T`, as exported.
pub fn schema_for<T: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>()
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
    /// Compiles `schema` (draft 2020-12). Panics only if the schema itself is invalid,
    /// which for the generated schemas a test rules out.
    pub fn new(schema: &Schema) -> Self {
        let validator = jsonschema::draft202012::new(schema.as_value())
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
        let violations = self
            .validator
            .iter_errors(instance)
            .map(|e| Violation {
                path: e.instance_path().as_str().to_owned(),
                rule: Rule::Schema {
                    keyword: e.kind().keyword().to_owned(),
                    message: e.to_string(),
                },
            })
            .collect();
        Err(
            ValidationErrors::from_violations(violations).unwrap_or_else(|| {
                ValidationErrors::single(
                    "",
                    Rule::Schema {
                        keyword: String::new(),
                        message: "invalid".into(),
                    },
                )
            }),
        )
    }
}

static PAYLOAD_FORMAT: LazyLock<FormatCheck> =
    LazyLock::new(FormatCheck::for_type::<GatewayPayload>);

/// The compiled [`GatewayPayload`] schema, built on first use and shared.
///
/// ```
/// use gateway_model::{payload_format, GatewayPayload};
///
/// let payload = GatewayPayload::builder("model-gen-4", "Hello").build()?;
/// let json = serde_json::to_value(&payload).unwrap();
/// assert!(payload_format().check(&json).is_ok());
///
/// let mut bad = json.clone();
/// bad["parameters"]["temperature"] = 9.0.into();
/// let err = payload_format().check(&bad).unwrap_err();
/// assert_eq!(err.violations()[0].path, "/parameters/temperature");
/// # Ok::<(), gateway_model::ValidationErrors>(())
/// ```
pub fn payload_format() -> &'static FormatCheck {
    &PAYLOAD_FORMAT
}
