//! Reading catalogue pages within bounds: the unknown fields of a page and of all its
//! entities share one [`MAX_UNKNOWN_VALUES`] budget, and a page holds at most
//! [`MAX_PAGE_ENTITIES`] entities. serde's `flatten` kept every unknown value, and
//! buffered it twice on the way, so a page of `[]`s within the answer cap took dozens of
//! times its size in memory.

use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{ModelEntity, ModelEntityListing};
use crate::unknown_fields::{Budgeted, Key, MAX_UNKNOWN_VALUES};
use crate::whole::Whole;

/// The most entities one catalogue page may hold (real pages hold at most a few
/// hundred); a page with more is refused as malformed.
pub const MAX_PAGE_ENTITIES: usize = 10_000;

impl<'de> Deserialize<'de> for ModelEntity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Entity(&Cell::new(MAX_UNKNOWN_VALUES)).deserialize(deserializer)
    }
}

impl<'de> Deserialize<'de> for ModelEntityListing {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Listing(&Cell::new(MAX_UNKNOWN_VALUES)))
    }
}

/// Sets `slot` to `value`, refusing a field given twice.
fn once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(name));
    }
    Ok(())
}

/// One entity, its unknown fields counted against the budget it shares.
struct Entity<'b>(&'b Cell<usize>);

impl<'de> DeserializeSeed<'de> for Entity<'_> {
    type Value = ModelEntity;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ModelEntity, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Entity<'_> {
    type Value = ModelEntity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct ModelEntity")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ModelEntity, A::Error> {
        let (mut id, mut name, mut provider, mut state) = (None, None, None, None);
        let (mut max_output_tokens, mut self_uri) = (None, None);
        let mut extra = serde_json::Map::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "id" => once(&mut id, "id", map.next_value()?)?,
                "name" => once(&mut name, "name", map.next_value()?)?,
                "provider" => once(&mut provider, "provider", map.next_value()?)?,
                "state" => once(&mut state, "state", map.next_value()?)?,
                "maxOutputTokens" => once(
                    &mut max_output_tokens,
                    "maxOutputTokens",
                    map.next_value::<Option<Whole<u32>>>()?.map(|w| w.0),
                )?,
                "selfUri" => once(&mut self_uri, "selfUri", map.next_value()?)?,
                _ => {
                    let value = map.next_value_seed(Budgeted(self.0))?;
                    extra.insert(key.0.into_owned(), value);
                }
            }
        }
        Ok(ModelEntity {
            id: id.ok_or_else(|| de::Error::missing_field("id"))?,
            name: name.flatten(),
            provider: provider.flatten(),
            state: state.flatten(),
            max_output_tokens: max_output_tokens.flatten(),
            self_uri: self_uri.flatten(),
            extra,
        })
    }
}

/// A page's entities, at most [`MAX_PAGE_ENTITIES`], sharing the page's budget.
struct Entities<'b>(&'b Cell<usize>);

impl<'de> DeserializeSeed<'de> for Entities<'_> {
    type Value = Vec<ModelEntity>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entities<'_> {
    type Value = Vec<ModelEntity>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of models")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entities = Vec::new();
        while let Some(entity) = seq.next_element_seed(Entity(self.0))? {
            if entities.len() == MAX_PAGE_ENTITIES {
                return Err(de::Error::custom(format_args!(
                    "more than {MAX_PAGE_ENTITIES} models on one page"
                )));
            }
            entities.push(entity);
        }
        Ok(entities)
    }
}

/// A page, its unknown fields and its entities' counted against one budget.
struct Listing<'b>(&'b Cell<usize>);

impl<'de> Visitor<'de> for Listing<'_> {
    type Value = ModelEntityListing;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct ModelEntityListing")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ModelEntityListing, A::Error> {
        let (mut entities, mut page_number, mut page_size) = (None, None, None);
        let (mut total, mut page_count, mut next_uri, mut self_uri) = (None, None, None, None);
        let mut extra = serde_json::Map::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "entities" => once(
                    &mut entities,
                    "entities",
                    map.next_value_seed(Entities(self.0))?,
                )?,
                "pageNumber" => once(
                    &mut page_number,
                    "pageNumber",
                    map.next_value::<Whole<u32>>()?.0,
                )?,
                "pageSize" => once(
                    &mut page_size,
                    "pageSize",
                    map.next_value::<Whole<u32>>()?.0,
                )?,
                "total" => once(&mut total, "total", map.next_value::<Whole<u64>>()?.0)?,
                "pageCount" => once(
                    &mut page_count,
                    "pageCount",
                    map.next_value::<Whole<u32>>()?.0,
                )?,
                "nextUri" => once(&mut next_uri, "nextUri", map.next_value()?)?,
                "selfUri" => once(&mut self_uri, "selfUri", map.next_value()?)?,
                _ => {
                    let value = map.next_value_seed(Budgeted(self.0))?;
                    extra.insert(key.0.into_owned(), value);
                }
            }
        }
        Ok(ModelEntityListing {
            entities: entities.unwrap_or_default(),
            page_number: page_number.unwrap_or(1),
            page_size: page_size.unwrap_or_default(),
            total: total.unwrap_or_default(),
            page_count: page_count.unwrap_or_default(),
            next_uri: next_uri.flatten(),
            self_uri: self_uri.flatten(),
            extra,
        })
    }
}
