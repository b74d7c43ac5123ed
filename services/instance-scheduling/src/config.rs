//! Configuration of the scheduler, from the environment. Every variable
//! but `REGISTRATION_SECRET` has a default that works on a developer
//! machine; `.env.example` lists them all (a test keeps the two in step).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HOST` | `0.0.0.0` | listen address |
//! | `PORT` | `8004` | listen port |
//! | `DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/scheduling` | created if absent |
//! | `DATABASE_POOL_SIZE` | `16` | connections |
//! | `AMQP_URL` | `amqp://guest:guest@127.0.0.1:5672/%2f` | RabbitMQ |
//! | `AMQP_PREFIX` | empty | prefix of every exchange and queue name |
//! | `JWT_ISSUER` | `http://localhost/api/auth` | expected `iss` of access tokens |
//! | `AUTH_JWKS_URL` | `http://127.0.0.1:8001/api/auth/.well-known/jwks.json` | where the verification keys are |
//! | `RETRY_DELAYS_MS` | `1000,10000,60000,300000` | consumer retry delays |
//! | `SHUTDOWN_GRACE_SECS` | `2` | after SIGTERM, seconds of answering with `Connection: close` (readiness 503) before new connections are refused |
//! | `REGISTRATION_SECRET` | required | what host agents present to register; 16 characters or more outside development (a shorter one is taken, with a warning) |
//! | `HEARTBEAT_INTERVAL_SECS` | `5` | how often agents are told to heartbeat |
//! | `HEARTBEAT_STALE_SECS` | `15` | an instance this late gets no new sessions |
//! | `HEARTBEAT_LOST_SECS` | `60` | an instance this late is unresponsive: its sessions end and it is terminated |
//! | `RESERVATION_TTL_SECS` | `60` | how long an allocated slot waits for its client to connect |
//! | `RECONCILE_INTERVAL_SECS` | `5` | how often the leader reconciles the fleet |
//! | `SCALE_DOWN_COOLDOWN_SECS` | `300` | at most one instance drained per region this often |
//! | `DRAIN_DEADLINE_SECS` | `3600` | a draining instance's sessions are ended after this long |
//! | `LAUNCH_TIMEOUT_SECS` | `120` | a launched instance that has not registered by then is given up |
//! | `ALLOCATION_STRATEGY` | `pack` | `pack` (fullest instance with room) or `spread` (emptiest) |
//! | `MAX_SESSIONS_PER_USER` | `1` | live sessions one user may hold |
//! | `REGION_FALLBACK` | `{}` | JSON: regions tried in order when one is full, e.g. `{"eu":["us"]}` |
//! | `SCALING_REGIONS` | `{}` | JSON: `{region: {buffer, min_instances, max_instances, capacity}}`; a region not listed is never autoscaled |
//! | `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | | see `platform::telemetry` |

use crate::model::{Region, Strategy};
use platform::config::{require_range, require_scheme};
use platform::config::{Common, ServiceConfig};
use platform::ConfigError;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;
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
    #[serde(default = "defaults::missing_secret")]
    pub registration_secret: SecretString,
    #[serde(default = "defaults::heartbeat_interval")]
    pub heartbeat_interval_secs: u64,
    #[serde(default = "defaults::heartbeat_stale")]
    pub heartbeat_stale_secs: u64,
    #[serde(default = "defaults::heartbeat_lost")]
    pub heartbeat_lost_secs: u64,
    #[serde(default = "defaults::reservation_ttl")]
    pub reservation_ttl_secs: u64,
    #[serde(default = "defaults::reconcile_interval")]
    pub reconcile_interval_secs: u64,
    #[serde(default = "defaults::scale_down_cooldown")]
    pub scale_down_cooldown_secs: u64,
    #[serde(default = "defaults::drain_deadline")]
    pub drain_deadline_secs: u64,
    #[serde(default = "defaults::launch_timeout")]
    pub launch_timeout_secs: u64,
    #[serde(default = "defaults::strategy")]
    pub allocation_strategy: String,
    #[serde(default = "defaults::max_sessions_per_user")]
    pub max_sessions_per_user: u32,
    #[serde(default = "defaults::empty_json")]
    pub region_fallback: String,
    #[serde(default = "defaults::empty_json")]
    pub scaling_regions: String,
}

/// Where the service listens when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 8004;

mod defaults {
    use secrecy::SecretString;

    pub fn port() -> u16 {
        super::DEFAULT_PORT
    }
    pub fn database_url() -> SecretString {
        "postgres://postgres@127.0.0.1:5432/scheduling".into()
    }
    pub fn issuer() -> String {
        "http://localhost/api/auth".into()
    }
    pub fn jwks_url() -> String {
        "http://127.0.0.1:8001/api/auth/.well-known/jwks.json".into()
    }
    /// Empty: `check` refuses it, naming the variable.
    pub fn missing_secret() -> SecretString {
        String::new().into()
    }
    pub fn heartbeat_interval() -> u64 {
        5
    }
    pub fn heartbeat_stale() -> u64 {
        15
    }
    pub fn heartbeat_lost() -> u64 {
        60
    }
    pub fn reservation_ttl() -> u64 {
        60
    }
    pub fn reconcile_interval() -> u64 {
        5
    }
    pub fn scale_down_cooldown() -> u64 {
        300
    }
    pub fn drain_deadline() -> u64 {
        3600
    }
    pub fn launch_timeout() -> u64 {
        120
    }
    pub fn strategy() -> String {
        "pack".into()
    }
    pub fn max_sessions_per_user() -> u32 {
        1
    }
    pub fn empty_json() -> String {
        "{}".into()
    }
}

/// How one autoscaled region is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionScaling {
    /// Free slots to keep.
    pub buffer: u32,
    pub min_instances: u32,
    pub max_instances: u32,
    /// Slots of each instance launched.
    pub capacity: u32,
}

/// The settings allocation and the reconciler work with, parsed once.
#[derive(Debug, Clone)]
pub struct Policy {
    pub strategy: Strategy,
    pub max_sessions_per_user: u32,
    pub heartbeat_interval: Duration,
    pub heartbeat_stale: Duration,
    pub heartbeat_lost: Duration,
    pub reservation_ttl: Duration,
    pub reconcile_interval: Duration,
    pub scale_down_cooldown: Duration,
    pub drain_deadline: Duration,
    pub launch_timeout: Duration,
    /// Regions tried, in order, after each one.
    pub fallback: BTreeMap<Region, Vec<Region>>,
    pub scaling: BTreeMap<Region, RegionScaling>,
}

impl Policy {
    /// The regions an allocation asking for `region` tries, in order.
    pub fn regions_for(&self, region: &Region) -> Vec<Region> {
        let mut regions = vec![region.clone()];
        for next in self.fallback.get(region).into_iter().flatten() {
            if !regions.contains(next) {
                regions.push(next.clone());
            }
        }
        regions
    }
}

fn parse_fallback(raw: &str) -> Result<BTreeMap<Region, Vec<Region>>, ConfigError> {
    let expected = "a JSON object of region to a list of regions, e.g. {\"eu\":[\"us\"]}";
    let parsed: BTreeMap<String, Vec<String>> =
        serde_json::from_str(raw).map_err(|_| ConfigError::new("REGION_FALLBACK", expected))?;
    let region = |name: &str| {
        Region::parse(name).map_err(|err| ConfigError::new("REGION_FALLBACK", err.to_string()))
    };
    parsed
        .iter()
        .map(|(from, to)| {
            Ok((
                region(from)?,
                to.iter().map(|r| region(r)).collect::<Result<_, _>>()?,
            ))
        })
        .collect()
}

fn parse_scaling(raw: &str) -> Result<BTreeMap<Region, RegionScaling>, ConfigError> {
    let expected = "a JSON object of region to {buffer, min_instances, max_instances, capacity}";
    let parsed: BTreeMap<String, RegionScaling> =
        serde_json::from_str(raw).map_err(|_| ConfigError::new("SCALING_REGIONS", expected))?;
    let mut regions = BTreeMap::new();
    for (name, scaling) in parsed {
        let region = Region::parse(&name)
            .map_err(|err| ConfigError::new("SCALING_REGIONS", err.to_string()))?;
        if scaling.min_instances > scaling.max_instances {
            return Err(ConfigError::new(
                "SCALING_REGIONS",
                format!("{name}: min_instances must not exceed max_instances"),
            ));
        }
        if !(1..=1000).contains(&scaling.capacity) || scaling.max_instances > 1000 {
            return Err(ConfigError::new(
                "SCALING_REGIONS",
                format!("{name}: capacity must be 1..=1000 and max_instances at most 1000"),
            ));
        }
        regions.insert(region, scaling);
    }
    Ok(regions)
}

/// A registration secret shorter than this is taken, with a warning.
pub const STRONG_SECRET_CHARS: usize = 16;

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
            "HEARTBEAT_INTERVAL_SECS",
            self.heartbeat_interval_secs,
            1,
            3_600,
        )?;
        require_range("HEARTBEAT_STALE_SECS", self.heartbeat_stale_secs, 1, 86_400)?;
        if self.heartbeat_stale_secs <= self.heartbeat_interval_secs {
            return Err(ConfigError::new(
                "HEARTBEAT_STALE_SECS",
                "must be more than HEARTBEAT_INTERVAL_SECS, or every instance is stale",
            ));
        }
        require_range("HEARTBEAT_LOST_SECS", self.heartbeat_lost_secs, 1, 86_400)?;
        if self.heartbeat_lost_secs < self.heartbeat_stale_secs {
            return Err(ConfigError::new(
                "HEARTBEAT_LOST_SECS",
                "must be at least HEARTBEAT_STALE_SECS",
            ));
        }
        require_range("RESERVATION_TTL_SECS", self.reservation_ttl_secs, 1, 86_400)?;
        require_range(
            "RECONCILE_INTERVAL_SECS",
            self.reconcile_interval_secs,
            1,
            3_600,
        )?;
        require_range(
            "SCALE_DOWN_COOLDOWN_SECS",
            self.scale_down_cooldown_secs,
            0,
            86_400,
        )?;
        require_range(
            "DRAIN_DEADLINE_SECS",
            self.drain_deadline_secs,
            1,
            7 * 86_400,
        )?;
        require_range("LAUNCH_TIMEOUT_SECS", self.launch_timeout_secs, 1, 86_400)?;
        require_range(
            "MAX_SESSIONS_PER_USER",
            self.max_sessions_per_user,
            1,
            1_000,
        )?;
        self.policy()?;
        // Last, so that a mistake elsewhere is named even without it.
        if self.registration_secret.expose_secret().trim().is_empty() {
            return Err(ConfigError::new(
                "REGISTRATION_SECRET",
                "the secret host agents present to register (required)",
            ));
        }
        Ok(())
    }

    pub fn retry_delays(&self) -> Result<Vec<Duration>, ConfigError> {
        self.common.retry_delays()
    }

    /// The settings as allocation and the reconciler use them.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let strategy = self
            .allocation_strategy
            .parse::<Strategy>()
            .map_err(|_| ConfigError::new("ALLOCATION_STRATEGY", "pack or spread"))?;
        Ok(Policy {
            strategy,
            max_sessions_per_user: self.max_sessions_per_user,
            heartbeat_interval: Duration::from_secs(self.heartbeat_interval_secs),
            heartbeat_stale: Duration::from_secs(self.heartbeat_stale_secs),
            heartbeat_lost: Duration::from_secs(self.heartbeat_lost_secs),
            reservation_ttl: Duration::from_secs(self.reservation_ttl_secs),
            reconcile_interval: Duration::from_secs(self.reconcile_interval_secs),
            scale_down_cooldown: Duration::from_secs(self.scale_down_cooldown_secs),
            drain_deadline: Duration::from_secs(self.drain_deadline_secs),
            launch_timeout: Duration::from_secs(self.launch_timeout_secs),
            fallback: parse_fallback(&self.region_fallback)?,
            scaling: parse_scaling(&self.scaling_regions)?,
        })
    }

    /// The defaults with `secret`, for tests and tools.
    pub fn with_secret(secret: &str) -> Result<Self, ConfigError> {
        platform::config::load_from([("REGISTRATION_SECRET".to_string(), secret.to_string())])
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
