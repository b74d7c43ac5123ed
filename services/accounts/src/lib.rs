//! The accounts service: the user directory, and the authority for roles and
//! account status. Profiles are created from auth's `user.registered`; role
//! and status changes go back to auth as account events.

pub mod cli;
pub mod config;
pub mod consumers;
pub mod error;
pub mod routes;
pub mod schema;
pub mod startup;
pub mod state;
pub mod store;

use diesel_migrations::{embed_migrations, EmbeddedMigrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
/// Advisory-lock key under which this service migrates.
pub const MIGRATION_LOCK: i64 = 7_270_100;
pub const SERVICE: &str = "accounts";

/// What accounts declares on the broker: its queue `accounts.events`.
pub fn topology(retry_delays: Vec<std::time::Duration>) -> bus::Topology {
    bus::Topology::new().consumer(&consumers::UserEvents::spec(retry_delays))
}
