//! The record that makes sending idempotent, and that tells, after a crash,
//! whether an email may have reached the server.
//!
//! A row is claimed by a worker process (`owner_key`: the advisory lock it
//! holds while it lives, see `platform::db::advisory`), marked just before
//! the SMTP transaction begins (`send_started_at`) and when the server took
//! the message (`sent_at`). A later delivery of the same job reads the row:
//! sent means done; an owner that is alive means another delivery is at
//! work; an owner that is gone and never began is provably not sent, so the
//! job is taken over and sent at once; an owner that is gone after it began
//! left the outcome unknown.

use crate::schema::sent_emails;
use diesel::prelude::*;
use platform::db::advisory;

type Time = chrono::DateTime<chrono::Utc>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This delivery may send (first time, or taken over from an owner that
    /// died before it began).
    Fresh,
    /// Sent before: do nothing.
    AlreadySent,
    /// A live worker is sending this email right now: try again later.
    InProgress,
    /// The owner died inside the send: whether the server took the email
    /// is unknown.
    Unknown,
}

/// What the claim needs to know of the job.
pub struct Job<'a> {
    pub key: &'a str,
    pub message_id: &'a str,
    pub template: &'a str,
    pub recipient: &'a str,
}

/// Claims `job` for the worker holding the lock `owner`. Any earlier claim
/// by `owner` itself is over (the caller never claims a key it is still
/// sending), so it counts as an owner that is gone.
pub fn claim(conn: &mut PgConnection, job: &Job<'_>, owner: i64) -> QueryResult<Claim> {
    conn.transaction(|conn| {
        let inserted = diesel::insert_into(sent_emails::table)
            .values((
                sent_emails::idempotency_key.eq(job.key),
                sent_emails::message_id.eq(job.message_id),
                sent_emails::template.eq(job.template),
                sent_emails::recipient.eq(job.recipient),
                sent_emails::owner_key.eq(owner),
            ))
            .on_conflict_do_nothing()
            .execute(conn)?;
        if inserted == 1 {
            return Ok(Claim::Fresh);
        }
        let (sent, earlier_owner, began, claimed): (Option<Time>, Option<i64>, Option<Time>, Time) =
            sent_emails::table
                .find(job.key)
                .select((
                    sent_emails::sent_at,
                    sent_emails::owner_key,
                    sent_emails::send_started_at,
                    sent_emails::started_at,
                ))
                .for_update()
                .first(conn)?;
        if sent.is_some() {
            return Ok(Claim::AlreadySent);
        }
        let Some(earlier) = earlier_owner else {
            return Ok(legacy_claim(claimed));
        };
        let owner_alive = earlier != owner && advisory::held_elsewhere(conn, earlier)?;
        match (began, owner_alive) {
            (Some(_), true) => return Ok(Claim::InProgress),
            (Some(_), false) => return Ok(Claim::Unknown),
            // A live owner that has not begun within the lease will not:
            // its attempt failed before the send (a database error), and
            // its own begin_send would now find the claim taken.
            (None, true) if claimed + UNBEGUN_LEASE > chrono::Utc::now() => {
                return Ok(Claim::InProgress)
            }
            (None, _) => {}
        }
        take_over(conn, job.key, owner)?;
        Ok(Claim::Fresh)
    })
}

/// How long a live worker's claim may wait to begin its send before
/// another delivery takes it over; beginning takes milliseconds.
const UNBEGUN_LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// How long a claim by a worker of the version before liveness locks
/// counted as in progress; it could not say whether it had begun to send.
const LEGACY_LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(120);

/// A claim without an owner comes from a worker that predates liveness
/// locks (still running during a rolling upgrade): it is never taken
/// over, only waited for, and past its lease its outcome is unknown.
fn legacy_claim(claimed: chrono::DateTime<chrono::Utc>) -> Claim {
    if claimed + LEGACY_LEASE > chrono::Utc::now() {
        Claim::InProgress
    } else {
        Claim::Unknown
    }
}

fn take_over(conn: &mut PgConnection, key: &str, owner: i64) -> QueryResult<usize> {
    diesel::update(
        sent_emails::table
            .find(key)
            .filter(sent_emails::sent_at.is_null()),
    )
    .set((
        sent_emails::owner_key.eq(owner),
        sent_emails::started_at.eq(diesel::dsl::now),
        sent_emails::send_started_at.eq(None::<chrono::DateTime<chrono::Utc>>),
    ))
    .execute(conn)
}

/// Records, just before the SMTP transaction, that the send begins; false
/// if the claim is no longer `owner`'s (taken over while this worker had
/// lost its lock), in which case it must not send.
pub fn begin_send(conn: &mut PgConnection, key: &str, owner: i64) -> QueryResult<bool> {
    diesel::update(
        sent_emails::table
            .find(key)
            .filter(sent_emails::owner_key.eq(owner))
            .filter(sent_emails::send_started_at.is_null())
            .filter(sent_emails::sent_at.is_null()),
    )
    .set(sent_emails::send_started_at.eq(diesel::dsl::now))
    .execute(conn)
    .map(|rows| rows == 1)
}

pub fn mark_sent(conn: &mut PgConnection, key: &str) -> QueryResult<usize> {
    diesel::update(sent_emails::table.find(key))
        .set(sent_emails::sent_at.eq(diesel::dsl::now))
        .execute(conn)
}

/// Forgets a claim whose send certainly did not happen (the server
/// refused it), so a retry may send.
pub fn release(conn: &mut PgConnection, key: &str, owner: i64) -> QueryResult<usize> {
    diesel::delete(
        sent_emails::table
            .find(key)
            .filter(sent_emails::owner_key.eq(owner))
            .filter(sent_emails::sent_at.is_null()),
    )
    .execute(conn)
}

/// Restarts a send whose outcome was unknown: an operator requeued it to
/// send it anyway.
pub fn restart(conn: &mut PgConnection, key: &str, owner: i64) -> QueryResult<usize> {
    take_over(conn, key, owner)
}
