//! What handlers share.

use crate::config::Policy;
use crate::metrics::SchedulingMetrics;
use bus::RelayHandle;
use platform::db::PgPool;
use signing::Keyring;
use std::sync::{Arc, RwLock};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub policy: Arc<Policy>,
    pub keyring: Arc<RwLock<Keyring>>,
    /// SHA-256 of `REGISTRATION_SECRET`: what a registering agent's bearer
    /// must hash to.
    pub registration_hash: Arc<Vec<u8>>,
    pub relay: RelayHandle,
    pub metrics: SchedulingMetrics,
}

impl AppState {
    pub fn keyring(&self) -> anyhow::Result<Keyring> {
        self.keyring
            .read()
            .map(|keyring| keyring.clone())
            .map_err(|_| anyhow::anyhow!("keyring lock poisoned"))
    }
}
