//! Staff presence across replicas. An agent is online while they have at
//! least one authenticated connection on a live replica, and for
//! `PRESENCE_GRACE_SECS` after the last one ends (a page reload is not a
//! goodbye). Each replica heartbeats; the leader expires replicas that
//! stopped (a crash), their connections with them, and turns agents
//! offline once their grace has passed.

use crate::state::AppState;
use crate::store::agents;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Double, Uuid as SqlUuid};
use platform::db::{self, DbError};
use std::time::Duration;
use uuid::Uuid;

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Says this replica is alive; `true` if it had been taken for dead (or
/// is new), in which case its connections are recorded again.
fn heartbeat_in(conn: &mut PgConnection, replica: Uuid) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Beat {
        #[diesel(sql_type = Bool)]
        inserted: bool,
    }
    let beat: Beat = diesel::sql_query(
        "INSERT INTO replicas (id) VALUES ($1)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
         RETURNING (xmax = 0) AS inserted",
    )
    .bind::<SqlUuid, _>(replica)
    .get_result(conn)?;
    Ok(beat.inserted)
}

fn record_connection(
    conn: &mut PgConnection,
    replica: Uuid,
    record: Uuid,
    user_id: Uuid,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO connections (id, replica_id, user_id) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind::<SqlUuid, _>(record)
    .bind::<SqlUuid, _>(replica)
    .bind::<SqlUuid, _>(user_id)
    .execute(conn)
    .map(|_| ())
}

/// The replica's heartbeat, every `REPLICA_HEARTBEAT_SECS`. A replica
/// that was taken for dead (a long pause, a database outage) records its
/// connections again, and their agents are online again.
pub async fn heartbeat(state: &AppState) {
    let replica = state.replica();
    let hub = state.live.hub.clone();
    let outcome = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            let mut back_online = Vec::new();
            if heartbeat_in(conn, replica)? {
                for (record, user_id) in hub.agent_records() {
                    record_connection(conn, replica, record, user_id)?;
                    if agents::came_online(conn, user_id)? {
                        back_online.push(user_id);
                    }
                }
            }
            Ok::<_, diesel::result::Error>(back_online)
        })
        .map_err(DbError::from)
    })
    .await;
    match outcome {
        Ok(back_online) if back_online.is_empty() => {}
        Ok(back_online) => {
            for staff_id in back_online {
                state.announce_presence(staff_id, true);
            }
            state.drain_queue().await;
        }
        Err(err) => tracing::warn!(error = %err, "replica heartbeat failed"),
    }
}

/// Records an agent's new connection as `record`; they come online if
/// they were not.
pub async fn connected(state: &AppState, user_id: Uuid, record: Uuid) -> Result<(), DbError> {
    let replica = state.replica();
    let came_online = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            heartbeat_in(conn, replica)?;
            agents::ensure(conn, user_id)?;
            record_connection(conn, replica, record, user_id)?;
            agents::came_online(conn, user_id)
        })
        .map_err(DbError::from)
    })
    .await?;
    if came_online {
        state.announce_presence(user_id, true);
        // Someone new can take waiting rooms.
        state.drain_queue().await;
    }
    Ok(())
}

/// Forgets an agent's connection; the grace period before offline starts.
pub async fn disconnected(state: &AppState, record: Uuid, user_id: Uuid) {
    let outcome = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            diesel::sql_query("DELETE FROM connections WHERE id = $1")
                .bind::<SqlUuid, _>(record)
                .execute(conn)?;
            agents::seen_now(conn, &[user_id])
        })
        .map_err(DbError::from)
    })
    .await;
    if let Err(err) = outcome {
        // The row goes when this replica does, or stays counted while it
        // lives: the agent stays online a little long, never wrongly offline.
        tracing::warn!(error = %err, "forgetting a connection failed");
    }
}

/// This replica is stopping: its connections end now and their agents'
/// grace starts.
pub async fn leave(state: &AppState) {
    let replica = state.replica();
    let outcome = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            diesel::sql_query(
                "UPDATE agents a SET last_seen_at = now()
                 FROM connections c WHERE c.user_id = a.user_id AND c.replica_id = $1",
            )
            .bind::<SqlUuid, _>(replica)
            .execute(conn)?;
            diesel::sql_query("DELETE FROM replicas WHERE id = $1")
                .bind::<SqlUuid, _>(replica)
                .execute(conn)
        })
        .map_err(DbError::from)
    })
    .await;
    if let Err(err) = outcome {
        tracing::warn!(error = %err, "removing this replica failed; the leader expires it");
    }
}

/// The leader's sweep: expire dead replicas, turn agents past their grace
/// offline. Returns who went offline.
pub fn sweep(conn: &mut PgConnection, expiry: Duration, grace: Duration) -> QueryResult<Vec<Uuid>> {
    #[derive(QueryableByName)]
    struct Gone {
        #[diesel(sql_type = SqlUuid)]
        user_id: Uuid,
    }
    conn.transaction(|conn| {
        // A dead replica's agents were last seen at its last heartbeat.
        diesel::sql_query(
            "UPDATE agents a
             SET last_seen_at = GREATEST(COALESCE(a.last_seen_at, r.heartbeat_at), r.heartbeat_at)
             FROM connections c JOIN replicas r ON r.id = c.replica_id
             WHERE c.user_id = a.user_id
               AND r.heartbeat_at < now() - make_interval(secs => $1)",
        )
        .bind::<Double, _>(secs(expiry))
        .execute(conn)?;
        diesel::sql_query(
            "DELETE FROM replicas WHERE heartbeat_at < now() - make_interval(secs => $1)",
        )
        .bind::<Double, _>(secs(expiry))
        .execute(conn)?;
        let gone: Vec<Gone> = diesel::sql_query(
            "UPDATE agents SET online = FALSE, updated_at = now()
             WHERE online
               AND COALESCE(last_seen_at, '-infinity') < now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT 1 FROM connections c WHERE c.user_id = agents.user_id)
             RETURNING user_id",
        )
        .bind::<Double, _>(secs(grace))
        .load(conn)?;
        Ok(gone.into_iter().map(|row| row.user_id).collect())
    })
}

/// One round of the leader's work: the sweep, then the queue.
pub async fn lead(state: &AppState) {
    let timing = state.presence;
    let swept = db::run(&state.pool, move |conn| {
        sweep(conn, timing.expiry, timing.grace).map_err(DbError::from)
    })
    .await;
    match swept {
        Ok(gone) => {
            for staff_id in gone {
                state.announce_presence(staff_id, false);
            }
        }
        Err(err) => tracing::warn!(error = %err, "presence sweep failed"),
    }
    state.drain_queue().await;
}
