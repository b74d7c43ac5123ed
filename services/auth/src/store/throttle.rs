//! Failed-login counters per key (`acct:<email>`, `ip:<address>`) over a
//! fixed window, kept in the database so every replica sees the same counts.

use crate::schema::login_throttle;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;

/// Seconds until the first of `limits` that is exhausted reopens, if any.
pub fn blocked_for(
    conn: &mut PgConnection,
    limits: &[(&str, u32)],
    window: Duration,
) -> QueryResult<Option<u64>> {
    let keys: Vec<&str> = limits.iter().map(|(k, _)| *k).collect();
    let rows: Vec<(String, i32, DateTime<Utc>)> = login_throttle::table
        .filter(login_throttle::key.eq_any(&keys))
        .select((
            login_throttle::key,
            login_throttle::failures,
            login_throttle::window_started_at,
        ))
        .load(conn)?;
    let now = Utc::now();
    let wait = rows
        .iter()
        .filter_map(|(key, failures, started)| {
            let limit = limits.iter().find(|(k, _)| k == key)?.1;
            let reopens = *started + window;
            (*failures >= limit as i32 && reopens > now)
                .then(|| (reopens - now).num_seconds().max(1) as u64)
        })
        .max();
    Ok(wait)
}

pub fn record_failure(conn: &mut PgConnection, key: &str, window: Duration) -> QueryResult<usize> {
    diesel::sql_query(
        "INSERT INTO login_throttle (key, failures, window_started_at) VALUES ($1, 1, now()) \
         ON CONFLICT (key) DO UPDATE SET \
           failures = CASE WHEN login_throttle.window_started_at + make_interval(secs => $2) <= now() \
                           THEN 1 ELSE login_throttle.failures + 1 END, \
           window_started_at = CASE WHEN login_throttle.window_started_at + make_interval(secs => $2) <= now() \
                           THEN now() ELSE login_throttle.window_started_at END",
    )
    .bind::<diesel::sql_types::Text, _>(key)
    .bind::<diesel::sql_types::Double, _>(window.num_seconds() as f64)
    .execute(conn)
}

pub fn clear(conn: &mut PgConnection, key: &str) -> QueryResult<usize> {
    diesel::delete(login_throttle::table.find(key)).execute(conn)
}
