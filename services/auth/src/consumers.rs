//! Events auth consumes from its queue `auth.events`: account changes made
//! in the accounts service.

use bus::{inbox, ConsumerSpec, Handler, HandlerError, Incoming};
use diesel::prelude::*;
use domain::messages::{AccountDisabled, AccountEnabled, AccountRolesChanged, Contract};
use domain::UserId;
use platform::db::PgPool;
use std::time::Duration;

use crate::store::{sessions, users};

pub const QUEUE: &str = "auth.events";

pub struct AccountEvents {
    pool: PgPool,
}

impl AccountEvents {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn spec(retry_delays: Vec<Duration>) -> ConsumerSpec {
        ConsumerSpec::new(QUEUE)
            .bind(bus::topology::EVENTS, AccountRolesChanged::TYPE)
            .bind(bus::topology::EVENTS, AccountDisabled::TYPE)
            .bind(bus::topology::EVENTS, AccountEnabled::TYPE)
            .retry_delays(retry_delays)
    }
}

/// What an account event asks of auth.
enum Change {
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
            if users::apply_status(conn, user, users::DISABLED, event.revision)? {
                sessions::revoke_all(conn, user, None, "account_disabled")?;
            }
        }
        Change::Enabled(event) => {
            users::apply_status(conn, UserId(event.user_id), users::ACTIVE, event.revision)?;
        }
    }
    Ok(())
}

impl Handler for AccountEvents {
    async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        let change = parse(&message)?;
        inbox::apply_once(&self.pool, QUEUE, message.message_id, move |conn| {
            apply(conn, &change)
        })
        .await
    }
}
