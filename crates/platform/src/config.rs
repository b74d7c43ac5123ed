//! Typed configuration from the environment.
//!
//! Each service declares a `Config` struct (serde, field names are the
//! lower-cased variable names) and loads it once in `main`. Any bad or missing
//! variable becomes one line that names the variable and what it expects, and
//! the process exits with status 2. The value itself is never echoed: it may be
//! a secret.

use serde::de::DeserializeOwned;
use std::fmt;

/// A setting that is missing or cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub expected: String,
}

impl ConfigError {
    pub fn new(variable: impl Into<String>, expected: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "configuration error: {} {}",
            self.variable, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// Reads `T` from the process environment.
pub fn from_env<T: DeserializeOwned>() -> Result<T, ConfigError> {
    from_iter(std::env::vars())
}

/// Reads `T` from the given variables (what `from_env` does, testable).
pub fn from_iter<T, I>(vars: I) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    // Empty values count as unset, so `FOO=` in an env file falls back to the default.
    let vars = vars.into_iter().filter(|(_, v)| !v.is_empty());
    envy::from_iter(vars).map_err(describe_envy_error)
}

fn describe_envy_error(err: envy::Error) -> ConfigError {
    match err {
        envy::Error::MissingValue(field) => {
            ConfigError::new(field.to_uppercase(), "is required but not set")
        }
        envy::Error::Custom(message) => describe_custom(&message),
    }
}

/// envy phrases parse errors as "<why> while parsing value '<value>' provided by
/// <KEY>": keep the why and the key, drop the value.
fn describe_custom(message: &str) -> ConfigError {
    if let Some((why, rest)) = message.split_once(" while parsing value '") {
        if let Some((_, key)) = rest.rsplit_once("' provided by ") {
            return ConfigError::new(key.to_uppercase(), format!("is invalid: {why}"));
        }
    }
    ConfigError::new("environment", message.to_string())
}

/// Loads the configuration or ends the process with one line on stderr.
pub fn load_or_exit<T, F>(validate: F) -> T
where
    T: DeserializeOwned,
    F: FnOnce(&T) -> Result<(), ConfigError>,
{
    match from_env::<T>().and_then(|config| validate(&config).map(|()| config)) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    }
}

/// Checks that a URL setting has one of the given schemes.
pub fn require_scheme(variable: &str, value: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let ok = value
        .split_once("://")
        .map(|(scheme, rest)| schemes.contains(&scheme) && !rest.is_empty())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        let list = schemes
            .iter()
            .map(|s| format!("{s}://"))
            .collect::<Vec<_>>()
            .join(" or ");
        Err(ConfigError::new(variable, format!("must be a {list} URL")))
    }
}

/// Default consumer retry delays: 1 s, 10 s, 1 min, 5 min.
pub const DEFAULT_RETRY_DELAYS_MS: &str = "1000,10000,60000,300000";

/// Parses a comma-separated list of positive milliseconds.
pub fn retry_delays(variable: &str, raw: &str) -> Result<Vec<std::time::Duration>, ConfigError> {
    let delays: Result<Vec<_>, _> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(std::time::Duration::from_millis)
                .ok_or_else(|| {
                    ConfigError::new(
                        variable,
                        "must be a comma-separated list of positive milliseconds",
                    )
                })
        })
        .collect();
    let delays = delays?;
    if delays.is_empty() {
        return Err(ConfigError::new(variable, "must list at least one delay"));
    }
    Ok(delays)
}

/// Checks a numeric setting against a range.
pub fn require_range<N: PartialOrd + fmt::Display>(
    variable: &str,
    value: N,
    min: N,
    max: N,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        Err(ConfigError::new(
            variable,
            format!("must be between {min} and {max}"),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Sample {
        database_url: String,
        #[serde(default = "default_port")]
        port: u16,
    }

    fn default_port() -> u16 {
        8000
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn missing_variable_is_named() {
        let err = from_iter::<Sample, _>(vars(&[("PORT", "1")])).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        assert_eq!(
            err.to_string(),
            "configuration error: DATABASE_URL is required but not set"
        );
    }

    #[test]
    fn invalid_value_names_variable_without_echoing_it() {
        let err =
            from_iter::<Sample, _>(vars(&[("DATABASE_URL", "x"), ("PORT", "s3cret")])).unwrap_err();
        assert_eq!(err.variable, "PORT");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn empty_value_falls_back_to_default() {
        let config = from_iter::<Sample, _>(vars(&[("DATABASE_URL", "x"), ("PORT", "")])).unwrap();
        assert_eq!(config.port, 8000);
        assert_eq!(config.database_url, "x");
    }

    #[test]
    fn scheme_check() {
        assert!(require_scheme("U", "postgres://h/db", &["postgres", "postgresql"]).is_ok());
        let err = require_scheme("U", "http://h", &["postgres"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: U must be a postgres:// URL"
        );
        assert!(require_range("N", 0, 1, 5).is_err());
    }
}
