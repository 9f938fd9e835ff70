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
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

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
/// (an `Option`: absent or `null` reads as `None`, `None` is not written) or `list` (a
/// `Vec`: absent reads as empty, empty is not written).
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

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct FieldsVisitor;

                impl<'de> serde::de::Visitor<'de> for FieldsVisitor {
                    type Value = $ty;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("struct ", stringify!($ty)))
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
                        use serde::de::Error as _;
                        $( let mut $field = None; )*
                        let mut extra = serde_json::Map::new();
                        while let Some(key) = map.next_key::<$crate::unknown_fields::Key<'de>>()? {
                            match &*key.0 {
                                $( $json => {
                                    if $field.is_some() {
                                        return Err(A::Error::duplicate_field($json));
                                    }
                                    $field = Some($crate::unknown_fields::keep_unknown_fields!(@next $mode map));
                                } )*
                                _ => {
                                    let value = map.next_value::<serde_json::Value>()?;
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

                deserializer.deserialize_map(FieldsVisitor)
            }
        }
    };
    (@next whole $map:ident) => {
        $map.next_value::<$crate::whole::Whole<_>>()?.0
    };
    (@next $mode:ident $map:ident) => {
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
    (@write list $map:ident $json:literal $value:expr) => {
        if !$value.is_empty() {
            $map.serialize_entry($json, $value)?;
        }
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
    (@read list $field:ident $json:literal $access:ident) => {
        $field.unwrap_or_default()
    };
}

pub(crate) use keep_unknown_fields;
