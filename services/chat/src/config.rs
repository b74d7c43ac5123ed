//! Configuration of the chat service, from the environment. Every variable
//! has a default that works on a developer machine; `.env.example` lists
//! them all (a test keeps the two in step).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HOST` | `0.0.0.0` | listen address |
//! | `PORT` | `8003` | listen port |
//! | `DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/chat` | created if absent |
//! | `DATABASE_POOL_SIZE` | `16` | connections |
//! | `AMQP_URL` | `amqp://guest:guest@127.0.0.1:5672/%2f` | RabbitMQ |
//! | `AMQP_PREFIX` | empty | prefix of every exchange and queue name |
//! | `JWT_ISSUER` | `http://localhost/api/auth` | expected `iss` of access tokens |
//! | `AUTH_JWKS_URL` | `http://127.0.0.1:8001/api/auth/.well-known/jwks.json` | where the verification keys are |
//! | `RETRY_DELAYS_MS` | `1000,10000,60000,300000` | consumer retry delays |
//! | `SHUTDOWN_GRACE_SECS` | `2` | after SIGTERM, seconds of answering with `Connection: close` (readiness 503) before new connections are refused |
//! | `WS_MAX_FRAME_BYTES` | `65536` | largest client frame; a larger one closes the connection with 1009 |
//! | `WS_SEND_QUEUE` | `256` | frames waiting for one connection; a reader that lets more pile up is disconnected |
//! | `WS_MESSAGES_PER_SEC` | `20` | client frames per second per connection, on average |
//! | `WS_BURST` | `60` | client frames a connection may send at once before the rate applies |
//! | `WS_IDLE_TIMEOUT_SECS` | `60` | a connection that sends nothing (not even a pong) this long is closed |
//! | `WS_PING_SECS` | `20` | how often the server pings |
//! | `WS_AUTH_TIMEOUT_SECS` | `10` | time to send the `auth` frame |
//! | `WS_MAX_SUBSCRIPTIONS` | `200` | rooms one connection may follow |
//! | `PRESENCE_GRACE_SECS` | `30` | an agent stays online this long after their last connection ends |
//! | `REPLICA_HEARTBEAT_SECS` | `5` | how often a replica says it is alive |
//! | `REPLICA_EXPIRY_SECS` | `15` | a replica silent this long is dead, and its connections with it |
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
    #[serde(default = "defaults::max_frame_bytes")]
    pub ws_max_frame_bytes: usize,
    #[serde(default = "defaults::send_queue")]
    pub ws_send_queue: usize,
    #[serde(default = "defaults::messages_per_sec")]
    pub ws_messages_per_sec: u32,
    #[serde(default = "defaults::burst")]
    pub ws_burst: u32,
    #[serde(default = "defaults::idle_timeout")]
    pub ws_idle_timeout_secs: u64,
    #[serde(default = "defaults::ping")]
    pub ws_ping_secs: u64,
    #[serde(default = "defaults::auth_timeout")]
    pub ws_auth_timeout_secs: u64,
    #[serde(default = "defaults::max_subscriptions")]
    pub ws_max_subscriptions: usize,
    #[serde(default = "defaults::presence_grace")]
    pub presence_grace_secs: u64,
    #[serde(default = "defaults::heartbeat")]
    pub replica_heartbeat_secs: u64,
    #[serde(default = "defaults::expiry")]
    pub replica_expiry_secs: u64,
}

/// Where the service listens when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 8003;

mod defaults {
    use secrecy::SecretString;

    pub fn port() -> u16 {
        super::DEFAULT_PORT
    }
    pub fn database_url() -> SecretString {
        "postgres://postgres@127.0.0.1:5432/chat".into()
    }
    pub fn issuer() -> String {
        "http://localhost/api/auth".into()
    }
    pub fn jwks_url() -> String {
        "http://127.0.0.1:8001/api/auth/.well-known/jwks.json".into()
    }
    pub fn max_frame_bytes() -> usize {
        65_536
    }
    pub fn send_queue() -> usize {
        256
    }
    pub fn messages_per_sec() -> u32 {
        20
    }
    /// Room for a client that subscribes to its rooms all at once when it
    /// connects.
    pub fn burst() -> u32 {
        60
    }
    pub fn idle_timeout() -> u64 {
        60
    }
    pub fn ping() -> u64 {
        20
    }
    pub fn auth_timeout() -> u64 {
        10
    }
    pub fn max_subscriptions() -> usize {
        200
    }
    pub fn presence_grace() -> u64 {
        30
    }
    pub fn heartbeat() -> u64 {
        5
    }
    pub fn expiry() -> u64 {
        15
    }
}

/// The WebSocket limits, as the connection tasks use them.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    pub max_frame_bytes: usize,
    pub send_queue: usize,
    pub messages_per_sec: u32,
    pub burst: u32,
    pub idle_timeout: Duration,
    pub ping_every: Duration,
    pub auth_timeout: Duration,
    pub max_subscriptions: usize,
}

/// How presence is kept.
#[derive(Debug, Clone, Copy)]
pub struct PresenceTiming {
    pub grace: Duration,
    pub heartbeat: Duration,
    pub expiry: Duration,
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
        require_range(
            "WS_MAX_FRAME_BYTES",
            self.ws_max_frame_bytes,
            1024,
            16 << 20,
        )?;
        require_range("WS_SEND_QUEUE", self.ws_send_queue, 1, 65_536)?;
        require_range("WS_MESSAGES_PER_SEC", self.ws_messages_per_sec, 1, 100_000)?;
        require_range("WS_BURST", self.ws_burst, 1, 100_000)?;
        require_range("WS_IDLE_TIMEOUT_SECS", self.ws_idle_timeout_secs, 1, 86_400)?;
        require_range("WS_PING_SECS", self.ws_ping_secs, 1, 3_600)?;
        if self.ws_ping_secs >= self.ws_idle_timeout_secs {
            return Err(ConfigError::new(
                "WS_PING_SECS",
                "must be less than WS_IDLE_TIMEOUT_SECS, or idle clients that answer pings are closed",
            ));
        }
        require_range("WS_AUTH_TIMEOUT_SECS", self.ws_auth_timeout_secs, 1, 600)?;
        require_range(
            "WS_MAX_SUBSCRIPTIONS",
            self.ws_max_subscriptions,
            1,
            100_000,
        )?;
        require_range("PRESENCE_GRACE_SECS", self.presence_grace_secs, 0, 86_400)?;
        require_range(
            "REPLICA_HEARTBEAT_SECS",
            self.replica_heartbeat_secs,
            1,
            600,
        )?;
        require_range("REPLICA_EXPIRY_SECS", self.replica_expiry_secs, 2, 3_600)?;
        if self.replica_expiry_secs <= self.replica_heartbeat_secs {
            return Err(ConfigError::new(
                "REPLICA_EXPIRY_SECS",
                "must be more than REPLICA_HEARTBEAT_SECS, or live replicas are expired",
            ));
        }
        Ok(())
    }

    pub fn retry_delays(&self) -> Result<Vec<Duration>, ConfigError> {
        self.common.retry_delays()
    }

    pub fn ws_limits(&self) -> WsLimits {
        WsLimits {
            max_frame_bytes: self.ws_max_frame_bytes,
            send_queue: self.ws_send_queue,
            messages_per_sec: self.ws_messages_per_sec,
            burst: self.ws_burst,
            idle_timeout: Duration::from_secs(self.ws_idle_timeout_secs),
            ping_every: Duration::from_secs(self.ws_ping_secs),
            auth_timeout: Duration::from_secs(self.ws_auth_timeout_secs),
            max_subscriptions: self.ws_max_subscriptions,
        }
    }

    pub fn presence_timing(&self) -> PresenceTiming {
        PresenceTiming {
            grace: Duration::from_secs(self.presence_grace_secs),
            heartbeat: Duration::from_secs(self.replica_heartbeat_secs),
            expiry: Duration::from_secs(self.replica_expiry_secs),
        }
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
