#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Integration tests of the auth service against real PostgreSQL and
//! RabbitMQ: every test gets a fresh database and AMQP names of its own.

mod helpers;

mod account_events;
mod admin;
mod basics;
mod faults;
mod login;
mod outbox;
mod password;
mod refresh;
mod register;
mod sessions;
mod tokens;
