//! Reading the environment variables a configuration names (secrets, URLs, keys).

use std::env::VarError;

/// Why an environment variable gave no text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvVarError {
    /// It is not set.
    #[error("is not set")]
    Unset,
    /// It is set, but not to UTF-8 text.
    #[error("is not valid UTF-8")]
    NotUnicode,
}

impl EnvVarError {
    /// The reason as a phrase: `is not set` or `is not valid UTF-8`.
    pub fn as_str(self) -> &'static str {
        match self {
            EnvVarError::Unset => "is not set",
            EnvVarError::NotUnicode => "is not valid UTF-8",
        }
    }
}

/// The text of the environment variable `name`, or why there is none.
///
/// ```
/// use gateway_model::{EnvVarError, env_var};
///
/// assert_eq!(
///     env_var("GENESYS_ROUTER_SURELY_UNSET_VARIABLE"),
///     Err(EnvVarError::Unset)
/// );
/// ```
pub fn env_var(name: &str) -> Result<String, EnvVarError> {
    std::env::var(name).map_err(|e| match e {
        VarError::NotPresent => EnvVarError::Unset,
        VarError::NotUnicode(_) => EnvVarError::NotUnicode,
    })
}
