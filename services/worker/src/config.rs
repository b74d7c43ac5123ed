//! Configuration of the worker, from the environment. Every variable has a
//! default that works on a developer machine; `.env.example` lists them all
//! (a test keeps the two in step).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HOST` | `0.0.0.0` | listen address (health and metrics) |
//! | `PORT` | `8005` | listen port |
//! | `DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/worker` | created if absent |
//! | `DATABASE_POOL_SIZE` | `16` | connections |
//! | `AMQP_URL` | `amqp://guest:guest@127.0.0.1:5672/%2f` | RabbitMQ |
//! | `AMQP_PREFIX` | empty | prefix of every exchange and queue name |
//! | `RETRY_DELAYS_MS` | `1000,10000,60000,300000` | delays between attempts of a failed job |
//! | `SHUTDOWN_GRACE_SECS` | `2` | after SIGTERM, seconds of answering with `Connection: close` (readiness 503) before new connections are refused |
//! | `EMAIL_TRANSPORT` | `file` | `file` (writes `.eml` files) or `smtp` |
//! | `EMAIL_OUTBOX_DIR` | `var/mail` | folder of the `file` transport |
//! | `SMTP_URL` | `smtp://127.0.0.1:1025` | lettre URL: `smtp://` (add `?tls=required` or `?tls=opportunistic` for STARTTLS), `smtps://` for implicit TLS, credentials as `user:password@` |
//! | `SMTP_PASSWORD_FILE` | unset | file holding the SMTP password (a Docker secret), instead of the URL |
//! | `EMAIL_FROM` | `Platform <no-reply@localhost>` | sender |
//! | `PUBLIC_BASE_URL` | `http://localhost` | base of the links in emails |
//! | `EMAIL_PREFETCH` | `16` | unacknowledged email jobs held at once |
//! | `EMAIL_CONCURRENCY` | `8` | email jobs handled at once |
//! | `PROVISIONING_PROVIDER` | `process` | where instances run: `process` (host agents as processes of this machine); `docker` is not built yet |
//! | `REGISTRATION_SECRET` | unset | given to launched host agents; without it this worker does not consume `provisioning` (the jobs wait for one that does) |
//! | `SCHEDULER_URL` | `http://127.0.0.1:8004` | given to launched host agents |
//! | `HOST_AGENT_BIN` | `host-agent` beside the worker's own binary | the host agent to launch |
//! | `HOST_AGENT_PORTS` | `9100-9199` | ports given to launched agents, one each |
//! | `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | | see `platform::telemetry` |

use platform::config::{require_range, require_scheme};
use platform::config::{Common, ServiceConfig};
use platform::ConfigError;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

/// Where emails go; parsed when the configuration loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTransport {
    /// `.eml` files in `EMAIL_OUTBOX_DIR`.
    File,
    /// lettre over `SMTP_URL`.
    Smtp,
}

impl std::str::FromStr for EmailTransport {
    type Err = &'static str;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "file" => Ok(EmailTransport::File),
            "smtp" => Ok(EmailTransport::Smtp),
            _ => Err("must be `file` or `smtp`"),
        }
    }
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
    #[serde(
        default = "defaults::transport",
        deserialize_with = "defaults::parse_transport"
    )]
    pub email_transport: EmailTransport,
    #[serde(default = "defaults::outbox_dir")]
    pub email_outbox_dir: String,
    #[serde(default = "defaults::smtp_url")]
    pub smtp_url: SecretString,
    #[serde(default)]
    pub smtp_password_file: Option<String>,
    #[serde(default = "defaults::from")]
    pub email_from: String,
    #[serde(default = "defaults::base_url")]
    pub public_base_url: String,
    #[serde(default = "defaults::prefetch")]
    pub email_prefetch: u16,
    #[serde(default = "defaults::concurrency")]
    pub email_concurrency: usize,
    #[serde(default = "defaults::provider")]
    pub provisioning_provider: String,
    #[serde(default)]
    pub registration_secret: Option<SecretString>,
    #[serde(default = "defaults::scheduler_url")]
    pub scheduler_url: String,
    #[serde(default)]
    pub host_agent_bin: Option<String>,
    #[serde(default = "defaults::ports")]
    pub host_agent_ports: String,
}

/// How the worker provisions instances, parsed once.
#[derive(Debug, Clone)]
pub struct Provisioning {
    pub binary: std::path::PathBuf,
    pub ports: std::ops::RangeInclusive<u16>,
    pub scheduler_url: String,
    pub registration_secret: SecretString,
}

/// Where the service listens when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 8005;

mod defaults {
    use secrecy::SecretString;

    pub fn port() -> u16 {
        super::DEFAULT_PORT
    }
    pub fn database_url() -> SecretString {
        "postgres://postgres@127.0.0.1:5432/worker".into()
    }
    pub fn transport() -> super::EmailTransport {
        super::EmailTransport::File
    }
    pub fn parse_transport<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<super::EmailTransport, D::Error> {
        platform::config::parse_setting(deserializer, "EMAIL_TRANSPORT")
    }
    pub fn outbox_dir() -> String {
        "var/mail".into()
    }
    pub fn smtp_url() -> SecretString {
        "smtp://127.0.0.1:1025".into()
    }
    pub fn from() -> String {
        "Platform <no-reply@localhost>".into()
    }
    pub fn base_url() -> String {
        "http://localhost".into()
    }
    pub fn prefetch() -> u16 {
        16
    }
    pub fn concurrency() -> usize {
        8
    }
    pub fn provider() -> String {
        "process".into()
    }
    pub fn scheduler_url() -> String {
        "http://127.0.0.1:8004".into()
    }
    pub fn ports() -> String {
        "9100-9199".into()
    }
}

fn parse_ports(raw: &str) -> Result<std::ops::RangeInclusive<u16>, ConfigError> {
    let refused = || ConfigError::new("HOST_AGENT_PORTS", "a port range such as 9100-9199");
    let (low, high) = raw.split_once('-').ok_or_else(refused)?;
    let low: u16 = low.trim().parse().map_err(|_| refused())?;
    let high: u16 = high.trim().parse().map_err(|_| refused())?;
    if low == 0 || low > high {
        return Err(refused());
    }
    Ok(low..=high)
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
        require_scheme(
            "SMTP_URL",
            self.smtp_url.expose_secret(),
            &["smtp", "smtps"],
        )?;
        require_scheme("PUBLIC_BASE_URL", &self.public_base_url, &["http", "https"])?;
        require_range("EMAIL_PREFETCH", self.email_prefetch, 1, 1000)?;
        require_range("EMAIL_CONCURRENCY", self.email_concurrency, 1, 1000)?;
        self.sender()?;
        self.provisioning()?;
        Ok(())
    }

    /// How instances are provisioned; `None` when this worker does not
    /// consume `provisioning` (no `REGISTRATION_SECRET`).
    pub fn provisioning(&self) -> Result<Option<Provisioning>, ConfigError> {
        match self.provisioning_provider.as_str() {
            "process" => {}
            "docker" => {
                return Err(ConfigError::new(
                    "PROVISIONING_PROVIDER",
                    "process (the docker provider is not built yet)",
                ))
            }
            _ => {
                return Err(ConfigError::new(
                    "PROVISIONING_PROVIDER",
                    "process or docker",
                ))
            }
        }
        require_scheme("SCHEDULER_URL", &self.scheduler_url, &["http", "https"])?;
        let ports = parse_ports(&self.host_agent_ports)?;
        let Some(secret) = self.registration_secret.clone() else {
            return Ok(None);
        };
        if secret.expose_secret().trim().is_empty() {
            return Err(ConfigError::new(
                "REGISTRATION_SECRET",
                "the scheduler's registration secret, or unset",
            ));
        }
        let binary = match &self.host_agent_bin {
            Some(path) if !path.trim().is_empty() => std::path::PathBuf::from(path),
            _ => std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("host-agent")))
                .filter(|candidate| candidate.exists())
                .unwrap_or_else(|| std::path::PathBuf::from("host-agent")),
        };
        Ok(Some(Provisioning {
            binary,
            ports,
            scheduler_url: self.scheduler_url.clone(),
            registration_secret: secret,
        }))
    }

    pub fn sender(&self) -> Result<lettre::message::Mailbox, ConfigError> {
        self.email_from.parse().map_err(|_| {
            ConfigError::new(
                "EMAIL_FROM",
                "must be an address such as `Name <no-reply@example.com>`",
            )
        })
    }

    pub fn retry_delays(&self) -> Result<Vec<Duration>, ConfigError> {
        self.common.retry_delays()
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(transport: &str) -> Result<Config, ConfigError> {
        platform::config::load_from([("EMAIL_TRANSPORT".to_string(), transport.to_string())])
    }

    #[test]
    fn the_transport_is_parsed_when_the_configuration_loads() {
        assert_eq!(
            load("smtp").map(|c| c.email_transport),
            Ok(EmailTransport::Smtp)
        );
        assert_eq!(
            Config::defaults().map(|c| c.email_transport),
            Ok(EmailTransport::File)
        );
        let refused = load("pigeon").err();
        assert_eq!(
            refused.as_ref().map(|e| e.variable.as_str()),
            Some("EMAIL_TRANSPORT")
        );
        assert!(refused.is_some_and(|e| !e.to_string().contains("pigeon")));
    }
}
