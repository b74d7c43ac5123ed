//! PostgreSQL: the r2d2 pool, database creation, migrations under an advisory
//! lock, and running diesel (which blocks) off the async executor.
//!
//! Failures keep their meaning: a database that is down or restarting, a
//! connection it dropped mid-request and a pool that had no connection in
//! [`POOL_TIMEOUT`] are [`DbError::Unavailable`] (a 503 with `Retry-After`);
//! only a query that ran and found nothing is `NotFound`; anything else is a
//! [`DbError::Query`] that the service answers with an opaque 500.

pub mod advisory;
pub mod batch;

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, ManageConnection, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{sql_query, Connection, QueryResult, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

pub type PgPool = Pool<PgManager>;
pub type PgPooled = PooledConnection<PgManager>;

/// Longest wait for a pooled connection. Past it the request is answered
/// 503 at once: while the database is down a client hears so within about
/// a second, instead of queueing behind connection attempts that fail.
pub const POOL_TIMEOUT: Duration = Duration::from_secs(1);

/// A database failure as a handler sees it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database is down, restarting or saturated, or dropped the
    /// connection mid-request: worth another try shortly.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(diesel::result::Error),
    /// A query that failed for several callers at once (a batched read);
    /// the cause was logged where it happened.
    #[error("query failed: {0}")]
    Failed(String),
}

impl From<DieselError> for DbError {
    fn from(err: DieselError) -> Self {
        if is_connection_lost(&err) || is_contention(&err) {
            DbError::Unavailable(err.to_string())
        } else {
            DbError::Query(err)
        }
    }
}

/// What the server says when a transaction lost to others: a deadlock it
/// broke (40P01), a serialization failure (40001), a lock not granted in
/// `lock_timeout` (55P03). Nothing is wrong with the request; the same
/// one shortly after may well go through, so it is a 503, not a 500.
/// diesel names only the serialization failure; the others arrive as
/// messages.
const CONTENTION: &[&str] = &[
    "deadlock detected",
    "canceling statement due to lock timeout",
    "could not obtain lock on row",
];

pub fn is_contention(err: &DieselError) -> bool {
    match err {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => {
            let message = info.message();
            CONTENTION.iter().any(|phrase| message.contains(phrase))
        }
        _ => false,
    }
}

/// Phrases of libpq and of the server for a connection that is gone or a
/// server that is not taking queries. diesel reports most of these as
/// `Unknown` (it maps only SQLSTATE class 08 and a bad libpq status to
/// `ClosedConnection`); `57P01` (admin shutdown) and `57P03` (starting up)
/// arrive as messages.
const CONNECTION_LOST: &[&str] = &[
    "terminating connection",
    "server closed the connection",
    "no connection to the server",
    "could not receive data from server",
    "could not send data to server",
    "connection to server",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
];

/// True for an error that says nothing about the query and everything
/// about the connection: the same work may well succeed on a fresh one.
pub fn is_connection_lost(err: &DieselError) -> bool {
    match err {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        DieselError::DatabaseError(_, info) => {
            let message = info.message();
            CONNECTION_LOST
                .iter()
                .any(|phrase| message.contains(phrase))
        }
        DieselError::BrokenTransactionManager => true,
        _ => false,
    }
}

impl DbError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, DbError::Query(diesel::result::Error::NotFound))
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }

    /// True for a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

/// diesel's connection manager, plus a cheap check that a connection is
/// still there. diesel considers a connection broken only when its
/// transaction state is, so one whose server went away (a restart) would
/// go back to the pool and fail every request that drew it. Here a
/// connection is checked when it is handed out and when it comes back, by
/// asking libpq to read whatever the server sent (`PQconsumeInput`, one
/// non-blocking read; no round trip): a closed socket shows at once, and the
/// pool replaces the connection.
#[derive(Debug)]
pub struct PgManager(ConnectionManager<PgConnection>);

impl PgManager {
    pub fn new(url: &str) -> Self {
        Self(ConnectionManager::new(url))
    }
}

fn still_connected(conn: &mut PgConnection) -> QueryResult<()> {
    // The platform never LISTENs on pooled connections, so there are no
    // notifications to lose here; the calls are for their reads of the
    // socket. Two of them: a server that shuts down (or terminates the
    // backend) first sends a FATAL message, which one read takes in
    // without noticing the end of the stream behind it; the next read
    // sees the end.
    for _ in 0..2 {
        if let Some(Err(err)) = conn.notifications_iter().next() {
            return Err(err);
        }
    }
    Ok(())
}

impl ManageConnection for PgManager {
    type Connection = PgConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<PgConnection, Self::Error> {
        self.0.connect()
    }

    fn is_valid(&self, conn: &mut PgConnection) -> Result<(), Self::Error> {
        still_connected(conn).map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        self.0.has_broken(conn) || still_connected(conn).is_err()
    }
}

/// Splits `postgres://user@host:5432/name?opts` into the URL of another
/// database on the same server and the database name.
pub fn with_database(url: &str, database: &str) -> (String, String) {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let (server, name) = match base[authority_start..].find('/') {
        Some(i) => (
            &base[..authority_start + i],
            &base[authority_start + i + 1..],
        ),
        None => (base, ""),
    };
    let mut other = format!("{server}/{database}");
    if let Some(query) = query {
        other.push('?');
        other.push_str(query);
    }
    (other, name.to_string())
}

/// Quotes a Postgres identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates the database named in `url` if it does not exist yet, so a fresh
/// machine needs no manual `createdb`.
pub fn ensure_database(url: &str) -> Result<(), anyhow::Error> {
    if PgConnection::establish(url).is_ok() {
        return Ok(());
    }
    let (maintenance_url, name) = with_database(url, "postgres");
    if name.is_empty() {
        anyhow::bail!("DATABASE_URL names no database");
    }
    let mut conn = PgConnection::establish(&maintenance_url)
        .map_err(|err| anyhow::anyhow!("cannot reach PostgreSQL: {err}"))?;
    match sql_query(format!("CREATE DATABASE {}", quote_ident(&name))).execute(&mut conn) {
        Ok(_) => Ok(()),
        // Another replica created it in the meantime.
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") =>
        {
            Ok(())
        }
        Err(err) => Err(anyhow::anyhow!("cannot create database {name}: {err}")),
    }
}

/// Pool size for one-shot commands (`migrate`, `create-admin`...). A pool
/// fills itself on background threads; a command that exits while those
/// are still inside libpq can abort in its exit handlers (seen: SIGABRT
/// from `auth create-admin` in a bench run). One connection, taken before
/// the command runs, leaves nothing connecting at exit.
pub const COMMAND_POOL_SIZE: u32 = 1;

/// A lazily connecting pool: the service starts (and reports not ready)
/// while the database is down, instead of crashing. It fills itself to
/// `max_size` in the background, so the first burst of traffic does not
/// wait on connection setup (measured: multi-second worst cases without).
pub fn pool(url: &str, max_size: u32) -> PgPool {
    Pool::builder()
        .max_size(max_size)
        .min_idle(None)
        .connection_timeout(POOL_TIMEOUT)
        .test_on_check_out(true)
        .build_unchecked(PgManager::new(url))
}

/// Applies pending migrations while holding a session-level advisory lock,
/// so replicas starting together migrate once.
pub fn migrate(
    conn: &mut PgConnection,
    migrations: EmbeddedMigrations,
    lock_key: i64,
) -> Result<Vec<String>, anyhow::Error> {
    sql_query(format!("SELECT pg_advisory_lock({lock_key})")).execute(conn)?;
    let result = conn
        .run_pending_migrations(migrations)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|err| anyhow::anyhow!("migration failed: {err}"));
    sql_query(format!("SELECT pg_advisory_unlock({lock_key})")).execute(conn)?;
    result
}

/// What a service does before serving: create its database if absent,
/// build the pool, apply migrations under `lock_key`.
pub fn prepare(
    url: &str,
    pool_size: u32,
    migrations: EmbeddedMigrations,
    lock_key: i64,
) -> Result<PgPool, anyhow::Error> {
    ensure_database(url)?;
    let pool = pool(url, pool_size);
    let mut conn = pool
        .get()
        .map_err(|err| anyhow::anyhow!("cannot connect to the database: {err}"))?;
    migrate(&mut conn, migrations, lock_key)?;
    Ok(pool)
}

/// Reverts every applied migration (used by the migration round-trip test).
pub fn revert_all(
    conn: &mut PgConnection,
    migrations: EmbeddedMigrations,
) -> Result<(), anyhow::Error> {
    conn.revert_all_migrations(migrations)
        .map(|_| ())
        .map_err(|err| anyhow::anyhow!("revert failed: {err}"))
}

/// Runs blocking database work (with a connection the caller holds) on
/// the blocking thread pool; a task that could not finish counts as the
/// database being unavailable.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| DbError::Unavailable(format!("database task failed: {err}")))?
}

/// Runs `work` with a pooled connection on the blocking thread pool, inside
/// the caller's tracing span.
pub async fn run<T, E, F>(pool: &PgPool, work: F) -> Result<T, E>
where
    F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    let pool = pool.clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let mut conn = pool
                .get()
                .map_err(|err| E::from(DbError::Unavailable(err.to_string())))?;
            work(&mut conn)
        })
    })
    .await
    .map_err(|err| E::from(DbError::Unavailable(format!("database task failed: {err}"))))?
}

/// Runs a read that changes nothing, and runs it once more on a fresh
/// connection if the database dropped the first one (a restart): the
/// client then sees its answer instead of a 503. Anything else fails at
/// once.
pub async fn read<T, F>(pool: &PgPool, work: F) -> Result<T, DbError>
where
    F: Fn(&mut PgConnection) -> QueryResult<T> + Send + 'static,
    T: Send + 'static,
{
    let pool = pool.clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let checkout = || {
                pool.get()
                    .map_err(|err| DbError::Unavailable(err.to_string()))
            };
            let mut conn = checkout()?;
            match work(&mut conn) {
                Err(err) if is_connection_lost(&err) => {
                    tracing::debug!(error = %err, "read retried on a fresh connection");
                    // Back to the pool first: it sees the loss and drops it.
                    drop(conn);
                    let mut fresh = checkout()?;
                    work(&mut fresh).map_err(DbError::from)
                }
                outcome => outcome.map_err(DbError::from),
            }
        })
    })
    .await
    .map_err(|err| DbError::Unavailable(format!("database task failed: {err}")))?
}

/// `EXPLAIN` of a query as diesel builds it, binds and all: for tests
/// that hold a query to its plan, so they check the query the code runs
/// rather than a copy of it.
pub fn explain<Q>(conn: &mut PgConnection, query: Q) -> QueryResult<String>
where
    Q: diesel::query_builder::QueryFragment<diesel::pg::Pg> + diesel::query_builder::QueryId,
{
    let lines: Vec<String> = Explain(query).load(conn)?;
    Ok(lines.join("\n"))
}

#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
struct Explain<Q>(Q);

impl<Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>>
    diesel::query_builder::QueryFragment<diesel::pg::Pg> for Explain<Q>
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql("EXPLAIN ");
        self.0.walk_ast(out.reborrow())
    }
}

impl<Q> diesel::query_builder::Query for Explain<Q> {
    type SqlType = diesel::sql_types::Text;
}

impl<Q> RunQueryDsl<PgConnection> for Explain<Q> {}

/// Readiness: a `SELECT 1` through the pool.
pub async fn ping(pool: &PgPool) -> Result<(), String> {
    run(pool, |conn| {
        sql_query("SELECT 1")
            .execute(conn)
            .map(|_| ())
            .map_err(DbError::from)
    })
    .await
    .map_err(|err: DbError| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_database_name() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/auth?sslmode=disable", "postgres"),
            (
                "postgres://u:p@h:5432/postgres?sslmode=disable".to_string(),
                "auth".to_string()
            )
        );
        assert_eq!(
            with_database("postgres://h/auth", "x"),
            ("postgres://h/x".to_string(), "auth".to_string())
        );
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
