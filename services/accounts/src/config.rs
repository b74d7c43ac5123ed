//! Configuration of the accounts service, from the environment. Every
//! variable has a default that works on a developer machine; `.env.example`
//! lists them all (a test keeps the two in step).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HOST` | `0.0.0.0` | listen address |
//! | `PORT` | `8002` | listen port |
//! | `DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/accounts` | created if absent |
//! | `DATABASE_POOL_SIZE` | `16` | connections |
//! | `AMQP_URL` | `amqp://guest:guest@127.0.0.1:5672/%2f` | RabbitMQ |
//! | `AMQP_PREFIX` | empty | prefix of every exchange and queue name |
//! | `JWT_ISSUER` | `http://localhost/api/auth` | expected `iss` of access tokens |
//! | `AUTH_JWKS_URL` | `http://127.0.0.1:8001/api/auth/.well-known/jwks.json` | where the verification keys are |
//! | `RETRY_DELAYS_MS` | `1000,10000,60000,300000` | consumer retry delays |
//! | `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | | see `platform::telemetry` |

use platform::config::{require_range, require_scheme};
use platform::ConfigError;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "defaults::host")]
    pub host: String,
    #[serde(default = "defaults::port")]
    pub port: u16,
    #[serde(default = "defaults::database_url")]
    pub database_url: SecretString,
    #[serde(default = "defaults::pool_size")]
    pub database_pool_size: u32,
    #[serde(default = "defaults::amqp_url")]
    pub amqp_url: SecretString,
    #[serde(default)]
    pub amqp_prefix: String,
    #[serde(default = "defaults::issuer")]
    pub jwt_issuer: String,
    #[serde(default = "defaults::jwks_url")]
    pub auth_jwks_url: String,
    #[serde(default = "defaults::retry_delays")]
    pub retry_delays_ms: String,
}

mod defaults {
    use secrecy::SecretString;

    pub fn host() -> String {
        "0.0.0.0".into()
    }
    pub fn port() -> u16 {
        8002
    }
    pub fn database_url() -> SecretString {
        "postgres://postgres@127.0.0.1:5432/accounts".into()
    }
    pub fn pool_size() -> u32 {
        16
    }
    pub fn amqp_url() -> SecretString {
        "amqp://guest:guest@127.0.0.1:5672/%2f".into()
    }
    pub fn issuer() -> String {
        "http://localhost/api/auth".into()
    }
    pub fn jwks_url() -> String {
        "http://127.0.0.1:8001/api/auth/.well-known/jwks.json".into()
    }
    pub fn retry_delays() -> String {
        platform::config::DEFAULT_RETRY_DELAYS_MS.into()
    }
}

impl Config {
    pub fn from_env_or_exit() -> Self {
        platform::config::load_or_exit(Self::validate)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        require_scheme(
            "DATABASE_URL",
            self.database_url.expose_secret(),
            &["postgres", "postgresql"],
        )?;
        require_scheme(
            "AMQP_URL",
            self.amqp_url.expose_secret(),
            &["amqp", "amqps"],
        )?;
        require_scheme("AUTH_JWKS_URL", &self.auth_jwks_url, &["http", "https"])?;
        require_range("DATABASE_POOL_SIZE", self.database_pool_size, 1, 1000)?;
        if self.jwt_issuer.trim().is_empty() {
            return Err(ConfigError::new("JWT_ISSUER", "must not be empty"));
        }
        self.retry_delays().map(|_| ())
    }

    pub fn retry_delays(&self) -> Result<Vec<Duration>, ConfigError> {
        platform::config::retry_delays("RETRY_DELAYS_MS", &self.retry_delays_ms)
    }

    /// The defaults, for tests and tools.
    pub fn defaults() -> Result<Self, ConfigError> {
        platform::config::from_iter(std::iter::empty())
    }
}
