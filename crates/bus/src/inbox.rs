//! Deduplication for consumers: a handler records the message id in the same
//! transaction as its effect, so a redelivered message has its effect once.

use crate::consumer::{Handler, HandlerError, Incoming};
use crate::schema::processed_messages;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use platform::db::{DbError, PgPool};
use std::collections::HashSet;

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

/// Records every id of `message_ids` in one statement and returns those
/// seen for the first time. Call inside the handler's transaction.
pub fn first_deliveries(
    conn: &mut PgConnection,
    consumer: &str,
    message_ids: &[&str],
) -> QueryResult<HashSet<String>> {
    #[derive(QueryableByName)]
    struct Fresh {
        #[diesel(sql_type = Text)]
        message_id: String,
    }
    // One statement text whatever the batch size (an array parameter, not
    // a VALUES list), so the server parses and plans the same text.
    let fresh: Vec<Fresh> = diesel::sql_query(
        "INSERT INTO processed_messages (consumer, message_id) \
         SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING message_id",
    )
    .bind::<Text, _>(consumer)
    .bind::<Array<Text>, _>(message_ids)
    .load(conn)?;
    Ok(fresh.into_iter().map(|row| row.message_id).collect())
}

/// A consumer whose whole effect is a change to its own database: parse a
/// message, then apply it in a transaction. Wrapped in [`Inboxed`], it has
/// its effect once per message id however often the message is delivered.
pub trait Transactional: Send + Sync + 'static {
    type Change: Send + 'static;

    /// Reads a message; a message that can never be applied is a
    /// [`HandlerError::Permanent`]. Runs before any transaction.
    fn parse(&self, message: &Incoming) -> Result<Self::Change, HandlerError>;

    /// Applies one change inside the caller's transaction.
    fn apply(conn: &mut PgConnection, change: &Self::Change) -> QueryResult<()>;
}

/// The [`Handler`] of a [`Transactional`] consumer. The deliveries that
/// were waiting together are applied in one transaction with their inbox
/// records, so a backlog costs one commit per batch instead of one per
/// message. If that transaction fails, each message is retried alone in its
/// own, so one bad message fails by itself. Database trouble is a transient
/// failure (the message is retried later).
pub struct Inboxed<T> {
    pool: PgPool,
    consumer: &'static str,
    inner: T,
}

impl<T: Transactional> Inboxed<T> {
    /// `consumer` names the inbox records (the queue name, by convention).
    pub fn new(pool: PgPool, consumer: &'static str, inner: T) -> Self {
        Self {
            pool,
            consumer,
            inner,
        }
    }
}

impl<T: Transactional> Handler for Inboxed<T> {
    async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        crate::consumer::only(self.handle_batch(vec![message]).await)
    }

    async fn handle_batch(&self, messages: Vec<Incoming>) -> Vec<Result<(), HandlerError>> {
        let parsed: Vec<(String, Result<T::Change, HandlerError>)> = messages
            .into_iter()
            .map(|message| {
                let change = self.inner.parse(&message);
                (message.message_id, change)
            })
            .collect();
        let count = parsed.len();
        let consumer = self.consumer;
        platform::db::run(&self.pool, move |conn| {
            Ok::<_, DbError>(apply_batch::<T>(conn, consumer, parsed))
        })
        .await
        .unwrap_or_else(|err| {
            (0..count)
                .map(|_| Err(HandlerError::Transient(err.to_string())))
                .collect()
        })
    }
}

fn apply_batch<T: Transactional>(
    conn: &mut PgConnection,
    consumer: &str,
    parsed: Vec<(String, Result<T::Change, HandlerError>)>,
) -> Vec<Result<(), HandlerError>> {
    let valid: Vec<(&str, &T::Change)> = parsed
        .iter()
        .filter_map(|(id, change)| Some((id.as_str(), change.as_ref().ok()?)))
        .collect();
    // A batch that fails together (one change breaks a constraint, say) is
    // redone one message at a time, each in its own transaction.
    let together = valid.len() > 1 && apply_together::<T>(conn, consumer, &valid).is_ok();
    parsed
        .iter()
        .map(|(id, change)| match change {
            Err(err) => Err(err.clone()),
            Ok(_) if together => Ok(()),
            Ok(change) => apply_together::<T>(conn, consumer, &[(id, change)])
                .map_err(|err| HandlerError::Transient(DbError::from(err).to_string())),
        })
        .collect()
}

/// Records the ids and applies the changes seen for the first time, in
/// order, in one transaction. A message delivered twice in the same batch
/// is applied once.
fn apply_together<T: Transactional>(
    conn: &mut PgConnection,
    consumer: &str,
    messages: &[(&str, &T::Change)],
) -> QueryResult<()> {
    conn.transaction(|conn| {
        let ids: Vec<&str> = messages.iter().map(|(id, _)| *id).collect();
        let mut fresh = first_deliveries(conn, consumer, &ids)?;
        for (id, change) in messages {
            if fresh.remove(*id) {
                T::apply(conn, change)?;
            }
        }
        Ok(())
    })
}
