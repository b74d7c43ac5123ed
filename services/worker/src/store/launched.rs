//! The host agents this worker launched (`launched_agents`) and the
//! provisioning requests done (`provisioning_done`), with the events that
//! report them written to the outbox in the same transaction.

use crate::schema::{launched_agents, provisioning_done};
use diesel::prelude::*;
use domain::messages::{InstanceLaunchFailed, InstanceTerminated};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = launched_agents)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct LaunchedAgent {
    pub instance_id: Uuid,
    pub launch_request_id: Uuid,
    pub region: String,
    pub host: String,
    pub port: i32,
    pub pid: Option<i32>,
    pub process_start: Option<i64>,
    pub state: String,
}

impl LaunchedAgent {
    pub fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "starting" | "running")
    }
}

pub fn is_done(conn: &mut PgConnection, request_id: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        provisioning_done::table.find(request_id),
    ))
    .get_result(conn)
}

pub fn find(conn: &mut PgConnection, instance_id: Uuid) -> QueryResult<Option<LaunchedAgent>> {
    launched_agents::table
        .find(instance_id)
        .select(LaunchedAgent::as_select())
        .first(conn)
        .optional()
}

/// Ports of `host` held by live agents.
pub fn ports_in_use(conn: &mut PgConnection, host: &str) -> QueryResult<Vec<i32>> {
    launched_agents::table
        .filter(launched_agents::host.eq(host))
        .filter(launched_agents::state.eq_any(["starting", "running"]))
        .select(launched_agents::port)
        .load(conn)
}

/// What a reservation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    /// Another live agent of the host took the port meanwhile.
    PortTaken,
    /// The instance has a row already (the same job delivered twice at
    /// once): it is being launched.
    AlreadyThere,
}

/// Reserves `port` of `host` for the instance (`starting`).
pub fn reserve(
    conn: &mut PgConnection,
    spec: &crate::provisioning::provider::LaunchSpec,
    host: &str,
    port: i32,
) -> QueryResult<Reservation> {
    let inserted = diesel::insert_into(launched_agents::table)
        .values((
            launched_agents::instance_id.eq(spec.instance_id),
            launched_agents::launch_request_id.eq(spec.request_id),
            launched_agents::region.eq(&spec.region),
            launched_agents::host.eq(host),
            launched_agents::port.eq(port),
            launched_agents::state.eq("starting"),
        ))
        .on_conflict(launched_agents::instance_id)
        .do_nothing()
        .execute(conn);
    match inserted {
        Ok(1) => Ok(Reservation::Reserved),
        Ok(_) => Ok(Reservation::AlreadyThere),
        // The live-port index: the port is someone else's.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(Reservation::PortTaken),
        Err(err) => Err(err),
    }
}

pub fn mark_running(
    conn: &mut PgConnection,
    instance_id: Uuid,
    pid: i32,
    process_start: Option<i64>,
) -> QueryResult<()> {
    diesel::update(launched_agents::table.find(instance_id))
        .set((
            launched_agents::state.eq("running"),
            launched_agents::pid.eq(pid),
            launched_agents::process_start.eq(process_start),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Ends a live row with `state` (`failed`, `exited`, `terminated`);
/// whether it was live.
pub fn end(
    conn: &mut PgConnection,
    instance_id: Uuid,
    state: &str,
    detail: &str,
) -> QueryResult<bool> {
    diesel::update(launched_agents::table.find(instance_id))
        .filter(launched_agents::state.eq_any(["starting", "running"]))
        .set((
            launched_agents::state.eq(state),
            launched_agents::detail.eq(detail),
            launched_agents::ended_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .map(|n| n == 1)
}

/// Live agents of `host` with a pid.
pub fn running_on(conn: &mut PgConnection, host: &str) -> QueryResult<Vec<LaunchedAgent>> {
    launched_agents::table
        .filter(launched_agents::host.eq(host))
        .filter(launched_agents::state.eq("running"))
        .select(LaunchedAgent::as_select())
        .load(conn)
}

/// Records a request as done; false if it was already.
pub fn record_done(
    conn: &mut PgConnection,
    request_id: Uuid,
    action: &str,
    instance_id: Uuid,
    outcome: &str,
) -> QueryResult<bool> {
    diesel::insert_into(provisioning_done::table)
        .values((
            provisioning_done::request_id.eq(request_id),
            provisioning_done::action.eq(action),
            provisioning_done::instance_id.eq(instance_id),
            provisioning_done::outcome.eq(outcome),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .map(|n| n == 1)
}

/// A launch that failed: the row (if any) failed, the request done, and
/// `instance.launch_failed` in the outbox, together.
pub fn launch_failed(
    conn: &mut PgConnection,
    request_id: Uuid,
    instance_id: Uuid,
    region: &str,
    error: &str,
) -> QueryResult<()> {
    conn.transaction(|conn| {
        end(conn, instance_id, "failed", error)?;
        if record_done(conn, request_id, "launch", instance_id, "failed")? {
            bus::outbox::enqueue(
                conn,
                InstanceLaunchFailed {
                    request_id,
                    instance_id,
                    region: region.to_string(),
                    error: error.to_string(),
                },
            )?;
        }
        Ok(())
    })
}

/// An agent gone (`state`: `exited` by itself, or `terminated`): its row
/// ended, and `instance.terminated` in the outbox unless the row was no
/// longer live (someone reported it already). With a terminate request,
/// the request is recorded done too, and always answered.
pub fn gone(
    conn: &mut PgConnection,
    instance_id: Uuid,
    region: &str,
    request_id: Option<Uuid>,
    state: &str,
    reason: &str,
) -> QueryResult<()> {
    conn.transaction(|conn| {
        let was_live = end(conn, instance_id, state, reason)?;
        let first_answer = match request_id {
            Some(request_id) => record_done(conn, request_id, "terminate", instance_id, reason)?,
            None => was_live,
        };
        if first_answer {
            bus::outbox::enqueue(
                conn,
                InstanceTerminated {
                    instance_id,
                    request_id,
                    region: region.to_string(),
                    reason: reason.to_string(),
                },
            )?;
        }
        Ok(())
    })
}
