//! PostgreSQL advisory locks as proofs of life.
//!
//! A [`HeldLock`] is a session-level advisory lock on a connection of its
//! own (never a pooled one, which would hand the lock to whoever draws the
//! connection next). The lock lasts exactly as long as that session: when
//! the process dies, even by `kill -9`, the server ends the session and the
//! lock is free at once. That makes it both a leader lease (one replica
//! holds the key, the others try it every period) and a liveness mark (a
//! worker holds a key of its own; anyone can ask whether it is still held).

use super::blocking;
use super::DbError;
use diesel::dsl::sql;
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Bool};
use diesel::{Connection, QueryResult, RunQueryDsl};

/// A session that takes an advisory lock and keeps it while it lives.
/// Dropping it closes the session, which releases the lock.
pub struct LockSession {
    url: String,
    key: i64,
    conn: Option<PgConnection>,
    held: bool,
}

impl std::fmt::Debug for LockSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockSession")
            .field("key", &self.key)
            .field("held", &self.held)
            .finish()
    }
}

impl LockSession {
    /// Connects nothing yet: the first [`hold`](Self::hold) does.
    pub fn new(url: &str, key: i64) -> Self {
        Self {
            url: url.to_string(),
            key,
            conn: None,
            held: false,
        }
    }

    pub fn key(&self) -> i64 {
        self.key
    }

    /// Makes sure this session holds the lock: checks that a held lock's
    /// session is still up (a restarted database ends it, and the lock with
    /// it), otherwise (re)connects and tries the lock. `Ok(false)`: another
    /// session holds it. One round trip when nothing changed.
    pub async fn hold(&mut self) -> Result<bool, DbError> {
        let (url, key, held, conn) = (self.url.clone(), self.key, self.held, self.conn.take());
        let (outcome, conn) = blocking(move || Ok(hold_blocking(&url, key, held, conn))).await?;
        self.conn = conn;
        self.held = matches!(outcome, Ok(true));
        outcome
    }

    /// Whether the last [`hold`](Self::hold) found the lock held.
    pub fn is_held(&self) -> bool {
        self.held
    }
}

fn hold_blocking(
    url: &str,
    key: i64,
    held: bool,
    conn: Option<PgConnection>,
) -> (Result<bool, DbError>, Option<PgConnection>) {
    let mut conn = match (held, conn) {
        (true, Some(mut conn)) => {
            return match diesel::sql_query("SELECT 1").execute(&mut conn) {
                Ok(_) => (Ok(true), Some(conn)),
                // The session is gone, and the lock with it; a new session
                // must win it again, as any other would.
                Err(err) => (Err(DbError::from(err)), None),
            };
        }
        (false, Some(conn)) => conn,
        (_, None) => match PgConnection::establish(url) {
            Ok(conn) => conn,
            Err(err) => return (Err(DbError::Unavailable(err.to_string())), None),
        },
    };
    let taken = diesel::select(
        sql::<Bool>("pg_try_advisory_lock(")
            .bind::<BigInt, _>(key)
            .sql(")"),
    )
    .get_result::<bool>(&mut conn);
    match taken {
        Ok(taken) => (Ok(taken), Some(conn)),
        Err(err) => (Err(DbError::from(err)), None),
    }
}

/// Inside a transaction on any connection: whether some other session
/// holds `key`. Asked by trying the lock for the length of the transaction
/// (released when it ends), so asking leaves nothing behind.
pub fn held_elsewhere(conn: &mut PgConnection, key: i64) -> QueryResult<bool> {
    diesel::select(
        sql::<Bool>("NOT pg_try_advisory_xact_lock(")
            .bind::<BigInt, _>(key)
            .sql(")"),
    )
    .get_result(conn)
}

/// A random key, for a lock that marks one process alive.
pub fn random_key() -> i64 {
    // The low 63 bits of a v4 UUID: random, and never negative, which
    // keeps the key readable in pg_locks.
    (uuid::Uuid::new_v4().as_u128() as i64) & i64::MAX
}
