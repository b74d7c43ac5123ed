//! What the reconciler changes in the fleet: lost and drained instances,
//! launches and their timeouts, scale-down; each change in one
//! transaction with the provisioning job it asks for (through the outbox),
//! so a decision and its job are never apart.

use crate::model::{InstanceStatus, Region};
use crate::schema::{instances, provisioning_requests, scaling};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text, Uuid as SqlUuid};
use domain::messages::{ProvisioningAction, ProvisioningJob};
use uuid::Uuid;

/// `column < now() - secs`, by the database's clock.
fn older_than(
    column: &'static str,
    secs: i32,
) -> Box<dyn BoxableExpression<instances::table, diesel::pg::Pg, SqlType = diesel::sql_types::Bool>>
{
    Box::new(
        diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "{column} < now() - make_interval(secs => "
        ))
        .bind::<Integer, _>(secs)
        .sql(")"),
    )
}

/// Ends every live session of `instance` (`reason`) and frees their
/// slots, sessions first as every statement that frees a slot does.
pub fn end_sessions_of(conn: &mut PgConnection, instance: Uuid, reason: &str) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(
        "WITH gone AS (
             UPDATE sessions SET status = 'ended', ended_at = now(), end_reason = $2
             WHERE instance_id = $1 AND status IN ('allocated', 'connected')
             RETURNING id
         ), freed AS (
             UPDATE instances SET active_sessions = active_sessions - (SELECT count(*) FROM gone)
             WHERE id = $1 AND (SELECT count(*) FROM gone) > 0
             RETURNING id
         )
         SELECT count(*) AS n FROM gone",
    )
    .bind::<SqlUuid, _>(instance)
    .bind::<Text, _>(reason)
    .get_result(conn)?;
    Ok(count.n)
}

/// Asks the worker to terminate `instance`, once: a second ask for the
/// same instance changes nothing.
pub fn ask_terminate(conn: &mut PgConnection, instance: Uuid, region: &str) -> QueryResult<bool> {
    let request_id = Uuid::now_v7();
    let inserted = diesel::insert_into(provisioning_requests::table)
        .values((
            provisioning_requests::request_id.eq(request_id),
            provisioning_requests::instance_id.eq(instance),
            provisioning_requests::action.eq("terminate"),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    if inserted == 0 {
        return Ok(false);
    }
    bus::outbox::enqueue(
        conn,
        ProvisioningJob {
            request_id,
            action: ProvisioningAction::Terminate,
            region: region.to_string(),
            instance_id: Some(instance),
            capacity: None,
        },
    )?;
    Ok(true)
}

/// Moves `instance` from one of `from` to `to`, under its row lock. The
/// instance's region if it moved.
fn transition(
    conn: &mut PgConnection,
    instance: Uuid,
    from: &[InstanceStatus],
    to: InstanceStatus,
) -> QueryResult<Option<String>> {
    let terminated_at = (to == InstanceStatus::Terminated).then(chrono::Utc::now);
    diesel::update(instances::table.find(instance))
        .filter(instances::status.eq_any(from.to_vec()))
        .set((
            instances::status.eq(to),
            instances::terminated_at.eq(terminated_at),
        ))
        .returning(instances::region)
        .get_result(conn)
        .optional()
}

/// Instances that have not heartbeat for `lost_secs`: unresponsive, their
/// sessions ended, and terminated. How many.
pub fn give_up_lost(conn: &mut PgConnection, lost_secs: i32) -> QueryResult<usize> {
    let lost: Vec<Uuid> = instances::table
        .filter(instances::status.eq_any([InstanceStatus::Active, InstanceStatus::Draining]))
        .filter(older_than("last_heartbeat_at", lost_secs))
        .select(instances::id)
        .load(conn)?;
    let mut given_up = 0;
    for id in lost {
        // Sessions first (the order every statement that frees a slot
        // takes its locks in), then the instance, if it is still silent.
        let outcome = conn.transaction(|conn| {
            let ended = end_sessions_of(conn, id, "instance_lost")?;
            let region: Option<String> = diesel::update(instances::table.find(id))
                .filter(
                    instances::status.eq_any([InstanceStatus::Active, InstanceStatus::Draining]),
                )
                .filter(older_than("last_heartbeat_at", lost_secs))
                .set(instances::status.eq(InstanceStatus::Unresponsive))
                .returning(instances::region)
                .get_result(conn)
                .optional()?;
            let Some(region) = region else {
                // It heartbeat meanwhile: nothing happened.
                return Err(diesel::result::Error::RollbackTransaction);
            };
            // Stale as it was, an allocation could not have landed on it;
            // but one that raced the staleness is ended too.
            end_sessions_of(conn, id, "instance_lost")?;
            ask_terminate(conn, id, &region)?;
            tracing::warn!(instance = %id, ended, "instance lost: unresponsive, terminating");
            Ok(())
        });
        match outcome {
            Ok(()) => given_up += 1,
            Err(diesel::result::Error::RollbackTransaction) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(given_up)
}

/// Draining instances that are empty, or past the drain deadline (their
/// sessions are ended): terminating. How many.
pub fn finish_drains(conn: &mut PgConnection, deadline_secs: i32) -> QueryResult<usize> {
    let draining: Vec<(Uuid, i32, bool)> = diesel::sql_query(
        "SELECT id, active_sessions, drain_started_at < now() - make_interval(secs => $1) AS overdue
         FROM instances WHERE status = 'draining'",
    )
    .bind::<Integer, _>(deadline_secs)
    .load::<DrainRow>(conn)?
    .into_iter()
    .map(|row| (row.id, row.active_sessions, row.overdue))
    .collect();
    let mut finished = 0;
    for (id, active, overdue) in draining {
        if active > 0 && !overdue {
            continue;
        }
        conn.transaction(|conn| {
            if overdue {
                end_sessions_of(conn, id, "drain_deadline")?;
            }
            // Only an empty one: an allocation cannot land on a draining
            // instance, and the sessions ended above are gone.
            let region: Option<String> = diesel::update(instances::table.find(id))
                .filter(instances::status.eq(InstanceStatus::Draining))
                .filter(instances::active_sessions.eq(0))
                .set(instances::status.eq(InstanceStatus::Terminating))
                .returning(instances::region)
                .get_result(conn)
                .optional()?;
            if let Some(region) = region {
                ask_terminate(conn, id, &region)?;
                finished += 1;
            }
            Ok::<_, diesel::result::Error>(())
        })?;
    }
    Ok(finished)
}

#[derive(QueryableByName)]
struct DrainRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Integer)]
    active_sessions: i32,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    overdue: bool,
}

/// Launches that never registered within `timeout_secs`: given up and
/// terminated (the process may be there, stuck). How many.
pub fn give_up_launches(conn: &mut PgConnection, timeout_secs: i32) -> QueryResult<usize> {
    let stuck: Vec<Uuid> = instances::table
        .filter(instances::status.eq(InstanceStatus::Provisioning))
        .filter(older_than("created_at", timeout_secs))
        .select(instances::id)
        .load(conn)?;
    let mut given_up = 0;
    for id in stuck {
        conn.transaction(|conn| {
            if let Some(region) = transition(
                conn,
                id,
                &[InstanceStatus::Provisioning],
                InstanceStatus::Terminating,
            )? {
                ask_terminate(conn, id, &region)?;
                tracing::warn!(instance = %id, "launch never registered: given up");
                given_up += 1;
            }
            Ok::<_, diesel::result::Error>(())
        })?;
    }
    Ok(given_up)
}

/// A region's numbers, as scaling needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionState {
    /// Free slots of fresh active instances.
    pub free: i64,
    /// Launches asked for, not registered yet.
    pub pending: i64,
    /// Active instances (fresh or not).
    pub active: i64,
    /// Allocations asking for this region first that found no slot since
    /// the last round: demand the buffer did not cover.
    pub refused: i64,
}

#[derive(QueryableByName)]
struct RegionRow {
    #[diesel(sql_type = BigInt)]
    free: i64,
    #[diesel(sql_type = BigInt)]
    pending: i64,
    #[diesel(sql_type = BigInt)]
    active: i64,
    #[diesel(sql_type = BigInt)]
    refused: i64,
}

pub fn region_state(
    conn: &mut PgConnection,
    region: &Region,
    stale_secs: i32,
    since_secs: i32,
) -> QueryResult<RegionState> {
    let row: RegionRow = diesel::sql_query(
        "SELECT coalesce(sum(capacity - active_sessions) FILTER (
                    WHERE status = 'active' AND last_heartbeat_at > now() - make_interval(secs => $2)
                ), 0)::bigint AS free,
                count(*) FILTER (WHERE status = 'provisioning') AS pending,
                count(*) FILTER (WHERE status = 'active') AS active,
                (SELECT count(*) FROM allocation_decisions
                 WHERE outcome = 'refused' AND reason IN ('no_capacity', 'region_full', 'stale')
                   AND regions[1] = $1 AND decided_at > now() - make_interval(secs => $3)) AS refused
         FROM instances WHERE region = $1",
    )
    .bind::<Text, _>(region.as_str())
    .bind::<Integer, _>(stale_secs)
    .bind::<Integer, _>(since_secs)
    .get_result(conn)?;
    Ok(RegionState {
        free: row.free,
        pending: row.pending,
        active: row.active,
        refused: row.refused,
    })
}

/// Asks for one more instance of `capacity` in `region`: the instance row
/// (`provisioning`), its request and the job, together.
pub fn launch(conn: &mut PgConnection, region: &Region, capacity: i32) -> QueryResult<Uuid> {
    conn.transaction(|conn| {
        let instance = Uuid::now_v7();
        let request_id = Uuid::now_v7();
        diesel::insert_into(instances::table)
            .values((
                instances::id.eq(instance),
                instances::region.eq(region.as_str()),
                instances::provider.eq("process"),
                instances::status.eq(InstanceStatus::Provisioning),
                instances::capacity.eq(capacity),
            ))
            .execute(conn)?;
        diesel::insert_into(provisioning_requests::table)
            .values((
                provisioning_requests::request_id.eq(request_id),
                provisioning_requests::instance_id.eq(instance),
                provisioning_requests::action.eq("launch"),
            ))
            .execute(conn)?;
        bus::outbox::enqueue(
            conn,
            ProvisioningJob {
                request_id,
                action: ProvisioningAction::Launch,
                region: region.as_str().to_string(),
                instance_id: Some(instance),
                capacity: Some(capacity),
            },
        )?;
        Ok(instance)
    })
}

/// Drains one idle active instance of `region` if the cooldown since the
/// region's last scale-down has passed. Only an instance with no session
/// is taken, checked on its locked row, so a session being allocated on
/// it keeps it. The instance drained, if any.
pub fn scale_down_one(
    conn: &mut PgConnection,
    region: &Region,
    capacity_at_most: i64,
    cooldown_secs: i32,
) -> QueryResult<Option<Uuid>> {
    conn.transaction(|conn| {
        diesel::insert_into(scaling::table)
            .values(scaling::region.eq(region.as_str()))
            .on_conflict_do_nothing()
            .execute(conn)?;
        let cooled: Option<String> = diesel::sql_query(
            "SELECT region FROM scaling WHERE region = $1
               AND (last_scale_down_at IS NULL OR last_scale_down_at < now() - make_interval(secs => $2))
             FOR UPDATE",
        )
        .bind::<Text, _>(region.as_str())
        .bind::<Integer, _>(cooldown_secs)
        .load::<RegionName>(conn)?
        .into_iter()
        .next()
        .map(|row| row.region);
        if cooled.is_none() {
            return Ok(None);
        }
        let idle: Option<Uuid> = instances::table
            .filter(instances::region.eq(region.as_str()))
            .filter(instances::status.eq(InstanceStatus::Active))
            .filter(instances::active_sessions.eq(0))
            .filter(instances::capacity.le(capacity_at_most as i32))
            .order(instances::created_at.desc())
            .select(instances::id)
            .for_update()
            .skip_locked()
            .first(conn)
            .optional()?;
        let Some(id) = idle else {
            return Ok(None);
        };
        let drained = diesel::update(instances::table.find(id))
            .filter(instances::status.eq(InstanceStatus::Active))
            .filter(instances::active_sessions.eq(0))
            .set((
                instances::status.eq(InstanceStatus::Draining),
                instances::drain_started_at.eq(diesel::dsl::now),
            ))
            .execute(conn)?;
        if drained == 0 {
            return Ok(None);
        }
        diesel::update(scaling::table.find(region.as_str()))
            .set(scaling::last_scale_down_at.eq(diesel::dsl::now))
            .execute(conn)?;
        Ok(Some(id))
    })
}

#[derive(QueryableByName)]
struct RegionName {
    #[diesel(sql_type = Text)]
    region: String,
}

/// The worker reports an instance gone (terminated, or its launch
/// failed): terminated, with any session left ended. Whether it changed.
pub fn mark_terminated(conn: &mut PgConnection, instance: Uuid, reason: &str) -> QueryResult<bool> {
    conn.transaction(|conn| {
        end_sessions_of(conn, instance, reason)?;
        let moved = transition(
            conn,
            instance,
            &[
                InstanceStatus::Provisioning,
                InstanceStatus::Active,
                InstanceStatus::Draining,
                InstanceStatus::Unresponsive,
                InstanceStatus::Terminating,
            ],
            InstanceStatus::Terminated,
        )?;
        // An allocation that committed between the two statements above
        // left a session here; with the instance now locked and no longer
        // active, none can follow it.
        end_sessions_of(conn, instance, reason)?;
        Ok(moved.is_some())
    })
}
