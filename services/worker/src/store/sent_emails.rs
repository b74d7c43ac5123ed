//! The record that makes sending idempotent.

use crate::schema::sent_emails;
use diesel::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First time: go ahead and send.
    Fresh,
    /// Sent before: do nothing.
    AlreadySent,
    /// Another delivery of the same email is being sent right now (within
    /// the lease): try again later, when it has finished one way or the other.
    InProgress,
    /// A send was started and never recorded as finished: the worker
    /// stopped mid-send, so whether the server took it is unknown.
    Unknown,
}

pub fn claim(
    conn: &mut PgConnection,
    key: &str,
    message_id: &str,
    template: &str,
    recipient: &str,
    lease: std::time::Duration,
) -> QueryResult<Claim> {
    let inserted = diesel::insert_into(sent_emails::table)
        .values((
            sent_emails::idempotency_key.eq(key),
            sent_emails::message_id.eq(message_id),
            sent_emails::template.eq(template),
            sent_emails::recipient.eq(recipient),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    let (sent, started): (
        Option<chrono::DateTime<chrono::Utc>>,
        chrono::DateTime<chrono::Utc>,
    ) = sent_emails::table
        .find(key)
        .select((sent_emails::sent_at, sent_emails::started_at))
        .first(conn)?;
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    Ok(if sent.is_some() {
        Claim::AlreadySent
    } else if started + lease > chrono::Utc::now() {
        Claim::InProgress
    } else {
        Claim::Unknown
    })
}

pub fn mark_sent(conn: &mut PgConnection, key: &str) -> QueryResult<usize> {
    diesel::update(sent_emails::table.find(key))
        .set(sent_emails::sent_at.eq(diesel::dsl::now))
        .execute(conn)
}

/// Forgets a claim whose send certainly did not happen, so a retry may send.
pub fn release(conn: &mut PgConnection, key: &str) -> QueryResult<usize> {
    diesel::delete(
        sent_emails::table
            .find(key)
            .filter(sent_emails::sent_at.is_null()),
    )
    .execute(conn)
}

/// Restarts a send whose outcome was unknown (an operator requeued it).
pub fn restart(conn: &mut PgConnection, key: &str) -> QueryResult<usize> {
    diesel::update(
        sent_emails::table
            .find(key)
            .filter(sent_emails::sent_at.is_null()),
    )
    .set(sent_emails::started_at.eq(diesel::dsl::now))
    .execute(conn)
}
