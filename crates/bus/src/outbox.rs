//! The transactional outbox. A service writes its event or job into the
//! `outbox` table in the same transaction as the change it describes; the
//! relay publishes pending rows with publisher confirms and marks them sent.
//! A broker outage delays messages and loses none. Rows are claimed with a
//! lease (`FOR UPDATE SKIP LOCKED`), so several replicas relay side by side
//! without publishing a row twice in the normal case; after a crash between
//! publish and mark the row is published again, which consumers absorb by
//! deduplicating on the message id.

use crate::broker::{Backoff, Broker};
use crate::headers::StringHeaders;
use crate::publisher::{OutgoingMessage, PendingConfirm, Publisher};
use crate::schema::outbox;
use crate::topology::{self, EVENTS, JOBS};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Uuid as SqlUuid};
use domain::messages::{Contract, Envelope, Route};
use platform::db::{self, DbError, PgPool};
use platform::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use uuid::Uuid;

/// SQL that creates the bus tables; each service's first migration runs it.
pub const MIGRATION_SQL: &str = include_str!("../sql/bus_tables.sql");

#[derive(Insertable)]
#[diesel(table_name = outbox)]
struct NewOutboxRow {
    id: Uuid,
    exchange: String,
    routing_key: String,
    message_type: String,
    payload: serde_json::Value,
    headers: serde_json::Value,
}

/// Records `data` for publication; call inside the transaction that makes
/// the change. Returns the message id.
pub fn enqueue<T: Contract>(conn: &mut PgConnection, data: T) -> QueryResult<Uuid> {
    let envelope = Envelope::new(data);
    let (exchange, routing_key) = match T::ROUTE {
        Route::Event => (EVENTS, T::TYPE),
        Route::Job { queue } => (JOBS, queue),
    };
    let payload = serde_json::to_value(&envelope)
        .map_err(|err| diesel::result::Error::SerializationError(Box::new(err)))?;
    let headers = serde_json::to_value(StringHeaders::current_trace())
        .map_err(|err| diesel::result::Error::SerializationError(Box::new(err)))?;
    diesel::insert_into(outbox::table)
        .values(NewOutboxRow {
            id: envelope.id,
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
            message_type: T::TYPE.to_string(),
            payload,
            headers,
        })
        .execute(conn)?;
    Ok(envelope.id)
}

/// Rows not yet published (for tests and the readiness report).
pub fn pending_count(conn: &mut PgConnection) -> QueryResult<i64> {
    outbox::table
        .filter(outbox::published_at.is_null())
        .count()
        .get_result(conn)
}

#[derive(QueryableByName, Debug)]
struct ClaimedRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    exchange: String,
    #[diesel(sql_type = Text)]
    routing_key: String,
    #[diesel(sql_type = Text)]
    message_type: String,
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    payload: serde_json::Value,
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    headers: serde_json::Value,
}

const CLAIM_SQL: &str =
    "UPDATE outbox SET locked_until = now() + interval '30 seconds', attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM outbox WHERE published_at IS NULL \
       AND (locked_until IS NULL OR locked_until < now()) \
       ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) \
     RETURNING id, seq, exchange, routing_key, message_type, payload, headers";

/// The relay's own bookkeeping need not wait for the WAL flush: if the
/// database loses the last moments of it, a lease lapses or a row is
/// published again, and consumers deduplicate. The writes that carry the
/// business change stay synchronous.
fn relaxed<T>(
    conn: &mut PgConnection,
    work: impl FnOnce(&mut PgConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    conn.transaction(|conn| {
        diesel::sql_query("SET LOCAL synchronous_commit = off").execute(conn)?;
        work(conn)
    })
}

fn claim(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<ClaimedRow>> {
    let mut rows: Vec<ClaimedRow> = relaxed(conn, |conn| {
        diesel::sql_query(CLAIM_SQL)
            .bind::<BigInt, _>(limit)
            .load(conn)
    })?;
    rows.sort_by_key(|row| row.seq);
    Ok(rows)
}

fn mark_published(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE outbox SET published_at = now(), locked_until = NULL, last_error = NULL WHERE id = ANY($1)",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .execute(conn)
}

fn release(conn: &mut PgConnection, ids: &[Uuid], error: &str) -> QueryResult<usize> {
    diesel::sql_query("UPDATE outbox SET locked_until = NULL, last_error = $2 WHERE id = ANY($1)")
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Text, _>(error)
        .execute(conn)
}

fn purge_published(conn: &mut PgConnection, retention: Duration) -> QueryResult<usize> {
    diesel::sql_query("DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)")
        .bind::<diesel::sql_types::Double, _>(retention.as_secs_f64())
        .execute(conn)
}

/// Wakes the relay right after a commit, so messages leave without waiting
/// for the next poll.
#[derive(Clone, Default, Debug)]
pub struct RelayHandle(Arc<Notify>);

impl RelayHandle {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

pub struct OutboxRelay {
    pool: PgPool,
    broker: Broker,
    handle: RelayHandle,
    poll_interval: Duration,
    batch_size: i64,
    retention: Duration,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("database: {0}")]
    Db(#[from] DbError),
}

impl OutboxRelay {
    pub fn new(pool: PgPool, broker: Broker) -> Self {
        Self {
            pool,
            broker,
            handle: RelayHandle::default(),
            poll_interval: Duration::from_millis(250),
            batch_size: 200,
            retention: Duration::from_secs(24 * 3600),
        }
    }

    pub fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }

    /// Runs until `shutdown`; reconnects with backoff on any broker failure.
    pub async fn run(self, shutdown: Shutdown) {
        let mut backoff = Backoff::default();
        while !shutdown.is_triggered() {
            match self.relay_while_connected(&shutdown, &mut backoff).await {
                Ok(()) => break,
                Err(err) => {
                    self.broker.status.set(false);
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "outbox relay interrupted");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait() => break,
                    }
                }
            }
        }
        self.broker.status.set(false);
    }

    async fn relay_while_connected(
        &self,
        shutdown: &Shutdown,
        backoff: &mut Backoff,
    ) -> Result<(), RelayError> {
        let connection = self.broker.connect().await?;
        let publisher = Publisher::open(&connection).await?;
        topology::declare_publishing(publisher.channel(), &self.broker.names).await?;
        self.broker.status.set(true);
        backoff.reset();
        tracing::info!(broker = %self.broker.redacted_url(), "outbox relay connected");
        let mut last_purge = Instant::now();
        loop {
            let published = self.relay_batch(&publisher).await?;
            if last_purge.elapsed() > Duration::from_secs(600) {
                let retention = self.retention;
                db::run(&self.pool, move |conn| {
                    purge_published(conn, retention).map_err(DbError::from)
                })
                .await?;
                last_purge = Instant::now();
            }
            if published as i64 >= self.batch_size {
                continue;
            }
            if !connection.status().connected() {
                return Err(RelayError::Broker(lapin::Error::InvalidConnectionState(
                    connection.status().state(),
                )));
            }
            tokio::select! {
                _ = shutdown.wait() => {
                    let _ = connection.close(200, "shutting down").await;
                    return Ok(());
                }
                _ = self.handle.0.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    /// Publishes one claimed batch; returns how many were published.
    async fn relay_batch(&self, publisher: &Publisher) -> Result<usize, RelayError> {
        let limit = self.batch_size;
        let rows = db::run(&self.pool, move |conn| {
            claim(conn, limit).map_err(DbError::from)
        })
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let names = &self.broker.names;
        let mut pending: Vec<(Uuid, Result<PendingConfirm, String>)> =
            Vec::with_capacity(rows.len());
        for row in rows {
            let headers: StringHeaders = serde_json::from_value(row.headers).unwrap_or_default();
            let message = OutgoingMessage {
                mandatory: row.exchange == JOBS,
                exchange: names.physical(&row.exchange),
                routing_key: row.routing_key,
                message_id: row.id.to_string(),
                message_type: row.message_type,
                payload: row.payload.to_string().into_bytes(),
                headers: headers.into_table(),
            };
            let sent = publisher.send(&message).await.map_err(|e| e.to_string());
            pending.push((row.id, sent));
        }
        let mut published = Vec::new();
        let mut failed = Vec::new();
        let mut last_error = String::new();
        for (id, sent) in pending {
            let outcome = match sent {
                Ok(confirm) => confirm.wait().await.map_err(|e| e.to_string()),
                Err(err) => Err(err),
            };
            match outcome {
                Ok(()) => published.push(id),
                Err(err) => {
                    last_error = err;
                    failed.push(id);
                }
            }
        }
        let count = published.len();
        let failed_any = !failed.is_empty();
        let error = last_error.clone();
        db::run(&self.pool, move |conn| {
            relaxed(conn, |conn| {
                if !published.is_empty() {
                    mark_published(conn, &published)?;
                }
                if !failed.is_empty() {
                    release(conn, &failed, &error)?;
                }
                Ok::<_, diesel::result::Error>(())
            })
            .map_err(DbError::from)
        })
        .await?;
        if failed_any {
            tracing::warn!(error = %last_error, "some outbox messages were not confirmed; they will be retried");
        }
        Ok(count)
    }
}
