//! The auth service: identities, passwords, sessions with rotating refresh
//! tokens, access tokens signed with Ed25519, and the JWKS that every other
//! service verifies them with.

pub mod cli;
pub mod config;
pub mod consumers;
pub mod domain;
pub mod error;
pub mod http;
pub mod routes;
pub mod schema;
pub mod signup;
pub mod startup;
pub mod state;
pub mod store;
pub mod throttling;

use diesel_migrations::{embed_migrations, EmbeddedMigrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
/// Advisory-lock key under which this service migrates.
pub const MIGRATION_LOCK: i64 = 7_270_000;
pub const SERVICE: &str = "auth";

/// What auth declares on the broker: its queue `auth.events` and the
/// `email` job queue it sends to.
pub fn topology(retry_delays: Vec<std::time::Duration>) -> bus::Topology {
    bus::Topology::new()
        .consumer(&consumers::AccountEvents::spec(retry_delays))
        .sends_jobs::<::domain::messages::EmailJob>()
}
