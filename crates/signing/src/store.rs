//! The `signing_keys` table ([`crate::MIGRATION_SQL`]).

use crate::keys::{StoredKey, KEPT_KEYS};
use diesel::prelude::*;

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        private_key -> Bytea,
        public_key -> Bytea,
        created_at -> Timestamptz,
    }
}

/// Stored keys, newest first.
pub fn load(conn: &mut PgConnection) -> QueryResult<Vec<StoredKey>> {
    signing_keys::table
        .select((
            signing_keys::kid,
            signing_keys::private_key,
            signing_keys::public_key,
        ))
        .order(signing_keys::created_at.desc())
        .load::<(String, Vec<u8>, Vec<u8>)>(conn)
        .map(|rows| {
            rows.into_iter()
                .map(|(kid, private_key, public_key)| StoredKey {
                    kid,
                    private_key,
                    public_key,
                })
                .collect()
        })
}

fn insert(conn: &mut PgConnection, key: &StoredKey) -> QueryResult<usize> {
    diesel::insert_into(signing_keys::table)
        .values((
            signing_keys::kid.eq(&key.kid),
            signing_keys::private_key.eq(&key.private_key),
            signing_keys::public_key.eq(&key.public_key),
            // Explicit, so two rotations within one transaction still order.
            signing_keys::created_at.eq(chrono::Utc::now()),
        ))
        .execute(conn)
}

fn lock(conn: &mut PgConnection, lock_key: i64) -> QueryResult<usize> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(lock_key)
        .execute(conn)
}

/// Creates the first key if there is none (replicas starting together
/// create one between them, under the transaction advisory lock
/// `lock_key`).
pub fn ensure_one(conn: &mut PgConnection, lock_key: i64) -> anyhow::Result<Vec<StoredKey>> {
    conn.transaction(|conn| {
        lock(conn, lock_key)?;
        let keys = load(conn)?;
        if !keys.is_empty() {
            return Ok(keys);
        }
        insert(conn, &StoredKey::generate()?)?;
        Ok(load(conn)?)
    })
}

/// Adds a new current key and drops all but the newest [`KEPT_KEYS`].
pub fn rotate(conn: &mut PgConnection, lock_key: i64) -> anyhow::Result<Vec<StoredKey>> {
    conn.transaction(|conn| {
        lock(conn, lock_key)?;
        insert(conn, &StoredKey::generate()?)?;
        let keep: Vec<String> = load(conn)?
            .into_iter()
            .take(KEPT_KEYS)
            .map(|k| k.kid)
            .collect();
        diesel::delete(signing_keys::table.filter(signing_keys::kid.ne_all(&keep)))
            .execute(conn)?;
        Ok(load(conn)?)
    })
}
