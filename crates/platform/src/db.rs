//! PostgreSQL: the r2d2 pool, database creation, migrations under an advisory
//! lock, and running diesel (which blocks) off the async executor.

pub mod batch;

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::{sql_query, Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type PgPooled = PooledConnection<ConnectionManager<PgConnection>>;

/// A database failure as a handler sees it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had in time: the database is down or saturated.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

impl DbError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, DbError::Query(diesel::result::Error::NotFound))
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
        .connection_timeout(Duration::from_secs(5))
        .test_on_check_out(false)
        .build_unchecked(ConnectionManager::new(url))
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
