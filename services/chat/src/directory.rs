//! Events chat consumes from its queue `chat.events`: who people are (names
//! and addresses for emails) and who is staff, from auth's and accounts'
//! events. Account events carry a revision; an older one than what chat
//! has is ignored.

use crate::model::is_agent;
use crate::schema::{agents, people};
use bus::inbox::{Inboxed, Transactional};
use bus::{ConsumerSpec, HandlerError, Incoming};
use diesel::prelude::*;
use domain::messages::{
    AccountDisabled, AccountEnabled, AccountProfileUpdated, AccountRolesChanged, Contract,
    UserRegistered,
};
use platform::db::PgPool;
use serde::de::DeserializeOwned;
use std::time::Duration;
use uuid::Uuid;

pub const QUEUE: &str = "chat.events";

pub struct PeopleEvents;

impl PeopleEvents {
    pub fn handler(pool: PgPool) -> Inboxed<Self> {
        Inboxed::new(pool, QUEUE, Self)
    }

    pub fn spec(retry_delays: Vec<Duration>) -> ConsumerSpec {
        let events = bus::topology::EVENTS;
        ConsumerSpec::new(QUEUE)
            .bind(events, UserRegistered::TYPE)
            .bind(events, AccountRolesChanged::TYPE)
            .bind(events, AccountDisabled::TYPE)
            .bind(events, AccountEnabled::TYPE)
            .bind(events, AccountProfileUpdated::TYPE)
            .retry_delays(retry_delays)
            .prefetch(64)
            .batch(32)
            .concurrency(2)
    }
}

pub enum Change {
    Registered(UserRegistered),
    Roles(AccountRolesChanged),
    Disabled(AccountDisabled),
    Enabled(AccountEnabled),
    Profile(AccountProfileUpdated),
}

fn data<T: Contract + DeserializeOwned>(message: &Incoming) -> Result<T, HandlerError> {
    let envelope = message.envelope::<T>()?;
    bus::consumer::require_version(envelope.version, T::VERSION)?;
    Ok(envelope.data)
}

fn parse(message: &Incoming) -> Result<Change, HandlerError> {
    Ok(match message.message_type.as_str() {
        UserRegistered::TYPE => Change::Registered(data(message)?),
        AccountRolesChanged::TYPE => Change::Roles(data(message)?),
        AccountDisabled::TYPE => Change::Disabled(data(message)?),
        AccountEnabled::TYPE => Change::Enabled(data(message)?),
        AccountProfileUpdated::TYPE => Change::Profile(data(message)?),
        other => {
            return Err(HandlerError::Permanent(format!(
                "unexpected message type `{other}`"
            )))
        }
    })
}

fn upsert_person(
    conn: &mut PgConnection,
    user_id: Uuid,
    display_name: &str,
    email: Option<&str>,
) -> QueryResult<()> {
    diesel::insert_into(people::table)
        .values((
            people::user_id.eq(user_id),
            people::display_name.eq(display_name),
            people::email.eq(email),
        ))
        .on_conflict(people::user_id)
        .do_update()
        .set((
            people::display_name.eq(display_name),
            people::email.eq(email),
            people::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Sets what an account event says of an agent, unless chat already has
/// a newer revision. Someone who was never staff gets no agent row.
fn update_agent(
    conn: &mut PgConnection,
    user_id: Uuid,
    revision: i64,
    is_agent_now: Option<bool>,
    disabled: Option<bool>,
) -> QueryResult<()> {
    if is_agent_now == Some(true) {
        diesel::insert_into(agents::table)
            .values(agents::user_id.eq(user_id))
            .on_conflict_do_nothing()
            .execute(conn)?;
    }
    let agent = agents::table.filter(agents::user_id.eq(user_id));
    let updated_at = agents::updated_at.eq(diesel::dsl::now);
    if let Some(is_agent_now) = is_agent_now {
        diesel::update(agent.filter(agents::roles_revision.lt(revision)))
            .set((
                agents::is_agent.eq(is_agent_now),
                agents::roles_revision.eq(revision),
                updated_at,
            ))
            .execute(conn)?;
    }
    if let Some(disabled) = disabled {
        diesel::update(agent.filter(agents::status_revision.lt(revision)))
            .set((
                agents::disabled.eq(disabled),
                agents::status_revision.eq(revision),
                updated_at,
            ))
            .execute(conn)?;
    }
    Ok(())
}

fn apply(conn: &mut PgConnection, change: &Change) -> QueryResult<()> {
    match change {
        Change::Registered(event) => {
            upsert_person(
                conn,
                event.user_id,
                &event.display_name,
                event.email.as_deref(),
            )?;
            if is_agent(&event.roles) {
                update_agent(conn, event.user_id, 0, Some(true), None)?;
            }
            Ok(())
        }
        Change::Roles(event) => update_agent(
            conn,
            event.user_id,
            event.revision,
            Some(is_agent(&event.roles)),
            None,
        ),
        Change::Disabled(event) => {
            update_agent(conn, event.user_id, event.revision, None, Some(true))
        }
        Change::Enabled(event) => {
            update_agent(conn, event.user_id, event.revision, None, Some(false))
        }
        Change::Profile(event) => diesel::update(
            people::table
                .find(event.user_id)
                .filter(people::revision.lt(event.revision)),
        )
        .set((
            people::display_name.eq(&event.display_name),
            people::revision.eq(event.revision),
            people::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .map(|_| ()),
    }
}

impl Transactional for PeopleEvents {
    type Change = Change;

    fn parse(&self, message: &Incoming) -> Result<Change, HandlerError> {
        parse(message)
    }

    fn apply(conn: &mut PgConnection, change: &Change) -> QueryResult<()> {
        apply(conn, change)
    }
}
