//! `[metrics]`: the optional standalone Prometheus listener.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{Location, Rule, Validate, Violations};

/// Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of a standalone `/metrics` listener: an IP address and a port, such as
    /// `127.0.0.1:9464` or `[::1]:9464`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

impl Validate for MetricsConfig {
    fn collect_violations(&self, at: &Location<'_>, out: &mut Violations) {
        // Parsed as `std::net::SocketAddr` (the schema states no pattern: an exact one
        // for IPv6 with scope ids would be longer than it is worth): Rust's rule alone.
        if let Some(addr) = &self.listen
            && addr.parse::<std::net::SocketAddr>().is_err()
        {
            out.push(
                &at.key("listen"),
                Rule::Pattern {
                    pattern: "an IP address and port, such as 127.0.0.1:9464 or [::1]:9464 (not a host name)",
                },
            );
        }
    }
}
