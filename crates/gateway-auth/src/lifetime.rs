//! The lifetime a token answer grants (`expires_in`), checked where it is parsed so that
//! nothing downstream adds an unchecked outside number to an `Instant`.

use std::time::Duration;

use serde_json::Value;

/// A token lifetime read from a token answer's `expires_in`: a whole number of seconds
/// as read into an `f64` (a fraction too fine for one, such as `0.99999999999999999`,
/// reads as whole), at least [`TokenLifetime::MIN`]; longer lifetimes are clamped to [`TokenLifetime::MAX`]
/// (Genesys Cloud grants 300 s to 172,800 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenLifetime(Duration);

/// Why a token answer's `expires_in` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifetimeError {
    /// The answer has no `expires_in`.
    #[error("`expires_in` is missing")]
    Missing,
    /// `expires_in` is not a JSON number.
    #[error("`expires_in` must be a number of seconds, not {0}")]
    NotANumber(&'static str),
    /// `expires_in` has a fractional part.
    #[error("`expires_in` must be a whole number of seconds, got {0}")]
    NotWhole(String),
    /// `expires_in` is below one second (zero or negative).
    #[error("`expires_in` must be at least 1 s, got {0}")]
    TooShort(String),
}

impl TokenLifetime {
    /// The shortest lifetime accepted: 1 s.
    pub const MIN: Duration = Duration::from_secs(1);
    /// The longest lifetime used: 172,800 s (48 hours, Genesys Cloud's maximum); a longer
    /// `expires_in` is clamped to it, so the token is refreshed at the latest as if it
    /// lived 48 hours.
    pub const MAX: Duration = Duration::from_secs(172_800);

    /// Reads `expires_in` from a token answer (`None` if the field is absent).
    pub fn from_expires_in(value: Option<&Value>) -> Result<Self, LifetimeError> {
        let number = match value {
            None => return Err(LifetimeError::Missing),
            Some(Value::Number(n)) => n,
            Some(Value::Null) => return Err(LifetimeError::NotANumber("null")),
            Some(Value::Bool(_)) => return Err(LifetimeError::NotANumber("a boolean")),
            Some(Value::String(_)) => return Err(LifetimeError::NotANumber("a string")),
            Some(Value::Array(_)) => return Err(LifetimeError::NotANumber("an array")),
            Some(Value::Object(_)) => return Err(LifetimeError::NotANumber("an object")),
        };
        if let Some(secs) = number.as_u64() {
            return Self::from_secs(secs);
        }
        // Negative integers, fractions, and integers beyond u64 (serde_json reads those
        // as floats).
        let secs = number.as_f64().unwrap_or(f64::NAN);
        if secs.is_nan() || secs < 1.0 {
            return Err(LifetimeError::TooShort(number.to_string()));
        }
        if secs.fract() != 0.0 {
            return Err(LifetimeError::NotWhole(number.to_string()));
        }
        #[allow(clippy::cast_precision_loss)] // 172,800 is exact in an f64
        let max = Self::MAX.as_secs() as f64;
        if secs >= max {
            return Ok(Self(Self::MAX));
        }
        // A whole number from 1 to 172,800: the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Self::from_secs(secs as u64)
    }

    /// A lifetime of `secs` seconds: 0 is refused, more than [`TokenLifetime::MAX`] is
    /// clamped to it.
    pub fn from_secs(secs: u64) -> Result<Self, LifetimeError> {
        if secs == 0 {
            return Err(LifetimeError::TooShort("0".into()));
        }
        Ok(Self(Duration::from_secs(secs).min(Self::MAX)))
    }

    /// The lifetime, from [`TokenLifetime::MIN`] to [`TokenLifetime::MAX`].
    pub fn get(self) -> Duration {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(json: &str) -> Result<Duration, LifetimeError> {
        let body: Value = serde_json::from_str(json).unwrap();
        TokenLifetime::from_expires_in(body.get("expires_in")).map(TokenLifetime::get)
    }

    #[test]
    fn lifetimes_follow_the_documented_rule() {
        assert_eq!(
            parse(r#"{"expires_in":86400}"#),
            Ok(Duration::from_secs(86_400))
        );
        assert_eq!(parse(r#"{"expires_in":1}"#), Ok(Duration::from_secs(1)));
        assert_eq!(
            parse(r#"{"expires_in":3600.0}"#),
            Ok(Duration::from_secs(3600))
        );
        for huge in [
            "172801",
            "18446744073709551615",
            "18446744073709551616",
            "12345678901234567890123",
            "1e300",
        ] {
            assert_eq!(
                parse(&format!(r#"{{"expires_in":{huge}}}"#)),
                Ok(TokenLifetime::MAX),
                "{huge}"
            );
        }
        assert_eq!(
            parse(r#"{"expires_in":0}"#),
            Err(LifetimeError::TooShort("0".into()))
        );
        assert_eq!(
            parse(r#"{"expires_in":-5}"#),
            Err(LifetimeError::TooShort("-5".into()))
        );
        assert_eq!(
            parse(r#"{"expires_in":0.5}"#),
            Err(LifetimeError::TooShort("0.5".into()))
        );
        assert_eq!(
            parse(r#"{"expires_in":90.5}"#),
            Err(LifetimeError::NotWhole("90.5".into()))
        );
        assert_eq!(
            parse(r#"{"expires_in":"3600"}"#),
            Err(LifetimeError::NotANumber("a string"))
        );
        assert_eq!(parse("{}"), Err(LifetimeError::Missing));
        let err = parse(r#"{"expires_in":0}"#).unwrap_err();
        assert_eq!(err.to_string(), "`expires_in` must be at least 1 s, got 0");
    }

    /// Any JSON number a login service could send, written as text.
    fn any_number_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            "-?[1-9][0-9]{0,40}",
            "-?[0-9]{1,30}\\.[0-9]{1,30}",
            "-?[1-9][0-9]{0,3}(\\.[0-9]{1,5})?[eE][+-]?[0-9]{1,3}",
        ]
    }

    proptest! {
        #[test]
        fn any_expires_in_gives_a_sane_lifetime_or_a_typed_error(text in any_number_text()) {
            let json = format!(r#"{{"expires_in":{text}}}"#);
            // Numbers beyond f64 (1e400) are refused by the JSON parser itself.
            let Ok(body) = serde_json::from_str::<Value>(&json) else { return Ok(()) };
            match TokenLifetime::from_expires_in(body.get("expires_in")) {
                Ok(lifetime) => {
                    prop_assert!(
                        (TokenLifetime::MIN..=TokenLifetime::MAX).contains(&lifetime.get()),
                        "{text}: {lifetime:?}"
                    );
                    let value: f64 = text.parse().unwrap();
                    prop_assert!(value >= 1.0 && value.fract() == 0.0, "{text} accepted");
                }
                Err(e) => prop_assert!(e.to_string().contains("`expires_in`"), "{e}"),
            }
        }

        #[test]
        fn any_u64_gives_a_clamped_lifetime(secs in any::<u64>()) {
            match TokenLifetime::from_secs(secs) {
                Ok(lifetime) => prop_assert_eq!(
                    lifetime.get(),
                    Duration::from_secs(secs).min(TokenLifetime::MAX)
                ),
                Err(e) => prop_assert!(secs == 0, "{secs}: {e}"),
            }
        }
    }
}
