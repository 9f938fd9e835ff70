//! Serde for the answer types that keep fields this version does not know, without
//! serde's `flatten`: a flattened field makes the derived `Deserialize` buffer the whole
//! object (every key and value copied into an intermediate tree) before reading a single
//! field, which cost a routed call more than the rest of its answer parsing together.
//!
//! [`keep_unknown_fields!`] writes a `Serialize` and a `Deserialize` that read known keys
//! straight into their fields and only unknown ones into the `extra` map, with the same
//! JSON as the derive (known fields in declaration order, then `extra`; optional fields
//! skipped when absent). The `#[serde(...)]` attributes stay on the types for
//! `schemars`, which reads them to write the same JSON Schema as before.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The most JSON values (each object, array, string, number, boolean or null) one
/// answer keeps in the fields this version does not know, its nested objects' and its
/// lists of names (such as the safety filters that fired) counted together. A `serde_json::Value`
/// takes about 80 bytes however short its JSON (`{}` is two), so without a bound an
/// answer of nested empty objects within the size cap would take dozens of times its
/// size in memory; an answer with more is refused as malformed. The bound is far past
/// any real answer's extras (per-token log probabilities of a 4,096-token answer are
/// about 50,000 values) and keeps them to about 8 MB, twice the default answer cap.
pub const MAX_UNKNOWN_VALUES: usize = 100_000;

/// Reads one unknown field's value into a `serde_json::Value`, counting each value it
/// holds against a budget shared by the object's unknown fields.
pub(crate) struct Budgeted<'b>(pub(crate) &'b Cell<usize>);

impl Budgeted<'_> {
    fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.0.get().checked_sub(1) {
            Some(left) => {
                self.0.set(left);
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "more than {MAX_UNKNOWN_VALUES} JSON values in fields this version does not know and lists of names"
            ))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Budgeted<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budgeted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.take()?;
        // As serde_json's own `Value`: a float JSON cannot hold reads as null.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Budgeted(self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Budgeted(self.0))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A type whose unknown fields count against a budget shared with the object it is in
/// (written by [`keep_unknown_fields!`]).
pub(crate) trait SharesBudget: Sized {
    /// Reads the object's fields from `map`, counting unknown values against `budget`.
    fn visit_budgeted<'de, A: MapAccess<'de>>(
        map: A,
        budget: &Cell<usize>,
    ) -> Result<Self, A::Error>;
}

/// Reads an optional nested object (absent or `null` is `None`) against its parent's
/// budget.
pub(crate) struct Nested<'b, T>(pub(crate) &'b Cell<usize>, pub(crate) PhantomData<T>);

impl<'de, T: SharesBudget> DeserializeSeed<'de> for Nested<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, T: SharesBudget> Visitor<'de> for Nested<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
        T::visit_budgeted(map, self.0).map(Some)
    }
}

/// Reads a list of strings, each counted against the budget (read as [`Values`], so
/// an element of another type is counted before it is refused).
pub(crate) struct Strings<'b>(pub(crate) &'b Cell<usize>);

impl<'de> DeserializeSeed<'de> for Strings<'_> {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<String>, D::Error> {
        Values(self.0)
            .deserialize(deserializer)?
            .into_iter()
            .map(|value| match value {
                Value::String(text) => Ok(text),
                _ => Err(de::Error::invalid_type(
                    de::Unexpected::Other("a value of another type"),
                    &"a string",
                )),
            })
            .collect()
    }
}

/// Reads a list of any JSON values, each value in it counted against the budget.
pub(crate) struct Values<'b>(pub(crate) &'b Cell<usize>);

impl<'de> DeserializeSeed<'de> for Values<'_> {
    type Value = Vec<Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Value>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Values<'_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Budgeted(self.0))? {
            items.push(item);
        }
        Ok(items)
    }
}

/// An object key (or any string): borrowed from the input where it can be, so reading
/// it copies nothing.
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Implements `Serialize` and `Deserialize` for a struct with named fields and an
/// `extra: serde_json::Map<String, serde_json::Value>` that keeps unknown keys.
///
/// Each field is `name: "jsonName" mode`, where mode is `required` (must be present),
/// `whole` (a required unsigned integer, read by [`crate::whole::Whole`]), `optional`
/// (an `Option`: absent or `null` reads as `None`, `None` is not written),
/// `optional_whole` (the same for an unsigned integer), `nested` (an optional object of
/// a type this macro also serves, counted against this one's budget), `list` (a `Vec` or
/// map: absent reads as empty, empty is not written), `strings` (a `Vec<String>`, each
/// counted against the budget) or `values` (a `Vec<serde_json::Value>`, counted alike).
macro_rules! keep_unknown_fields {
    ($ty:ident { $($field:ident : $json:literal $mode:ident),* $(,)? }) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap as _;
                let mut map = serializer.serialize_map(None)?;
                $( $crate::unknown_fields::keep_unknown_fields!(@write $mode map $json &self.$field); )*
                for (key, value) in &self.extra {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }

        impl $crate::unknown_fields::SharesBudget for $ty {
            fn visit_budgeted<'de, A: serde::de::MapAccess<'de>>(
                mut map: A,
                budget: &std::cell::Cell<usize>,
            ) -> Result<Self, A::Error> {
                use serde::de::Error as _;
                $( let mut $field = None; )*
                let mut extra = serde_json::Map::new();
                while let Some(key) = map.next_key::<$crate::unknown_fields::Key<'de>>()? {
                    match &*key.0 {
                        $( $json => {
                            if $field.is_some() {
                                return Err(A::Error::duplicate_field($json));
                            }
                            $field = Some($crate::unknown_fields::keep_unknown_fields!(@next $mode map budget));
                        } )*
                        _ => {
                            let value = map.next_value_seed(
                                $crate::unknown_fields::Budgeted(budget),
                            )?;
                            extra.insert(key.0.into_owned(), value);
                        }
                    }
                }
                Ok($ty {
                    $( $field: $crate::unknown_fields::keep_unknown_fields!(@read $mode $field $json A), )*
                    extra,
                })
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct FieldsVisitor;

                impl<'de> serde::de::Visitor<'de> for FieldsVisitor {
                    type Value = $ty;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("struct ", stringify!($ty)))
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<$ty, A::Error> {
                        let budget = std::cell::Cell::new($crate::unknown_fields::MAX_UNKNOWN_VALUES);
                        <$ty as $crate::unknown_fields::SharesBudget>::visit_budgeted(map, &budget)
                    }
                }

                deserializer.deserialize_map(FieldsVisitor)
            }
        }
    };
    (@next whole $map:ident $budget:ident) => {
        $map.next_value::<$crate::whole::Whole<_>>()?.0
    };
    (@next optional_whole $map:ident $budget:ident) => {
        $map.next_value::<Option<$crate::whole::Whole<_>>>()?.map(|whole| whole.0)
    };
    (@next nested $map:ident $budget:ident) => {
        $map.next_value_seed($crate::unknown_fields::Nested($budget, std::marker::PhantomData))?
    };
    (@next strings $map:ident $budget:ident) => {
        $map.next_value_seed($crate::unknown_fields::Strings($budget))?
    };
    (@next values $map:ident $budget:ident) => {
        $map.next_value_seed($crate::unknown_fields::Values($budget))?
    };
    (@next $mode:ident $map:ident $budget:ident) => {
        $map.next_value()?
    };
    (@write whole $map:ident $json:literal $value:expr) => {
        $map.serialize_entry($json, $value)?;
    };
    (@write required $map:ident $json:literal $value:expr) => {
        $map.serialize_entry($json, $value)?;
    };
    (@write optional $map:ident $json:literal $value:expr) => {
        if let Some(value) = $value {
            $map.serialize_entry($json, value)?;
        }
    };
    (@write optional_whole $map:ident $json:literal $value:expr) => {
        $crate::unknown_fields::keep_unknown_fields!(@write optional $map $json $value);
    };
    (@write nested $map:ident $json:literal $value:expr) => {
        $crate::unknown_fields::keep_unknown_fields!(@write optional $map $json $value);
    };
    (@write list $map:ident $json:literal $value:expr) => {
        if !$value.is_empty() {
            $map.serialize_entry($json, $value)?;
        }
    };
    (@write strings $map:ident $json:literal $value:expr) => {
        $crate::unknown_fields::keep_unknown_fields!(@write list $map $json $value);
    };
    (@write values $map:ident $json:literal $value:expr) => {
        $crate::unknown_fields::keep_unknown_fields!(@write list $map $json $value);
    };
    (@read whole $field:ident $json:literal $access:ident) => {
        $field.ok_or_else(|| <$access::Error as serde::de::Error>::missing_field($json))?
    };
    (@read required $field:ident $json:literal $access:ident) => {
        $field.ok_or_else(|| <$access::Error as serde::de::Error>::missing_field($json))?
    };
    (@read optional $field:ident $json:literal $access:ident) => {
        $field.flatten()
    };
    (@read optional_whole $field:ident $json:literal $access:ident) => {
        $field.flatten()
    };
    (@read nested $field:ident $json:literal $access:ident) => {
        $field.flatten()
    };
    (@read list $field:ident $json:literal $access:ident) => {
        $field.unwrap_or_default()
    };
    (@read strings $field:ident $json:literal $access:ident) => {
        $field.unwrap_or_default()
    };
    (@read values $field:ident $json:literal $access:ident) => {
        $field.unwrap_or_default()
    };
}

pub(crate) use keep_unknown_fields;

#[cfg(test)]
mod tests {
    use super::MAX_UNKNOWN_VALUES;
    use crate::GatewayResponse;

    /// An answer whose unknown field holds `n` empty objects in an array.
    fn answer_with(n: usize) -> String {
        let objects = vec!["{}"; n].join(",");
        format!(
            r#"{{"id":"a","modelId":"m","output":"o","x":[{objects}],"y":{{"z":[1,"s",null,true,2.5]}}}}"#
        )
    }

    #[test]
    fn unknown_fields_are_kept_as_received_within_the_budget() {
        let text = answer_with(100);
        let answer: GatewayResponse = serde_json::from_str(&text).unwrap();
        let whole: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer.extra["x"], whole["x"]);
        assert_eq!(answer.extra["y"], whole["y"]);
        assert_eq!(serde_json::to_value(&answer).unwrap(), whole);
    }

    #[test]
    fn an_answer_past_the_budget_of_unknown_values_is_refused_naming_the_rule() {
        // The array and the `y` field's seven values take eight of the budget.
        let at_the_bound = answer_with(MAX_UNKNOWN_VALUES - 8);
        assert!(serde_json::from_str::<GatewayResponse>(&at_the_bound).is_ok());
        let past = answer_with(MAX_UNKNOWN_VALUES - 7);
        let err = serde_json::from_str::<GatewayResponse>(&past).unwrap_err();
        assert!(
            err.to_string()
                .contains("more than 100000 JSON values in fields this version does not know"),
            "{err}"
        );
    }

    /// Regression: the answer, its `usage` and its `safety` each had a budget of their
    /// own, and the safety filters that fired none, so a 4 MiB answer of names took 38 MB.
    #[test]
    fn nested_objects_and_names_share_the_answers_budget() {
        let half = vec!["{}"; MAX_UNKNOWN_VALUES / 2].join(",");
        let split = format!(
            r#"{{"id":"a","modelId":"m","output":"o","x":[{half}],"usage":{{"promptTokens":1,"completionTokens":1,"totalTokens":2,"x":[{half}]}}}}"#
        );
        assert!(serde_json::from_str::<GatewayResponse>(&split).is_err());
        let names = vec![r#""a""#; MAX_UNKNOWN_VALUES + 1].join(",");
        let fired = format!(
            r#"{{"id":"a","modelId":"m","output":"o","safety":{{"verdict":"passed","triggered":[{names}]}}}}"#
        );
        let err = serde_json::from_str::<GatewayResponse>(&fired).unwrap_err();
        assert!(
            err.to_string().contains("more than 100000 JSON values"),
            "{err}"
        );
        // Within the budget, a nested object reads as before, `null` as absent.
        let fine = r#"{"id":"a","modelId":"m","output":"o","usage":null,"safety":{"verdict":"passed","triggered":["pii"],"s":1}}"#;
        let answer: GatewayResponse = serde_json::from_str(fine).unwrap();
        assert!(answer.usage.is_none());
        let safety = answer.safety.unwrap();
        assert_eq!(
            (safety.triggered, safety.extra["s"].clone()),
            (vec!["pii".to_owned()], serde_json::json!(1))
        );
    }
}
