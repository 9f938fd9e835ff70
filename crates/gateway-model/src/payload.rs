//! The prompt payload sent to `POST /api/v2/ai/gateway/prompts`, and its builder.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bounds::{self, Bound, Bounded, Pattern, Text, white_space_class, widen};
use crate::model_id::{MAX_FALLBACKS, ModelId, check_fallbacks};
use crate::safety::{SafetyFilter, check_safety_filters};
use crate::tuning::{TEMPERATURE_MAX, TEMPERATURE_MIN, TemperatureMatrix, Tuning};
use crate::validation::{Location, Rule, Validate, ValidationErrors, Violations};

/// Longest accepted prompt, in characters (Unicode scalar values, as JSON Schema's
/// `maxLength` counts them; not bytes).
pub const MAX_PROMPT_CHARS: usize = 8000;
/// The Unicode `White_Space` characters as a regular-expression class body (see
/// [`PROMPT_PATTERN`]).
pub const WHITE_SPACE_CLASS: &str = white_space_class!();
/// The pattern a prompt matches: it holds a character that is not `White_Space`, so a
/// prompt of only whitespace counts as empty.
pub const PROMPT_PATTERN: &str = concat!("[^", white_space_class!(), "]");
/// Largest accepted `maxTokens`.
pub const MAX_TOKENS_CAP: u32 = 32_768;
/// Most metadata entries one payload may carry.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Longest metadata key, in characters.
pub const MAX_METADATA_KEY_CHARS: usize = 64;
/// Longest metadata value, in characters.
pub const MAX_METADATA_VALUE_CHARS: usize = 512;
/// The pattern every metadata key matches.
pub const METADATA_KEY_PATTERN: &str = "^[A-Za-z0-9_.-]+$";
/// Largest request body Genesys Cloud accepts, in bytes.
pub const MAX_REQUEST_BYTES: usize = 512_000;

/// `maxTokens` when the builder is not told otherwise (the tutorial's value).
pub const DEFAULT_MAX_TOKENS: u32 = 2048;
/// `topP` when the builder is not told otherwise (the tutorial's value).
pub const DEFAULT_TOP_P: f64 = 0.95;
/// Version of the routing logic, sent as metadata `routingVersion`.
pub const ROUTING_VERSION: &str = "2";
/// Default metadata `dispatchSource`.
pub const DISPATCH_SOURCE: &str = "genesys-router";

/// Smallest accepted `maxTokens`.
pub(crate) const MAX_TOKENS_MIN: u64 = 1;
/// `topP` must lie above this.
pub(crate) const TOP_P_ABOVE: f64 = 0.0;
/// Largest accepted `topP`.
pub(crate) const TOP_P_MAX: f64 = 1.0;

/// A prompt: 1 to [`MAX_PROMPT_CHARS`] characters, not only whitespace.
pub(crate) const PROMPT: Text = Text::chars(1, MAX_PROMPT_CHARS).matching(&NOT_BLANK);

const NOT_BLANK: Pattern = Pattern::not_blank(PROMPT_PATTERN, |text| {
    !text.chars().all(char::is_whitespace)
});

/// A metadata key: 1 to [`MAX_METADATA_KEY_CHARS`] characters matching
/// [`METADATA_KEY_PATTERN`].
pub(crate) const METADATA_KEY: Text =
    Text::chars(1, MAX_METADATA_KEY_CHARS).matching(&METADATA_KEY_CHARS);

const METADATA_KEY_CHARS: Pattern = Pattern::new(METADATA_KEY_PATTERN, |key| {
    key.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
});

/// A metadata value: at most [`MAX_METADATA_VALUE_CHARS`] characters.
const METADATA_VALUE: Text = Text::chars(0, MAX_METADATA_VALUE_CHARS);

/// One prompt for the AI Gateway: which model, what to ask, how to sample, where to fail over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = bounds::state::<Self>)]
pub struct GatewayPayload {
    /// The model that should answer.
    pub model_id: ModelId,
    /// The prompt text: 1 to 8000 characters, not all whitespace.
    pub prompt: String,
    /// Sampling parameters.
    pub parameters: Parameters,
    /// Models the gateway may fail over to, in order: distinct, not `modelId`, at most 5.
    /// (That no fallback equals `modelId` is checked by `validate()`: JSON Schema cannot
    /// compare two fields.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = MAX_FALLBACKS, "uniqueItems" = true))]
    pub fallback_models: Vec<ModelId>,
    /// Content filters to run before the model sees the prompt; distinct, known names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true))]
    pub safety_filters: Vec<SafetyFilter>,
    /// Free-form string labels, carried to the gateway's logs.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// Sampling parameters; extra parameters the gateway understands are kept as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = bounds::state::<Self>)]
pub struct Parameters {
    /// Sampling temperature, 0.0 to 2.0.
    pub temperature: f64,
    /// Most tokens to generate, 1 to 32768.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub max_tokens: u32,
    /// Nucleus sampling mass: above 0, at most 1.
    pub top_p: f64,
    /// Parameters this version does not type (for example `stop`), kept as given.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Parameters {
    /// The tutorial's defaults with the given temperature.
    pub fn with_temperature(temperature: f64) -> Self {
        Self {
            temperature,
            max_tokens: DEFAULT_MAX_TOKENS,
            top_p: DEFAULT_TOP_P,
            extra: serde_json::Map::new(),
        }
    }
}

impl Bounded for Parameters {
    const BOUNDS: &'static [Bound<Self>] = &[
        bounds::float!(temperature, TEMPERATURE_MIN, TEMPERATURE_MAX),
        bounds::int!(max_tokens as "maxTokens", MAX_TOKENS_MIN, widen(MAX_TOKENS_CAP)),
        bounds::float!(top_p as "topP", above TOP_P_ABOVE, TOP_P_MAX),
    ];
}

/// The parameters [`Parameters`] types, as the wire names them.
const TYPED_PARAMETERS: [&str; 3] = ["temperature", "maxTokens", "topP"];

impl Validate for Parameters {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        bounds::check(self, at, out);
        // Written after the typed field, an extra of the same name would be what the
        // gateway reads, unchecked by the bounds, the route's band and the audit entry.
        for name in TYPED_PARAMETERS
            .into_iter()
            .filter(|n| self.extra.contains_key(*n))
        {
            out.push(
                &at.key(name),
                Rule::Conflict {
                    reason: "is typed: set it through its field, not as an extra parameter",
                },
            );
        }
    }
}

/// String labels sent with a prompt: at most 32 entries, keys of 1 to 64 characters
/// matching `^[A-Za-z0-9_.-]+$`, values of at most 512 characters.
///
/// Cheap to clone: clones share one map until one of them is changed (a route's labels
/// go into every call's payload as they are).
#[derive(Clone, Default)]
pub struct Metadata(Option<Arc<BTreeMap<String, String>>>);

/// The map behind an empty [`Metadata`].
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl Metadata {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.as_map().is_empty()
    }

    /// How many labels there are.
    pub fn len(&self) -> usize {
        self.as_map().len()
    }

    /// Sets `key` to `value` (a later value replaces an earlier one).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let map = self.0.get_or_insert_with(Arc::default);
        Arc::make_mut(map).insert(key.into(), value.into());
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.as_map().get(key).map(String::as_str)
    }

    /// The labels, sorted by key.
    pub fn iter(&self) -> std::collections::btree_map::Iter<'_, String, String> {
        self.as_map().iter()
    }

    /// The labels as a map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        self.0.as_deref().unwrap_or(&NO_LABELS)
    }

    /// These labels with `over`'s on top (a label of `over` wins); shares this map when
    /// `over` is empty.
    #[must_use]
    pub fn overlaid(&self, over: &Metadata) -> Metadata {
        let mut merged = self.clone();
        for (k, v) in over {
            merged.insert(k.clone(), v.clone());
        }
        merged
    }

    /// The labels the router adds to every prompt: `routingVersion` and `dispatchSource`.
    pub fn defaults() -> Self {
        Self::from_iter([
            ("routingVersion", ROUTING_VERSION),
            ("dispatchSource", DISPATCH_SOURCE),
        ])
    }
}

impl<'a> IntoIterator for &'a Metadata {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.as_map() == other.as_map()
    }
}

impl Eq for Metadata {}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Metadata").field(self.as_map()).finish()
    }
}

impl From<BTreeMap<String, String>> for Metadata {
    fn from(map: BTreeMap<String, String>) -> Self {
        Self((!map.is_empty()).then(|| Arc::new(map)))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        iter.into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect::<BTreeMap<String, String>>()
            .into()
    }
}

impl Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_map().serialize(serializer)
    }
}

/// The most labels read from one JSON object before it is refused outright: past
/// [`MAX_METADATA_ENTRIES`] validation names every problem, and reading on (each label two
/// strings, each key checked against its pattern) would let one request body of small
/// labels cost a server worker hundreds of milliseconds.
pub const MAX_METADATA_READ: usize = 1_024;

/// Reads labels, refusing a key given twice: JSON leaves duplicates to the reader, and
/// keeping one of them silently would change what the caller asked for. More than
/// [`MAX_METADATA_READ`] labels are refused as they are read.
impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Labels;

        impl<'de> serde::de::Visitor<'de> for Labels {
            type Value = BTreeMap<String, String>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of string labels")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut labels = BTreeMap::new();
                while let Some((key, value)) = map.next_entry::<String, String>()? {
                    if labels.len() == MAX_METADATA_READ {
                        return Err(serde::de::Error::custom(format_args!(
                            "more than {MAX_METADATA_READ} labels (at most \
                             {MAX_METADATA_ENTRIES} are allowed)"
                        )));
                    }
                    if labels.contains_key(&key) {
                        return Err(serde::de::Error::custom(format_args!(
                            "duplicate label `{key}`"
                        )));
                    }
                    labels.insert(key, value);
                }
                Ok(labels)
            }
        }

        deserializer.deserialize_map(Labels).map(Self::from)
    }
}

impl Validate for Metadata {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        out.check_max_items(at, self.len(), MAX_METADATA_ENTRIES);
        for (key, value) in self {
            let here = at.key(key);
            METADATA_KEY.check(&here, key, out);
            METADATA_VALUE.check(&here, value, out);
        }
    }
}

impl JsonSchema for Metadata {
    fn schema_name() -> Cow<'static, str> {
        "Metadata".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "String labels: at most 32 entries, keys of 1 to 64 characters from [A-Za-z0-9_.-], values of at most 512 characters.",
            "type": "object",
            "maxProperties": MAX_METADATA_ENTRIES,
            "propertyNames": METADATA_KEY.schema(),
            "additionalProperties": { "type": "string", "maxLength": MAX_METADATA_VALUE_CHARS },
        })
    }
}

impl Bounded for GatewayPayload {
    const BOUNDS: &'static [Bound<Self>] = &[bounds::text!(prompt, PROMPT)];
}

impl Validate for GatewayPayload {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        self.model_id.collect_violations(&at.key("modelId"), out);
        bounds::check(self, at, out);
        self.parameters
            .collect_violations(&at.key("parameters"), out);
        check_fallbacks(
            &at.key("fallbackModels"),
            &self.fallback_models,
            |model| *model == self.model_id,
            out,
        );
        check_safety_filters(&at.key("safetyFilters"), &self.safety_filters, out);
        self.metadata.collect_violations(&at.key("metadata"), out);
    }
}

impl GatewayPayload {
    /// Starts a payload for `model_id` and `prompt` with the tutorial's defaults.
    ///
    /// ```
    /// use gateway_model::{GatewayPayload, SafetyFilter, TemperatureMatrix, Tuning};
    ///
    /// let payload = GatewayPayload::builder("model-gen-4", "Summarize this transcript")
    ///     .tuned(&TemperatureMatrix::default(), Tuning::Low)
    ///     .fallbacks(["model-fallback-3"])
    ///     .safety_filters([SafetyFilter::Pii, SafetyFilter::Profanity])
    ///     .metadata("conversationId", "c-42")
    ///     .build()?;
    /// assert_eq!(payload.parameters.temperature, 0.2);
    /// assert_eq!(payload.parameters.max_tokens, 2048);
    /// assert_eq!(payload.metadata.get("dispatchSource"), Some("genesys-router"));
    /// # Ok::<(), gateway_model::ValidationErrors>(())
    /// ```
    pub fn builder(model_id: impl Into<ModelId>, prompt: impl Into<String>) -> PayloadBuilder {
        PayloadBuilder::new(model_id.into(), prompt.into())
    }
}

/// Builds a [`GatewayPayload`] the way the tutorial's `BuildPayload` meant to, then validates it.
#[derive(Debug, Clone)]
#[must_use]
pub struct PayloadBuilder {
    payload: GatewayPayload,
}

impl PayloadBuilder {
    fn new(model_id: ModelId, prompt: String) -> Self {
        let metadata = Metadata::defaults();
        Self {
            payload: GatewayPayload {
                model_id,
                prompt,
                parameters: Parameters::with_temperature(TemperatureMatrix::default().default),
                fallback_models: Vec::new(),
                safety_filters: Vec::new(),
                metadata,
            },
        }
    }

    /// Sets the temperature directly.
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.payload.parameters.temperature = temperature;
        self
    }

    /// Sets the temperature from `matrix` for `tuning`.
    pub fn tuned(self, matrix: &TemperatureMatrix, tuning: Tuning) -> Self {
        self.temperature(matrix.pick(tuning))
    }

    /// Sets `maxTokens` (default 2048).
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.payload.parameters.max_tokens = max_tokens;
        self
    }

    /// Sets `topP` (default 0.95).
    pub fn top_p(mut self, top_p: f64) -> Self {
        self.payload.parameters.top_p = top_p;
        self
    }

    /// Sets an extra sampling parameter this version does not type (a typed one's name,
    /// such as `temperature`, is refused by [`build`](Self::build)).
    pub fn parameter(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
        self.payload.parameters.extra.insert(name.into(), value);
        self
    }

    /// Sets the fallback chain, in order.
    pub fn fallbacks<I, M>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<ModelId>,
    {
        self.payload.fallback_models = models.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the safety filters.
    pub fn safety_filters<I, F>(mut self, filters: I) -> Self
    where
        I: IntoIterator<Item = F>,
        F: Into<SafetyFilter>,
    {
        self.payload.safety_filters = filters.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one metadata entry (replacing one with the same key, defaults included).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.payload.metadata.insert(key, value);
        self
    }

    /// Validates and returns the payload, or the violations with their JSON paths (the
    /// first [`crate::MAX_VIOLATIONS`], and how many more).
    pub fn build(self) -> Result<GatewayPayload, ValidationErrors> {
        self.payload.validate()?;
        Ok(self.payload)
    }

    /// Returns the payload without validating it (for tests of the validators themselves).
    pub fn build_unchecked(self) -> GatewayPayload {
        self.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::Rule;

    #[test]
    fn labels_past_the_read_bound_are_refused_as_they_are_read() {
        let labels = |n: usize| {
            let entries: Vec<String> = (0..n).map(|i| format!(r#""k{i}":"v""#)).collect();
            format!("{{{}}}", entries.join(","))
        };
        let read: Metadata = serde_json::from_str(&labels(MAX_METADATA_READ)).unwrap();
        assert_eq!(read.len(), MAX_METADATA_READ, "validation names the excess");
        let err = serde_json::from_str::<Metadata>(&labels(MAX_METADATA_READ + 1)).unwrap_err();
        assert!(
            err.to_string()
                .contains("more than 1024 labels (at most 32 are allowed)"),
            "{err}"
        );
    }

    fn base() -> PayloadBuilder {
        GatewayPayload::builder("model-gen-4", "Summarize this transcript")
    }

    /// Regression: each entry of a list was compared with every one before it, so
    /// 56,000 fallbacks or safety filters in a body under the gateway's 512,000-byte cap
    /// took 3.6 s to check (release build). A list past its cap is refused whatever its
    /// later entries hold: only its first entries are compared.
    #[test]
    fn a_long_list_of_repeats_is_refused_without_comparing_every_pair() {
        use crate::validation::UNIQUE_CHECKED;
        let repeats = 50_000;
        let errors = base()
            .fallbacks(vec!["model-fallback-3"; repeats])
            .safety_filters(vec!["pii"; repeats])
            .build()
            .unwrap_err();
        let duplicates = |list: &str| {
            errors
                .violations()
                .iter()
                .filter(|v| v.path.starts_with(list) && matches!(v.rule, Rule::Duplicate { .. }))
                .count()
        };
        // Listed: the first 64 violations; counted: every one found.
        assert_eq!(duplicates("/fallbackModels/"), UNIQUE_CHECKED - 1);
        assert!(errors.has_path("/fallbackModels"), "too many: {errors}");
        assert_eq!(
            errors.len(),
            1 + 2 * (UNIQUE_CHECKED - 1),
            "the cap, and the repeats among the first {UNIQUE_CHECKED} of each list"
        );
    }

    #[test]
    fn builder_applies_tutorial_defaults() {
        let p = base().build().unwrap();
        assert_eq!(p.parameters.max_tokens, 2048);
        assert_eq!(p.parameters.top_p, 0.95);
        assert_eq!(p.parameters.temperature, 0.7);
        assert_eq!(p.metadata.get("routingVersion"), Some(ROUTING_VERSION));
        assert_eq!(p.metadata.get("dispatchSource"), Some(DISPATCH_SOURCE));
    }

    #[test]
    fn serialises_camel_case_and_omits_empty_lists() {
        let p = base().build().unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["modelId"], "model-gen-4");
        assert_eq!(v["parameters"]["maxTokens"], 2048);
        assert_eq!(v["parameters"]["topP"], 0.95);
        assert!(v.get("fallbackModels").is_none());
    }

    #[test]
    fn prompt_length_counts_characters_not_bytes() {
        let ok = "é".repeat(MAX_PROMPT_CHARS);
        assert_eq!(ok.len(), 2 * MAX_PROMPT_CHARS);
        assert!(base().temperature(0.5).build().is_ok());
        assert!(GatewayPayload::builder("m", ok).build().is_ok());
        let long = "語".repeat(MAX_PROMPT_CHARS + 1);
        let err = GatewayPayload::builder("m", long).build().unwrap_err();
        assert_eq!(err.violations().len(), 1);
        assert_eq!(err.violations()[0].path, "/prompt");
        assert_eq!(
            err.violations()[0].rule,
            Rule::TooLong {
                max: 8000,
                actual: 8001
            }
        );
    }

    #[test]
    fn empty_prompt_is_required() {
        let err = GatewayPayload::builder("m", "").build().unwrap_err();
        assert_eq!(err.violations()[0].path, "/prompt");
        assert_eq!(err.violations()[0].rule, Rule::Required);
    }

    #[test]
    fn whitespace_only_prompt_is_refused_as_empty() {
        for blank in [
            " ",
            "\t\n\r",
            "\u{85}",
            "\u{a0}\u{3000}",
            "\u{2028} \u{2029}",
        ] {
            let err = GatewayPayload::builder("m", blank).build().unwrap_err();
            assert_eq!(err.violations()[0].path, "/prompt", "{blank:?}");
            assert_eq!(err.violations()[0].rule, Rule::Required, "{blank:?}");
        }
        // Not White_Space, so these are text.
        for text in ["\u{feff}", "\u{200b}", " a ", "\u{3000}x"] {
            assert!(
                GatewayPayload::builder("m", text).build().is_ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn temperature_outside_range_is_rejected() {
        for t in [-0.1, 2.1, f64::NAN, f64::INFINITY] {
            let err = base().temperature(t).build().unwrap_err();
            assert!(err.has_path("/parameters/temperature"), "{t}: {err}");
        }
        for t in [0.0, 2.0] {
            assert!(base().temperature(t).build().is_ok(), "{t}");
        }
    }

    #[test]
    fn top_p_and_max_tokens_bounds() {
        assert!(
            base()
                .top_p(0.0)
                .build()
                .unwrap_err()
                .has_path("/parameters/topP")
        );
        assert!(base().top_p(1.0).build().is_ok());
        assert!(
            base()
                .max_tokens(0)
                .build()
                .unwrap_err()
                .has_path("/parameters/maxTokens")
        );
        assert!(base().max_tokens(MAX_TOKENS_CAP).build().is_ok());
        assert!(base().max_tokens(MAX_TOKENS_CAP + 1).build().is_err());
    }

    #[test]
    fn a_label_given_twice_is_refused_not_overwritten() {
        let err =
            serde_json::from_str::<Metadata>(r#"{"ticket":"T-1","ticket":"T-2"}"#).unwrap_err();
        assert!(
            err.to_string().contains("duplicate label `ticket`"),
            "{err}"
        );
        let labels: Metadata = serde_json::from_str(r#"{"a":"1","b":"2"}"#).unwrap();
        assert_eq!(labels.len(), 2);
        assert!(serde_json::from_str::<Metadata>(r#"{"a":1}"#).is_err());
    }

    #[test]
    fn duplicate_fallback_and_primary_fallback_are_rejected() {
        let err = base().fallbacks(["a", "b", "a"]).build().unwrap_err();
        assert_eq!(err.violations()[0].path, "/fallbackModels/2");
        assert!(matches!(err.violations()[0].rule, Rule::Duplicate { .. }));

        let err = base().fallbacks(["b", "model-gen-4"]).build().unwrap_err();
        assert_eq!(err.violations()[0].path, "/fallbackModels/1");
        assert!(matches!(
            err.violations()[0].rule,
            Rule::FallbackIsPrimary { .. }
        ));

        let err = base()
            .fallbacks(["a", "b", "c", "d", "e", "f"])
            .build()
            .unwrap_err();
        assert_eq!(err.violations()[0].path, "/fallbackModels");
    }

    #[test]
    fn unknown_safety_filter_lists_the_known_ones() {
        let err = base()
            .safety_filters(["pii", "brand-safety"])
            .build()
            .unwrap_err();
        let v = &err.violations()[0];
        assert_eq!(v.path, "/safetyFilters/1");
        let text = v.to_string();
        assert!(
            text.contains("unknown safety filter `brand-safety`"),
            "{text}"
        );
        for known in SafetyFilter::KNOWN {
            assert!(text.contains(known), "{known} missing from {text}");
        }
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let err = GatewayPayload::builder("bad id", "")
            .temperature(3.0)
            .top_p(2.0)
            .metadata("bad key", "v")
            .build()
            .unwrap_err();
        let paths: Vec<_> = err.violations().iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/modelId",
                "/prompt",
                "/parameters/temperature",
                "/parameters/topP",
                "/metadata/bad key"
            ]
        );
    }

    #[test]
    fn metadata_bounds() {
        let long_value = "v".repeat(MAX_METADATA_VALUE_CHARS + 1);
        assert!(
            base()
                .metadata("k", long_value)
                .build()
                .unwrap_err()
                .has_path("/metadata/k")
        );
        let mut b = base();
        for i in 0..MAX_METADATA_ENTRIES {
            b = b.metadata(format!("k{i}"), "v");
        }
        assert!(b.build().unwrap_err().has_path("/metadata"));
    }

    #[test]
    fn oversized_body_is_refused() {
        let p = base()
            .parameter(
                "stop",
                serde_json::Value::String("x".repeat(MAX_REQUEST_BYTES)),
            )
            .build()
            .unwrap();
        assert!(p.to_json_bytes().is_err());
        assert!(base().build().unwrap().to_json_bytes().is_ok());
    }

    #[test]
    fn an_extra_parameter_cannot_stand_in_for_a_typed_one() {
        for name in TYPED_PARAMETERS {
            let err = GatewayPayload::builder("m", "p")
                .parameter(name, serde_json::json!(5))
                .build()
                .unwrap_err();
            assert!(
                err.has_path(&format!("/parameters/{name}")),
                "{name}: {err}"
            );
        }
        GatewayPayload::builder("m", "p")
            .parameter("stop", serde_json::json!(["\n"]))
            .build()
            .unwrap();
    }

    #[test]
    fn an_extra_parameter_is_judged_by_the_schema() {
        // `validate()` judges no extra's value; the compiled schema does, on the
        // document as sent, where this entry (refused by `build`, passed here unchecked)
        // replaces the typed temperature.
        let p = base()
            .parameter("temperature", serde_json::json!(7.5))
            .build_unchecked();
        let refused = p.to_json_bytes().unwrap_err();
        assert!(refused.has_path("/parameters/temperature"), "{refused}");
        let fine = base().parameter("stop", serde_json::json!(["\n"])).build();
        let bytes = fine.unwrap().to_json_bytes().unwrap();
        let sent: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(sent["parameters"]["stop"][0], "\n");
    }
}
