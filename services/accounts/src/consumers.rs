//! Events accounts consumes from its queue `accounts.events`: users created
//! and verified in auth.

use crate::store::profiles;
use bus::inbox::{Inboxed, Transactional};
use bus::{ConsumerSpec, HandlerError, Incoming};
use diesel::prelude::*;
use domain::messages::{Contract, UserEmailVerified, UserRegistered};
use platform::db::PgPool;
use std::time::Duration;

/// A backlog is applied up to `BATCH` messages a transaction, a few
/// transactions at once; a lone event is applied as soon as it arrives.
const PREFETCH: u16 = 128;
const BATCH: usize = 32;
const CONCURRENCY: usize = 4;

pub const QUEUE: &str = "accounts.events";

pub struct UserEvents;

impl UserEvents {
    /// The handler: each batch of deliveries applied in one transaction
    /// with its inbox records.
    pub fn handler(pool: PgPool) -> Inboxed<Self> {
        Inboxed::new(pool, QUEUE, Self)
    }

    pub fn spec(retry_delays: Vec<Duration>) -> ConsumerSpec {
        ConsumerSpec::new(QUEUE)
            .bind(bus::topology::EVENTS, UserRegistered::TYPE)
            .bind(bus::topology::EVENTS, UserEmailVerified::TYPE)
            .retry_delays(retry_delays)
            .prefetch(PREFETCH)
            .batch(BATCH)
            .concurrency(CONCURRENCY)
    }
}

pub enum Change {
    Registered(UserRegistered),
    Verified(UserEmailVerified),
}

fn parse(message: &Incoming) -> Result<Change, HandlerError> {
    match message.message_type.as_str() {
        UserRegistered::TYPE => {
            let envelope = message.envelope::<UserRegistered>()?;
            bus::consumer::require_version(envelope.version, UserRegistered::VERSION)?;
            Ok(Change::Registered(envelope.data))
        }
        UserEmailVerified::TYPE => {
            let envelope = message.envelope::<UserEmailVerified>()?;
            bus::consumer::require_version(envelope.version, UserEmailVerified::VERSION)?;
            Ok(Change::Verified(envelope.data))
        }
        other => Err(HandlerError::Permanent(format!(
            "unexpected message type `{other}`"
        ))),
    }
}

fn apply(conn: &mut PgConnection, change: &Change) -> QueryResult<()> {
    match change {
        Change::Registered(event) => {
            profiles::create_from(conn, event)?;
        }
        Change::Verified(event) => {
            profiles::mark_email_verified(conn, event.user_id)?;
        }
    }
    Ok(())
}

impl Transactional for UserEvents {
    type Change = Change;

    fn parse(&self, message: &Incoming) -> Result<Change, HandlerError> {
        parse(message)
    }

    fn apply(conn: &mut PgConnection, change: &Change) -> QueryResult<()> {
        apply(conn, change)
    }
}
