//! Events accounts consumes from its queue `accounts.events`: users created
//! and verified in auth.

use crate::store::profiles;
use bus::{inbox, ConsumerSpec, Handler, HandlerError, Incoming};
use diesel::prelude::*;
use domain::messages::{Contract, UserEmailVerified, UserRegistered};
use platform::db::PgPool;
use std::time::Duration;

pub const QUEUE: &str = "accounts.events";

pub struct UserEvents {
    pool: PgPool,
}

impl UserEvents {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn spec(retry_delays: Vec<Duration>) -> ConsumerSpec {
        ConsumerSpec::new(QUEUE)
            .bind(bus::topology::EVENTS, UserRegistered::TYPE)
            .bind(bus::topology::EVENTS, UserEmailVerified::TYPE)
            .retry_delays(retry_delays)
    }
}

enum Change {
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

impl Handler for UserEvents {
    async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        let change = parse(&message)?;
        inbox::apply_once(&self.pool, QUEUE, message.message_id, move |conn| {
            apply(conn, &change)
        })
        .await
    }
}
