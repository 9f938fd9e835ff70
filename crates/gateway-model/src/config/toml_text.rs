//! Reading a config from TOML text: serde's reading, the Rust rules, then the document
//! as written against the config's schema; errors that never quote the file.

use super::RouterConfig;
use crate::validation::{Rule, Validate, ValidationErrors, malformed};

impl RouterConfig {
    /// Parses TOML and validates the result; a syntax or type error names its path.
    pub fn from_toml_str(text: &str) -> Result<Self, ValidationErrors> {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            let said = format!("TOML parse error: {}", toml_error(text, &e));
            ValidationErrors::single("", Rule::malformed(said))
        })?;
        let config: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().clone();
            malformed(serde_path_to_error::Error::new(
                path,
                toml_error(text, e.inner()),
            ))
        })?;
        config.validate()?;
        check_shape(text)?;
        Ok(config)
    }
}

/// The config's schema, compiled once.
static CONFIG_FORMAT: std::sync::LazyLock<crate::FormatCheck> =
    std::sync::LazyLock::new(crate::FormatCheck::for_type::<RouterConfig>);

/// Checks the document as written against the config's schema. serde reads a struct
/// from a list too (by position, past `deny_unknown_fields`), so `limits = []` read as
/// every default and `[routes] a = ["m"]` as a route to `m`, where the schema wants a
/// table; everything else the schema refuses, the Rust rules refuse first. The message
/// names the rule, not the value, which may be a secret written in the wrong place.
fn check_shape(text: &str) -> Result<(), ValidationErrors> {
    let Ok(document) = toml::from_str::<serde_json::Value>(text) else {
        return Ok(());
    };
    CONFIG_FORMAT.check(&document).map_err(|found| {
        let violations = found.violations().iter().map(|v| {
            let keyword = match &v.rule {
                Rule::Schema { keyword, .. } => keyword.clone(),
                _ => String::new(),
            };
            let message = if keyword == "type" {
                "is not of the type the config's schema gives it (a list where a table \
                 belongs?)"
                    .to_owned()
            } else {
                format!("breaks the config schema's `{keyword}` rule")
            };
            crate::Violation {
                path: v.path.clone(),
                rule: Rule::Schema { keyword, message },
            }
        });
        ValidationErrors::from_violations(violations.collect()).unwrap_or(found)
    })
}

/// A TOML error as its message, then where it is, without the line of the file that the
/// error's own text quotes, nor a value it quotes: a secret written into the file by
/// mistake (`client_secret = "..."` as an unknown key, or under `[routes]`, where a
/// table is expected) would be shown whole, in logs and CI output. The message comes
/// first, so that `missing field` is read as a missing field.
fn toml_error(text: &str, err: &toml::de::Error) -> String {
    let at = err
        .span()
        .and_then(|span| text.get(..span.start))
        .map(|before| {
            let line = before.matches('\n').count().saturating_add(1);
            let column = before
                .rsplit('\n')
                .next()
                .map_or(0, |l| l.chars().count())
                .saturating_add(1);
            format!(" (line {line}, column {column})")
        })
        .unwrap_or_default();
    let said = crate::redact::without_quoted_values(err.message().trim_end());
    format!("{said}{at}")
}
