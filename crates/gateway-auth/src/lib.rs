//! OAuth 2.0 client credentials for Genesys Cloud: server-to-server auth that never
//! becomes the bottleneck or the outage.
//!
//! - [`ClientCredentials`]: a [`TokenSource`](gateway_transport::TokenSource) that posts `grant_type=client_credentials`
//!   with Basic auth to `https://login.<domain>/oauth/token` (no scope parameter: the
//!   client's roles decide what it may do), caches the token, refreshes it ahead of
//!   expiry in the background, keeps exactly one request in flight, and survives a
//!   failing token endpoint while the old token is valid. Its hosts come from a
//!   [`Region`](gateway_model::Region) (the 17 Genesys Cloud regions by name,
//!   `eu-west-1`, or domain, `mypurecloud.ie`) or explicit URLs.
//! - [`TokenLifetime`]: the checked `expires_in` of a token answer. A whole number of
//!   seconds of at least 1 s is accepted; a lifetime above 172,800 s (48 h, Genesys
//!   Cloud's maximum) is clamped to 172,800 s, however large the number; zero, negative,
//!   fractional or missing lifetimes are refused with [`AuthError::InvalidLifetime`]
//!   naming `expires_in` ([`LifetimeError`]).
//! - [`Credentials`] from config or the `GENESYS_CLIENT_ID` / `GENESYS_CLIENT_SECRET` env
//!   vars; the secret and tokens are redacted in `Debug`, `Display` and every error.
//!
//! The [`TokenSource`](gateway_transport::TokenSource) trait, and
//! [`StaticToken`](gateway_transport::StaticToken) for a token obtained elsewhere, live in
//! `gateway-transport` (the dispatch loop calls the trait and refreshes once on a 401);
//! import them from there.
//!
//! ```
//! use gateway_auth::{ClientCredentials, Credentials};
//! use gateway_model::Region;
//!
//! let region = Region::parse("mypurecloud.de").expect("a known region");
//! assert_eq!(region.name(), "eu-central-1");
//! assert_eq!(region.login_host(), "login.mypurecloud.de");
//!
//! let tokens = ClientCredentials::builder(Credentials::new("my-client-id", "my-secret"))
//!     .region(region)
//!     .build()
//!     .expect("a valid login URL");
//! let shown = format!("{tokens:?}");
//! assert!(shown.contains("my-client-id") && !shown.contains("my-secret"));
//! ```

mod credentials;
mod error;
mod lifetime;
mod provider;
mod refresh;

pub use credentials::{
    Credentials, ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_REGION, MAX_CLIENT_SECRET_BYTES, Secret,
};
pub use error::AuthError;
pub use lifetime::{LifetimeError, TokenLifetime};
pub use provider::{ClientCredentials, ClientCredentialsBuilder, RefreshHook, TOKEN_PATH};
pub use refresh::RefreshPolicy;
