//! Events auth consumes from its queue `auth.events`: account changes made
//! in the accounts service.

use bus::inbox::{Inboxed, Transactional};
use bus::{ConsumerSpec, HandlerError, Incoming};
use diesel::prelude::*;
use domain::messages::{AccountDisabled, AccountEnabled, AccountRolesChanged, Contract};
use domain::{AccountStatus, UserId};
use platform::db::PgPool;
use std::time::Duration;

use crate::store::{sessions, users};

/// A backlog is applied up to `BATCH` messages a transaction, a few
/// transactions at once; a lone event is applied as soon as it arrives.
const PREFETCH: u16 = 128;
const BATCH: usize = 32;
const CONCURRENCY: usize = 4;

pub const QUEUE: &str = "auth.events";

pub struct AccountEvents;

impl AccountEvents {
    /// The handler: each batch of deliveries applied in one transaction
    /// with its inbox records.
    pub fn handler(pool: PgPool) -> Inboxed<Self> {
        Inboxed::new(pool, QUEUE, Self)
    }

    pub fn spec(retry_delays: Vec<Duration>) -> ConsumerSpec {
        ConsumerSpec::new(QUEUE)
            .bind(bus::topology::EVENTS, AccountRolesChanged::TYPE)
            .bind(bus::topology::EVENTS, AccountDisabled::TYPE)
            .bind(bus::topology::EVENTS, AccountEnabled::TYPE)
            .retry_delays(retry_delays)
            .prefetch(PREFETCH)
            .batch(BATCH)
            .concurrency(CONCURRENCY)
    }
}

/// What an account event asks of auth.
pub enum Change {
    Roles(AccountRolesChanged),
    Disabled(AccountDisabled),
    Enabled(AccountEnabled),
}

fn parse(message: &Incoming) -> Result<Change, HandlerError> {
    match message.message_type.as_str() {
        AccountRolesChanged::TYPE => {
            let envelope = message.envelope::<AccountRolesChanged>()?;
            bus::consumer::require_version(envelope.version, AccountRolesChanged::VERSION)?;
            Ok(Change::Roles(envelope.data))
        }
        AccountDisabled::TYPE => {
            let envelope = message.envelope::<AccountDisabled>()?;
            bus::consumer::require_version(envelope.version, AccountDisabled::VERSION)?;
            Ok(Change::Disabled(envelope.data))
        }
        AccountEnabled::TYPE => {
            let envelope = message.envelope::<AccountEnabled>()?;
            bus::consumer::require_version(envelope.version, AccountEnabled::VERSION)?;
            Ok(Change::Enabled(envelope.data))
        }
        other => Err(HandlerError::Permanent(format!(
            "unexpected message type `{other}`"
        ))),
    }
}

fn apply(conn: &mut PgConnection, change: &Change) -> QueryResult<()> {
    match change {
        Change::Roles(event) => {
            users::apply_roles(conn, UserId(event.user_id), &event.roles, event.revision)?;
        }
        Change::Disabled(event) => {
            let user = UserId(event.user_id);
            if users::apply_status(conn, user, AccountStatus::Disabled, event.revision)? {
                sessions::revoke_all(conn, user, None, "account_disabled")?;
            }
        }
        Change::Enabled(event) => {
            users::apply_status(
                conn,
                UserId(event.user_id),
                AccountStatus::Active,
                event.revision,
            )?;
        }
    }
    Ok(())
}

impl Transactional for AccountEvents {
    type Change = Change;

    fn parse(&self, message: &Incoming) -> Result<Change, HandlerError> {
        parse(message)
    }

    fn apply(conn: &mut PgConnection, change: &Change) -> QueryResult<()> {
        apply(conn, change)
    }
}
