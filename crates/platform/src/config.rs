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

/// Parses a setting with its `FromStr` (for `#[serde(deserialize_with)]`),
/// so that a setting that is an enum or another domain type is parsed
/// when the configuration loads. A bad value is reported the way envy
/// reports its own parse errors, which [`ConfigError`] turns into one line
/// naming `variable` (and not the value).
pub fn parse_setting<'de, D, T>(deserializer: D, variable: &str) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    use serde::de::Error as _;
    use serde::Deserialize as _;
    let raw = String::deserialize(deserializer)?;
    raw.parse().map_err(|err| {
        D::Error::custom(format!(
            "{err} while parsing value '{raw}' provided by {variable}"
        ))
    })
}

/// Settings every service reads under the same names:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `HOST` | `0.0.0.0` | listen address |
/// | `DATABASE_POOL_SIZE` | `16` | database connections |
/// | `AMQP_URL` | `amqp://guest:guest@127.0.0.1:5672/%2f` | RabbitMQ |
/// | `AMQP_PREFIX` | empty | prefix of every exchange and queue name |
/// | `RETRY_DELAYS_MS` | `1000,10000,60000,300000` | delays between attempts of a failed message |
/// | `SHUTDOWN_GRACE_SECS` | `2` | after SIGTERM, how long a replica keeps answering (readiness 503, `Connection: close`) before it refuses new connections |
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Common {
    #[serde(default = "common_defaults::host")]
    pub host: String,
    #[serde(default = "common_defaults::pool_size")]
    pub database_pool_size: u32,
    #[serde(default = "common_defaults::amqp_url")]
    pub amqp_url: secrecy::SecretString,
    #[serde(default)]
    pub amqp_prefix: String,
    #[serde(default = "common_defaults::retry_delays")]
    pub retry_delays_ms: String,
    #[serde(default = "common_defaults::shutdown_grace")]
    pub shutdown_grace_secs: u64,
}

mod common_defaults {
    pub fn host() -> String {
        "0.0.0.0".into()
    }
    pub fn pool_size() -> u32 {
        16
    }
    pub fn amqp_url() -> secrecy::SecretString {
        "amqp://guest:guest@127.0.0.1:5672/%2f".into()
    }
    pub fn retry_delays() -> String {
        super::DEFAULT_RETRY_DELAYS_MS.into()
    }
    /// Long enough for a load balancer's next health check to see the 503
    /// and for keep-alive clients to be told to close.
    pub fn shutdown_grace() -> u64 {
        2
    }
}

impl Default for Common {
    fn default() -> Self {
        Self {
            host: common_defaults::host(),
            database_pool_size: common_defaults::pool_size(),
            amqp_url: common_defaults::amqp_url(),
            amqp_prefix: String::new(),
            retry_delays_ms: common_defaults::retry_delays(),
            shutdown_grace_secs: common_defaults::shutdown_grace(),
        }
    }
}

impl Common {
    pub fn validate(&self) -> Result<(), ConfigError> {
        use secrecy::ExposeSecret;
        require_scheme(
            "AMQP_URL",
            self.amqp_url.expose_secret(),
            &["amqp", "amqps"],
        )?;
        require_range("DATABASE_POOL_SIZE", self.database_pool_size, 1, 1000)?;
        require_range("SHUTDOWN_GRACE_SECS", self.shutdown_grace_secs, 0, 300)?;
        self.retry_delays().map(|_| ())
    }

    pub fn retry_delays(&self) -> Result<Vec<std::time::Duration>, ConfigError> {
        retry_delays("RETRY_DELAYS_MS", &self.retry_delays_ms)
    }

    pub fn shutdown_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// A service configuration: its own settings plus [`Common`].
pub trait ServiceConfig: DeserializeOwned {
    fn common_mut(&mut self) -> &mut Common;
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Reads a service configuration and the common settings from `vars`.
pub fn load_from<T, I>(vars: I) -> Result<T, ConfigError>
where
    T: ServiceConfig,
    I: IntoIterator<Item = (String, String)>,
{
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    let mut config: T = from_iter(vars.clone())?;
    let common: Common = from_iter(vars)?;
    common.validate()?;
    *config.common_mut() = common;
    config.validate()?;
    Ok(config)
}

/// Loads a service configuration from the environment, or ends the process
/// with one line on stderr naming the variable.
pub fn load_service_or_exit<T: ServiceConfig>() -> T {
    match load_from::<T, _>(std::env::vars()) {
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

    #[derive(Debug, serde::Deserialize)]
    struct Service {
        #[serde(skip)]
        common: Common,
        #[serde(default = "default_port")]
        port: u16,
    }

    impl ServiceConfig for Service {
        fn common_mut(&mut self) -> &mut Common {
            &mut self.common
        }
        fn validate(&self) -> Result<(), ConfigError> {
            require_range("PORT", self.port, 1, 65535)
        }
    }

    #[test]
    fn a_service_reads_its_own_and_the_common_settings() {
        let config: Service = load_from(vars(&[
            ("AMQP_PREFIX", "t."),
            ("PORT", "9"),
            ("RETRY_DELAYS_MS", "5,10"),
        ]))
        .unwrap();
        assert_eq!((config.port, config.common.amqp_prefix.as_str()), (9, "t."));
        assert_eq!(config.common.retry_delays().unwrap().len(), 2);
        assert_eq!(config.common.database_pool_size, 16);
        let err = load_from::<Service, _>(vars(&[("AMQP_URL", "http://x")])).unwrap_err();
        assert_eq!(err.variable, "AMQP_URL");
        let err = load_from::<Service, _>(vars(&[("PORT", "0")])).unwrap_err();
        assert_eq!(err.variable, "PORT");
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
