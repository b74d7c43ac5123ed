//! Coalesced writes against a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer};
use platform::db::batch::{BatchLimits, BatchedWrites};
use platform::db::DbError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use testkit::TestDatabase;

/// A value whose write first sleeps, to hold a batch in flight.
const SLOW: i32 = 0;
/// A value whose write fails (the table refuses negatives).
const BROKEN: i32 = -1;

#[derive(QueryableByName)]
struct Tx {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Inserts each value; answers each with its transaction's id.
fn insert(conn: &mut PgConnection, values: &[i32]) -> QueryResult<Vec<i64>> {
    if values.contains(&SLOW) {
        diesel::sql_query("SELECT pg_sleep(0.3)").execute(conn)?;
    }
    let mut answers = Vec::with_capacity(values.len());
    for value in values {
        diesel::sql_query("INSERT INTO written (value) VALUES ($1)")
            .bind::<Integer, _>(*value)
            .execute(conn)?;
        let tx: Tx = diesel::sql_query("SELECT txid_current() AS id").get_result(conn)?;
        answers.push(tx.id);
    }
    Ok(answers)
}

fn database() -> TestDatabase {
    let db = TestDatabase::create(
        "platform",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
        |_| Ok(()),
    )
    .unwrap();
    db.connect()
        .unwrap()
        .batch_execute("CREATE TABLE written (value INT NOT NULL CHECK (value >= 0))")
        .unwrap();
    db
}

fn writer(db: &TestDatabase) -> Arc<BatchedWrites<i32, i64>> {
    let limits = BatchLimits {
        batches_in_flight: 1,
        items_per_batch: 128,
    };
    Arc::new(BatchedWrites::start(
        platform::db::pool(db.url(), 2),
        limits,
        insert,
    ))
}

/// Starts the slow write, then `values` while it runs.
async fn behind_a_slow_one(
    writes: &Arc<BatchedWrites<i32, i64>>,
    values: impl IntoIterator<Item = i32>,
) -> (Result<i64, DbError>, Vec<Result<i64, DbError>>) {
    let slow = {
        let writes = writes.clone();
        tokio::spawn(async move { writes.apply(SLOW).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rest = futures_util::future::join_all(values.into_iter().map(|value| {
        let writes = writes.clone();
        async move { writes.apply(value).await }
    }))
    .await;
    (slow.await.unwrap(), rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_arrive_together_commit_as_one_transaction() {
    let db = database();
    let writes = writer(&db);
    let (slow, rest) = behind_a_slow_one(&writes, 1..=20).await;
    let rest: Vec<i64> = rest.into_iter().map(Result::unwrap).collect();
    assert_ne!(slow.unwrap(), rest[0], "the slow write went alone");
    assert!(
        rest.iter().all(|tx| *tx == rest[0]),
        "the twenty that waited went together: {rest:?}"
    );
    let count = db.count("SELECT count(*) AS n FROM written");
    assert_eq!(count, 21, "every write is there once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_fails_its_own_writes_and_keeps_none_of_them() {
    let db = database();
    let writes = writer(&db);
    let (slow, rest) = behind_a_slow_one(&writes, [1, BROKEN, 2]).await;
    assert!(slow.is_ok());
    for result in &rest {
        assert!(
            matches!(result, Err(DbError::Failed(_))),
            "each write of the failed batch fails: {result:?}"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) AS n FROM written"),
        1,
        "only the slow write, in a batch of its own, is kept"
    );
    // The writer goes on.
    assert!(writes.apply(3).await.is_ok());
    assert_eq!(db.count("SELECT count(*) AS n FROM written"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_unavailable() {
    let writes: BatchedWrites<i32, i64> = BatchedWrites::start(
        platform::db::pool("postgres://postgres@127.0.0.1:1/none", 1),
        BatchLimits::default(),
        insert,
    );
    let result = writes.apply(1).await;
    assert!(matches!(result, Err(DbError::Unavailable(_))), "{result:?}");
}
