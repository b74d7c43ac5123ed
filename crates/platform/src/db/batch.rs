//! Work on the database coalesced into one query (or one transaction)
//! per batch: point reads by key ([`BatchedReads`]) and writes
//! ([`BatchedWrites`]).
//!
//! Under load many requests read one row each by primary key at the same
//! moment (`GET /me` at 64 connections), or write one row each (chat
//! messages). Alone, each costs a trip through the blocking pool, a round
//! trip to the server and a wakeup of a server process, and each write a
//! commit (a WAL flush); measured, that overhead took more CPU than the
//! work. Here work that arrives while earlier batches are running waits
//! together and leaves as one batch when a slot frees. Nothing waits on a
//! timer: an idle service sends each item at once, as a batch of one.
//!
//! Every item starts after its request arrived (a request never joins a
//! batch already sent), so it sees every write committed before then, as
//! work of its own would.
//!
//! Failures keep their kind: a batch that fails is a [`DbError::Failed`]
//! (a 500) for the items it carried; a database that is unreachable is
//! [`DbError::Unavailable`] for them and for every item that was already
//! waiting when that was learnt, so an outage fails the queue at once
//! rather than a pool timeout per batch.

use super::{read, run, DbError, PgPool};
use diesel::Connection;
use diesel::{PgConnection, QueryResult};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument;

/// Reads the rows of `keys` (each at most once); keys without a row are
/// simply absent from the result.
pub type Fetch<K, V> =
    Arc<dyn Fn(&mut PgConnection, &[K]) -> QueryResult<Vec<(K, V)>> + Send + Sync>;

/// How many batches may run at once, and how many waiting items one batch
/// may carry.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub batches_in_flight: usize,
    pub items_per_batch: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            batches_in_flight: 4,
            items_per_batch: 128,
        }
    }
}

struct Waiting<T, R> {
    item: T,
    arrived: Instant,
    reply: Reply<R>,
}

type Reply<R> = oneshot::Sender<Result<R, DbError>>;

/// When a query last found the database unreachable, and why.
type Outage = Arc<Mutex<Option<(Instant, String)>>>;

/// A handle to the coalescing reader; cheap to clone. The reader runs on
/// the runtime that started it and stops when the last handle is dropped.
pub struct BatchedReads<K, V> {
    queue: mpsc::UnboundedSender<Waiting<K, Option<V>>>,
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
        let fetch: Fetch<K, V> = Arc::new(fetch);
        let queue = gather(limits, move |batch, outage| {
            answer_reads(pool.clone(), fetch.clone(), batch, outage)
        });
        Self { queue }
    }

    /// The row of `key`, if there is one.
    pub async fn get(&self, key: K) -> Result<Option<V>, DbError> {
        submit(&self.queue, key, "the batched reader").await
    }
}

/// Applies a batch of items in one transaction: one output per item, in
/// the order of `items`.
pub type Apply<T, R> = Arc<dyn Fn(&mut PgConnection, &[T]) -> QueryResult<Vec<R>> + Send + Sync>;

/// A handle to the coalescing writer; cheap to clone. The writer runs on
/// the runtime that started it and stops when the last handle is dropped.
///
/// A batch is one transaction, so one item's failure fails the batch:
/// `apply` must answer an item it cannot apply (a conflict, a missing
/// row) with an output that says so, not with an error. And since a batch
/// holds the locks of all its items until it commits, `apply` should take
/// a lock that another transaction holds only without waiting (`SKIP
/// LOCKED`, say), answering "busy" for that item, or it risks a deadlock.
pub struct BatchedWrites<T, R> {
    queue: mpsc::UnboundedSender<Waiting<T, R>>,
}

impl<T, R> Clone for BatchedWrites<T, R> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T, R> BatchedWrites<T, R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    /// Starts the writer on the current tokio runtime.
    pub fn start<F>(pool: PgPool, limits: BatchLimits, apply: F) -> Self
    where
        F: Fn(&mut PgConnection, &[T]) -> QueryResult<Vec<R>> + Send + Sync + 'static,
    {
        let apply: Apply<T, R> = Arc::new(apply);
        let queue = gather(limits, move |batch, outage| {
            answer_writes(pool.clone(), apply.clone(), batch, outage)
        });
        Self { queue }
    }

    /// Applies `item` with whatever else is waiting, once their
    /// transaction has committed.
    pub async fn apply(&self, item: T) -> Result<R, DbError> {
        submit(&self.queue, item, "the batched writer").await
    }
}

async fn submit<T, R>(
    queue: &mpsc::UnboundedSender<Waiting<T, R>>,
    item: T,
    what: &str,
) -> Result<R, DbError> {
    let stopped = || DbError::Unavailable(format!("{what} has stopped"));
    let (reply, answer) = oneshot::channel();
    queue
        .send(Waiting {
            item,
            arrived: Instant::now(),
            reply,
        })
        .map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// Starts the gatherer: items that wait while every slot is busy go, up
/// to the limit, to `run` together.
fn gather<T, R, F, Fut>(limits: BatchLimits, run: F) -> mpsc::UnboundedSender<Waiting<T, R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Vec<Waiting<T, R>>, Outage) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (queue, waiting) = mpsc::unbounded_channel();
    tokio::spawn(dispatch(limits, run, waiting));
    queue
}

async fn dispatch<T, R, F, Fut>(
    limits: BatchLimits,
    run: F,
    mut waiting: mpsc::UnboundedReceiver<Waiting<T, R>>,
) where
    F: Fn(Vec<Waiting<T, R>>, Outage) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.batches_in_flight.max(1)));
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
        let mut batch = Vec::with_capacity(limits.items_per_batch.max(1));
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match failed_before(&outage, &item) {
                Some(reason) => {
                    let _ = item.reply.send(Err(DbError::Unavailable(reason)));
                }
                None => batch.push(item),
            }
            if batch.len() < limits.items_per_batch.max(1) {
                next = waiting.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let work = run(batch, outage.clone());
        tokio::spawn(async move {
            work.await;
            drop(slot);
        });
    }
}

/// The outage an item waited through: the database was found unreachable
/// after the item arrived.
fn failed_before<T, R>(outage: &Outage, item: &Waiting<T, R>) -> Option<String> {
    let outage = outage.lock().ok()?;
    let (at, reason) = outage.as_ref()?;
    (*at > item.arrived).then(|| reason.clone())
}

async fn answer_reads<K, V>(
    pool: PgPool,
    fetch: Fetch<K, V>,
    batch: Vec<Waiting<K, Option<V>>>,
    outage: Outage,
) where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    let keys: Vec<K> = {
        let mut seen = HashSet::with_capacity(batch.len());
        batch
            .iter()
            .filter(|waiting| seen.insert(&waiting.item))
            .map(|waiting| waiting.item.clone())
            .collect()
    };
    let span = tracing::debug_span!("batched read", keys = keys.len());
    let rows = read(&pool, move |conn| fetch(conn, &keys))
        .instrument(span)
        .await;
    match rows {
        Ok(rows) => {
            let found: HashMap<K, V> = rows.into_iter().collect();
            for waiting in batch {
                let row = found.get(&waiting.item).cloned();
                let _ = waiting.reply.send(Ok(row));
            }
        }
        Err(err) => fail(
            batch.into_iter().map(|waiting| waiting.reply),
            &err,
            &outage,
            "batched read",
        ),
    }
}

async fn answer_writes<T, R>(
    pool: PgPool,
    apply: Apply<T, R>,
    batch: Vec<Waiting<T, R>>,
    outage: Outage,
) where
    T: Send + 'static,
    R: Send + 'static,
{
    let (items, replies): (Vec<T>, Vec<Reply<R>>) = batch
        .into_iter()
        .map(|waiting| (waiting.item, waiting.reply))
        .unzip();
    let expected = items.len();
    let span = tracing::debug_span!("batched write", items = expected);
    let outputs = run(&pool, move |conn| {
        conn.transaction(|conn| apply(conn, &items))
            .map_err(DbError::from)
    })
    .instrument(span)
    .await;
    match outputs {
        Ok(outputs) if outputs.len() == expected => {
            for (reply, output) in replies.into_iter().zip(outputs) {
                let _ = reply.send(Ok(output));
            }
        }
        Ok(outputs) => {
            let err = DbError::Failed(format!(
                "a batch of {expected} writes gave {} results",
                outputs.len()
            ));
            fail(replies, &err, &outage, "batched write");
        }
        Err(err) => fail(replies, &err, &outage, "batched write"),
    }
}

/// Answers every reply with `err`; an unreachable database is remembered
/// as an outage, which fails the items already waiting too.
fn fail<R>(
    replies: impl IntoIterator<Item = Reply<R>>,
    err: &DbError,
    outage: &Outage,
    what: &str,
) {
    let message = err.to_string();
    let unavailable = err.is_unavailable();
    if unavailable {
        tracing::warn!(error = %message, "{what}: database unavailable");
        if let Ok(mut outage) = outage.lock() {
            *outage = Some((Instant::now(), message.clone()));
        }
    } else {
        tracing::error!(error = %message, "{what} failed");
    }
    for reply in replies {
        let failure = if unavailable {
            DbError::Unavailable(message.clone())
        } else {
            DbError::Failed(message.clone())
        };
        let _ = reply.send(Err(failure));
    }
}
