//! The model catalogue: `GET /api/v2/ai/models` (paged) and `GET /api/v2/ai/models/{modelId}`.

mod reading;

use schemars::JsonSchema;
use serde::Serialize;

use crate::model_id::ModelId;

pub use reading::MAX_PAGE_ENTITIES;

/// One model the gateway can route to.
// Read by hand (`reading.rs`), as the attributes below say, but with its unknown fields
// within a budget.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntity {
    /// The model id used in payloads (any string here: the catalogue is the gateway's
    /// word, read leniently).
    #[schemars(with = "String")]
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
// Read by hand (`reading.rs`), with its entities' unknown fields and its own within one
// budget.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unknown_fields::MAX_UNKNOWN_VALUES;

    const PAGE: &str = r#"{"entities":[{"id":"model-gen-4","name":"Gen 4","maxOutputTokens":4096.0,"tier":"a","selfUri":"/m/4"},{"id":"vendor/x","state":null,"tags":[1,{"k":"v"}]}],"pageNumber":2,"pageSize":25,"total":27,"pageCount":2,"x":{"y":true}}"#;

    #[test]
    fn a_page_reads_as_before_its_unknown_fields_kept() {
        let page: ModelEntityListing = serde_json::from_str(PAGE).unwrap();
        assert_eq!(page.entities.len(), 2);
        assert_eq!(page.entities[0].max_output_tokens, Some(4096));
        assert_eq!(page.entities[0].extra["tier"], "a");
        assert_eq!(page.entities[1].id, *"vendor/x");
        assert_eq!(page.entities[1].state, None);
        assert_eq!(page.entities[1].extra["tags"][1]["k"], "v");
        assert_eq!((page.page_number, page.page_size, page.total), (2, 25, 27));
        assert_eq!(page.extra["x"]["y"], true);
        // Written back, it is what was read (the float count as the integer it is, a
        // null left out).
        let written = PAGE
            .replace("4096.0", "4096")
            .replace(r#""state":null,"#, "");
        let whole: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(serde_json::to_value(&page).unwrap(), whole);
        let empty: ModelEntityListing = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.page_number, 1);
        assert!(!empty.has_next());
        for bad in [
            r#"{"entities":[{}]}"#,
            r#"{"pageSize":1,"pageSize":2}"#,
            r#"{"entities":[{"id":"a","id":"b"}]}"#,
        ] {
            assert!(
                serde_json::from_str::<ModelEntityListing>(bad).is_err(),
                "{bad}"
            );
        }
    }

    /// The unknown fields of a page and of all its entities share one budget: a page of
    /// empty lists within the answer cap once took dozens of times its size in memory.
    #[test]
    fn unknown_values_across_a_page_share_one_budget() {
        let per_entity = MAX_UNKNOWN_VALUES / 4 + 1;
        let entity = format!(
            r#"{{"id":"m","x":[{}]}}"#,
            vec!["[]"; per_entity - 1].join(",")
        );
        let page = |n: usize| format!(r#"{{"entities":[{}]}}"#, vec![entity.as_str(); n].join(","));
        assert!(serde_json::from_str::<ModelEntityListing>(&page(3)).is_ok());
        let err = serde_json::from_str::<ModelEntityListing>(&page(4)).unwrap_err();
        assert!(
            err.to_string()
                .contains("fields this version does not know"),
            "{err}"
        );
        // One entity alone has the whole budget.
        assert!(serde_json::from_str::<ModelEntity>(&entity).is_ok());
        let many = format!(
            r#"{{"entities":[{}]}}"#,
            vec![r#"{"id":"m"}"#; MAX_PAGE_ENTITIES + 1].join(",")
        );
        let err = serde_json::from_str::<ModelEntityListing>(&many).unwrap_err();
        assert!(err.to_string().contains("models on one page"), "{err}");
    }
}
