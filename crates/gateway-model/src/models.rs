//! The model catalogue: `GET /api/v2/ai/models` (paged) and `GET /api/v2/ai/models/{modelId}`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model_id::ModelId;

/// One model the gateway can route to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntity {
    /// The model id used in payloads.
    pub id: ModelId,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Who provides the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Lifecycle state, such as `active` or `deprecated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Largest `maxTokens` the model accepts.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option"
    )]
    pub max_output_tokens: Option<u32>,
    /// The entity's own URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_uri: Option<String>,
    /// Fields this version does not know, kept as received.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One page of models, in Genesys Cloud's paging shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntityListing {
    /// The models on this page.
    #[serde(default)]
    pub entities: Vec<ModelEntity>,
    /// This page's number, from 1.
    #[serde(default = "one", deserialize_with = "crate::whole::deserialize")]
    pub page_number: u32,
    /// Entries per page.
    #[serde(default, deserialize_with = "crate::whole::deserialize")]
    pub page_size: u32,
    /// Entries on all pages.
    #[serde(default, deserialize_with = "crate::whole::deserialize")]
    pub total: u64,
    /// Number of pages.
    #[serde(default, deserialize_with = "crate::whole::deserialize")]
    pub page_count: u32,
    /// URI of the next page, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_uri: Option<String>,
    /// URI of this page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_uri: Option<String>,
    /// Fields this version does not know, kept as received.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn one() -> u32 {
    1
}

impl ModelEntityListing {
    /// Whether a page follows this one.
    pub fn has_next(&self) -> bool {
        self.page_number < self.page_count
    }
}

/// Catalogue entries are read leniently: nothing beyond their JSON shape is checked.
impl crate::Validate for ModelEntity {
    fn collect_violations(&self, _: &crate::Location<'_>, _: &mut crate::Violations) {}
}

/// Catalogue pages are read leniently: nothing beyond their JSON shape is checked.
impl crate::Validate for ModelEntityListing {
    fn collect_violations(&self, _: &crate::Location<'_>, _: &mut crate::Violations) {}
}
