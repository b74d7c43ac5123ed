//! Integration tests of the worker: real RabbitMQ, real PostgreSQL, a real
//! SMTP server from testkit, real host-agent processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod basics;
mod delivery;
mod operations;
mod provisioning;
