//! What handlers share.

use crate::config::Config;
use crate::domain::keys::Keyring;
use crate::domain::password::Hasher;
use crate::store::sessions::{PageKey, SessionRow};
use bus::RelayHandle;
use chrono::Duration;
use platform::db::batch::BatchedReads;
use platform::db::PgPool;
use std::sync::{Arc, RwLock};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub hasher: Hasher,
    pub keyring: Arc<RwLock<Keyring>>,
    pub relay: RelayHandle,
    /// First pages of `GET /sessions` by (user, rows), coalesced under load.
    pub session_pages: BatchedReads<PageKey, Vec<SessionRow>>,
}

impl AppState {
    pub fn keyring(&self) -> anyhow::Result<Keyring> {
        self.keyring
            .read()
            .map(|k| k.clone())
            .map_err(|_| anyhow::anyhow!("keyring lock poisoned"))
    }

    pub fn idle_timeout(&self) -> Duration {
        self.config.session_idle_timeout()
    }

    pub fn absolute_timeout(&self) -> Duration {
        Duration::seconds(self.config.session_absolute_timeout_secs as i64)
    }

    pub fn throttle_window(&self) -> Duration {
        Duration::seconds(self.config.login_throttle_window_secs as i64)
    }
}
