//! The fields of an error body the router reads, taken from a body too large in JSON
//! values to keep whole: everything else is skipped as it is read, so the memory it
//! takes does not grow with the body.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::ErrorBody;
use crate::redact::redact_secrets;

/// The most JSON values an error body is kept whole with, `details`, `errors` and
/// unknown fields included: far past any real one's (a handful of details). Past it,
/// only `message`, `code`, `status` and `contextId` are kept.
pub const MAX_ERROR_BODY_VALUES: usize = 1_024;

/// `message`, `code`, `status` and `contextId`, each kept only when of its type.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Essentials {
    #[serde(default)]
    message: Option<Scalar>,
    #[serde(default)]
    code: Option<Scalar>,
    #[serde(default)]
    status: Option<Scalar>,
    #[serde(default)]
    context_id: Option<Scalar>,
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

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
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
