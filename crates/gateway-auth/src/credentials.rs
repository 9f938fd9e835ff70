//! OAuth client credentials, with the secret held in a type that never prints it.

use std::fmt;

use gateway_model::{CredentialsConfig, EnvVarError, is_client_id};

use crate::error::AuthError;

/// Env var holding the client id, by default.
pub const ENV_CLIENT_ID: &str = "GENESYS_CLIENT_ID";
/// Env var holding the client secret, by default.
pub const ENV_CLIENT_SECRET: &str = "GENESYS_CLIENT_SECRET";
/// Env var holding the region (name or domain), by default.
pub const ENV_REGION: &str = "GENESYS_REGION";

/// A secret string: `Debug` and `Display` print `<redacted>`; only [`Secret::expose`]
/// gives the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret text. Handle with care.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// An OAuth client's id (not secret) and secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
}

impl Credentials {
    /// Credentials from explicit values.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: Secret::new(client_secret),
        }
    }

    /// The Basic credential a token request sends: `client_id:client_secret` in base64.
    pub fn basic_credential(&self) -> Secret {
        use base64::Engine as _;
        Secret::new(base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.client_id,
            self.client_secret.expose()
        )))
    }

    /// The secrets a token request sends, which an error must never repeat: the client
    /// secret and the [Basic credential](Self::basic_credential) built from it.
    ///
    /// ```
    /// use gateway_auth::Credentials;
    /// let [secret, basic] = Credentials::new("id", "s3cret").sent_secrets();
    /// assert_eq!((secret.expose(), basic.expose()), ("s3cret", "aWQ6czNjcmV0"));
    /// ```
    pub fn sent_secrets(&self) -> [Secret; 2] {
        [self.client_secret.clone(), self.basic_credential()]
    }

    /// Reads `GENESYS_CLIENT_ID` and `GENESYS_CLIENT_SECRET`.
    pub fn from_env() -> Result<Self, AuthError> {
        Self::from_config(&CredentialsConfig::default())
    }

    /// Reads the env vars a [`CredentialsConfig`] names (the client id may be given
    /// inline). Spaces and line breaks around a value are taken off (a secret pasted
    /// with its newline); a secret longer than [`MAX_CLIENT_SECRET_BYTES`] is refused.
    pub fn from_config(config: &CredentialsConfig) -> Result<Self, AuthError> {
        Self::read_with(config, gateway_model::env_var)
    }

    /// Like [`Credentials::from_config`], reading variables through `lookup` (for tests,
    /// or a secret store).
    pub fn from_lookup(
        config: &CredentialsConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, AuthError> {
        Self::read_with(config, |name| lookup(name).ok_or(EnvVarError::Unset))
    }

    /// The credentials, each variable read through `read`.
    fn read_with(
        config: &CredentialsConfig,
        read_var: impl Fn(&str) -> Result<String, EnvVarError>,
    ) -> Result<Self, AuthError> {
        let read = |name: &str| match read_var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
            Ok(_) => Err(AuthError::MissingEnv {
                name: name.to_owned(),
                reason: "is empty",
            }),
            Err(e) => Err(AuthError::MissingEnv {
                name: name.to_owned(),
                reason: e.as_str(),
            }),
        };
        if config.client_id.is_none() && config.client_id_env == config.client_secret_env {
            return Err(AuthError::MissingEnv {
                name: config.client_secret_env.clone(),
                reason: "is named for both the client id and the secret (the secret would be shown as the id)",
            });
        }
        let client_id = match &config.client_id {
            Some(id) => id.clone(),
            None => read_client_id(&config.client_id_env, read(&config.client_id_env)?)?,
        };
        let client_secret = Secret::new(read(&config.client_secret_env)?);
        if client_secret.expose().len() > MAX_CLIENT_SECRET_BYTES {
            return Err(AuthError::MissingEnv {
                name: config.client_secret_env.clone(),
                reason: "is longer than a client secret can be (4096 bytes)",
            });
        }
        // Two variables holding one value: the secret would be shown as the id.
        if client_id == client_secret.expose() {
            return Err(AuthError::MissingEnv {
                name: config.client_secret_env.clone(),
                reason: "holds the client id's value: the secret must differ from the id",
            });
        }
        Ok(Self {
            client_id,
            client_secret,
        })
    }
}

/// The longest client secret read from the environment, in bytes: Genesys Cloud's are
/// about 43 characters, and a longer value would go into every token request's header.
pub const MAX_CLIENT_SECRET_BYTES: usize = 4096;

/// `id`, read from the env var `name`, if it is a client id ([`is_client_id`], the rule
/// an inline one meets). Errors name the client id, so a runaway value is refused, not
/// printed.
fn read_client_id(name: &str, id: String) -> Result<String, AuthError> {
    if !is_client_id(&id) {
        return Err(AuthError::MissingEnv {
            name: name.to_owned(),
            reason: "is not a client id (at most 256 visible ASCII characters, no `:`)",
        });
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let c = Credentials::new("client-1", "hunter2");
        let text = format!("{c:?} {} {:?}", c.client_secret, c.client_secret);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("client-1"));
        assert_eq!(c.client_secret.expose(), "hunter2");
    }

    #[test]
    fn env_lookup_names_the_missing_variable() {
        let config = CredentialsConfig {
            client_id: None,
            client_id_env: "MY_ID".into(),
            client_secret_env: "MY_SECRET".into(),
        };
        let err = Credentials::from_lookup(&config, |n| (n == "MY_ID").then(|| "id".to_owned()))
            .unwrap_err();
        assert_eq!(err.to_string(), "environment variable MY_SECRET is not set");
        let err = Credentials::from_lookup(&config, |_| Some("  ".into())).unwrap_err();
        assert_eq!(err.to_string(), "environment variable MY_ID is empty");
        let ok = Credentials::from_lookup(&config, |n| Some(format!("{n}-value"))).unwrap();
        assert_eq!(ok.client_id, "MY_ID-value");
        assert_eq!(ok.client_secret.expose(), "MY_SECRET-value");

        // A client id from the environment has the inline one's bound; errors never
        // repeat the value.
        for bad in [
            "c".repeat(gateway_model::MAX_CLIENT_ID_CHARS + 1),
            "sim\u{0}client".into(),
            "sim:client".into(),
        ] {
            let err = Credentials::from_lookup(&config, |n| {
                Some(if n == "MY_ID" {
                    bad.clone()
                } else {
                    "s".into()
                })
            })
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with("environment variable MY_ID is not a client id"),
                "{err}"
            );
            assert!(!err.contains("ccc") && !err.contains("sim"), "{err}");
        }
        let longest = "c".repeat(gateway_model::MAX_CLIENT_ID_CHARS);
        let ok = Credentials::from_lookup(&config, |n| {
            Some(if n == "MY_ID" {
                longest.clone()
            } else {
                "s".into()
            })
        })
        .unwrap();
        assert_eq!(ok.client_id, longest);
    }

    /// Regression: a config naming one variable for both (a copy-paste slip) read the
    /// secret as the client id, which `Debug` and every rejection show.
    #[test]
    fn the_secret_is_never_taken_as_the_client_id() {
        let secret = "Zq8-very-secret-value_1234567890";
        let one_var = CredentialsConfig {
            client_id: None,
            client_id_env: "GENESYS_CLIENT_SECRET".into(),
            client_secret_env: "GENESYS_CLIENT_SECRET".into(),
        };
        let err = Credentials::from_lookup(&one_var, |_| Some(secret.to_owned()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("GENESYS_CLIENT_SECRET") && err.contains("both"),
            "{err}"
        );
        let two_vars = CredentialsConfig {
            client_id: None,
            client_id_env: "A".into(),
            client_secret_env: "B".into(),
        };
        let inline = CredentialsConfig {
            client_id: Some(secret.to_owned()),
            ..two_vars.clone()
        };
        let long = "s".repeat(MAX_CLIENT_SECRET_BYTES + 1);
        let err = Credentials::from_lookup(&two_vars, |n| {
            Some(if n == "A" { "id".into() } else { long.clone() })
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("longer than") && !err.contains("sss"), "{err}");
        for config in [two_vars, inline] {
            let err = Credentials::from_lookup(&config, |_| Some(secret.to_owned()))
                .unwrap_err()
                .to_string();
            assert!(err.contains("differ from the id"), "{err}");
            assert!(!err.contains(secret), "{err}");
        }
    }
}
