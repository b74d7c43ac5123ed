//! Configuration of the auth service, from the environment. Every variable
//! has a default that works on a developer machine; `.env.example` lists
//! them all (a test keeps the two in step).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HOST` | `0.0.0.0` | listen address |
//! | `PORT` | `8001` | listen port |
//! | `DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/auth` | created if absent |
//! | `DATABASE_POOL_SIZE` | `16` | connections |
//! | `AMQP_URL` | `amqp://guest:guest@127.0.0.1:5672/%2f` | RabbitMQ |
//! | `AMQP_PREFIX` | empty | prefix of every exchange and queue name |
//! | `JWT_ISSUER` | `http://localhost/api/auth` | `iss` of access tokens |
//! | `ACCESS_TOKEN_TTL_SECS` | `900` | access-token lifetime |
//! | `SESSION_IDLE_TIMEOUT_SECS` | `1209600` (14 days) | session ends after this long unused |
//! | `SESSION_ABSOLUTE_TIMEOUT_SECS` | `2592000` (30 days) | session ends this long after login |
//! | `COOKIE_SECURE` | `true` | `Secure` attribute on the refresh cookie |
//! | `ALLOWED_ORIGINS` | empty | comma-separated origins, besides the service's own, allowed to call `/refresh` and `/logout` |
//! | `TRUSTED_PROXIES` | empty | comma-separated addresses or networks of the gateway: from these peers the client IP is taken from `X-Forwarded-For`; from any other peer the header is ignored |
//! | `LOGIN_MAX_FAILURES` | `5` | failed logins per account per window before 429 |
//! | `LOGIN_IP_MAX_FAILURES` | `50` | failed logins per client IP per window before 429 |
//! | `LOGIN_THROTTLE_WINDOW_SECS` | `900` | throttle window |
//! | `ARGON2_MEMORY_KIB` | `19456` | argon2id memory cost |
//! | `ARGON2_ITERATIONS` | `2` | argon2id time cost |
//! | `ARGON2_PARALLELISM` | `1` | argon2id lanes |
//! | `KEY_RELOAD_SECS` | `10` | how often signing keys are re-read from the database |
//! | `RETRY_DELAYS_MS` | `1000,10000,60000,300000` | consumer retry delays |
//! | `SHUTDOWN_GRACE_SECS` | `2` | after SIGTERM, seconds of answering with `Connection: close` (readiness 503) before new connections are refused |
//! | `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | | see `platform::telemetry` |

use platform::config::{require_range, require_scheme};
use platform::config::{Common, ServiceConfig};
use platform::http::respond::TrustedProxies;
use platform::ConfigError;
use secrecy::SecretString;
use serde::Deserialize;
use std::time::Duration;

fn trusted_proxies<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TrustedProxies, D::Error> {
    platform::config::parse_setting(d, "TRUSTED_PROXIES")
}

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
    #[serde(default = "defaults::access_ttl")]
    pub access_token_ttl_secs: u64,
    #[serde(default = "defaults::idle_timeout")]
    pub session_idle_timeout_secs: u64,
    #[serde(default = "defaults::absolute_timeout")]
    pub session_absolute_timeout_secs: u64,
    #[serde(default = "defaults::yes")]
    pub cookie_secure: bool,
    #[serde(default)]
    pub allowed_origins: String,
    #[serde(default, deserialize_with = "trusted_proxies")]
    pub trusted_proxies: TrustedProxies,
    /// Replaced by `TRUSTED_PROXIES`; read only to refuse it.
    #[serde(default)]
    trust_forwarded_for: Option<String>,
    #[serde(default = "defaults::max_failures")]
    pub login_max_failures: u32,
    #[serde(default = "defaults::ip_max_failures")]
    pub login_ip_max_failures: u32,
    #[serde(default = "defaults::throttle_window")]
    pub login_throttle_window_secs: u64,
    #[serde(default = "defaults::argon2_memory")]
    pub argon2_memory_kib: u32,
    #[serde(default = "defaults::argon2_iterations")]
    pub argon2_iterations: u32,
    #[serde(default = "defaults::argon2_parallelism")]
    pub argon2_parallelism: u32,
    #[serde(default = "defaults::key_reload")]
    pub key_reload_secs: u64,
}

/// Where the service listens when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 8001;

mod defaults {
    use secrecy::SecretString;

    pub fn port() -> u16 {
        super::DEFAULT_PORT
    }
    pub fn database_url() -> SecretString {
        "postgres://postgres@127.0.0.1:5432/auth".into()
    }
    pub fn issuer() -> String {
        "http://localhost/api/auth".into()
    }
    pub fn access_ttl() -> u64 {
        900
    }
    pub fn idle_timeout() -> u64 {
        14 * 24 * 3600
    }
    pub fn absolute_timeout() -> u64 {
        30 * 24 * 3600
    }
    pub fn yes() -> bool {
        true
    }
    pub fn max_failures() -> u32 {
        5
    }
    pub fn ip_max_failures() -> u32 {
        50
    }
    pub fn throttle_window() -> u64 {
        900
    }
    pub fn argon2_memory() -> u32 {
        19456
    }
    pub fn argon2_iterations() -> u32 {
        2
    }
    pub fn argon2_parallelism() -> u32 {
        1
    }
    pub fn key_reload() -> u64 {
        10
    }
}

impl Config {
    /// Loads from the environment or exits with one line naming the variable.
    pub fn from_env_or_exit() -> Self {
        platform::config::load_service_or_exit()
    }

    /// How long a session may go unused before it ends.
    pub fn session_idle_timeout(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.session_idle_timeout_secs as i64)
    }

    fn check(&self) -> Result<(), ConfigError> {
        use secrecy::ExposeSecret;
        require_scheme(
            "DATABASE_URL",
            self.database_url.expose_secret(),
            &["postgres", "postgresql"],
        )?;
        require_range(
            "ACCESS_TOKEN_TTL_SECS",
            self.access_token_ttl_secs,
            30,
            3600,
        )?;
        require_range(
            "SESSION_IDLE_TIMEOUT_SECS",
            self.session_idle_timeout_secs,
            1,
            365 * 24 * 3600,
        )?;
        require_range(
            "SESSION_ABSOLUTE_TIMEOUT_SECS",
            self.session_absolute_timeout_secs,
            1,
            366 * 24 * 3600,
        )?;
        require_range("LOGIN_MAX_FAILURES", self.login_max_failures, 1, 1000)?;
        require_range(
            "LOGIN_IP_MAX_FAILURES",
            self.login_ip_max_failures,
            1,
            100_000,
        )?;
        require_range(
            "LOGIN_THROTTLE_WINDOW_SECS",
            self.login_throttle_window_secs,
            1,
            24 * 3600,
        )?;
        require_range(
            "ARGON2_MEMORY_KIB",
            self.argon2_memory_kib,
            8,
            4 * 1024 * 1024,
        )?;
        require_range("ARGON2_ITERATIONS", self.argon2_iterations, 1, 100)?;
        require_range("ARGON2_PARALLELISM", self.argon2_parallelism, 1, 64)?;
        require_range("KEY_RELOAD_SECS", self.key_reload_secs, 1, 3600)?;
        if self.trust_forwarded_for.is_some() {
            return Err(ConfigError::new(
                "TRUST_FORWARDED_FOR",
                "is no longer read: set TRUSTED_PROXIES to the gateway's addresses (e.g. 10.201.0.0/16)",
            ));
        }
        if self.jwt_issuer.trim().is_empty() {
            return Err(ConfigError::new("JWT_ISSUER", "must not be empty"));
        }
        for origin in self.allowed_origin_list() {
            require_scheme("ALLOWED_ORIGINS", &origin, &["http", "https"])?;
        }
        Ok(())
    }

    pub fn retry_delays(&self) -> Result<Vec<Duration>, ConfigError> {
        self.common.retry_delays()
    }

    pub fn allowed_origin_list(&self) -> Vec<String> {
        self.allowed_origins
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// A configuration for tests and tools: the defaults, with overrides.
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
