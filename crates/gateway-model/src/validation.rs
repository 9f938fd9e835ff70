//! Violations, their JSON paths, and the [`Validate`] trait every checked type implements.
//!
//! A validator walks a whole document and reports *every* broken rule, each with the
//! JSON Pointer ([RFC 6901]) of the offending value, so a caller can fix all problems
//! at once instead of one per round trip.
//!
//! [RFC 6901]: https://www.rfc-editor.org/rfc/rfc6901

use std::fmt;

pub use crate::bounded_text::cut_to;

pub use crate::found::Found;
pub use crate::location::Location;
use crate::location::push_key;

/// A rule a value broke, with the numbers needed to explain it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Rule {
    /// A required value is missing or empty.
    Required,
    /// A required field is absent, so the document could not be read (the first such
    /// field; the reader stops there, as at a [`Rule::Malformed`] value).
    Missing,
    /// A string has fewer characters (Unicode scalar values) than allowed.
    TooShort {
        /// Smallest allowed length.
        min: usize,
        /// Length found.
        actual: usize,
    },
    /// A string has more characters (Unicode scalar values) than allowed.
    TooLong {
        /// Largest allowed length.
        max: usize,
        /// Length found.
        actual: usize,
    },
    /// A number lies outside its allowed range.
    OutOfRange {
        /// The range, written as in the documentation (for example `0.0..=2.0`).
        range: &'static str,
        /// The value found (`NaN` and infinities included).
        actual: Found,
    },
    /// A number lies outside what the route it is sent through allows (its temperature
    /// band, its token cap).
    OutsideRoute {
        /// What bounds it, with the range (for example `temperature band 0.1..=0.9`).
        bound: String,
        /// The value found.
        actual: Found,
    },
    /// A string does not match the documented pattern.
    Pattern {
        /// The pattern (the same regular expression the JSON Schema states).
        pattern: &'static str,
    },
    /// A list holds the same value twice.
    Duplicate {
        /// The repeated value.
        value: String,
    },
    /// A fallback model names the primary model itself.
    FallbackIsPrimary {
        /// The model named twice.
        model: String,
    },
    /// A list or map has more entries than allowed.
    TooMany {
        /// Largest allowed count.
        max: usize,
        /// Count found.
        actual: usize,
    },
    /// A list or map has fewer entries than required.
    TooFew {
        /// Smallest allowed count.
        min: usize,
        /// Count found.
        actual: usize,
    },
    /// A name is not one of a closed set.
    Unknown {
        /// What kind of name it is (`safety filter`, `region`, ...).
        what: &'static str,
        /// The name found.
        name: String,
        /// Every accepted name.
        known: Vec<&'static str>,
    },
    /// Values that must be ordered are not (for example `low <= default <= high`).
    Order {
        /// The ordering that must hold.
        expected: &'static str,
    },
    /// A URL is malformed or uses a scheme or host that is not allowed.
    Url {
        /// Why the URL is refused.
        reason: String,
    },
    /// Two settings exclude each other, or one requires another.
    Conflict {
        /// What must hold instead.
        reason: &'static str,
    },
    /// The document could not be read into the type at all (wrong JSON type, unknown field).
    Malformed {
        /// The parser's message, at most [`MAX_MALFORMED_CHARS`] characters (see
        /// [`Rule::malformed`]).
        message: String,
    },
    /// A JSON Schema keyword failed (reported by the compiled format check).
    Schema {
        /// The keyword, such as `maximum`.
        keyword: String,
        /// The validator's message.
        message: String,
    },
}

/// Longest parser message a [`Rule::Malformed`] keeps, and longest path a [`Violation`]
/// keeps, in characters.
pub const MAX_MALFORMED_CHARS: usize = 512;
/// Longest name a [`Rule::Unknown`] keeps, in characters: no known name comes close.
pub const MAX_UNKNOWN_NAME_CHARS: usize = 64;

/// Most violations a [`ValidationErrors`] lists; beyond them it only counts, so a document
/// of many small mistakes cannot make an error (or an answer that echoes it) many times
/// its own size.
pub const MAX_VIOLATIONS: usize = 64;

/// `text` cut to [`MAX_MALFORMED_CHARS`] characters, ending in `…` if it was longer:
/// messages and paths quote the input (a TOML error shows its whole line, a path an
/// unknown key), and the input may be anything.
fn bounded(mut text: String) -> String {
    cut_to(&mut text, MAX_MALFORMED_CHARS);
    text
}

impl Rule {
    /// [`Rule::Malformed`] with `message`, cut to [`MAX_MALFORMED_CHARS`] characters
    /// (ending in `…` if it was longer).
    ///
    /// ```
    /// use gateway_model::{MAX_MALFORMED_CHARS, Rule};
    ///
    /// let Rule::Malformed { message } = Rule::malformed("x".repeat(100_000)) else {
    ///     unreachable!()
    /// };
    /// assert_eq!(message.chars().count(), MAX_MALFORMED_CHARS);
    /// ```
    pub fn malformed(message: impl fmt::Display) -> Self {
        Self::Malformed {
            message: bounded(message.to_string()),
        }
    }

    /// [`Rule::Unknown`] for `name`, cut to [`MAX_UNKNOWN_NAME_CHARS`] characters
    /// (ending in `…` if it was longer).
    ///
    /// ```
    /// use gateway_model::{MAX_UNKNOWN_NAME_CHARS, Rule};
    ///
    /// let rule = Rule::unknown("tuning level", &"x".repeat(100_000), vec!["low", "high"]);
    /// let Rule::Unknown { name, .. } = &rule else { unreachable!() };
    /// assert_eq!(name.chars().count(), MAX_UNKNOWN_NAME_CHARS);
    /// assert!(rule.to_string().ends_with("…`; known: low, high"));
    /// ```
    pub fn unknown(what: &'static str, name: &str, known: Vec<&'static str>) -> Self {
        let mut name = name.to_owned();
        cut_to(&mut name, MAX_UNKNOWN_NAME_CHARS);
        Self::Unknown { what, name, known }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Required => f.write_str("is required and must not be empty"),
            Rule::Missing => f.write_str("is missing"),
            Rule::TooShort { min, actual } => {
                write!(f, "must have at least {min} characters (has {actual})")
            }
            Rule::TooLong { max, actual } => {
                write!(f, "must have at most {max} characters (has {actual})")
            }
            Rule::OutOfRange { range, actual } => {
                write!(f, "must be in {range} (is {actual})")
            }
            Rule::OutsideRoute { bound, actual } => {
                write!(f, "must lie in the route's {bound} (is {actual})")
            }
            Rule::Pattern { pattern } => write!(f, "must match the pattern {pattern}"),
            Rule::Duplicate { value } => write!(f, "repeats `{value}`; entries must be distinct"),
            Rule::FallbackIsPrimary { model } => {
                write!(
                    f,
                    "`{model}` is the primary model; a fallback must differ from it"
                )
            }
            Rule::TooMany { max, actual } => {
                write!(f, "must have at most {max} entries (has {actual})")
            }
            Rule::TooFew { min, actual } => {
                write!(f, "must have at least {min} entries (has {actual})")
            }
            Rule::Unknown { what, name, known } => {
                write!(f, "unknown {what} `{name}`; known: {}", known.join(", "))
            }
            Rule::Order { expected } => write!(f, "must satisfy {expected}"),
            Rule::Url { reason } => write!(f, "is not an acceptable URL: {reason}"),
            Rule::Conflict { reason } => f.write_str(reason),
            Rule::Malformed { message } => write!(f, "is malformed: {message}"),
            Rule::Schema { keyword, message } => {
                write!(f, "fails schema keyword `{keyword}`: {message}")
            }
        }
    }
}

/// One broken rule at one place in a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// JSON Pointer of the offending value (`""` is the document itself), at most
    /// [`MAX_MALFORMED_CHARS`] characters.
    pub path: String,
    /// The rule it broke.
    pub rule: Rule,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.rule)
    }
}

/// Every violation found in one document, in document order (the first
/// [`MAX_VIOLATIONS`], and how many more); never empty.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ValidationErrors {
    violations: Vec<Violation>,
    omitted: usize,
}

impl ValidationErrors {
    /// Wraps a non-empty list, keeping its first [`MAX_VIOLATIONS`]; returns `None` for
    /// an empty one.
    ///
    /// ```
    /// use gateway_model::{MAX_VIOLATIONS, Rule, ValidationErrors, Violation};
    ///
    /// let one = Violation { path: "/prompt".into(), rule: Rule::Required };
    /// let errors = ValidationErrors::from_violations(vec![one; 100]).unwrap();
    /// assert_eq!(errors.violations().len(), MAX_VIOLATIONS);
    /// assert_eq!((errors.omitted(), errors.len()), (36, 100));
    /// assert!(errors.to_string().starts_with("100 validation errors"));
    /// assert!(errors.to_string().ends_with("… and 36 more"));
    /// ```
    pub fn from_violations(mut violations: Vec<Violation>) -> Option<Self> {
        let omitted = violations.len().saturating_sub(MAX_VIOLATIONS);
        violations.truncate(MAX_VIOLATIONS);
        (!violations.is_empty()).then_some(Self {
            violations,
            omitted,
        })
    }

    /// Adds `more` after the violations already found, within the same bound.
    pub fn extend(&mut self, more: impl IntoIterator<Item = Violation>) {
        for violation in more {
            keep(&mut self.violations, &mut self.omitted, || violation);
        }
    }

    /// Counts `more` violations found beyond those listed.
    pub(crate) fn count_omitted(&mut self, more: usize) {
        self.omitted = self.omitted.saturating_add(more);
    }

    /// How many violations were found beyond those listed.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// How many violations were found, listed or not.
    #[expect(clippy::len_without_is_empty, reason = "never empty")]
    pub fn len(&self) -> usize {
        self.violations.len().saturating_add(self.omitted)
    }

    /// One violation.
    pub fn single(path: impl Into<String>, rule: Rule) -> Self {
        Self {
            violations: vec![Violation {
                path: bounded(path.into()),
                rule,
            }],
            omitted: 0,
        }
    }

    /// The violations, in document order: the first [`MAX_VIOLATIONS`] found.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Consumes the error, giving the violations.
    pub fn into_violations(self) -> Vec<Violation> {
        self.violations
    }

    /// Whether some violation sits at `path` exactly.
    pub fn has_path(&self, path: &str) -> bool {
        self.violations.iter().any(|v| v.path == path)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.len();
        write!(f, "{n} validation error{}", if n == 1 { "" } else { "s" })?;
        for v in &self.violations {
            write!(f, "\n  {v}")?;
        }
        if self.omitted > 0 {
            write!(f, "\n  … and {} more", self.omitted)?;
        }
        Ok(())
    }
}

/// Lists the violation `make` builds while `list` has room under [`MAX_VIOLATIONS`], else
/// only counts it in `omitted` (without building it: a pointer costs an allocation).
fn keep(list: &mut Vec<Violation>, omitted: &mut usize, make: impl FnOnce() -> Violation) {
    if list.len() < MAX_VIOLATIONS {
        list.push(make());
    } else {
        *omitted = omitted.saturating_add(1);
    }
}

/// Collects violations while a validator walks a document: the first
/// [`MAX_VIOLATIONS`], and how many more.
#[derive(Debug, Default)]
pub struct Violations {
    list: Vec<Violation>,
    omitted: usize,
}

impl Violations {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the value at `at` broke `rule`.
    pub fn push(&mut self, at: &Location<'_>, rule: Rule) {
        keep(&mut self.list, &mut self.omitted, || Violation {
            path: bounded(at.pointer()),
            rule,
        });
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `Ok(())` if nothing was recorded, else the violations (the first
    /// [`MAX_VIOLATIONS`], and how many more).
    pub fn finish(self) -> Result<(), ValidationErrors> {
        let omitted = self.omitted;
        ValidationErrors::from_violations(self.list).map_or(Ok(()), |mut errors| {
            errors.omitted = errors.omitted.saturating_add(omitted);
            Err(errors)
        })
    }

    /// Checks that `value` is within `min..=max` characters.
    pub fn check_chars(&mut self, at: &Location<'_>, value: &str, min: usize, max: usize) {
        let actual = value.chars().count();
        if actual == 0 && min > 0 {
            self.push(at, Rule::Required);
        } else if actual < min {
            self.push(at, Rule::TooShort { min, actual });
        } else if actual > max {
            self.push(at, Rule::TooLong { max, actual });
        }
    }

    /// Checks that `value` lies in the closed range `min..=max`; `NaN` never does.
    pub fn check_range(
        &mut self,
        at: &Location<'_>,
        value: f64,
        min: f64,
        max: f64,
        range: &'static str,
    ) {
        if !(min..=max).contains(&value) {
            self.push(
                at,
                Rule::OutOfRange {
                    range,
                    actual: value.into(),
                },
            );
        }
    }

    /// Checks that a list has at most `max` entries.
    pub fn check_max_items(&mut self, at: &Location<'_>, actual: usize, max: usize) {
        if actual > max {
            self.push(at, Rule::TooMany { max, actual });
        }
    }
}

/// Records a [`Rule::Duplicate`] at `at` when `value` equals one of `earlier`; returns
/// whether `value` is new. The one "entries must be distinct" rule of every list.
///
/// A list checks only its first [`UNIQUE_CHECKED`] entries this way (each against those
/// before it): every list with the rule has a cap below it, or (safety filters) fewer
/// names that can pass, so a longer one is refused whatever its later entries hold,
/// and a list of 50,000 names costs no more than 50,000 checks.
pub(crate) fn check_unique<'a, T>(
    at: &Location<'_>,
    value: &T,
    earlier: impl ExactSizeIterator<Item = &'a T>,
    out: &mut Violations,
) -> bool
where
    T: PartialEq + fmt::Display + 'a,
{
    if earlier.len() >= UNIQUE_CHECKED {
        return true;
    }
    let repeated = earlier.into_iter().any(|e| e == value);
    if repeated {
        let mut value = value.to_string();
        cut_to(&mut value, MAX_UNKNOWN_NAME_CHARS);
        out.push(at, Rule::Duplicate { value });
    }
    !repeated
}

/// How many entries of a list [`check_unique`] compares: more than any list with the
/// rule may hold (16 split entries, 5 fallbacks, 8 safety filters).
pub(crate) const UNIQUE_CHECKED: usize = 32;

/// A type that can check itself against its documented rules.
pub trait Validate {
    /// Records every violation of `self`, located relative to `at`.
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations);

    /// Checks every rule; on failure returns the violations with their JSON paths (the
    /// first [`MAX_VIOLATIONS`], and how many more).
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut out = Violations::new();
        self.collect_violations(&Location::ROOT, &mut out);
        out.finish()
    }
}

/// Reads a JSON value into `T` and validates it; a type mismatch or unknown field
/// becomes a [`Rule::Malformed`] violation at the path where it was found.
pub fn from_json_value<T>(value: &serde_json::Value) -> Result<T, ValidationErrors>
where
    T: serde::de::DeserializeOwned + Validate,
{
    let parsed: T = serde_path_to_error::deserialize(value).map_err(malformed)?;
    parsed.validate()?;
    Ok(parsed)
}

/// Reads JSON text holding an object into `T` and validates it, like [`from_json_value`].
pub fn from_json_slice<T>(bytes: &[u8]) -> Result<T, ValidationErrors>
where
    T: serde::de::DeserializeOwned + Validate,
{
    let parsed: T = parse_json_slice(bytes)?;
    parsed.validate()?;
    Ok(parsed)
}

/// Reads JSON text holding an object into `T` without checking its bounds: for a reader
/// that hands the value on to one that validates it (the router, which audits a request
/// it refuses). A type mismatch or unknown field is refused as in [`from_json_slice`].
///
/// ```
/// use gateway_model::{RouteRequest, Validate, parse_json_slice};
///
/// let request: RouteRequest = parse_json_slice(br#"{"route":"r","prompt":""}"#).unwrap();
/// assert!(request.validate().is_err(), "read, not yet checked");
/// assert!(parse_json_slice::<RouteRequest>(br#"{"route":5,"prompt":""}"#).is_err());
/// ```
pub fn parse_json_slice<T>(bytes: &[u8]) -> Result<T, ValidationErrors>
where
    T: serde::de::DeserializeOwned,
{
    // serde reads a JSON array into a struct too (its sequence form); the schemas say
    // object, so only an object is read. Every type read here is an object at the top
    // and holds no nested struct but `parameters` (checked by the schema before sending).
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(not_an_object());
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: T = serde_path_to_error::deserialize(&mut de).map_err(malformed)?;
    de.end()
        .map_err(|e| ValidationErrors::single("", Rule::malformed(e)))?;
    Ok(parsed)
}

/// The document is not a JSON object.
fn not_an_object() -> ValidationErrors {
    ValidationErrors::single(
        "",
        Rule::Malformed {
            message: "expected a JSON object".to_owned(),
        },
    )
}

/// Turns a path-tracking deserialisation error into a single violation.
#[allow(clippy::needless_pass_by_value)] // used as `map_err(malformed)`
pub(crate) fn malformed<E: fmt::Display>(err: serde_path_to_error::Error<E>) -> ValidationErrors {
    let mut path = serde_path_to_pointer(err.path());
    let message = err.inner().to_string();
    // serde names a missing field only in its message (`missing field `prompt``): the
    // violation is the field's, not the object's.
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field)
    {
        push_key(&mut path, field);
        return ValidationErrors::single(path, Rule::Missing);
    }
    ValidationErrors::single(path, Rule::malformed(message))
}

/// Converts `serde_path_to_error`'s path into a JSON Pointer.
fn serde_path_to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment as S;
    let mut out = String::new();
    for segment in path {
        match segment {
            S::Seq { index } => {
                out.push('/');
                out.push_str(&index.to_string());
            }
            S::Map { key } | S::Enum { variant: key } => push_key(&mut out, key),
            S::Unknown => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collector_lists_the_first_violations_and_counts_the_rest() {
        let mut found = Violations::new();
        for i in 0..MAX_VIOLATIONS + 10 {
            found.push(&Location::ROOT.index(i), Rule::Required);
        }
        let mut errors = found.finish().unwrap_err();
        errors.extend([Violation {
            path: "/temperature".into(),
            rule: Rule::Required,
        }]);
        assert_eq!(errors.violations().len(), MAX_VIOLATIONS);
        assert_eq!(errors.violations()[MAX_VIOLATIONS - 1].path, "/63");
        assert_eq!((errors.omitted(), errors.len()), (11, MAX_VIOLATIONS + 11));
        let shown = errors.to_string();
        assert!(shown.starts_with("75 validation errors\n  /0: "), "{shown}");
        assert!(shown.ends_with("\n  … and 11 more"), "{shown}");

        let mut few = ValidationErrors::single("/prompt", Rule::Required);
        few.extend([Violation {
            path: "/route".into(),
            rule: Rule::Required,
        }]);
        assert_eq!((few.len(), few.omitted()), (2, 0));
        assert!(!few.to_string().contains("more"));
    }

    #[test]
    fn a_missing_field_is_named_by_its_own_path() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            inner: Inner,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            prompt: String,
        }
        let parse = |text: &str| {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize::<_, Outer>(&mut de).map_err(malformed)
        };
        let err = parse(r#"{"inner": {}}"#).unwrap_err();
        let v = &err.violations()[0];
        assert_eq!(
            (v.path.as_str(), &v.rule),
            ("/inner/prompt", &Rule::Missing)
        );
        let err = parse("{}").unwrap_err();
        assert_eq!(err.violations()[0].path, "/inner");
        let err = parse(r#"{"inner": {"prompt": 5}}"#).unwrap_err();
        let v = &err.violations()[0];
        assert_eq!(v.path, "/inner/prompt");
        assert!(matches!(v.rule, Rule::Malformed { .. }), "{v:?}");
    }

    #[test]
    fn pointers_escape_tilde_and_slash() {
        let root = Location::ROOT;
        let meta = root.key("metadata");
        let key = meta.key("a/b~c");
        assert_eq!(key.pointer(), "/metadata/a~1b~0c");
        let list = root.key("fallbackModels");
        assert_eq!(list.index(3).pointer(), "/fallbackModels/3");
        assert_eq!(root.pointer(), "");
    }

    #[test]
    fn display_lists_every_violation() {
        let mut v = Violations::new();
        v.push(&Location::ROOT.key("a"), Rule::Required);
        v.push(
            &Location::ROOT.key("b"),
            Rule::TooMany { max: 1, actual: 2 },
        );
        let err = v.finish().unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("2 validation errors"), "{text}");
        assert!(text.contains("/a: is required"), "{text}");
        assert!(
            text.contains("/b: must have at most 1 entries (has 2)"),
            "{text}"
        );
    }

    #[test]
    fn a_large_integer_out_of_range_is_reported_as_written() {
        let text = "[environment]\nregion = \"eu-west-1\"\n[routes.a]\nmodel = \"m\"\n\
                    [retry]\nmax_retry_after_s = 18446744073709551615\n";
        let err = crate::RouterConfig::from_toml_str(text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/retry/max_retry_after_s: must be in 0..=3600 (is 18446744073709551615)"),
            "{err}"
        );
    }

    #[test]
    fn nan_is_out_of_every_range() {
        let mut v = Violations::new();
        v.check_range(&Location::ROOT, f64::NAN, 0.0, 2.0, "0.0..=2.0");
        assert!(!v.is_empty());
    }
}
