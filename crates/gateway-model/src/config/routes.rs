//! `[routes.<name>]`: which model (or weighted split) a route sends to, its fallbacks,
//! and how it samples.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bounds::{self, Bound, Bounded, widen};
use crate::model_id::MAX_FALLBACKS;
use crate::model_id::{ModelId, check_fallbacks};
use crate::payload::{
    DEFAULT_MAX_TOKENS, DEFAULT_TOP_P, MAX_METADATA_ENTRIES, MAX_TOKENS_CAP, MAX_TOKENS_MIN,
    Metadata, TOP_P_ABOVE, TOP_P_MAX,
};
use crate::safety::{SafetyFilter, check_safety_filters};
use crate::tuning::TemperatureMatrix;
use crate::validation::{Location, Rule, Validate, Violations, check_unique};

/// Most models one weighted split may name.
pub const MAX_SPLIT_ENTRIES: usize = 16;
/// Largest weight of one split entry.
pub const MAX_SPLIT_WEIGHT: u32 = 10_000;

/// A named route: which model (or weighted split), its fallbacks, and how to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
// "Set" means what Rust reads as set: a `model` that is not `null`, a `split` that is
// not empty (an empty one next to `model` reads as no split at all).
#[schemars(extend("oneOf" = [
    { "required": ["model"], "properties": { "model": { "type": "string" } } },
    { "required": ["split"], "properties": { "split": { "type": "array", "minItems": 1 } } },
]))]
#[schemars(transform = bounds::state::<Self>)]
pub struct RouteConfig {
    /// The model, when the route has one. Excludes `split`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelId>,
    /// Weighted models, chosen sticky on the caller's key. Excludes `model`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = MAX_SPLIT_ENTRIES))]
    pub split: Vec<SplitEntry>,
    /// Models tried in order when the chosen one fails; distinct, not a primary model.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = MAX_FALLBACKS, "uniqueItems" = true))]
    pub fallbacks: Vec<ModelId>,
    /// Temperatures by tuning level.
    pub temperature: TemperatureMatrix,
    /// `maxTokens` for this route.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub max_tokens: u32,
    /// `topP` for this route: above 0, at most 1.
    pub top_p: f64,
    /// Safety filters for this route.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true))]
    pub safety_filters: Vec<SafetyFilter>,
    /// Labels added to every payload of this route: with `routingVersion` and
    /// `dispatchSource`, which every payload carries unless set here, at most 32.
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            model: None,
            split: Vec::new(),
            fallbacks: Vec::new(),
            temperature: TemperatureMatrix::default(),
            max_tokens: DEFAULT_MAX_TOKENS,
            top_p: DEFAULT_TOP_P,
            safety_filters: Vec::new(),
            metadata: Metadata::new(),
        }
    }
}

impl RouteConfig {
    /// A route to one model with defaults for everything else.
    pub fn to_model(model: impl Into<ModelId>) -> Self {
        Self {
            model: Some(model.into()),
            ..Self::default()
        }
    }

    /// Every model selection may choose first (the model, or each split entry's model).
    pub fn primaries(&self) -> impl Iterator<Item = &ModelId> {
        self.model.iter().chain(self.split.iter().map(|s| &s.model))
    }

    fn check_model_or_split(&self, at: &Location<'_>, out: &mut Violations) {
        match (&self.model, self.split.is_empty()) {
            (Some(model), true) => model.collect_violations(&at.key("model"), out),
            (None, false) => {}
            (Some(_), false) => out.push(
                at,
                Rule::Conflict {
                    reason: "set either `model` or `split`, not both",
                },
            ),
            (None, true) => out.push(
                at,
                Rule::Conflict {
                    reason: "set `model` or a non-empty `split`",
                },
            ),
        }
    }

    fn check_split(&self, at: &Location<'_>, out: &mut Violations) {
        out.check_max_items(at, self.split.len(), MAX_SPLIT_ENTRIES);
        for (i, entry) in self.split.iter().enumerate() {
            let here = at.index(i);
            entry.collect_violations(&here, out);
            // JSON Schema cannot say "distinct by one member": this rule is Rust's alone.
            let earlier = self.split[..i].iter().map(|e| &e.model);
            check_unique(&here.key("model"), &entry.model, earlier, out);
        }
    }
}

impl Bounded for RouteConfig {
    const BOUNDS: &'static [Bound<Self>] = &[
        bounds::int!(max_tokens, MAX_TOKENS_MIN, widen(MAX_TOKENS_CAP)),
        bounds::float!(top_p, above TOP_P_ABOVE, TOP_P_MAX),
    ];
}

impl Validate for RouteConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        self.check_model_or_split(at, out);
        self.check_split(&at.key("split"), out);
        check_fallbacks(
            &at.key("fallbacks"),
            &self.fallbacks,
            |model| self.primaries().any(|p| p == model),
            out,
        );
        self.temperature
            .collect_violations(&at.key("temperature"), out);
        bounds::check(self, at, out);
        check_safety_filters(&at.key("safety_filters"), &self.safety_filters, out);
        self.metadata.collect_violations(&at.key("metadata"), out);
        // Past 32 on their own, the check above says so.
        let sent = Metadata::defaults().overlaid(&self.metadata).len();
        if sent > MAX_METADATA_ENTRIES && self.metadata.len() <= MAX_METADATA_ENTRIES {
            out.push(
                &at.key("metadata"),
                Rule::Conflict {
                    reason: ROUTE_LABELS_FIT,
                },
            );
        }
    }
}

/// Why a route's labels that fit on their own are refused.
const ROUTE_LABELS_FIT: &str = "with `routingVersion` and `dispatchSource`, which every \
     payload carries unless the route sets them, the route's labels come to more than 32, \
     the most a payload may carry: every call of the route would be refused";

/// One model of a weighted split and its share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = bounds::state::<Self>)]
pub struct SplitEntry {
    /// The model.
    pub model: ModelId,
    /// Its relative weight (shares are weight / sum of weights).
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub weight: u32,
}

impl Bounded for SplitEntry {
    const BOUNDS: &'static [Bound<Self>] = &[bounds::int!(weight, 1, widen(MAX_SPLIT_WEIGHT))];
}

impl Validate for SplitEntry {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        self.model.collect_violations(&at.key("model"), out);
        bounds::check(self, at, out);
    }
}
