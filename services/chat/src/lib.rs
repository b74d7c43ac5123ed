//! The chat service: support rooms between visitors and staff, messages
//! ordered and deduplicated in PostgreSQL, live delivery over WebSockets
//! through the `chat.live` exchange to any number of replicas, automatic
//! assignment of rooms to online staff, and staff presence.

pub mod assignment;
pub mod cli;
pub mod config;
pub mod conversation;
pub mod directory;
pub mod error;
pub mod live;
pub mod metrics;
pub mod model;
pub mod presence;
pub mod routes;
pub mod schema;
pub mod startup;
pub mod state;
pub mod store;
pub mod ws;

use diesel_migrations::{embed_migrations, EmbeddedMigrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
/// Advisory-lock key under which this service migrates.
pub const MIGRATION_LOCK: i64 = 7_270_300;
/// Advisory-lock key of the replica that expires dead replicas, sweeps
/// presence and drains the waiting queue.
pub const LEADER_LOCK: i64 = 7_270_301;
/// Transaction advisory-lock key that orders assignments from the queue.
pub const QUEUE_LOCK: i64 = 7_270_302;
pub const SERVICE: &str = "chat";

/// What chat declares on the broker: its queue `chat.events`, the
/// exchange `chat.live`, and the email jobs it sends.
pub fn topology(retry_delays: Vec<std::time::Duration>) -> bus::Topology {
    bus::Topology::new()
        .consumer(&directory::PeopleEvents::spec(retry_delays))
        .exchange(live::EXCHANGE, live::exchange_kind())
        .sends_jobs::<domain::messages::EmailJob>()
}
