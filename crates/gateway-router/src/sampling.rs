//! The sampling parameters of one call: the route's, with the caller's overrides, which
//! must also fit the route (its temperature band, its token cap).

use gateway_model::{
    MAX_TOKENS_CAP, Parameters, RouteRequest, Rule, TEMPERATURE_MAX, TEMPERATURE_MIN,
    TemperatureMatrix, Violation,
};

/// What a route allows and picks by default.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteSampling {
    /// The temperature matrix: `low..=high` is the band an explicit temperature must fit.
    pub(crate) temperature: TemperatureMatrix,
    /// The route's completion token limit, also the cap of an explicit one.
    pub(crate) max_tokens: u32,
    /// The route's `topP`.
    pub(crate) top_p: f64,
}

impl RouteSampling {
    /// The parameters to send for `request`, and the route's bounds it breaks (the
    /// request's own bounds, such as a temperature above 2, are its validation's).
    pub(crate) fn parameters(&self, request: &RouteRequest) -> (Parameters, Vec<Violation>) {
        let mut broken = Vec::new();
        let band = self.temperature.low..=self.temperature.high;
        let temperature = match request.temperature {
            Some(t) if !band.contains(&t) && (TEMPERATURE_MIN..=TEMPERATURE_MAX).contains(&t) => {
                broken.push(Violation {
                    path: "/temperature".into(),
                    rule: Rule::OutsideRoute {
                        bound: format!("temperature band {:?}..={:?}", band.start(), band.end()),
                        actual: t.into(),
                    },
                });
                t
            }
            // Not a number (the Rust API can pass one; JSON cannot): validation refuses
            // the request, and its audit entry keeps the route's own, which JSON can
            // hold (a NaN would be written as `null`, which the trail's reader refuses).
            Some(t) if t.is_finite() => t,
            Some(_) | None => self.temperature.pick(request.tuning),
        };
        let max_tokens = match request.max_tokens {
            Some(n) if n > self.max_tokens && n <= MAX_TOKENS_CAP => {
                broken.push(Violation {
                    path: "/maxTokens".into(),
                    rule: Rule::OutsideRoute {
                        bound: format!("token cap 1..={}", self.max_tokens),
                        actual: n.into(),
                    },
                });
                n
            }
            Some(n) => n,
            None => self.max_tokens,
        };
        let parameters = Parameters {
            // -0.0 + 0.0 is +0.0: a negative zero is sent, and audited, as 0.
            temperature: temperature + 0.0,
            max_tokens,
            top_p: request
                .top_p
                .filter(|p| p.is_finite())
                .unwrap_or(self.top_p),
            extra: serde_json::Map::new(),
        };
        (parameters, broken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_model::Tuning;

    const ROUTE: RouteSampling = RouteSampling {
        temperature: TemperatureMatrix {
            low: 0.1,
            default: 0.4,
            high: 0.9,
        },
        max_tokens: 1024,
        top_p: 0.95,
    };

    #[test]
    fn the_route_picks_unless_the_caller_overrides_within_its_bounds() {
        let request = RouteRequest::new("r", "p").tuning(Tuning::High);
        let (p, broken) = ROUTE.parameters(&request);
        assert_eq!((p.temperature, p.max_tokens, p.top_p), (0.9, 1024, 0.95));
        assert!(broken.is_empty());
        let request = request.temperature(0.1).max_tokens(1024).top_p(0.5);
        let (p, broken) = ROUTE.parameters(&request);
        assert_eq!((p.temperature, p.max_tokens, p.top_p), (0.1, 1024, 0.5));
        assert!(broken.is_empty());
    }

    #[test]
    fn a_negative_zero_temperature_is_sent_as_zero() {
        let from_zero = RouteSampling {
            temperature: TemperatureMatrix {
                low: -0.0,
                default: -0.0,
                high: 0.9,
            },
            ..ROUTE
        };
        for request in [
            RouteRequest::new("r", "p").temperature(-0.0),
            RouteRequest::new("r", "p").tuning(Tuning::Low),
        ] {
            let (p, broken) = from_zero.parameters(&request);
            assert!(broken.is_empty());
            assert_eq!(p.temperature.to_bits(), 0.0_f64.to_bits());
            assert_eq!(serde_json::to_string(&p.temperature).unwrap(), "0.0");
        }
    }

    #[test]
    fn an_override_outside_the_route_names_the_field_and_the_bound() {
        let request = RouteRequest::new("r", "p")
            .temperature(0.95)
            .max_tokens(1025);
        let (_, broken) = ROUTE.parameters(&request);
        let shown: Vec<String> = broken.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "/temperature: must lie in the route's temperature band 0.1..=0.9 (is 0.95)",
                "/maxTokens: must lie in the route's token cap 1..=1024 (is 1025)",
            ]
        );
        // Outside the static bounds, the request's own validation reports it, once.
        let (_, broken) = ROUTE.parameters(&RouteRequest::new("r", "p").temperature(2.5));
        assert!(broken.is_empty());
    }
}
