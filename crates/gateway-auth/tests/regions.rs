//! Every Genesys Cloud region: name, domain, API and login hosts, and the token URL.

use gateway_auth::{ClientCredentials, Credentials};
use gateway_model::{REGIONS, Region};

/// (region name, domain) as Genesys Cloud documents them.
const EXPECTED: [(&str, &str); 17] = [
    ("us-east-1", "mypurecloud.com"),
    ("us-east-2", "use2.us-gov-pure.cloud"),
    ("us-west-2", "usw2.pure.cloud"),
    ("ca-central-1", "cac1.pure.cloud"),
    ("sa-east-1", "sae1.pure.cloud"),
    ("mx-central-1", "mxc1.pure.cloud"),
    ("eu-west-1", "mypurecloud.ie"),
    ("eu-west-2", "euw2.pure.cloud"),
    ("eu-central-1", "mypurecloud.de"),
    ("eu-central-2", "euc2.pure.cloud"),
    ("me-central-1", "mec1.pure.cloud"),
    ("ap-south-1", "aps1.pure.cloud"),
    ("ap-southeast-1", "apse1.pure.cloud"),
    ("ap-southeast-2", "mypurecloud.com.au"),
    ("ap-northeast-1", "mypurecloud.jp"),
    ("ap-northeast-2", "apne2.pure.cloud"),
    ("ap-northeast-3", "apne3.pure.cloud"),
];

#[test]
fn every_region_resolves_by_name_and_by_domain() {
    assert_eq!(REGIONS.len(), EXPECTED.len());
    for (name, domain) in EXPECTED {
        let by_name = Region::parse(name).unwrap();
        let by_domain = Region::parse(domain).unwrap();
        assert_eq!(by_name, by_domain, "{name}");
        assert_eq!((by_name.name(), by_name.domain()), (name, domain));
        assert_eq!(by_name.api_host(), format!("api.{domain}"));
        assert_eq!(by_name.login_host(), format!("login.{domain}"));
        assert_eq!(by_name.api_base_url(), format!("https://api.{domain}"));
        assert_eq!(by_name.login_base_url(), format!("https://login.{domain}"));
    }
}

#[test]
fn every_region_gives_its_token_url() {
    for (name, domain) in EXPECTED {
        let provider = ClientCredentials::builder(Credentials::new("id", "secret"))
            .region(Region::parse(name).unwrap())
            .build()
            .unwrap();
        let shown = format!("{provider:?}");
        assert!(
            shown.contains(&format!("https://login.{domain}/oauth/token")),
            "{shown}"
        );
    }
}

#[test]
fn an_unknown_region_lists_the_known_ones() {
    let err = Region::parse("mars-north-1").unwrap_err().to_string();
    assert!(
        err.contains("unknown Genesys Cloud region `mars-north-1`"),
        "{err}"
    );
    for (name, domain) in EXPECTED {
        assert!(
            err.contains(name) && err.contains(domain),
            "{name} missing from {err}"
        );
    }
}
