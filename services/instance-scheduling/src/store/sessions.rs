//! Sessions: allocation (`sched_allocate`), their end (`sched_end_session`),
//! the agent's report that a client connected, and the reservations that
//! expire.

use crate::model::{Region, Session, SessionStatus, Strategy};
use crate::schema::sessions;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Integer, Nullable, Text, Uuid as SqlUuid};
use uuid::Uuid;

/// What `sched_allocate` answered.
#[derive(Debug, QueryableByName)]
pub struct AllocationRow {
    /// `allocated`, `existing` (an idempotent retry) or `refused`.
    #[diesel(sql_type = Text)]
    pub outcome: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub reason: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub session_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    pub session_status: Option<String>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Timestamptz>)]
    pub expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub token_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub instance_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    pub region: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub address: Option<String>,
}

/// What an allocation asks for.
pub struct Ask<'a> {
    pub user: Uuid,
    /// In order; `None`: any region.
    pub regions: Option<&'a [Region]>,
    pub app: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub max_per_user: i32,
    pub strategy: Strategy,
    pub stale_secs: i32,
    pub ttl_secs: i32,
}

/// One try of `sched_allocate` (one statement, atomic on its own).
pub fn allocate(conn: &mut PgConnection, ask: &Ask<'_>) -> QueryResult<AllocationRow> {
    let regions: Option<Vec<&str>> = ask
        .regions
        .map(|regions| regions.iter().map(Region::as_str).collect());
    diesel::sql_query("SELECT * FROM sched_allocate($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
        .bind::<SqlUuid, _>(ask.user)
        .bind::<Nullable<Array<Text>>, _>(regions)
        .bind::<Nullable<Text>, _>(ask.app)
        .bind::<Nullable<Text>, _>(ask.idempotency_key)
        .bind::<Integer, _>(ask.max_per_user)
        .bind::<Text, _>(ask.strategy.as_str())
        .bind::<Integer, _>(ask.stale_secs)
        .bind::<Integer, _>(ask.ttl_secs)
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<SqlUuid, _>(Uuid::new_v4())
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .get_result(conn)
}

pub fn find(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<Session>> {
    sessions::table
        .find(id)
        .select(Session::as_select())
        .first(conn)
        .optional()
}

#[derive(QueryableByName)]
struct Ended {
    #[diesel(sql_type = Bool)]
    ended: bool,
}

/// Ends a live session and frees its slot at once (`status`: ended or
/// expired). Whether this call ended it.
pub fn end(
    conn: &mut PgConnection,
    id: Uuid,
    status: SessionStatus,
    reason: &str,
) -> QueryResult<bool> {
    let ended: Ended = diesel::sql_query("SELECT sched_end_session($1, $2, $3) AS ended")
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(status.as_str())
        .bind::<Text, _>(reason)
        .get_result(conn)?;
    Ok(ended.ended)
}

/// What the agent's report of a connecting client came to.
pub enum Connect {
    /// The session is now connected.
    Connected(Session),
    /// It was used already.
    AlreadyUsed,
    /// The reservation expired, or the session ended.
    Over,
    /// No session of this instance has that id.
    Unknown,
}

/// Moves `session` of `instance` from allocated to connected, once, while
/// its reservation holds.
pub fn connect(conn: &mut PgConnection, instance: Uuid, session: Uuid) -> QueryResult<Connect> {
    let connected = diesel::update(sessions::table.find(session))
        .filter(sessions::instance_id.eq(instance))
        .filter(sessions::status.eq(SessionStatus::Allocated))
        .filter(sessions::expires_at.gt(diesel::dsl::now))
        .set((
            sessions::status.eq(SessionStatus::Connected),
            sessions::connected_at.eq(diesel::dsl::now),
        ))
        .returning(Session::as_returning())
        .get_result(conn)
        .optional()?;
    if let Some(session) = connected {
        return Ok(Connect::Connected(session));
    }
    let found = sessions::table
        .find(session)
        .filter(sessions::instance_id.eq(instance))
        .select(Session::as_select())
        .first(conn)
        .optional()?;
    Ok(match found {
        None => Connect::Unknown,
        Some(session) if session.status == SessionStatus::Connected => Connect::AlreadyUsed,
        Some(_) => Connect::Over,
    })
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Ends the connected sessions of `instance` that its agent no longer
/// reports (`present`), connected longer than `grace_secs` ago (a session
/// connected after the agent built its report is not in it yet), and
/// frees their slots; one statement. How many ended.
pub fn end_departed(
    conn: &mut PgConnection,
    instance: Uuid,
    present: &[Uuid],
    grace_secs: i32,
) -> QueryResult<i64> {
    let count: Count = diesel::sql_query(
        "WITH gone AS (
             UPDATE sessions SET status = 'ended', ended_at = now(), end_reason = 'disconnected'
             WHERE instance_id = $1 AND status = 'connected'
               AND connected_at < now() - make_interval(secs => $3)
               AND NOT (id = ANY ($2))
             RETURNING id
         ), freed AS (
             UPDATE instances SET active_sessions = active_sessions - (SELECT count(*) FROM gone)
             WHERE id = $1 AND (SELECT count(*) FROM gone) > 0
             RETURNING id
         )
         SELECT count(*) AS n FROM gone",
    )
    .bind::<SqlUuid, _>(instance)
    .bind::<Array<SqlUuid>, _>(present)
    .bind::<Integer, _>(grace_secs)
    .get_result(conn)?;
    Ok(count.n)
}

/// Expires `user`'s own reservations that lapsed and frees their slots, in
/// a statement of its own before an allocation (the reconciler expires
/// everyone's, but only every few seconds): a lapsed reservation neither
/// counts against the user's limit nor holds a slot. Sessions before
/// instances, as every statement that frees a slot.
pub fn expire_reservations_of(conn: &mut PgConnection, user: Uuid) -> QueryResult<i64> {
    expire(conn, Some(user))
}

/// Of the sessions an agent reports (`present`), those that are not
/// connected on `instance` (any more): the agent is to let them go.
pub fn not_connected_here(
    conn: &mut PgConnection,
    instance: Uuid,
    present: &[Uuid],
) -> QueryResult<Vec<Uuid>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    if present.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Id> = diesel::sql_query(
        "SELECT r.id FROM unnest($2::uuid[]) AS r(id)
         WHERE NOT EXISTS (
             SELECT 1 FROM sessions s
             WHERE s.id = r.id AND s.instance_id = $1 AND s.status = 'connected'
         )",
    )
    .bind::<SqlUuid, _>(instance)
    .bind::<Array<SqlUuid>, _>(present)
    .load(conn)?;
    Ok(rows.into_iter().map(|row| row.id).collect())
}

/// Expires the reservations nobody used in time and frees their slots,
/// one statement. How many expired.
pub fn expire_reservations(conn: &mut PgConnection) -> QueryResult<i64> {
    expire(conn, None)
}

/// Expires lapsed reservations (of `user` only, or everyone's) and frees
/// their slots in one statement, sessions before instances. How many.
fn expire(conn: &mut PgConnection, user: Option<Uuid>) -> QueryResult<i64> {
    let count: Count = diesel::sql_query(
        "WITH expired AS (
             UPDATE sessions SET status = 'expired', ended_at = now(), end_reason = 'not_connected'
             WHERE status = 'allocated' AND expires_at <= now()
               AND ($1::uuid IS NULL OR user_id = $1)
             RETURNING instance_id
         ), per_instance AS (
             SELECT instance_id, count(*) AS n FROM expired GROUP BY instance_id
         ), freed AS (
             UPDATE instances i SET active_sessions = i.active_sessions - p.n
             FROM per_instance p WHERE i.id = p.instance_id
             RETURNING i.id
         )
         SELECT count(*) AS n FROM expired",
    )
    .bind::<Nullable<SqlUuid>, _>(user)
    .get_result(conn)?;
    Ok(count.n)
}
