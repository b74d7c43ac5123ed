//! The reconciler, run by one replica at a time (the leader, under a
//! Postgres advisory lock) every `RECONCILE_INTERVAL_SECS`: it expires
//! reservations nobody used and publishes each region's free slots.

use crate::state::AppState;
use crate::store::{instances, sessions};
use platform::db;

/// One round.
pub async fn reconcile(state: &AppState) {
    let stale_secs = i64::try_from(state.policy.heartbeat_stale.as_secs()).unwrap_or(i64::MAX);
    let round = db::run(&state.pool, move |conn| {
        let expired = sessions::expire_reservations(conn)?;
        let fleet = instances::fleet(conn, stale_secs)?;
        Ok::<_, db::DbError>((expired, fleet))
    })
    .await;
    match round {
        Ok((expired, fleet)) => {
            if expired > 0 {
                tracing::info!(expired, "reservations expired");
            }
            state.metrics.free_slots.reset();
            for region in fleet {
                state
                    .metrics
                    .free_slots
                    .with_label_values(&[&region.region])
                    .set(region.fresh_free);
            }
        }
        Err(err) => tracing::warn!(error = %err, "reconcile round failed; the next one retries"),
    }
}
