//! Messages and read cursors.

use crate::model::Message;
use crate::schema::{messages, read_cursors};
use diesel::prelude::*;
use uuid::Uuid;

/// A message stored, or the one stored before under its client id.
#[derive(QueryableByName)]
pub struct Stored {
    #[diesel(embed)]
    pub message: Message,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub created: bool,
}

/// Stores `row` with its room's next seq, in one statement (one round
/// trip, atomic on its own: the function `chat_store_message`): unless a message with its `client_msg_id`
/// is in the room already (that one comes back, `created` false), the
/// room's `last_seq` goes up by one under the room's row lock and the
/// message takes it. The room must be open and, with `only_visitor`,
/// theirs; otherwise nothing comes back. Two tries of one client id at
/// once: one of them fails on the unique index, and changed nothing.
pub fn store(
    conn: &mut PgConnection,
    row: &Message,
    only_visitor: Option<Uuid>,
) -> QueryResult<Option<Stored>> {
    use diesel::sql_types::{Nullable, Text, Timestamptz, Uuid as SqlUuid};
    // A function of the schema (migrations), which plans its statements
    // once per connection.
    diesel::sql_query("SELECT * FROM chat_store_message($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind::<SqlUuid, _>(row.room_id)
        .bind::<Text, _>(&row.client_msg_id)
        .bind::<Nullable<SqlUuid>, _>(only_visitor)
        .bind::<SqlUuid, _>(row.id)
        .bind::<SqlUuid, _>(row.author_id)
        .bind::<Text, _>(row.author_role)
        .bind::<Text, _>(&row.body)
        .bind::<Timestamptz, _>(row.created_at)
        .get_result(conn)
        .optional()
}

/// A message to store, and whose room it must be if not anyone's who
/// may post.
#[derive(Debug, Clone)]
pub struct Posting {
    pub row: Message,
    pub only_visitor: Option<Uuid>,
}

#[derive(QueryableByName)]
struct StoredAt {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    ord: i32,
    #[diesel(embed)]
    stored: Stored,
}

/// Stores a batch of messages in one statement (`chat_store_messages`),
/// in this transaction; the batch is committed together. Each comes back
/// stored, or as `None`: its room was held by another transaction, closed
/// or out of reach, or its client id was taken. [`store`] settles those
/// one at a time.
pub fn store_batch(
    conn: &mut PgConnection,
    postings: &[Posting],
) -> QueryResult<Vec<Option<Stored>>> {
    use diesel::sql_types::{Array, Nullable, Text, Timestamptz, Uuid as SqlUuid};
    let column = |field: fn(&Posting) -> Uuid| postings.iter().map(field).collect::<Vec<_>>();
    let texts = |field: fn(&Posting) -> &str| postings.iter().map(field).collect::<Vec<_>>();
    let stored: Vec<StoredAt> =
        diesel::sql_query("SELECT * FROM chat_store_messages($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind::<Array<SqlUuid>, _>(column(|p| p.row.room_id))
            .bind::<Array<Text>, _>(texts(|p| &p.row.client_msg_id))
            .bind::<Array<Nullable<SqlUuid>>, _>(
                postings.iter().map(|p| p.only_visitor).collect::<Vec<_>>(),
            )
            .bind::<Array<SqlUuid>, _>(column(|p| p.row.id))
            .bind::<Array<SqlUuid>, _>(column(|p| p.row.author_id))
            .bind::<Array<Text>, _>(texts(|p| p.row.author_role.as_str()))
            .bind::<Array<Text>, _>(texts(|p| &p.row.body))
            .bind::<Array<Timestamptz>, _>(
                postings
                    .iter()
                    .map(|p| p.row.created_at)
                    .collect::<Vec<_>>(),
            )
            .load(conn)?;
    let mut answers: Vec<Option<Stored>> = postings.iter().map(|_| None).collect();
    for StoredAt { ord, stored } in stored {
        // `ord` counts from 1, as SQL arrays do.
        let slot = usize::try_from(ord - 1)
            .ok()
            .and_then(|i| answers.get_mut(i));
        if let Some(slot) = slot {
            *slot = Some(stored);
        }
    }
    Ok(answers)
}

pub fn find_by_client_id(
    conn: &mut PgConnection,
    room_id: Uuid,
    client_msg_id: &str,
) -> QueryResult<Option<Message>> {
    messages::table
        .filter(messages::room_id.eq(room_id))
        .filter(messages::client_msg_id.eq(client_msg_id))
        .select(Message::as_select())
        .first(conn)
        .optional()
}

/// Up to `limit` messages of the room with `after < seq < before`, in seq
/// order. With only `before`, the `limit` just before it.
pub fn page(
    conn: &mut PgConnection,
    room_id: Uuid,
    after: i64,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<Message>> {
    let base = messages::table
        .filter(messages::room_id.eq(room_id))
        .filter(messages::seq.gt(after))
        .select(Message::as_select());
    match before {
        None => base.order(messages::seq.asc()).limit(limit).load(conn),
        Some(before) => {
            let mut rows: Vec<Message> = base
                .filter(messages::seq.lt(before))
                .order(messages::seq.desc())
                .limit(limit)
                .load(conn)?;
            rows.reverse();
            Ok(rows)
        }
    }
}

/// Everything after `after` up to and including `through`, in order.
pub fn range(
    conn: &mut PgConnection,
    room_id: Uuid,
    after: i64,
    through: i64,
) -> QueryResult<Vec<Message>> {
    messages::table
        .filter(messages::room_id.eq(room_id))
        .filter(messages::seq.gt(after))
        .filter(messages::seq.le(through))
        .order(messages::seq.asc())
        .select(Message::as_select())
        .load(conn)
}

/// Moves the reader's cursor forward (never back); the cursor it ends at.
pub fn mark_read(
    conn: &mut PgConnection,
    room_id: Uuid,
    user_id: Uuid,
    seq: i64,
) -> QueryResult<i64> {
    diesel::insert_into(read_cursors::table)
        .values((
            read_cursors::room_id.eq(room_id),
            read_cursors::user_id.eq(user_id),
            read_cursors::last_read_seq.eq(seq),
        ))
        .on_conflict((read_cursors::room_id, read_cursors::user_id))
        .do_update()
        .set((
            read_cursors::last_read_seq.eq(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                "GREATEST(read_cursors.last_read_seq, excluded.last_read_seq)",
            )),
            read_cursors::updated_at.eq(diesel::dsl::now),
        ))
        .returning(read_cursors::last_read_seq)
        .get_result(conn)
}
