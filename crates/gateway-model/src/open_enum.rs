//! String enums that keep names they do not know.
//!
//! The gateway may add a finish reason or a safety filter at any time. These enums
//! read any string (an unknown one lands in `Other`), so a new value never breaks
//! deserialisation; validation then decides whether an unknown value is acceptable.

/// Declares a string enum with known variants plus `Other(String)`.
///
/// `Closed` schemas list only the known names (an unknown one is invalid);
/// `Open` schemas accept any string and list the known names as examples.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($schema_kind:ident) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A name this version does not know, kept as it was received.
            Other(String),
        }

        impl $name {
            /// Every name this version knows, in documentation order.
            pub const KNOWN: &'static [&'static str] = &[$($text),+];

            /// The wire name.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )+
                    Self::Other(name) => name,
                }
            }

            /// Whether this is one of [`Self::KNOWN`].
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                match name {
                    $( $text => Self::$variant, )+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(name: String) -> Self {
                match Self::from(name.as_str()) {
                    Self::Other(_) => Self::Other(name),
                    known => known,
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(Self::from(s))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Ok(Self::from(name.as_ref()))
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                $crate::open_enum::schema(Self::KNOWN, $crate::open_enum::SchemaKind::$schema_kind)
            }
        }
    };
}

pub(crate) use open_enum;

/// Whether a schema admits only the known names.
#[derive(Clone, Copy)]
pub(crate) enum SchemaKind {
    /// Only the known names are valid.
    Closed,
    /// Any string is valid; the known names are examples.
    Open,
}

/// The JSON Schema of an open enum.
pub(crate) fn schema(known: &[&str], kind: SchemaKind) -> schemars::Schema {
    match kind {
        SchemaKind::Closed => schemars::json_schema!({ "type": "string", "enum": known }),
        SchemaKind::Open => schemars::json_schema!({ "type": "string", "examples": known }),
    }
}
