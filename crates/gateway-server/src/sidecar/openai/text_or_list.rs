//! A parameter that is either a string or a list (a message's `content`, a response's
//! `input`), read without serde's `untagged`: that buffers the value and, when no
//! variant fits, says only that none did, losing the path and the error inside (a part's
//! key given twice, a part's wrong type).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};

/// A string, or a list of `T`.
pub(super) enum TextOrList<T> {
    /// A string.
    Text(String),
    /// A list.
    List(Vec<T>),
}

/// Reads a [`TextOrList`]; `expecting` says what, in the caller's terms, for a value
/// that is neither.
pub(super) fn read<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
) -> Result<TextOrList<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Either<T> {
        expecting: &'static str,
        items: PhantomData<T>,
    }

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Either<T> {
        type Value = TextOrList<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(TextOrList::Text(text.to_owned()))
        }

        fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
            Ok(TextOrList::Text(text))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(TextOrList::List(items))
        }
    }

    deserializer.deserialize_any(Either {
        expecting,
        items: PhantomData,
    })
}
