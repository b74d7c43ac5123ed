//! Integration tests of the worker: real RabbitMQ, real PostgreSQL, a real
//! SMTP server from testkit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod basics;
mod delivery;
mod operations;
