//! The reconciler, run by one replica at a time (the leader, under a
//! Postgres advisory lock) every `RECONCILE_INTERVAL_SECS`. Only the
//! database's clock decides what is late. Each round:
//!
//! 1. expires reservations nobody used, freeing their slots;
//! 2. gives up instances silent past `HEARTBEAT_LOST_SECS`: unresponsive,
//!    their sessions ended, terminated;
//! 3. terminates draining instances once empty (or, past
//!    `DRAIN_DEADLINE_SECS`, after ending their sessions);
//! 4. gives up launches that never registered (`LAUNCH_TIMEOUT_SECS`);
//! 5. scales each region of `SCALING_REGIONS`: launches while the free
//!    slots and the launches pending fall short of `buffer` (or there are
//!    fewer than `min_instances`), never past `max_instances`; drains one
//!    idle instance when the free slots would still cover the buffer
//!    without it and more than `min_instances` remain, at most once per
//!    `SCALE_DOWN_COOLDOWN_SECS`, and never one with a session; clients
//!    turned away for want of a slot since the last round ask for one
//!    launch more (within `max_instances`) when none is pending;
//! 6. publishes each region's free slots.
//!
//! Every provisioning job goes through the outbox in the transaction of
//! the decision that asks for it.

use crate::allocation::secs;
use crate::config::{Policy, RegionScaling};
use crate::model::Region;
use crate::state::AppState;
use crate::store::fleet::{self, RegionState};
use crate::store::{instances, sessions};
use diesel::PgConnection;
use platform::db;

/// What one round did, for the log and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub expired: i64,
    pub lost: usize,
    pub drained: usize,
    pub launches_given_up: usize,
    pub launched: usize,
    pub scaled_down: usize,
}

impl Round {
    fn changed_anything(&self) -> bool {
        *self != Round::default()
    }
}

/// How many launches `region` needs now, and whether one idle instance
/// may go.
pub fn plan(scaling: &RegionScaling, state: RegionState) -> (i64, bool) {
    let capacity = i64::from(scaling.capacity);
    let buffer = i64::from(scaling.buffer);
    let min = i64::from(scaling.min_instances);
    let max = i64::from(scaling.max_instances);
    let mut free = state.free;
    let mut count = state.active + state.pending;
    let mut pending = state.pending;
    let mut launches = 0;
    while count < max && (free + pending * capacity < buffer || count < min) {
        launches += 1;
        pending += 1;
        count += 1;
    }
    // Clients were turned away since the last round and nothing is on its
    // way: one more, even if the buffer looked covered.
    if launches == 0 && pending == 0 && state.refused > 0 && count < max {
        launches = 1;
        pending = 1;
    }
    // Hysteresis: a scale-down leaves the buffer covered, so the next
    // round does not launch again what this one drained.
    free -= capacity;
    let may_drop_one = launches == 0 && pending == 0 && free >= buffer && state.active > min;
    (launches, may_drop_one)
}

fn scale(conn: &mut PgConnection, policy: &Policy, round: &mut Round) -> diesel::QueryResult<()> {
    let stale = secs(policy.heartbeat_stale);
    for (region, scaling) in &policy.scaling {
        let since = secs(policy.reconcile_interval);
        let state = fleet::region_state(conn, region, stale, since)?;
        let (launches, may_drop_one) = plan(scaling, state);
        let capacity = i32::try_from(scaling.capacity).unwrap_or(i32::MAX);
        for _ in 0..launches {
            let instance = fleet::launch(conn, region, capacity)?;
            tracing::info!(%region, %instance, "launch asked for");
            round.launched += 1;
        }
        if may_drop_one {
            scale_down(conn, policy, region, scaling, round)?;
        }
    }
    Ok(())
}

fn scale_down(
    conn: &mut PgConnection,
    policy: &Policy,
    region: &Region,
    scaling: &RegionScaling,
    round: &mut Round,
) -> diesel::QueryResult<()> {
    let cooldown = secs(policy.scale_down_cooldown);
    if let Some(instance) =
        fleet::scale_down_one(conn, region, i64::from(scaling.capacity), cooldown)?
    {
        tracing::info!(%region, %instance, "idle instance drained (scale-down)");
        round.scaled_down += 1;
    }
    Ok(())
}

/// One round, on one connection.
pub fn round(conn: &mut PgConnection, policy: &Policy) -> diesel::QueryResult<Round> {
    let mut round = Round {
        expired: sessions::expire_reservations(conn)?,
        lost: fleet::give_up_lost(conn, secs(policy.heartbeat_lost))?,
        drained: fleet::finish_drains(conn, secs(policy.drain_deadline))?,
        launches_given_up: fleet::give_up_launches(conn, secs(policy.launch_timeout))?,
        ..Round::default()
    };
    scale(conn, policy, &mut round)?;
    Ok(round)
}

/// One round, as the leader's periodic task runs it.
pub async fn reconcile(state: &AppState) {
    let policy = state.policy.clone();
    let stale_secs = i64::try_from(state.policy.heartbeat_stale.as_secs()).unwrap_or(i64::MAX);
    let result = db::run(&state.pool, move |conn| {
        let round = round(conn, &policy)?;
        let fleet = instances::fleet(conn, stale_secs)?;
        Ok::<_, db::DbError>((round, fleet))
    })
    .await;
    match result {
        Ok((round, fleet)) => {
            if round.changed_anything() {
                tracing::info!(?round, "reconciled");
                // Jobs were written: the relay need not wait for its poll.
                state.relay.wake();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scaling(buffer: u32, min: u32, max: u32, capacity: u32) -> RegionScaling {
        RegionScaling {
            buffer,
            min_instances: min,
            max_instances: max,
            capacity,
        }
    }

    fn state(free: i64, pending: i64, active: i64) -> RegionState {
        RegionState {
            free,
            pending,
            active,
            refused: 0,
        }
    }

    #[test]
    fn launches_cover_the_buffer_counting_pending_ones_and_stop_at_the_maximum() {
        let s = scaling(6, 1, 4, 4);
        assert_eq!(plan(&s, state(0, 0, 0)), (2, false), "2 x 4 covers 6");
        assert_eq!(
            plan(&s, state(0, 2, 0)),
            (0, false),
            "pending launches count"
        );
        assert_eq!(plan(&s, state(1, 1, 1)), (1, false), "1 + 4 < 6: one more");
        assert_eq!(plan(&s, state(2, 1, 1)), (0, false), "2 + 4 covers 6");
        assert_eq!(
            plan(&s, state(0, 0, 4)),
            (0, false),
            "never past the maximum"
        );
        assert_eq!(
            plan(&scaling(0, 2, 4, 4), state(0, 0, 0)),
            (2, false),
            "the minimum"
        );
    }

    #[test]
    fn clients_turned_away_ask_for_one_more_unless_one_is_coming() {
        let s = scaling(0, 0, 3, 4);
        let turned_away = RegionState {
            refused: 5,
            ..state(0, 0, 1)
        };
        assert_eq!(plan(&s, turned_away), (1, false));
        assert_eq!(
            plan(
                &s,
                RegionState {
                    refused: 5,
                    ..state(0, 1, 1)
                }
            ),
            (0, false),
            "one is coming"
        );
        assert_eq!(
            plan(
                &s,
                RegionState {
                    refused: 5,
                    ..state(0, 0, 3)
                }
            ),
            (0, false),
            "at the maximum"
        );
    }

    #[test]
    fn one_idle_instance_goes_only_if_the_buffer_stays_covered() {
        let s = scaling(4, 1, 10, 4);
        assert_eq!(
            plan(&s, state(8, 0, 3)),
            (0, true),
            "8 - 4 = 4 still covers 4"
        );
        assert_eq!(plan(&s, state(7, 0, 3)), (0, false), "7 - 4 would not");
        assert_eq!(
            plan(&s, state(8, 1, 3)),
            (0, false),
            "not while a launch is pending"
        );
        assert_eq!(
            plan(&scaling(0, 2, 10, 4), state(8, 0, 2)),
            (0, false),
            "not below the minimum"
        );
    }
}
