//! Coalesced point reads against a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, Integer, Text};
use platform::db::batch::{BatchLimits, BatchedReads};
use platform::db::DbError;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use testkit::TestDatabase;

/// A key whose query first sleeps, to hold a batch in flight.
const SLOW: i32 = 0;
/// A key whose query fails.
const BROKEN: i32 = -1;

#[derive(QueryableByName)]
struct Item {
    #[diesel(sql_type = Integer)]
    id: i32,
    #[diesel(sql_type = Text)]
    name: String,
}

fn read(conn: &mut PgConnection, keys: &[i32]) -> QueryResult<Vec<(i32, String)>> {
    if keys.contains(&SLOW) {
        diesel::sql_query("SELECT pg_sleep(0.3)").execute(conn)?;
    }
    if keys.contains(&BROKEN) {
        diesel::sql_query("SELECT * FROM no_such_table").execute(conn)?;
    }
    let items: Vec<Item> = diesel::sql_query("SELECT id, name FROM items WHERE id = ANY($1)")
        .bind::<Array<Integer>, _>(keys)
        .load(conn)?;
    Ok(items.into_iter().map(|item| (item.id, item.name)).collect())
}

/// Key counts of the queries `counted_read` sent (one test uses it).
static BATCHES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn counted_read(conn: &mut PgConnection, keys: &[i32]) -> QueryResult<Vec<(i32, String)>> {
    BATCHES.lock().unwrap().push(keys.len());
    read(conn, keys)
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
        .batch_execute(
            "CREATE TABLE items (id INT PRIMARY KEY, name TEXT NOT NULL);
             INSERT INTO items SELECT n, 'item ' || n FROM generate_series(1, 100) AS n",
        )
        .unwrap();
    db
}

/// A reader of `items` with the default limits.
fn reader(db: &TestDatabase) -> BatchedReads<i32, String> {
    BatchedReads::start(
        platform::db::pool(db.url(), 2),
        BatchLimits::default(),
        read,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_arrive_together_leave_as_one_query() {
    let db = database();
    let limits = BatchLimits {
        batches_in_flight: 1,
        items_per_batch: 128,
    };
    let reads = BatchedReads::start(platform::db::pool(db.url(), 2), limits, counted_read);

    // Hold the only slot, then ask for 100 rows twice and 50 that do not exist.
    let slow = tokio::spawn({
        let reads = reads.clone();
        async move { reads.get(SLOW).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let keys: Vec<i32> = (1..=100).chain(1..=100).chain(1001..=1050).collect();
    let asked: Vec<_> = keys
        .iter()
        .map(|&key| {
            let reads = reads.clone();
            tokio::spawn(async move { (key, reads.get(key).await) })
        })
        .collect();

    for task in asked {
        let (key, answer) = task.await.unwrap();
        let expected = (key <= 100).then(|| format!("item {key}"));
        assert_eq!(answer.unwrap(), expected, "key {key}");
    }
    assert_eq!(slow.await.unwrap().unwrap(), None);
    // The slow read alone, then the 250 reads that waited for it in two
    // queries (at most 128 reads each), each key once per query.
    let batches = BATCHES.lock().unwrap().clone();
    assert_eq!(batches.len(), 3, "{batches:?}");
    assert_eq!(batches[0], 1);
    assert!(batches[1..].iter().all(|&keys| keys <= 128), "{batches:?}");
    assert!(
        (150..250).contains(&(batches[1] + batches[2])),
        "{batches:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_sees_what_was_committed_before_it() {
    let db = database();
    let reads = reader(&db);
    assert_eq!(reads.get(7).await.unwrap().as_deref(), Some("item 7"));
    diesel::sql_query("UPDATE items SET name = 'renamed' WHERE id = 7")
        .execute(&mut db.connect().unwrap())
        .unwrap();
    assert_eq!(reads.get(7).await.unwrap().as_deref(), Some("renamed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_query_fails_its_own_reads_only() {
    let db = database();
    let reads = reader(&db);
    let failed = reads.get(BROKEN).await;
    assert!(
        matches!(&failed, Err(DbError::Failed(message)) if message.contains("no_such_table")),
        "{failed:?}"
    );
    assert_eq!(reads.get(3).await.unwrap().as_deref(), Some("item 3"));
}
