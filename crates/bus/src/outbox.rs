//! The transactional outbox. A service writes its event or job into the
//! `outbox` table in the same transaction as the change it describes; the
//! relay publishes pending rows with publisher confirms and marks them sent.
//! A broker outage delays messages and loses none. A batch is claimed with
//! `FOR UPDATE SKIP LOCKED` in a transaction that stays open until its
//! confirms are in and the rows are marked, so several replicas (and the
//! batches one relay has in flight) relay side by side without publishing a
//! row twice in the normal case; after a crash between publish and mark the
//! transaction rolls back and the row is published again, which consumers
//! absorb by deduplicating on the message id. A row the broker refused waits
//! `RETRY_AFTER` (`locked_until`) before its next attempt.

use crate::broker::{Backoff, Broker};
use crate::headers::StringHeaders;
use crate::publisher::{OutgoingMessage, PendingConfirm, Publisher};
use crate::schema::outbox;
use crate::topology::{Topology, EVENTS, JOBS};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Uuid as SqlUuid};
use domain::messages::{Contract, Envelope, Route};
use platform::db::blocking;
use platform::db::{self, DbError, PgPool, PgPooled};
use platform::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;
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
    #[diesel(sql_type = Text)]
    exchange: String,
    #[diesel(sql_type = Text)]
    routing_key: String,
    #[diesel(sql_type = Text)]
    message_type: String,
    /// As text: it goes out as bytes, with no need to parse it here.
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    headers: serde_json::Value,
}

const CLAIM_SQL: &str =
    "SELECT id, exchange, routing_key, message_type, payload::text AS payload, headers FROM outbox \
     WHERE published_at IS NULL AND (locked_until IS NULL OR locked_until < now()) \
     ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED";

/// The claim walks `outbox_pending` in `seq` order. A bitmap scan (the
/// planner's choice while statistics lag behind a burst) visits every
/// entry left by rows published since the last vacuum, thousands of heap
/// pages per claim; an index scan marks those entries dead as it passes, so
/// the next claim skips them.
const CLAIM_SETTINGS: &str = "SET LOCAL synchronous_commit = off; \
     SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off";

/// A refused row's pause before the next attempt.
const RETRY_AFTER_SECS: f64 = 5.0;

/// Longest wait for the broker's confirms of a batch; the rows stay locked
/// meanwhile, so a broker that stops answering must not hold them forever.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Rows claimed by an open transaction on `conn`: locked until it ends.
struct Claim {
    conn: PgPooled,
    rows: Vec<ClaimedRow>,
}

/// Opens the batch's transaction and locks up to `limit` pending rows in
/// order. The relay's bookkeeping need not wait for the WAL flush: if the
/// database loses the last moments of it, a row is published again, and
/// consumers deduplicate. The writes that carry the business change stay
/// synchronous.
fn claim(mut conn: PgPooled, limit: i64) -> QueryResult<Claim> {
    AnsiTransactionManager::begin_transaction(&mut *conn)?;
    let claimed = conn.batch_execute(CLAIM_SETTINGS).and_then(|_| {
        diesel::sql_query(CLAIM_SQL)
            .bind::<BigInt, _>(limit)
            .load::<ClaimedRow>(&mut *conn)
    });
    match claimed {
        Ok(rows) if !rows.is_empty() => Ok(Claim { conn, rows }),
        other => {
            AnsiTransactionManager::rollback_transaction(&mut *conn)?;
            other.map(|rows| Claim { conn, rows })
        }
    }
}

/// Marks the confirmed rows published, defers the refused ones, and ends
/// the batch's transaction. If this fails, the transaction rolls back (the
/// pool drops a connection left in a transaction) and the rows go out again.
fn finish(
    conn: &mut PgConnection,
    published: &[Uuid],
    failed: &[Uuid],
    error: &str,
) -> QueryResult<()> {
    if !published.is_empty() {
        diesel::sql_query(
            "UPDATE outbox SET published_at = now(), attempts = attempts + 1, \
             locked_until = NULL, last_error = NULL WHERE id = ANY($1)",
        )
        .bind::<Array<SqlUuid>, _>(published)
        .execute(conn)?;
    }
    if !failed.is_empty() {
        diesel::sql_query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
             locked_until = now() + make_interval(secs => $3) WHERE id = ANY($1)",
        )
        .bind::<Array<SqlUuid>, _>(failed)
        .bind::<Text, _>(error)
        .bind::<diesel::sql_types::Double, _>(RETRY_AFTER_SECS)
        .execute(conn)?;
    }
    AnsiTransactionManager::commit_transaction(conn)
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

/// Sent batches awaiting their confirms at once.
const BATCHES_IN_FLIGHT: usize = 3;

pub struct OutboxRelay {
    pool: PgPool,
    broker: Broker,
    /// The service's queues and bindings, declared on every connect.
    topology: Topology,
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
    /// A relay of the outbox in `pool`'s database that declares `topology`
    /// (the service's own queues, and the job queues it sends to) whenever
    /// it connects.
    pub fn new(pool: PgPool, broker: Broker, topology: Topology) -> Self {
        Self {
            pool,
            broker,
            topology,
            handle: RelayHandle::default(),
            poll_interval: Duration::from_millis(250),
            batch_size: 200,
            retention: Duration::from_secs(24 * 3600),
        }
    }

    pub fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }

    /// Runs until `shutdown`; reconnects with backoff on a broker failure.
    /// A database failure keeps the broker connection and waits for the
    /// database: the two outages are told apart, in the logs and in
    /// readiness.
    pub async fn run(self, shutdown: Shutdown) {
        let link = self.broker.status.link("outbox relay");
        let mut backoff = Backoff::default();
        while !shutdown.is_triggered() {
            match self
                .relay_while_connected(&shutdown, &mut backoff, &link)
                .await
            {
                Ok(()) => break,
                Err(err) => {
                    link.set(false);
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "outbox relay lost the broker");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait() => break,
                    }
                }
            }
        }
        link.set(false);
    }

    async fn relay_while_connected(
        &self,
        shutdown: &Shutdown,
        backoff: &mut Backoff,
        link: &crate::broker::BrokerLink,
    ) -> Result<(), lapin::Error> {
        let connection = self.broker.connect().await?;
        let publisher = Publisher::open(&connection).await?;
        self.topology
            .declare(publisher.channel(), &self.broker.names)
            .await?;
        link.set(true);
        backoff.reset();
        tracing::info!(broker = %self.broker.redacted_url(), "outbox relay connected");
        let mut last_purge = Instant::now();
        let mut database = DatabaseWait::default();
        // Batches whose confirms are awaited while the next one is claimed
        // and sent: the broker's fsync for one overlaps the work of the next.
        let mut unconfirmed = JoinSet::new();
        loop {
            let full = match self
                .relay_batch(&publisher, &mut unconfirmed, &mut last_purge)
                .await
            {
                Ok(full) => {
                    database.recovered();
                    full
                }
                Err(RelayError::Broker(err)) => return Err(err),
                Err(RelayError::Db(err)) => {
                    if !connection.status().connected() {
                        return Err(lapin::Error::InvalidConnectionState(
                            connection.status().state(),
                        ));
                    }
                    let delay = database.failed(&err);
                    tokio::select! {
                        _ = shutdown.wait() => {
                            crate::broker::close(connection, "shutting down").await;
                            return Ok(());
                        }
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            };
            if full {
                continue;
            }
            if !connection.status().connected() {
                return Err(lapin::Error::InvalidConnectionState(
                    connection.status().state(),
                ));
            }
            tokio::select! {
                _ = shutdown.wait() => {
                    crate::broker::close(connection, "shutting down").await;
                    return Ok(());
                }
                _ = self.handle.0.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    /// Sends one batch and settles what is due; true if the batch was full
    /// (more rows are likely waiting).
    async fn relay_batch(
        &self,
        publisher: &Publisher,
        unconfirmed: &mut JoinSet<Result<usize, RelayError>>,
        last_purge: &mut Instant,
    ) -> Result<bool, RelayError> {
        let sent = self.send_batch(publisher).await?;
        let full = sent
            .as_ref()
            .is_some_and(|s| s.confirms.len() as i64 >= self.batch_size);
        if let Some(sent) = sent {
            unconfirmed.spawn(settle(sent));
        }
        while unconfirmed.len() >= BATCHES_IN_FLIGHT || (!full && !unconfirmed.is_empty()) {
            if let Some(settled) = unconfirmed.join_next().await {
                settled.map_err(|err| DbError::Unavailable(err.to_string()))??;
            }
        }
        if last_purge.elapsed() > Duration::from_secs(600) {
            let retention = self.retention;
            db::run(&self.pool, move |conn| {
                purge_published(conn, retention).map_err(DbError::from)
            })
            .await?;
            *last_purge = Instant::now();
        }
        Ok(full)
    }

    /// Claims a batch and sends it; the confirms are awaited by [`settle`].
    async fn send_batch(&self, publisher: &Publisher) -> Result<Option<Sent>, RelayError> {
        let limit = self.batch_size;
        let pool = self.pool.clone();
        let Claim { conn, rows } = blocking(move || {
            let conn = pool
                .get()
                .map_err(|err| DbError::Unavailable(err.to_string()))?;
            claim(conn, limit).map_err(DbError::from)
        })
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let names = &self.broker.names;
        let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
        let messages: Vec<OutgoingMessage> = rows
            .into_iter()
            .map(|row| {
                let headers: StringHeaders =
                    serde_json::from_value(row.headers).unwrap_or_default();
                OutgoingMessage {
                    mandatory: row.exchange == JOBS,
                    exchange: names.physical(&row.exchange),
                    routing_key: row.routing_key,
                    message_id: row.id.to_string(),
                    message_type: row.message_type,
                    payload: row.payload.into_bytes(),
                    headers: headers.into_table(),
                }
            })
            .collect();
        let confirms = publisher.send_all(&messages).await;
        Ok(Some(Sent {
            conn,
            confirms: ids
                .into_iter()
                .zip(confirms)
                .map(|(id, confirm)| (id, confirm.map_err(|e| e.to_string())))
                .collect(),
        }))
    }
}

/// The relay's view of a database outage: one warning when it starts, one
/// line when it ends, and a growing pause between attempts meanwhile.
#[derive(Default)]
struct DatabaseWait {
    backoff: Backoff,
    failing: bool,
}

impl DatabaseWait {
    fn failed(&mut self, err: &DbError) -> Duration {
        if !self.failing {
            tracing::warn!(error = %err, "outbox relay cannot reach the database; waiting for it");
            self.failing = true;
        }
        self.backoff.next_delay()
    }

    fn recovered(&mut self) {
        if self.failing {
            tracing::info!("outbox relay reaches the database again");
            self.failing = false;
            self.backoff.reset();
        }
    }
}

/// A batch sent to the broker: each row with its confirm (or why it was not
/// sent), and the transaction that holds the rows.
struct Sent {
    conn: PgPooled,
    confirms: Vec<(Uuid, Result<PendingConfirm, String>)>,
}

/// Waits for the confirms of a sent batch, then marks the confirmed rows
/// published and defers the others. Returns how many were published.
async fn settle(sent: Sent) -> Result<usize, RelayError> {
    let Sent { mut conn, confirms } = sent;
    let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
    let mut published = Vec::with_capacity(confirms.len());
    let mut failed = Vec::new();
    let mut last_error = String::new();
    for (id, confirm) in confirms {
        let outcome = match confirm {
            Ok(confirm) => match tokio::time::timeout_at(deadline, confirm.wait()).await {
                Ok(confirmed) => confirmed.map_err(|e| e.to_string()),
                Err(_) => Err("no confirm from the broker in time".to_string()),
            },
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
    blocking(move || finish(&mut conn, &published, &failed, &error).map_err(DbError::from)).await?;
    if failed_any {
        tracing::warn!(error = %last_error, "some outbox messages were not confirmed; they will be retried");
    }
    Ok(count)
}
