//! Point reads by key, coalesced into one query per batch.
//!
//! Under load many requests read one row each by primary key at the same
//! moment (`GET /me` at 64 connections). Alone, each read costs a trip
//! through the blocking pool, a round trip to the server and a wakeup of a
//! server process; measured, that overhead took more CPU than the reads.
//! Here reads that arrive while earlier ones are running wait together and
//! leave as one query (`id = ANY($1)`, say) when a slot frees. Nothing waits on a
//! timer: an idle service sends each read at once, as a batch of one.
//!
//! Every read starts after its request arrived (a request never joins a
//! query already sent), so it sees every write committed before then, as a
//! read of its own would.
//!
//! Failures keep their kind: a query that fails is a [`DbError::Failed`] (a
//! 500) for the reads it carried; a database that is unreachable is
//! [`DbError::Unavailable`] for them and for every read that was already
//! waiting when that was learnt, so an outage fails the queue at once
//! rather than a pool timeout per batch.

use super::{read, DbError, PgPool};
use diesel::{PgConnection, QueryResult};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument;

/// Reads the rows of `keys` (each at most once); keys without a row are
/// simply absent from the result.
pub type Fetch<K, V> =
    Arc<dyn Fn(&mut PgConnection, &[K]) -> QueryResult<Vec<(K, V)>> + Send + Sync>;

/// How many queries may run at once, and how many waiting reads one query
/// may answer.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub queries_in_flight: usize,
    pub reads_per_query: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            queries_in_flight: 4,
            reads_per_query: 128,
        }
    }
}

struct Waiting<K, V> {
    key: K,
    arrived: Instant,
    reply: oneshot::Sender<Result<Option<V>, DbError>>,
}

/// When a query last found the database unreachable, and why.
type Outage = Arc<Mutex<Option<(Instant, String)>>>;

/// A handle to the coalescing reader; cheap to clone. The reader runs on
/// the runtime that started it and stops when the last handle is dropped.
pub struct BatchedReads<K, V> {
    queue: mpsc::UnboundedSender<Waiting<K, V>>,
}

impl<K, V> Clone for BatchedReads<K, V> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<K, V> BatchedReads<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// Starts the reader on the current tokio runtime.
    pub fn start<F>(pool: PgPool, limits: BatchLimits, fetch: F) -> Self
    where
        F: Fn(&mut PgConnection, &[K]) -> QueryResult<Vec<(K, V)>> + Send + Sync + 'static,
    {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(pool, limits, Arc::new(fetch), waiting));
        Self { queue }
    }

    /// The row of `key`, if there is one.
    pub async fn get(&self, key: K) -> Result<Option<V>, DbError> {
        let stopped = || DbError::Unavailable("the batched reader has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Waiting {
                key,
                arrived: Instant::now(),
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn dispatch<K, V>(
    pool: PgPool,
    limits: BatchLimits,
    fetch: Fetch<K, V>,
    mut waiting: mpsc::UnboundedReceiver<Waiting<K, V>>,
) where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.queries_in_flight.max(1)));
    let outage: Outage = Arc::default();
    loop {
        // A free slot first, then whatever has queued up meanwhile: while
        // every slot is busy, arrivals gather into the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = Vec::with_capacity(limits.reads_per_query.max(1));
        let mut next = Some(first);
        while let Some(read) = next.take() {
            match failed_before(&outage, &read) {
                Some(reason) => {
                    let _ = read.reply.send(Err(DbError::Unavailable(reason)));
                }
                None => batch.push(read),
            }
            if batch.len() < limits.reads_per_query.max(1) {
                next = waiting.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let pool = pool.clone();
        let fetch = fetch.clone();
        let outage = outage.clone();
        tokio::spawn(async move {
            answer(&pool, fetch, batch, &outage).await;
            drop(slot);
        });
    }
}

/// The outage a read waited through: the database was found unreachable
/// after the read arrived.
fn failed_before<K, V>(outage: &Outage, read: &Waiting<K, V>) -> Option<String> {
    let outage = outage.lock().ok()?;
    let (at, reason) = outage.as_ref()?;
    (*at > read.arrived).then(|| reason.clone())
}

async fn answer<K, V>(pool: &PgPool, fetch: Fetch<K, V>, batch: Vec<Waiting<K, V>>, outage: &Outage)
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    let keys: Vec<K> = {
        let mut seen = HashSet::with_capacity(batch.len());
        batch
            .iter()
            .filter(|waiting| seen.insert(&waiting.key))
            .map(|waiting| waiting.key.clone())
            .collect()
    };
    let span = tracing::debug_span!("batched read", keys = keys.len());
    let rows = read(pool, move |conn| fetch(conn, &keys))
        .instrument(span)
        .await;
    match rows {
        Ok(rows) => {
            let found: HashMap<K, V> = rows.into_iter().collect();
            for waiting in batch {
                let row = found.get(&waiting.key).cloned();
                let _ = waiting.reply.send(Ok(row));
            }
        }
        Err(err) => {
            let message = err.to_string();
            let unavailable = err.is_unavailable();
            if unavailable {
                tracing::warn!(error = %message, "batched read: database unavailable");
                if let Ok(mut outage) = outage.lock() {
                    *outage = Some((Instant::now(), message.clone()));
                }
            } else {
                tracing::error!(error = %message, "batched read failed");
            }
            for waiting in batch {
                let failure = if unavailable {
                    DbError::Unavailable(message.clone())
                } else {
                    DbError::Failed(message.clone())
                };
                let _ = waiting.reply.send(Err(failure));
            }
        }
    }
}
