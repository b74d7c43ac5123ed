//! Events accounts consumes from its queue `accounts.events`: users created
//! and verified in auth.

use crate::store::profiles;
use bus::{inbox, ConsumerSpec, Handler, HandlerError, Incoming};
use diesel::prelude::*;
use domain::messages::{Contract, UserEmailVerified, UserRegistered};
use platform::db::{self, DbError, PgPool};
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
        let message_id = message.message_id.clone();
        db::run(&self.pool, move |conn| {
            conn.transaction(|conn| {
                if inbox::first_delivery(conn, QUEUE, &message_id)? {
                    apply(conn, &change)?;
                }
                Ok::<_, diesel::result::Error>(())
            })
            .map_err(DbError::from)
        })
        .await
        .map_err(|err: DbError| HandlerError::Transient(err.to_string()))
    }
}
