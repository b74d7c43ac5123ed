//! Assignments and their decisions, made by the functions
//! `chat_assign_room` and `chat_give_room` of the migrations: one round
//! trip each, so the rows they lock are held for as short a time as
//! possible.

use crate::model::Room;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Text, Uuid as SqlUuid};
use uuid::Uuid;

/// A room after an assignment was tried, with the decision recorded
/// (none when a drain found nobody free).
#[derive(QueryableByName)]
pub struct Attempt {
    #[diesel(embed)]
    pub room: Room,
    #[diesel(sql_type = Nullable<Text>)]
    pub outcome: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub reason: Option<String>,
}

/// Gives the waiting room `room_id`, locked or just inserted by this
/// transaction, to the first free agent in line. With `wait_for_locked`,
/// an agent another transaction holds is waited for, otherwise passed
/// over; with `queue_first`, the room waits if any other room does.
pub fn to_first_free(
    conn: &mut PgConnection,
    room_id: Uuid,
    trigger: &str,
    wait_for_locked: bool,
    queue_first: bool,
) -> QueryResult<Attempt> {
    diesel::sql_query("SELECT * FROM chat_assign_room($1, $2, $3, $4, $5)")
        .bind::<SqlUuid, _>(room_id)
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<Text, _>(trigger)
        .bind::<Bool, _>(wait_for_locked)
        .bind::<Bool, _>(queue_first)
        .get_result(conn)
}

/// Gives the room to `agent`; both rows must be locked by this
/// transaction, and the agent must have room.
pub fn to_agent(
    conn: &mut PgConnection,
    room_id: Uuid,
    agent: Uuid,
    trigger: &str,
    reason: &str,
    decided_by: Option<Uuid>,
) -> QueryResult<Attempt> {
    diesel::sql_query("SELECT * FROM chat_give_room($1, $2, $3, $4, $5, $6, NULL)")
        .bind::<SqlUuid, _>(room_id)
        .bind::<SqlUuid, _>(agent)
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<Text, _>(trigger)
        .bind::<Text, _>(reason)
        .bind::<Nullable<SqlUuid>, _>(decided_by)
        .get_result(conn)
}
