//! Deduplication for consumers: a handler records the message id in the same
//! transaction as its effect, so a redelivered message has its effect once.

use crate::schema::processed_messages;
use diesel::pg::PgConnection;
use diesel::prelude::*;

/// Records `message_id` for `consumer`; `true` the first time, `false` if it
/// was already handled. Call inside the handler's transaction.
pub fn first_delivery(
    conn: &mut PgConnection,
    consumer: &str,
    message_id: &str,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(processed_messages::table)
        .values((
            processed_messages::consumer.eq(consumer),
            processed_messages::message_id.eq(message_id),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(inserted == 1)
}
