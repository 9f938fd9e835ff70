//! Model identifiers: one documented pattern, checked the same way in Rust and in JSON Schema.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bounds::{Pattern, Text};
use crate::validation::{Location, Rule, Validate, Violations, check_unique};

/// Most fallback models one payload (or route) may list.
pub const MAX_FALLBACKS: usize = 5;
/// Longest accepted model id, in characters.
pub const MODEL_ID_MAX_LEN: usize = 128;

/// The pattern every model id matches: an ASCII letter or digit, then letters,
/// digits, `.`, `_`, `:` or `-` (no spaces, slashes or control characters).
pub const MODEL_ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._:-]*$";

/// A model id: 1 to [`MODEL_ID_MAX_LEN`] characters matching [`MODEL_ID_PATTERN`].
const MODEL_ID: Text = Text::chars(1, MODEL_ID_MAX_LEN).matching(&MODEL_ID_CHARS);

const MODEL_ID_CHARS: Pattern = Pattern::new(MODEL_ID_PATTERN, |id| {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
});

/// The id of a model served by the gateway, such as `model-gen-4`.
///
/// Any string deserialises (so a bad id is reported by [`Validate`] with its path,
/// not as a parse failure); [`ModelId::parse`] checks the pattern up front. Cheap to
/// clone: clones share one string, as a routed call copies its models into the payload,
/// the audit entry and the answer.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(Arc<str>);

impl ModelId {
    /// Wraps `id` without checking it; [`Validate`] reports a bad one later.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into().into())
    }

    /// Wraps `id` after checking it against [`MODEL_ID_PATTERN`] and [`MODEL_ID_MAX_LEN`].
    pub fn parse(id: impl Into<String>) -> Result<Self, crate::ValidationErrors> {
        let id = Self::new(id);
        id.validate()?;
        Ok(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `id` matches [`MODEL_ID_PATTERN`] and fits [`MODEL_ID_MAX_LEN`].
    pub fn is_well_formed(id: &str) -> bool {
        MODEL_ID.accepts(id)
    }
}

impl Validate for ModelId {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        MODEL_ID.check(at, &self.0, out);
    }
}

/// Checks a fallback chain: at most [`MAX_FALLBACKS`] well-formed ids, each distinct
/// and none a primary model (that one is a rule across fields, Rust's alone).
pub(crate) fn check_fallbacks(
    at: &Location<'_>,
    fallbacks: &[ModelId],
    is_primary: impl Fn(&ModelId) -> bool,
    out: &mut Violations,
) {
    out.check_max_items(at, fallbacks.len(), MAX_FALLBACKS);
    for (i, model) in fallbacks.iter().enumerate() {
        let here = at.index(i);
        model.collect_violations(&here, out);
        if check_unique(&here, model, fallbacks[..i].iter(), out) && is_primary(model) {
            let mut model = model.to_string();
            crate::cut_to(&mut model, crate::MAX_UNKNOWN_NAME_CHARS);
            out.push(&here, Rule::FallbackIsPrimary { model });
        }
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ModelId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ModelId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ModelId {
    fn from(id: &str) -> Self {
        Self(Arc::from(id))
    }
}

impl From<String> for ModelId {
    fn from(id: String) -> Self {
        Self(Arc::from(id))
    }
}

impl fmt::Debug for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ModelId").field(&&*self.0).finish()
    }
}

impl Serialize for ModelId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ModelId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Borrowed where the input allows: one copy, into the shared string.
        let id = crate::unknown_fields::Key::deserialize(deserializer)?;
        Ok(Self(Arc::from(&*id.0)))
    }
}

impl PartialEq<str> for ModelId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for ModelId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl schemars::JsonSchema for ModelId {
    fn schema_name() -> Cow<'static, str> {
        "ModelId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = schemars::json_schema!({
            "description": "A model id: an ASCII letter or digit, then letters, digits, '.', '_', ':' or '-'.",
            "type": "string",
        });
        if let Some(object) = schema.as_object_mut() {
            MODEL_ID.state(object);
        }
        schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_documented_shapes() {
        for id in ["model-gen-4", "a", "gpt-4o:2024-08-06", "claude_3.5", "X"] {
            assert!(ModelId::parse(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_spaces_slashes_controls_and_length() {
        for id in ["", " model", "model gen", "a/b", "-lead", "tab\t", "é"] {
            assert!(ModelId::parse(id).is_err(), "{id:?}");
        }
        assert!(ModelId::parse("m".repeat(MODEL_ID_MAX_LEN)).is_ok());
        let err = ModelId::parse("m".repeat(MODEL_ID_MAX_LEN + 1)).unwrap_err();
        assert!(matches!(
            err.violations()[0].rule,
            Rule::TooLong {
                max: 128,
                actual: 129
            }
        ));
    }

    #[test]
    fn well_formed_agrees_with_validate() {
        for id in ["", "a", "a b", "ok-1", "-x", "x-", &"y".repeat(129)] {
            assert_eq!(
                ModelId::is_well_formed(id),
                ModelId::new(id).validate().is_ok(),
                "{id:?}"
            );
        }
    }
}
