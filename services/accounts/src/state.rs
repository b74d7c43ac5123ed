//! What handlers share.

use bus::RelayHandle;
use platform::db::PgPool;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub relay: RelayHandle,
}
