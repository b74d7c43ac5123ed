//! Rooms: reading them, listing them, and the state changes the
//! assignment module makes inside its transactions.

use crate::model::{Priority, Room, RoomStatus};
use crate::schema::rooms;
use diesel::prelude::*;
use uuid::Uuid;

#[derive(Insertable)]
#[diesel(table_name = rooms)]
struct NewRoom<'a> {
    id: Uuid,
    visitor_id: Uuid,
    subject: Option<&'a str>,
    idempotency_key: Option<&'a str>,
}

/// Inserts a waiting room; `None` when the visitor already opened one
/// with `idempotency_key`.
pub fn insert(
    conn: &mut PgConnection,
    visitor_id: Uuid,
    subject: Option<&str>,
    idempotency_key: Option<&str>,
) -> QueryResult<Option<Room>> {
    diesel::insert_into(rooms::table)
        .values(NewRoom {
            id: Uuid::now_v7(),
            visitor_id,
            subject,
            idempotency_key,
        })
        .on_conflict_do_nothing()
        .returning(Room::as_returning())
        .get_result(conn)
        .optional()
}

pub fn find_by_idempotency_key(
    conn: &mut PgConnection,
    visitor_id: Uuid,
    key: &str,
) -> QueryResult<Option<Room>> {
    rooms::table
        .filter(rooms::visitor_id.eq(visitor_id))
        .filter(rooms::idempotency_key.eq(key))
        .select(Room::as_select())
        .first(conn)
        .optional()
}

pub fn find(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<Room>> {
    rooms::table
        .find(id)
        .select(Room::as_select())
        .first(conn)
        .optional()
}

pub fn find_for_update(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<Room>> {
    rooms::table
        .find(id)
        .select(Room::as_select())
        .for_update()
        .first(conn)
        .optional()
}

/// Who a listing is for: a visitor sees their own rooms, staff any.
#[derive(Debug, Clone, Copy)]
pub struct ListFilter {
    pub visitor: Option<Uuid>,
    pub assignee: Option<Uuid>,
    pub status: Option<RoomStatus>,
}

/// Rooms in id order (which is the order they were opened), after `cursor`.
pub fn list(
    conn: &mut PgConnection,
    filter: ListFilter,
    cursor: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Room>> {
    let mut query = rooms::table.select(Room::as_select()).into_boxed();
    if let Some(visitor) = filter.visitor {
        query = query.filter(rooms::visitor_id.eq(visitor));
    }
    if let Some(assignee) = filter.assignee {
        query = query.filter(rooms::assignee_id.eq(assignee));
    }
    if let Some(status) = filter.status {
        query = query.filter(rooms::status.eq(status));
    }
    if let Some(cursor) = cursor {
        query = query.filter(rooms::id.gt(cursor));
    }
    query.order(rooms::id.asc()).limit(limit).load(conn)
}

/// The head of the waiting queue (priority, then age), locked. A room
/// another transaction holds is waited for, not passed over: it may stay
/// waiting, and then it still goes first.
pub fn next_waiting(conn: &mut PgConnection) -> QueryResult<Option<Room>> {
    rooms::table
        .filter(rooms::status.eq(RoomStatus::Waiting))
        .order((
            rooms::priority_rank.asc(),
            rooms::created_at.asc(),
            rooms::id.asc(),
        ))
        .select(Room::as_select())
        .for_update()
        .first(conn)
        .optional()
}

pub fn set_priority(conn: &mut PgConnection, id: Uuid, priority: Priority) -> QueryResult<Room> {
    diesel::update(rooms::table.find(id))
        .set((
            rooms::priority.eq(priority),
            rooms::priority_rank.eq(priority.rank()),
            rooms::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Room::as_returning())
        .get_result(conn)
}

pub fn close(conn: &mut PgConnection, id: Uuid, closed_by: Uuid) -> QueryResult<Room> {
    diesel::update(rooms::table.find(id))
        .set((
            rooms::status.eq(RoomStatus::Closed),
            rooms::closed_at.eq(diesel::dsl::now),
            rooms::closed_by.eq(closed_by),
            rooms::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Room::as_returning())
        .get_result(conn)
}
