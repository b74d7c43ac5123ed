//! Agents (staff members as chat sees them): settings, load, presence,
//! and what chat knows of people for its emails.

use crate::schema::{agents, people};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = agents)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct AgentRow {
    pub user_id: Uuid,
    pub is_agent: bool,
    pub disabled: bool,
    pub max_active_rooms: i32,
    pub notify_by_email: bool,
    pub active_rooms: i32,
    pub last_assigned_at: Option<DateTime<Utc>>,
    pub online: bool,
}

impl AgentRow {
    pub fn has_capacity(&self) -> bool {
        self.active_rooms < self.max_active_rooms
    }
}

/// Makes sure an agent row exists for a caller whose token says staff or
/// admin. An existing row is left as it is: account events, not a token
/// that may predate them, decide whether someone is still an agent.
pub fn ensure(conn: &mut PgConnection, user_id: Uuid) -> QueryResult<()> {
    diesel::insert_into(agents::table)
        .values(agents::user_id.eq(user_id))
        .on_conflict_do_nothing()
        .execute(conn)
        .map(|_| ())
}

pub fn find(conn: &mut PgConnection, user_id: Uuid) -> QueryResult<Option<AgentRow>> {
    agents::table
        .find(user_id)
        .select(AgentRow::as_select())
        .first(conn)
        .optional()
}

pub fn find_for_update(conn: &mut PgConnection, user_id: Uuid) -> QueryResult<Option<AgentRow>> {
    agents::table
        .find(user_id)
        .select(AgentRow::as_select())
        .for_update()
        .first(conn)
        .optional()
}

/// One room fewer for `user_id`.
pub fn remove_room(conn: &mut PgConnection, user_id: Uuid) -> QueryResult<()> {
    diesel::update(agents::table.find(user_id))
        .filter(agents::active_rooms.gt(0))
        .set((
            agents::active_rooms.eq(agents::active_rooms - 1),
            agents::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .map(|_| ())
}

pub fn update_settings(
    conn: &mut PgConnection,
    user_id: Uuid,
    max_active_rooms: i32,
    notify_by_email: bool,
) -> QueryResult<AgentRow> {
    diesel::update(agents::table.find(user_id))
        .set((
            agents::max_active_rooms.eq(max_active_rooms),
            agents::notify_by_email.eq(notify_by_email),
            agents::updated_at.eq(diesel::dsl::now),
        ))
        .returning(AgentRow::as_returning())
        .get_result(conn)
}

/// Agents and whether they are online, in id order after `cursor`.
pub fn presence_page(
    conn: &mut PgConnection,
    cursor: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<(Uuid, bool)>> {
    let mut query = agents::table
        .filter(agents::is_agent)
        .filter(agents::disabled.eq(false))
        .select((agents::user_id, agents::online))
        .into_boxed();
    if let Some(cursor) = cursor {
        query = query.filter(agents::user_id.gt(cursor));
    }
    query.order(agents::user_id.asc()).limit(limit).load(conn)
}

/// Marks the agent online; `true` when they were offline before.
pub fn came_online(conn: &mut PgConnection, user_id: Uuid) -> QueryResult<bool> {
    let was_online: Option<bool> = agents::table
        .find(user_id)
        .select(agents::online)
        .for_update()
        .first(conn)
        .optional()?;
    diesel::update(agents::table.find(user_id))
        .set((
            agents::online.eq(true),
            agents::last_seen_at.eq(diesel::dsl::now),
            agents::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)?;
    Ok(was_online == Some(false))
}

/// The agent's last connection ended now (the grace period starts).
pub fn seen_now(conn: &mut PgConnection, user_ids: &[Uuid]) -> QueryResult<()> {
    diesel::update(agents::table.filter(agents::user_id.eq_any(user_ids)))
        .set(agents::last_seen_at.eq(diesel::dsl::now))
        .execute(conn)
        .map(|_| ())
}

/// Someone's name and address, for the emails chat sends.
#[derive(Debug, Clone, Queryable)]
pub struct Person {
    pub user_id: Uuid,
    pub display_name: String,
    pub email: Option<String>,
}

pub fn person(conn: &mut PgConnection, user_id: Uuid) -> QueryResult<Option<Person>> {
    people::table
        .find(user_id)
        .select((people::user_id, people::display_name, people::email))
        .first(conn)
        .optional()
}

/// Offline agents who want emails about waiting rooms and have not had
/// one in the last ten minutes, each claimed for this ten minutes in the
/// same statement, so that two replicas never both send.
pub fn claim_waiting_notices(conn: &mut PgConnection) -> QueryResult<Vec<Person>> {
    #[derive(QueryableByName)]
    struct Claimed {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        user_id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Text)]
        display_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        email: String,
    }
    let claimed: Vec<Claimed> = diesel::sql_query(
        "WITH eligible AS (
             SELECT a.user_id, p.display_name, p.email
             FROM agents a JOIN people p ON p.user_id = a.user_id
             WHERE a.is_agent AND NOT a.disabled AND NOT a.online
               AND a.notify_by_email AND p.email IS NOT NULL
         ), claimed AS (
             INSERT INTO waiting_notices (staff_id, last_sent_at)
             SELECT user_id, now() FROM eligible
             ON CONFLICT (staff_id) DO UPDATE SET last_sent_at = excluded.last_sent_at
             WHERE waiting_notices.last_sent_at < now() - interval '10 minutes'
             RETURNING staff_id
         )
         SELECT e.user_id, e.display_name, e.email
         FROM eligible e JOIN claimed c ON c.staff_id = e.user_id
         ORDER BY e.user_id",
    )
    .load(conn)?;
    Ok(claimed
        .into_iter()
        .map(|row| Person {
            user_id: row.user_id,
            display_name: row.display_name,
            email: Some(row.email),
        })
        .collect())
}
