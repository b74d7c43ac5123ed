//! A staff member's notes on visitors.

use crate::schema::bookmarks;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = bookmarks)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct BookmarkRow {
    pub visitor_id: Uuid,
    pub note: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn find(
    conn: &mut PgConnection,
    staff: Uuid,
    visitor: Uuid,
) -> QueryResult<Option<BookmarkRow>> {
    bookmarks::table
        .find((staff, visitor))
        .select(BookmarkRow::as_select())
        .first(conn)
        .optional()
}

/// Sets the note; the row, and whether it is new.
pub fn put(
    conn: &mut PgConnection,
    staff: Uuid,
    visitor: Uuid,
    note: &str,
) -> QueryResult<(BookmarkRow, bool)> {
    let row: BookmarkRow = diesel::insert_into(bookmarks::table)
        .values((
            bookmarks::staff_id.eq(staff),
            bookmarks::visitor_id.eq(visitor),
            bookmarks::note.eq(note),
        ))
        .on_conflict((bookmarks::staff_id, bookmarks::visitor_id))
        .do_update()
        .set((
            bookmarks::note.eq(note),
            bookmarks::updated_at.eq(diesel::dsl::now),
        ))
        .returning(BookmarkRow::as_returning())
        .get_result(conn)?;
    let created = row.created_at == row.updated_at;
    Ok((row, created))
}

pub fn delete(conn: &mut PgConnection, staff: Uuid, visitor: Uuid) -> QueryResult<bool> {
    diesel::delete(bookmarks::table.find((staff, visitor)))
        .execute(conn)
        .map(|deleted| deleted > 0)
}

pub fn list(
    conn: &mut PgConnection,
    staff: Uuid,
    cursor: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<BookmarkRow>> {
    let mut query = bookmarks::table
        .filter(bookmarks::staff_id.eq(staff))
        .select(BookmarkRow::as_select())
        .into_boxed();
    if let Some(cursor) = cursor {
        query = query.filter(bookmarks::visitor_id.gt(cursor));
    }
    query
        .order(bookmarks::visitor_id.asc())
        .limit(limit)
        .load(conn)
}
