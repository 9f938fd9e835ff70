//! The Genesys Cloud regions: name, domain, and the `api.` and `login.` hosts.

use std::fmt;

use crate::validation::{Rule, ValidationErrors};

/// A Genesys Cloud region (an AWS region hosting an org), such as `us-east-1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    name: &'static str,
    domain: &'static str,
}

/// Every region Genesys Cloud serves, by AWS region name and domain.
pub const REGIONS: [Region; 17] = [
    Region {
        name: "us-east-1",
        domain: "mypurecloud.com",
    },
    Region {
        name: "us-east-2",
        domain: "use2.us-gov-pure.cloud",
    },
    Region {
        name: "us-west-2",
        domain: "usw2.pure.cloud",
    },
    Region {
        name: "ca-central-1",
        domain: "cac1.pure.cloud",
    },
    Region {
        name: "sa-east-1",
        domain: "sae1.pure.cloud",
    },
    Region {
        name: "mx-central-1",
        domain: "mxc1.pure.cloud",
    },
    Region {
        name: "eu-west-1",
        domain: "mypurecloud.ie",
    },
    Region {
        name: "eu-west-2",
        domain: "euw2.pure.cloud",
    },
    Region {
        name: "eu-central-1",
        domain: "mypurecloud.de",
    },
    Region {
        name: "eu-central-2",
        domain: "euc2.pure.cloud",
    },
    Region {
        name: "me-central-1",
        domain: "mec1.pure.cloud",
    },
    Region {
        name: "ap-south-1",
        domain: "aps1.pure.cloud",
    },
    Region {
        name: "ap-southeast-1",
        domain: "apse1.pure.cloud",
    },
    Region {
        name: "ap-southeast-2",
        domain: "mypurecloud.com.au",
    },
    Region {
        name: "ap-northeast-1",
        domain: "mypurecloud.jp",
    },
    Region {
        name: "ap-northeast-2",
        domain: "apne2.pure.cloud",
    },
    Region {
        name: "ap-northeast-3",
        domain: "apne3.pure.cloud",
    },
];

impl Region {
    /// Finds a region by its AWS name (`eu-west-1`) or its domain (`mypurecloud.ie`),
    /// exactly as listed in [`REGIONS`] (the JSON Schema lists the same names).
    pub fn lookup(name_or_domain: &str) -> Option<Region> {
        REGIONS
            .iter()
            .copied()
            .find(|r| r.name == name_or_domain || r.domain == name_or_domain)
    }

    /// Every accepted spelling: each region's name, then its domain.
    pub fn accepted_names() -> Vec<&'static str> {
        REGIONS.iter().flat_map(|r| [r.name, r.domain]).collect()
    }

    /// Like [`Region::lookup`], but an unknown name is an error listing every known one.
    pub fn parse(name_or_domain: &str) -> Result<Region, ValidationErrors> {
        Self::lookup(name_or_domain)
            .ok_or_else(|| ValidationErrors::single("", Self::unknown_rule(name_or_domain)))
    }

    /// The rule an unknown region name breaks, listing every known name and domain.
    pub(crate) fn unknown_rule(name: &str) -> Rule {
        let known = REGIONS.iter().flat_map(|r| [r.name, r.domain]).collect();
        Rule::unknown("Genesys Cloud region", name, known)
    }

    /// The AWS region name, such as `eu-west-1`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The Genesys Cloud domain, such as `mypurecloud.ie`.
    pub fn domain(&self) -> &'static str {
        self.domain
    }

    /// The API host, such as `api.mypurecloud.ie`.
    pub fn api_host(&self) -> String {
        format!("api.{}", self.domain)
    }

    /// The login (OAuth) host, such as `login.mypurecloud.ie`.
    pub fn login_host(&self) -> String {
        format!("login.{}", self.domain)
    }

    /// `https://` plus the API host.
    pub fn api_base_url(&self) -> String {
        format!("https://api.{}", self.domain)
    }

    /// `https://` plus the login host.
    pub fn login_base_url(&self) -> String {
        format!("https://login.{}", self.domain)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_domains_are_unique() {
        for (i, a) in REGIONS.iter().enumerate() {
            for b in &REGIONS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.domain, b.domain);
            }
        }
    }

    #[test]
    fn lookup_accepts_name_or_domain_exactly() {
        let ie = Region::lookup("eu-west-1").unwrap();
        assert_eq!(Region::lookup("mypurecloud.ie"), Some(ie));
        assert_eq!(Region::lookup("api.mypurecloud.ie"), None);
        assert_eq!(Region::lookup("EU-WEST-1"), None);
        let err = Region::parse("mars-north-1").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("mars-north-1")
                && text.contains("us-east-1")
                && text.contains("apne3.pure.cloud")
        );
    }

    #[test]
    fn a_huge_unknown_region_is_quoted_cut() {
        let huge = "x".repeat(100_000);
        let text = Region::parse(&huge).unwrap_err().to_string();
        assert!(text.len() < 1_000, "{} bytes", text.len());
        assert!(text.contains(&format!("`{}…`", "x".repeat(63))), "{text}");
        let config = format!("[environment]\nregion = \"{huge}\"\n[routes.a]\nmodel = \"m\"\n");
        let text = crate::RouterConfig::from_toml_str(&config)
            .unwrap_err()
            .to_string();
        assert!(text.len() < 1_000, "{} bytes", text.len());
    }
}
