//! Integration tests of the scheduler against real PostgreSQL and
//! RabbitMQ, one or two replicas per test; testkit signs the users'
//! tokens, and the tests speak for host agents over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod agent_processes;
mod agents;
mod basics;
mod fleet;
mod interleavings;
mod race;
mod sessions;
