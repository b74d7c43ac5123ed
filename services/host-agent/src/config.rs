//! Configuration of the host agent, from the environment. Every variable
//! but `REGISTRATION_SECRET` has a default that works on a developer
//! machine; `.env.example` lists them all (a test keeps the two in step).
//! The agent has no database and no broker, so it reads none of their
//! settings (and a bad `AMQP_URL` in a shared `.env` does not stop it).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SCHEDULER_URL` | `http://127.0.0.1:8004` | where instance-scheduling is (without `/api/scheduling`) |
//! | `REGION` | `local` | the region the instance registers in |
//! | `CAPACITY` | `4` | sessions the instance holds at once, 1 to 1000 |
//! | `REGISTRATION_SECRET` | required | what the agent presents to register (the scheduler's; 16 characters or more outside development) |
//! | `HOST` | `0.0.0.0` | listen address |
//! | `PORT` | `9000` | listen port |
//! | `ADVERTISE_ADDRESS` | `127.0.0.1:$PORT` | the `host:port` registered as the instance's address, where clients reach the agent |
//! | `INSTANCE_ID` | unset | the instance a launch created (the worker sets it); the agent then registers as that instance |
//! | `HEARTBEAT_INTERVAL_SECS` | what registration answers | seconds between heartbeats, overriding the scheduler's |
//! | `SHUTDOWN_GRACE_SECS` | `2` | after SIGTERM, seconds of answering with `Connection: close` (readiness 503) before new connections are refused |
//! | `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | | see `platform::telemetry` |

use platform::config::{require_range, require_scheme};
use platform::ConfigError;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "defaults::scheduler_url")]
    pub scheduler_url: String,
    #[serde(default = "defaults::region")]
    pub region: String,
    #[serde(default = "defaults::capacity")]
    pub capacity: u32,
    #[serde(default = "defaults::missing_secret")]
    pub registration_secret: SecretString,
    #[serde(default = "defaults::host")]
    pub host: String,
    #[serde(default = "defaults::port")]
    pub port: u16,
    /// Unset: `127.0.0.1:<the port listened on>` (see [`Config::advertise_address`]).
    #[serde(default)]
    pub advertise_address: Option<String>,
    #[serde(default, deserialize_with = "defaults::parse_instance_id")]
    pub instance_id: Option<Uuid>,
    #[serde(default)]
    pub heartbeat_interval_secs: Option<u64>,
    #[serde(default = "defaults::shutdown_grace")]
    pub shutdown_grace_secs: u64,
}

/// Where the service listens when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 9000;

mod defaults {
    use secrecy::SecretString;
    use uuid::Uuid;

    pub fn scheduler_url() -> String {
        "http://127.0.0.1:8004".into()
    }
    pub fn region() -> String {
        "local".into()
    }
    pub fn capacity() -> u32 {
        4
    }
    /// Empty: `check` refuses it, naming the variable.
    pub fn missing_secret() -> SecretString {
        String::new().into()
    }
    pub fn host() -> String {
        "0.0.0.0".into()
    }
    pub fn port() -> u16 {
        super::DEFAULT_PORT
    }
    /// The same default as every other service's (`platform::config::Common`).
    pub fn shutdown_grace() -> u64 {
        2
    }
    /// Parsed when the configuration loads, so a bad id is one line naming
    /// `INSTANCE_ID` (and not echoing the value).
    pub fn parse_instance_id<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Uuid>, D::Error> {
        platform::config::parse_setting(deserializer, "INSTANCE_ID").map(Some)
    }
}

fn check_region(region: &str) -> Result<(), ConfigError> {
    domain::instance::Region::parse(region)
        .map(|_| ())
        .map_err(|err| ConfigError::new("REGION", err.to_string()))
}

fn is_address(raw: &str) -> bool {
    domain::instance::Address::parse(raw).is_ok()
}

impl Config {
    /// Reads the settings from `vars` and checks them: the first one that
    /// is wrong is named.
    pub fn load_from<I>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let vars = platform::config::resolve_secrets(vars)?;
        let config: Self = platform::config::from_iter(vars)?;
        config.check()?;
        Ok(config)
    }

    /// Loads the configuration from the environment, or ends the process
    /// (status 2) with one line on stderr naming the variable.
    pub fn from_env_or_exit() -> Self {
        match Self::load_from(std::env::vars()) {
            Ok(config) => config,
            Err(err) => {
                eprintln!("{err}");
                std::process::exit(2);
            }
        }
    }

    /// The defaults with `secret`, for tests and tools.
    pub fn with_secret(secret: &str) -> Result<Self, ConfigError> {
        Self::load_from([("REGISTRATION_SECRET".to_string(), secret.to_string())])
    }

    fn check(&self) -> Result<(), ConfigError> {
        require_scheme("SCHEDULER_URL", &self.scheduler_url, &["http", "https"])?;
        check_region(&self.region)?;
        require_range("CAPACITY", self.capacity, 1, 1000)?;
        if self.host.trim().is_empty() {
            return Err(ConfigError::new("HOST", "must not be empty"));
        }
        if let Some(address) = &self.advertise_address {
            if !is_address(address) {
                return Err(ConfigError::new(
                    "ADVERTISE_ADDRESS",
                    "must be host:port with a port of 1 to 65535",
                ));
            }
        }
        if let Some(secs) = self.heartbeat_interval_secs {
            require_range("HEARTBEAT_INTERVAL_SECS", secs, 1, 3_600)?;
        }
        require_range("SHUTDOWN_GRACE_SECS", self.shutdown_grace_secs, 0, 300)?;
        // Last, so that a mistake elsewhere is named even without it.
        if self.registration_secret.expose_secret().trim().is_empty() {
            return Err(ConfigError::new(
                "REGISTRATION_SECRET",
                "the secret instance-scheduling expects (required)",
            ));
        }
        Ok(())
    }

    /// The address registered for the instance: `ADVERTISE_ADDRESS`, or
    /// this machine's loopback and the port actually listened on (which
    /// differs from `PORT` only when that is 0, as in tests).
    pub fn advertise_address(&self, listening_port: u16) -> String {
        self.advertise_address
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{listening_port}"))
    }

    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat_interval_secs.map(Duration::from_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-development-secret";

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load_from(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain([("REGISTRATION_SECRET".to_string(), SECRET.to_string())]),
        )
    }

    #[test]
    fn defaults_work_with_a_secret() {
        let config = Config::with_secret(SECRET).unwrap();
        assert_eq!(config.scheduler_url, "http://127.0.0.1:8004");
        assert_eq!((config.region.as_str(), config.capacity), ("local", 4));
        assert_eq!((config.host.as_str(), config.port), ("0.0.0.0", 9000));
        assert_eq!(config.advertise_address(9000), "127.0.0.1:9000");
        assert_eq!(config.instance_id, None);
        assert_eq!(config.heartbeat_interval(), None);
        assert_eq!(config.shutdown_grace(), Duration::from_secs(2));
    }

    #[test]
    fn reads_what_the_worker_sets() {
        let id = "0193b7d8-5d6c-7a36-9d5e-3a1f0c2b4e51";
        let config = load(&[
            ("INSTANCE_ID", id),
            ("REGION", "eu-west-1"),
            ("CAPACITY", "8"),
            ("PORT", "9101"),
            ("ADVERTISE_ADDRESS", "10.0.0.5:9101"),
            ("HEARTBEAT_INTERVAL_SECS", "2"),
        ])
        .unwrap();
        assert_eq!(
            config.instance_id.map(|i| i.to_string()).as_deref(),
            Some(id)
        );
        assert_eq!(config.advertise_address(9101), "10.0.0.5:9101");
        assert_eq!(config.heartbeat_interval(), Some(Duration::from_secs(2)));
        assert_eq!(config.capacity, 8);
    }

    #[test]
    fn a_bad_setting_is_named_without_its_value() {
        for (variable, value) in [
            ("SCHEDULER_URL", "ftp://x"),
            ("REGION", "Not A Region"),
            ("CAPACITY", "0"),
            ("CAPACITY", "1001"),
            ("CAPACITY", "many"),
            ("PORT", "70000"),
            ("ADVERTISE_ADDRESS", "no-port"),
            ("INSTANCE_ID", "not-a-uuid-s3cret"),
            ("HEARTBEAT_INTERVAL_SECS", "0"),
            ("SHUTDOWN_GRACE_SECS", "301"),
        ] {
            let err = load(&[(variable, value)]).unwrap_err();
            assert_eq!(err.variable, variable, "{variable}={value}: {err}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn the_secret_is_checked_last() {
        let err = Config::load_from([("CAPACITY".to_string(), "0".to_string())]).unwrap_err();
        assert_eq!(err.variable, "CAPACITY");
        let err = Config::load_from(std::iter::empty()).unwrap_err();
        assert_eq!(err.variable, "REGISTRATION_SECRET");
        let err = Config::with_secret("  ").unwrap_err();
        assert_eq!(err.variable, "REGISTRATION_SECRET");
    }
}
