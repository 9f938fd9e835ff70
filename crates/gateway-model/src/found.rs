//! [`Found`]: a number as the input gave it, for the messages of broken rules.

use std::fmt;

/// A number found in the input, kept as it was read so that a message shows it exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Found {
    /// A whole number, shown exactly however large.
    Whole(u64),
    /// Any other number (`NaN` and infinities included), shown in exponent form when
    /// it is very large or very small.
    Real(f64),
}

impl From<u64> for Found {
    fn from(n: u64) -> Self {
        Found::Whole(n)
    }
}

impl From<u32> for Found {
    fn from(n: u32) -> Self {
        Found::Whole(n.into())
    }
}

impl From<f64> for Found {
    fn from(x: f64) -> Self {
        Found::Real(x)
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Found::Whole(n) => write!(f, "{n}"),
            // `1e308` and `5e-324` rather than hundreds of digits.
            Found::Real(x) if x.is_finite() && x != 0.0 && !(1e-6..1e16).contains(&x.abs()) => {
                write!(f, "{x:e}")
            }
            Found::Real(x) => write!(f, "{x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_found_is_shown_exactly_and_briefly() {
        let shown = |found: Found| found.to_string();
        assert_eq!(shown(u64::MAX.into()), "18446744073709551615");
        assert_eq!(shown((1_u64 << 63).into()), "9223372036854775808");
        assert_eq!(shown(1e308.into()), "1e308");
        assert_eq!(shown((-1e308).into()), "-1e308");
        assert_eq!(shown(5e-324.into()), "5e-324");
        assert_eq!(shown(2.5.into()), "2.5");
        assert_eq!(shown(1e15.into()), "1000000000000000");
        assert_eq!(shown(0.0.into()), "0");
        assert_eq!(shown(f64::NAN.into()), "NaN");
        assert_eq!(shown(f64::INFINITY.into()), "inf");
    }
}
