//! Leader election between two real processes: `Periodic::only_in_leader`
//! runs a task in exactly one of them, and when the leader is killed with
//! `kill -9`, the other takes over within one period.
//!
//! A harness of its own (`harness = false`): the same binary is both the
//! test and, started with `LEADER_CHILD` set, a replica that ticks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use platform::periodic::Periodic;
use platform::Shutdown;
use std::path::Path;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};
use testkit::TestDatabase;

const CHILD: &str = "LEADER_CHILD";
const KEY: i64 = 4_242;
const PERIOD: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    if let Ok(name) = std::env::var(CHILD) {
        replica(&name);
        return ExitCode::SUCCESS;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let name = "a_killed_leader_is_replaced_within_one_period";
    if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
        println!("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out\n");
        return ExitCode::SUCCESS;
    }
    println!("\nrunning 1 test");
    let outcome = std::panic::catch_unwind(a_killed_leader_is_replaced_within_one_period);
    match outcome {
        Ok(()) => {
            println!("test {name} ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n");
            ExitCode::SUCCESS
        }
        Err(_) => {
            println!("test {name} ... FAILED\n\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n");
            ExitCode::FAILURE
        }
    }
}

/// A replica: records a tick under its name every period while it leads.
fn replica(name: &str) {
    let url = std::env::var("LEADER_DATABASE_URL").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut conn = PgConnection::establish(&url).unwrap();
        Periodic::every("ticker", PERIOD)
            .only_in_leader(&url, KEY)
            .run(Shutdown::new(), || {
                diesel::sql_query("INSERT INTO ticks (holder) VALUES ($1)")
                    .bind::<diesel::sql_types::Text, _>(name)
                    .execute(&mut conn)
                    .unwrap();
                std::future::ready(())
            })
            .await;
    });
}

struct Replica {
    name: &'static str,
    child: Child,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(db: &TestDatabase, name: &'static str) -> Replica {
    let child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, name)
        .env("LEADER_DATABASE_URL", db.url())
        .spawn()
        .unwrap();
    Replica { name, child }
}

#[derive(QueryableByName)]
struct Tick {
    #[diesel(sql_type = diesel::sql_types::Text)]
    holder: String,
}

fn holders_since(conn: &mut PgConnection, since: &str) -> Vec<String> {
    diesel::sql_query(format!(
        "SELECT DISTINCT holder FROM ticks WHERE at > {since} ORDER BY holder"
    ))
    .load::<Tick>(conn)
    .unwrap()
    .into_iter()
    .map(|t| t.holder)
    .collect()
}

fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn a_killed_leader_is_replaced_within_one_period() {
    let db = TestDatabase::create(
        "platform",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
        |_| Ok(()),
    )
    .unwrap();
    let mut conn = db.connect().unwrap();
    conn.batch_execute(
        "CREATE TABLE ticks (holder TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
    )
    .unwrap();
    let mut replicas = vec![start(&db, "a"), start(&db, "b")];

    assert!(
        wait_for(Duration::from_secs(10), || !holders_since(
            &mut conn,
            "'-infinity'"
        )
        .is_empty()),
        "nobody ever led"
    );
    // Several periods with both alive: one leader only.
    std::thread::sleep(PERIOD * 4);
    let leaders = holders_since(&mut conn, "'-infinity'");
    assert_eq!(leaders.len(), 1, "both ticked: {leaders:?}");
    let leader = replicas.iter().position(|r| r.name == leaders[0]).unwrap();

    let killed = replicas.remove(leader);
    let status = Command::new("kill")
        .args(["-9", &killed.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let killed_at = Instant::now();
    drop(killed);
    conn.batch_execute("CREATE TABLE killed AS SELECT clock_timestamp() AS at")
        .unwrap();
    let survivor = replicas[0].name;
    assert!(
        wait_for(Duration::from_secs(5), || holders_since(
            &mut conn,
            "(SELECT at FROM killed)"
        ) == [survivor]),
        "{survivor} never took over"
    );
    let took = killed_at.elapsed();
    // One period, its jitter, and the time to notice the tick.
    assert!(
        took <= PERIOD.mul_f64(1.1) + Duration::from_millis(400),
        "took over after {took:?}"
    );
}
