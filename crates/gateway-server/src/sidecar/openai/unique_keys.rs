//! The parameters a door reads as free-form JSON, with a key given twice refused at any
//! depth rather than resolved to its last value (`"n":2,"n":1` would pass as `n: 1`).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Reads the parameters a request type does not name (its `#[serde(flatten)]` rest),
/// refusing a key given twice there or in any object inside.
pub(super) fn map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Map<String, Value>, D::Error> {
    // Flattened fields are buffered first, so the path tracker that names a parameter
    // stops at the object holding them: the repeated key is named from there.
    deserializer
        .deserialize_map(Unique {
            at: None,
            whole_path: true,
        })
        .and_then(|value| match value {
            Value::Object(object) => Ok(object),
            _ => Err(de::Error::custom("expected an object")),
        })
}

/// Reads an optional free-form parameter (null is absent), refusing a key given twice in
/// any object inside.
pub(super) fn option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Value>, D::Error> {
    // The path tracker follows this value down to the object holding the repeated key.
    Unique {
        at: None,
        whole_path: false,
    }
    .deserialize(deserializer)
    .map(|value| Some(value).filter(|v| !v.is_null()))
}

/// Where a value lies inside the free-form one being read: its key or index, and its
/// parent's place (none at the top).
#[derive(Clone, Copy)]
struct At<'a> {
    parent: Option<&'a At<'a>>,
    step: Step<'a>,
}

/// One step into a value.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            write!(f, "{parent}")?;
        }
        match self.step {
            Step::Key(key) if self.parent.is_some() => write!(f, ".{key}"),
            Step::Key(key) => f.write_str(key),
            Step::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// One JSON value whose objects hold each key once; `at` is where it lies, to name a
/// repeated key from the top of the free-form value when `whole_path` is asked for (else
/// it is named alone).
struct Unique<'a> {
    at: Option<&'a At<'a>>,
    whole_path: bool,
}

impl<'a> Unique<'a> {
    /// The reader of a value found at `at`, inside this one.
    fn inside<'b>(&self, at: &'b At<'b>) -> Unique<'b>
    where
        'a: 'b,
    {
        Unique {
            at: Some(at),
            whole_path: self.whole_path,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Unique<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let at = At {
                parent: self.at,
                step: Step::Index(items.len()),
            };
            let Some(item) = seq.next_element_seed(self.inside(&at))? else {
                return Ok(Value::Array(items));
            };
            items.push(item);
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let at = At {
                parent: self.at,
                step: Step::Key(&key),
            };
            if object.contains_key(&key) {
                // serde's own words for a named field given twice, which the door reads.
                return Err(if self.whole_path {
                    de::Error::custom(format_args!("duplicate field `{at}`"))
                } else {
                    de::Error::custom(format_args!("duplicate field `{key}`"))
                });
            }
            let value = access.next_value_seed(self.inside(&at))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<Map<String, Value>, serde_json::Error> {
        map(&mut serde_json::Deserializer::from_str(json))
    }

    #[test]
    fn values_are_read_as_serde_json_reads_them() {
        let json = r#"{"a":1,"b":-2,"c":1.5,"d":"x","e":null,"f":[true,{"g":[]}],"h":{}}"#;
        let expected: Map<String, Value> = serde_json::from_str(json).unwrap();
        assert_eq!(read(json).unwrap(), expected);
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        for (json, path) in [
            (r#"{"n":2,"n":1}"#, "n"),
            (
                r#"{"response_format":{"type":"json_object","type":"text"}}"#,
                "response_format.type",
            ),
            (r#"{"tools":[{"a":1},{"b":1,"b":2}]}"#, "tools[1].b"),
            (r#"{"x":[[{"y":{"z":1,"z":1}}]]}"#, "x[0][0].y.z"),
        ] {
            let err = read(json).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("duplicate field `{path}`")),
                "{json}: {err}"
            );
        }
        // The same key in two objects is no repeat.
        assert!(read(r#"{"a":{"k":1},"b":{"k":1}}"#).is_ok());
    }
}
