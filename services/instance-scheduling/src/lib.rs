//! The instance-scheduling service: hands clients a slot on a compute
//! instance chosen by load, with the database keeping every slot honest
//! (one claim statement, a CHECK against overflow, a unique index per
//! user), signs the connection token the instance's host agent checks,
//! and keeps the fleet's state from the agents' registrations and
//! heartbeats.

pub mod allocation;
pub mod cli;
pub mod config;
pub mod error;
pub mod events;
pub mod metrics;
pub mod model;
pub mod reconciler;
pub mod routes;
pub mod schema;
pub mod startup;
pub mod state;
pub mod store;
pub mod tokens;

use diesel_migrations::{embed_migrations, EmbeddedMigrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
/// Advisory-lock key under which this service migrates.
pub const MIGRATION_LOCK: i64 = 7_270_400;
/// Advisory-lock key of the replica that runs the reconciler.
pub const LEADER_LOCK: i64 = 7_270_401;
/// Transaction advisory-lock key under which signing keys are created
/// and rotated.
pub const KEYS_LOCK: i64 = 7_270_402;
pub const SERVICE: &str = "instance-scheduling";

/// What the scheduler declares on the broker: its queue of instance
/// events and the provisioning jobs it sends.
pub fn topology(retry_delays: Vec<std::time::Duration>) -> bus::Topology {
    bus::Topology::new()
        .consumer(&events::InstanceEvents::spec(retry_delays))
        .sends_jobs::<domain::messages::ProvisioningJob>()
}
