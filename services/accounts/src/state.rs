//! What handlers share.

use crate::store::profiles::ProfileRow;
use bus::RelayHandle;
use domain::UserId;
use platform::db::batch::BatchedReads;
use platform::db::{DbError, PgPool};
use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub relay: RelayHandle,
    /// Profile reads by id, coalesced under load (`GET /me`, `GET /users/{id}`).
    pub profiles: BatchedReads<UserId, ProfileRow>,
    /// Turns for directory searches (`SEARCH_CONCURRENCY`), handed out in
    /// arrival order.
    pub searches: Arc<Semaphore>,
}

impl AppState {
    /// The profile of `id`, if there is one; an outage stays an outage.
    pub async fn profile(&self, id: UserId) -> Result<Option<ProfileRow>, DbError> {
        self.profiles.get(id).await
    }
}
