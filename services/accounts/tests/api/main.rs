//! Integration tests of the accounts service alone, against real
//! PostgreSQL and RabbitMQ; testkit signs its tokens and publishes the
//! events auth would (tests with the real auth are in tests/e2e).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod basics;
mod events;
mod faults;
mod me;
mod search;
mod users;
