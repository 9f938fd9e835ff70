//! Serde for whole numbers as JSON Schema counts them: `100`, `100.0` and `1e2` are the
//! same integer, so a value the published schemas accept (`"type": "integer"`) is read,
//! not refused as a float. A fraction, a negative number or one beyond the field's type
//! is refused, naming the value and the range.
//!
//! Fields take it with `#[serde(deserialize_with = "crate::whole::deserialize")]`, or
//! `crate::whole::option` (with `default`) for an `Option`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};

/// An unsigned integer type read through [`Whole`].
pub trait WholeNumber: TryFrom<u64> + Sized {
    /// What a refusal says was expected.
    const EXPECTED: &'static str;
}

impl WholeNumber for u16 {
    const EXPECTED: &'static str = "an integer from 0 to 65535";
}

impl WholeNumber for u32 {
    const EXPECTED: &'static str = "an integer from 0 to 4294967295";
}

impl WholeNumber for u64 {
    const EXPECTED: &'static str = "a non-negative integer";
}

/// A whole number of type `T`, read from an integer or a float without a fraction.
///
/// ```
/// use gateway_model::whole::Whole;
///
/// let read = |json: &str| serde_json::from_str::<Whole<u32>>(json).map(|w| w.0);
/// assert_eq!(read("100").unwrap(), 100);
/// assert_eq!(read("100.0").unwrap(), 100);
/// assert_eq!(read("1e2").unwrap(), 100);
/// assert!(read("1.5").unwrap_err().to_string().contains("floating point `1.5`"));
/// assert!(read("-1").is_err());
/// assert!(read("4294967296").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whole<T>(pub T);

impl<'de, T: WholeNumber> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_u64(WholeVisitor(PhantomData))
    }
}

struct WholeVisitor<T>(PhantomData<T>);

impl<T: WholeNumber> Visitor<'_> for WholeVisitor<T> {
    type Value = Whole<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        T::try_from(v)
            .map(Whole)
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // 2^64 is the first float past u64::MAX; every float below it with no fraction
        // converts exactly.
        if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked above
            let whole = v as u64;
            return self.visit_u64(whole);
        }
        Err(E::invalid_value(Unexpected::Float(v), &self))
    }
}

/// Reads a whole number field (see the module docs).
pub fn deserialize<'de, D: Deserializer<'de>, T: WholeNumber>(d: D) -> Result<T, D::Error> {
    Whole::<T>::deserialize(d).map(|w| w.0)
}

/// Reads an optional whole number field: `null` is `None` (pair with `#[serde(default)]`
/// so an absent one is too).
pub fn option<'de, D: Deserializer<'de>, T: WholeNumber>(d: D) -> Result<Option<T>, D::Error> {
    Option::<Whole<T>>::deserialize(d).map(|w| w.map(|w| w.0))
}

/// An `i64` read as JSON Schema counts integers (`300`, `300.0`, `3e2`).
struct SignedVisitor;

impl Visitor<'_> for SignedVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer from -9223372036854775808 to 9223372036854775807")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        // -2^63 converts exactly, and 2^63 is the first float past `i64::MAX`.
        if v.fract() == 0.0
            && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&v)
        {
            #[allow(clippy::cast_possible_truncation)] // checked above
            return Ok(v as i64);
        }
        Err(E::invalid_value(Unexpected::Float(v), &self))
    }
}

/// An `i64` read through [`signed_option`].
struct Signed(i64);

impl<'de> Deserialize<'de> for Signed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_i64(SignedVisitor).map(Signed)
    }
}

/// Reads an optional signed integer field as JSON Schema counts integers: `null` is
/// `None` (pair with `#[serde(default)]` so an absent one is too).
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Limit {
///     #[serde(default, deserialize_with = "gateway_model::whole::signed_option")]
///     value: Option<i64>,
/// }
/// let read = |json: &str| serde_json::from_str::<Limit>(json).map(|l| l.value);
/// assert_eq!(read(r#"{"value": 300.0}"#).unwrap(), Some(300));
/// assert_eq!(read(r#"{"value": -2}"#).unwrap(), Some(-2));
/// assert_eq!(read(r#"{"value": null}"#).unwrap(), None);
/// assert!(read(r#"{"value": 1.5}"#).is_err());
/// ```
pub fn signed_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<Signed>::deserialize(d).map(|s| s.map(|s| s.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: WholeNumber>(json: &str) -> Result<T, String> {
        serde_json::from_str::<Whole<T>>(json)
            .map(|w| w.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_are_read_however_written() {
        for json in ["7", "7.0", "7e0", "0.7e1", "700e-2"] {
            assert_eq!(read::<u16>(json), Ok(7), "{json}");
            assert_eq!(read::<u32>(json), Ok(7), "{json}");
            assert_eq!(read::<u64>(json), Ok(7), "{json}");
        }
        assert_eq!(read::<u32>("-0.0"), Ok(0));
        assert_eq!(read::<u64>("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(read::<u64>("1e19"), Ok(10_000_000_000_000_000_000));
        assert_eq!(read::<u32>("4294967295.0"), Ok(u32::MAX));
    }

    #[test]
    fn fractions_negatives_and_overflow_are_refused_by_value_and_range() {
        let refused = |json: &str| read::<u32>(json).unwrap_err();
        assert!(
            refused("1.5")
                .contains("floating point `1.5`, expected an integer from 0 to 4294967295")
        );
        assert!(refused("-1").contains("integer `-1`"));
        assert!(refused("-1.0").contains("floating point `-1.0`"));
        assert!(refused("4294967296").contains("integer `4294967296`"));
        assert!(refused("4294967296.0").contains("integer `4294967296`"));
        assert!(refused("1e20").contains("expected an integer"));
        assert!(refused("\"7\"").contains("invalid type: string"));
        assert!(
            read::<u64>("1.8446744073709552e19").is_err(),
            "2^64 is past u64::MAX"
        );
        assert!(
            read::<u16>("65536")
                .unwrap_err()
                .contains("from 0 to 65535")
        );
    }

    #[test]
    fn an_optional_one_reads_null_as_none() {
        #[derive(Debug, serde::Deserialize)]
        struct Holder {
            #[serde(default, deserialize_with = "option")]
            n: Option<u32>,
        }
        let read = |json: &str| serde_json::from_str::<Holder>(json).map(|h| h.n);
        assert_eq!(read("{}").unwrap(), None);
        assert_eq!(read(r#"{"n":null}"#).unwrap(), None);
        assert_eq!(read(r#"{"n":2.0}"#).unwrap(), Some(2));
        assert!(read(r#"{"n":2.5}"#).is_err());
    }
}
