//! Temperature matrices and the tuning level that picks a temperature from one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bounds::{self, Bound, Bounded, RangeText};
use crate::validation::{Location, Rule, Validate, Violations};

/// Lowest accepted sampling temperature.
pub const TEMPERATURE_MIN: f64 = 0.0;
/// Highest accepted sampling temperature.
pub const TEMPERATURE_MAX: f64 = 2.0;
/// The temperature range as the documentation writes it.
pub const TEMPERATURE_RANGE: &str = TEMPERATURE_RANGE_TEXT.as_str();
const TEMPERATURE_RANGE_TEXT: RangeText =
    RangeText::floats(TEMPERATURE_MIN, TEMPERATURE_MAX, false);

/// How creative an answer should be; picks one temperature from a [`TemperatureMatrix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tuning {
    /// Precise, repeatable answers (summaries, classification).
    Low,
    /// The route's everyday setting.
    #[default]
    Default,
    /// Varied, creative answers (suggested replies, rephrasing).
    High,
}

impl Tuning {
    /// Every tuning level, lowest first.
    pub const ALL: [Tuning; 3] = [Tuning::Low, Tuning::Default, Tuning::High];

    /// The wire name (`low`, `default`, `high`).
    pub fn as_str(self) -> &'static str {
        match self {
            Tuning::Low => "low",
            Tuning::Default => "default",
            Tuning::High => "high",
        }
    }
}

impl std::fmt::Display for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Tuning {
    type Err = crate::ValidationErrors;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Tuning::Low),
            "default" => Ok(Tuning::Default),
            "high" => Ok(Tuning::High),
            other => Err(crate::ValidationErrors::single(
                "",
                Rule::unknown("tuning level", other, vec!["low", "default", "high"]),
            )),
        }
    }
}

/// Three temperatures for one route: `low <= default <= high`, each in `0.0..=2.0`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = bounds::state::<Self>)]
pub struct TemperatureMatrix {
    /// Temperature for [`Tuning::Low`].
    pub low: f64,
    /// Temperature for [`Tuning::Default`].
    pub default: f64,
    /// Temperature for [`Tuning::High`].
    pub high: f64,
}

impl Default for TemperatureMatrix {
    /// `low = 0.2`, `default = 0.7`, `high = 1.0`.
    fn default() -> Self {
        Self {
            low: 0.2,
            default: 0.7,
            high: 1.0,
        }
    }
}

impl TemperatureMatrix {
    /// The temperature for `tuning`.
    pub fn pick(&self, tuning: Tuning) -> f64 {
        match tuning {
            Tuning::Low => self.low,
            Tuning::Default => self.default,
            Tuning::High => self.high,
        }
    }
}

impl Bounded for TemperatureMatrix {
    const BOUNDS: &'static [Bound<Self>] = &[
        bounds::float!(low, TEMPERATURE_MIN, TEMPERATURE_MAX),
        bounds::float!(default, TEMPERATURE_MIN, TEMPERATURE_MAX),
        bounds::float!(high, TEMPERATURE_MIN, TEMPERATURE_MAX),
    ];
}

impl Validate for TemperatureMatrix {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        bounds::check(self, at, out);
        // The order is a rule across fields, which JSON Schema cannot state.
        // The order only means something once every value is in range.
        let in_range = [self.low, self.default, self.high]
            .iter()
            .all(|t| (TEMPERATURE_MIN..=TEMPERATURE_MAX).contains(t));
        if in_range && !(self.low <= self.default && self.default <= self.high) {
            out.push(
                at,
                Rule::Order {
                    expected: "low <= default <= high",
                },
            );
        }
    }
}

impl Validate for Tuning {
    fn collect_violations(&self, _: &Location<'_>, _: &mut Violations) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_by_level() {
        let m = TemperatureMatrix {
            low: 0.1,
            default: 0.5,
            high: 1.5,
        };
        assert_eq!(m.pick(Tuning::Low), 0.1);
        assert_eq!(m.pick(Tuning::Default), 0.5);
        assert_eq!(m.pick(Tuning::High), 1.5);
    }

    #[test]
    fn rejects_out_of_range_and_disorder() {
        let m = TemperatureMatrix {
            low: -0.1,
            default: 0.5,
            high: 2.1,
        };
        let err = m.validate().unwrap_err();
        assert!(err.has_path("/low") && err.has_path("/high"), "{err}");
        let m = TemperatureMatrix {
            low: 1.0,
            default: 0.5,
            high: 1.5,
        };
        let err = m.validate().unwrap_err();
        assert_eq!(
            err.violations()[0].rule,
            Rule::Order {
                expected: "low <= default <= high"
            }
        );
    }

    #[test]
    fn tuning_round_trips_through_text() {
        for t in Tuning::ALL {
            assert_eq!(t.as_str().parse::<Tuning>().unwrap(), t);
        }
        assert!("medium".parse::<Tuning>().is_err());
    }
}
