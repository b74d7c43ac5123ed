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
    let vars = resolve_secrets(vars)?;
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

/// The settings that may come from a file: `NAME_FILE=/run/secrets/x`
/// stands for `NAME` with the file's content. Only these: other programs'
/// variables end in `_FILE` too.
pub const FILE_SETTINGS: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_PASSWORD",
    "AMQP_URL",
    "AMQP_PASSWORD",
    "REGISTRATION_SECRET",
];

/// Applies the two ways a secret reaches a service without being written
/// in its environment:
///
/// - `NAME_FILE` for one of [`FILE_SETTINGS`] stands for `NAME` with the
///   file's content (one trailing newline dropped): how Docker secrets are
///   given;
/// - `DATABASE_PASSWORD` and `AMQP_PASSWORD` (usually as `..._FILE`) go into
///   `DATABASE_URL` and `AMQP_URL`, so a URL can be plain configuration
///   while its password is a secret shared with the server.
pub fn resolve_secrets<I>(vars: I) -> Result<Vec<(String, String)>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut vars: Vec<(String, String)> = vars.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let files: Vec<(String, String)> = vars
        .iter()
        .filter_map(|(key, path)| {
            let name = key.strip_suffix("_FILE")?;
            FILE_SETTINGS
                .contains(&name)
                .then(|| (name.to_string(), path.clone()))
        })
        .collect();
    for (name, path) in files {
        if vars.iter().any(|(key, _)| *key == name) {
            return Err(ConfigError::new(
                format!("{name}_FILE"),
                format!("is set together with {name}: set one of them"),
            ));
        }
        let content = std::fs::read_to_string(&path).map_err(|err| {
            ConfigError::new(
                format!("{name}_FILE"),
                format!("names a file that cannot be read ({})", err.kind()),
            )
        })?;
        let value = content
            .strip_suffix('\n')
            .map(|v| v.strip_suffix('\r').unwrap_or(v))
            .unwrap_or(&content);
        vars.push((name, value.to_string()));
    }
    for (password, url) in [
        ("DATABASE_PASSWORD", "DATABASE_URL"),
        ("AMQP_PASSWORD", "AMQP_URL"),
    ] {
        let Some(secret) = take(&mut vars, password) else {
            continue;
        };
        let Some(index) = vars.iter().position(|(key, _)| key == url) else {
            return Err(ConfigError::new(
                password,
                format!("needs {url}, which it goes into"),
            ));
        };
        let with_password =
            with_password(&vars[index].1, &secret).map_err(|why| ConfigError::new(url, why))?;
        vars[index].1 = with_password;
    }
    Ok(vars)
}

fn take(vars: &mut Vec<(String, String)>, key: &str) -> Option<String> {
    let index = vars.iter().position(|(k, _)| k == key)?;
    Some(vars.remove(index).1)
}

/// `scheme://user@host/...` with `password` added to the user, encoded.
fn with_password(url: &str, password: &str) -> Result<String, &'static str> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("must be a URL (scheme://user@host/...)")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (user, host) = authority
        .rsplit_once('@')
        .ok_or("needs a user name (user@host) for the password to go with")?;
    if user.contains(':') {
        return Err(
            "already holds a password: give it there or in the _PASSWORD setting, not both",
        );
    }
    let encoded: String = form_urlencoded::byte_serialize(password.as_bytes())
        .collect::<String>()
        // form encoding writes a space as `+`, which a URL's user info reads literally.
        .replace('+', "%20");
    Ok(format!("{scheme}://{user}:{encoded}@{host}{path}"))
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
    fn a_file_setting_stands_for_the_setting() {
        let dir = std::env::temp_dir().join(format!("platform-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret value\n").unwrap();
        let path = secret.to_string_lossy().to_string();

        let resolved = resolve_secrets(vars(&[("REGISTRATION_SECRET_FILE", &path)])).unwrap();
        assert!(
            resolved.contains(&("REGISTRATION_SECRET".into(), "s3cret value".into())),
            "{resolved:?}"
        );

        let err =
            resolve_secrets(vars(&[("AMQP_URL_FILE", &path), ("AMQP_URL", "y")])).unwrap_err();
        assert_eq!(err.variable, "AMQP_URL_FILE");
        let err =
            resolve_secrets(vars(&[("DATABASE_URL_FILE", "/nonexistent/secret")])).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL_FILE");
        // Another program's variable is left alone.
        let other = resolve_secrets(vars(&[("TF_CLI_CONFIG_FILE", "/nonexistent")])).unwrap();
        assert_eq!(other.len(), 1);
        assert!(err.expected.contains("cannot be read"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_password_goes_into_its_url_encoded() {
        let resolved = resolve_secrets(vars(&[
            (
                "DATABASE_URL",
                "postgres://app@db:5432/auth?sslmode=require",
            ),
            ("DATABASE_PASSWORD", "p@ss/w rd:"),
            ("AMQP_URL", "amqp://platform@rabbitmq:5672/%2f"),
            ("AMQP_PASSWORD", "guest"),
        ]))
        .unwrap();
        let get = |key: &str| {
            resolved
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get("DATABASE_URL").unwrap(),
            "postgres://app:p%40ss%2Fw%20rd%3A@db:5432/auth?sslmode=require"
        );
        assert_eq!(
            get("AMQP_URL").unwrap(),
            "amqp://platform:guest@rabbitmq:5672/%2f"
        );
        assert_eq!(get("DATABASE_PASSWORD"), None);

        let err = resolve_secrets(vars(&[("DATABASE_PASSWORD", "x")])).unwrap_err();
        assert_eq!(err.variable, "DATABASE_PASSWORD");
        let err = resolve_secrets(vars(&[
            ("AMQP_URL", "amqp://u:p@h/"),
            ("AMQP_PASSWORD", "x"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "AMQP_URL");
        assert!(
            !err.to_string().contains('p'.to_string().as_str()) || !err.to_string().contains("u:p"),
            "{err}"
        );
        let err = resolve_secrets(vars(&[("AMQP_URL", "amqp://h/"), ("AMQP_PASSWORD", "x")]))
            .unwrap_err();
        assert_eq!(err.variable, "AMQP_URL");
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
