//! The fields of an error body the router reads, taken from a body too large in JSON
//! values to keep whole: everything else is skipped as it is read, so the memory it
//! takes does not grow with the body.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::ErrorBody;
use crate::redact::redact_secrets;
use crate::unknown_fields::Key;
use crate::whole::Whole;

/// The most JSON values an error body is kept whole with, `details`, `errors` and
/// unknown fields included: far past any real one's (a handful of details). Past it,
/// only `message`, `code`, `status` and `contextId` are kept.
pub const MAX_ERROR_BODY_VALUES: usize = 1_024;

/// `message`, `code`, `status` and `contextId`, each kept only when of its type; a key
/// given twice keeps its last value, as when the body is read whole.
#[derive(Default)]
struct Essentials {
    message: Option<Scalar>,
    code: Option<Scalar>,
    status: Option<Scalar>,
    context_id: Option<Scalar>,
}

impl<'de> Deserialize<'de> for Essentials {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EssentialsVisitor)
    }
}

struct EssentialsVisitor;

impl<'de> Visitor<'de> for EssentialsVisitor {
    type Value = Essentials;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an error body")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Essentials, A::Error> {
        let mut read = Essentials::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let field = match &*key.0 {
                "message" => &mut read.message,
                "code" => &mut read.code,
                "status" => &mut read.status,
                "contextId" => &mut read.context_id,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *field = Some(map.next_value()?);
        }
        Ok(read)
    }
}

/// One field's value: a string, an unsigned integer, or anything else, which is
/// skipped unread.
enum Scalar {
    Text(String),
    Number(u64),
    Other,
}

impl Scalar {
    fn text(value: Option<Self>, secrets: &[&str]) -> Option<String> {
        match value {
            Some(Scalar::Text(text)) => Some(redact_secrets(&text, secrets).into_owned()),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Text(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Number(v))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        // A whole number written as a float (`403.0`), as JSON Schema counts integers.
        Ok(
            Whole::<u16>::deserialize(de::value::F64Deserializer::<E>::new(v))
                .map_or(Scalar::Other, |whole| Scalar::Number(u64::from(whole.0))),
        )
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Scalar, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

/// The fields the router reads of `bytes`, with `secrets` taken out; `None` if it is not
/// a JSON object.
pub(super) fn essentials(bytes: &[u8], secrets: &[&str]) -> Option<ErrorBody> {
    // serde reads a JSON array into a struct too (its sequence form).
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let read: Essentials = serde_json::from_slice(bytes).ok()?;
    Some(ErrorBody {
        message: Scalar::text(read.message, secrets),
        code: Scalar::text(read.code, secrets),
        status: match read.status {
            Some(Scalar::Number(status)) => u16::try_from(status).ok(),
            _ => None,
        },
        context_id: Scalar::text(read.context_id, secrets),
        ..ErrorBody::default()
    })
}
