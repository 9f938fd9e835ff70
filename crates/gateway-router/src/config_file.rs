//! Reading a `RouterConfig` from a TOML file, with env overrides for the region.

use std::path::{Path, PathBuf};

use gateway_auth::ENV_REGION;
use gateway_model::{
    EnvVarError, MAX_UNKNOWN_NAME_CHARS, RouterConfig, Validate, ValidationErrors, cut_to, env_var,
    read_bounded,
};

/// The largest config file read: far past any real one (the example is 5 KB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid configuration; every problem is listed with its path (the
    /// first 64, and how many more).
    #[error("{path} is not a valid router configuration: {errors}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every violation, with its path in the document.
        errors: ValidationErrors,
    },
    /// An override env var is set but not to UTF-8 text.
    #[error("{name} {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Why it gave no text.
        reason: EnvVarError,
    },
    /// A valid file is made invalid by an override env var's value (`GENESYS_REGION`
    /// naming no region): the env var is at fault, not the file.
    #[error("{name} cannot be applied to the configuration: {errors}")]
    EnvInvalid {
        /// The variable.
        name: &'static str,
        /// What its value broke, with paths in the document.
        errors: ValidationErrors,
    },
}

/// Reads, parses and validates a TOML config, then applies env overrides
/// (`GENESYS_REGION` replaces the environment's region; see [`apply_env_overrides`]).
pub fn load_config(path: &Path) -> Result<RouterConfig, ConfigError> {
    let read = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let bytes = read_bounded(path, MAX_CONFIG_BYTES).map_err(read)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        read(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not UTF-8 text",
        ))
    })?;
    let mut config = RouterConfig::from_toml_str(&text).map_err(|errors| ConfigError::Invalid {
        path: path.to_owned(),
        errors,
    })?;
    let region = match env_var(ENV_REGION) {
        Ok(region) => Some(region),
        Err(EnvVarError::Unset) => None,
        Err(reason) => {
            return Err(ConfigError::Env {
                name: ENV_REGION,
                reason,
            });
        }
    };
    // The file was valid as read: what breaks now is the override's doing.
    if apply_env_overrides(&mut config, |name| {
        (name == ENV_REGION).then(|| region.clone()).flatten()
    }) {
        config
            .validate()
            .map_err(|errors| ConfigError::EnvInvalid {
                name: ENV_REGION,
                errors,
            })?;
    }
    Ok(config)
}

/// Applies env overrides read through `lookup`: a non-empty `GENESYS_REGION` replaces
/// the config's `region`. It never replaces an explicit `api_base`: a file that names its
/// hosts (a private gateway, the local simulator) keeps them, and a warning says the env
/// var was ignored, so a region left in a shell cannot send traffic to Genesys Cloud
/// unasked. Returns whether the override was applied.
///
/// Secrets are never in the config: they are read from the env vars the config names,
/// when the token source is built.
pub fn apply_env_overrides(
    config: &mut RouterConfig,
    lookup: impl Fn(&str) -> Option<String>,
) -> bool {
    let Some(region) = lookup(ENV_REGION)
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
    else {
        return false;
    };
    if let Some(api_base) = &config.environment.api_base {
        let mut shown = region.clone();
        cut_to(&mut shown, MAX_UNKNOWN_NAME_CHARS);
        tracing::warn!(
            region = %shown,
            %api_base,
            "{ENV_REGION} is ignored: the config names its hosts (api_base), which win"
        );
        return false;
    }
    config.environment.region = Some(region);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_env_never_replaces_explicit_hosts() {
        let region = |n: &str| (n == "GENESYS_REGION").then(|| "eu-west-1".to_owned());
        let mut config = RouterConfig::from_toml_str(
            "[environment]\napi_base = \"http://127.0.0.1:9\"\n[routes.a]\nmodel = \"m\"\n",
        )
        .unwrap();
        assert!(!apply_env_overrides(&mut config, region));
        assert_eq!(
            config.environment.resolve().unwrap().api_base,
            "http://127.0.0.1:9",
            "the file's hosts win"
        );

        let mut config = RouterConfig::from_toml_str(
            "[environment]\nregion = \"us-east-1\"\n[routes.a]\nmodel = \"m\"\n",
        )
        .unwrap();
        assert!(apply_env_overrides(&mut config, region));
        assert_eq!(
            config.environment.resolve().unwrap().api_base,
            "https://api.mypurecloud.ie"
        );
        assert!(!apply_env_overrides(&mut config, |_| Some(" ".into())));
        assert_eq!(config.environment.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn errors_name_the_file_and_every_problem() {
        let dir = std::env::temp_dir().join(format!("router-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(
            &path,
            "[environment]\nregion = \"moon\"\n[routes.a]\nmodel = \"bad id\"\n",
        )
        .unwrap();
        let err = load_config(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.toml")
                && err.contains("/environment/region")
                && err.contains("/routes/a/model"),
            "{err}"
        );
        let missing = load_config(&dir.join("nope.toml")).unwrap_err().to_string();
        assert!(missing.contains("nope.toml"), "{missing}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
