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

/// Runs `apply` once per message: in one transaction with the record of the
/// message id, so a redelivery is recognised and skipped. Database trouble
/// is a transient failure (the message is retried).
pub async fn apply_once<F>(
    pool: &platform::db::PgPool,
    consumer: &'static str,
    message_id: String,
    apply: F,
) -> Result<(), crate::HandlerError>
where
    F: FnOnce(&mut PgConnection) -> QueryResult<()> + Send + 'static,
{
    platform::db::run(pool, move |conn| {
        conn.transaction(|conn| {
            if first_delivery(conn, consumer, &message_id)? {
                apply(conn)?;
            }
            Ok::<_, diesel::result::Error>(())
        })
        .map_err(platform::db::DbError::from)
    })
    .await
    .map_err(|err: platform::db::DbError| crate::HandlerError::Transient(err.to_string()))
}
