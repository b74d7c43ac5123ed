//! The worker: consumes the job queues `email` and `provisioning`, one
//! handler each, registered in `startup.rs`.

pub mod cli;
pub mod config;
pub mod email;
pub mod provisioning;
pub mod schema;
pub mod startup;
pub mod store;

use diesel_migrations::{embed_migrations, EmbeddedMigrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
/// Advisory-lock key under which this service migrates.
pub const MIGRATION_LOCK: i64 = 7_270_500;
pub const SERVICE: &str = "worker";
