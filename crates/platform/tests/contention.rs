//! A transaction that loses to others (a lock not granted in time, a
//! deadlock) is "try again shortly", not a failure of the request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use platform::db::DbError;
use std::path::Path;
use testkit::TestDatabase;

#[test]
fn a_lock_not_granted_in_time_is_unavailable_not_a_failure() {
    let db = TestDatabase::create(
        "platform",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
        |_| Ok(()),
    )
    .unwrap();
    let mut holder = db.connect().unwrap();
    holder
        .batch_execute("CREATE TABLE held (id INT PRIMARY KEY); INSERT INTO held VALUES (1)")
        .unwrap();
    holder
        .batch_execute("BEGIN; SELECT * FROM held WHERE id = 1 FOR UPDATE")
        .unwrap();
    let mut waiter = db.connect().unwrap();
    waiter.batch_execute("SET lock_timeout = '100ms'").unwrap();
    let err = diesel::sql_query("SELECT * FROM held WHERE id = 1 FOR UPDATE")
        .execute(&mut waiter)
        .unwrap_err();
    assert!(
        matches!(DbError::from(err), DbError::Unavailable(_)),
        "a lock timeout is worth another try"
    );
    holder.batch_execute("ROLLBACK").unwrap();
}
