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
//! | `SHUTDOWN_GRACE_SECS` | `2` | after SIGTERM, seconds of answering with `Connection: close` (readiness 503) before new connections are refused |
//! | `SEARCH_CONCURRENCY` | `4` | directory searches run at once per replica; more wait their turn |
//! | `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | | see `platform::telemetry` |

use platform::config::{require_range, require_scheme};
use platform::config::{Common, ServiceConfig};
use platform::ConfigError;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// HOST, DATABASE_POOL_SIZE, AMQP_URL, AMQP_PREFIX, RETRY_DELAYS_MS.
    #[serde(skip)]
    pub common: Common,
    #[serde(default = "defaults::port")]
    pub port: u16,
    #[serde(default = "defaults::database_url")]
    pub database_url: SecretString,
    #[serde(default = "defaults::issuer")]
    pub jwt_issuer: String,
    #[serde(default = "defaults::jwks_url")]
    pub auth_jwks_url: String,
    #[serde(default = "defaults::search_concurrency")]
    pub search_concurrency: usize,
}

/// Where the service listens when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 8002;

mod defaults {
    use secrecy::SecretString;

    pub fn port() -> u16 {
        super::DEFAULT_PORT
    }
    pub fn database_url() -> SecretString {
        "postgres://postgres@127.0.0.1:5432/accounts".into()
    }
    pub fn issuer() -> String {
        "http://localhost/api/auth".into()
    }
    pub fn jwks_url() -> String {
        "http://127.0.0.1:8001/api/auth/.well-known/jwks.json".into()
    }
    /// A search is the heaviest query the service makes (trigram index
    /// scans, ~1 ms of database CPU at 100k users): a few at a time keep
    /// the database's cores busy; more only share them and all finish
    /// late (measured at 8 connections on 2 cores: p99 15-18 ms with 16
    /// at once, 11-13 ms with 4), and they would hold connections that
    /// `GET /me` and the consumers need.
    pub fn search_concurrency() -> usize {
        4
    }
}

impl Config {
    pub fn from_env_or_exit() -> Self {
        platform::config::load_service_or_exit()
    }

    fn check(&self) -> Result<(), ConfigError> {
        require_scheme(
            "DATABASE_URL",
            self.database_url.expose_secret(),
            &["postgres", "postgresql"],
        )?;
        require_scheme("AUTH_JWKS_URL", &self.auth_jwks_url, &["http", "https"])?;
        if self.jwt_issuer.trim().is_empty() {
            return Err(ConfigError::new("JWT_ISSUER", "must not be empty"));
        }
        require_range("SEARCH_CONCURRENCY", self.search_concurrency, 1, 1000)?;
        Ok(())
    }

    pub fn retry_delays(&self) -> Result<Vec<Duration>, ConfigError> {
        self.common.retry_delays()
    }

    /// The defaults, for tests and tools.
    pub fn defaults() -> Result<Self, ConfigError> {
        platform::config::load_from(std::iter::empty())
    }
}

impl ServiceConfig for Config {
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.check()
    }
}
