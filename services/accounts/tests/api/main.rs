//! Integration tests of the accounts service, with the real auth service
//! beside it, against real PostgreSQL and RabbitMQ.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod basics;
mod faults;
mod flow;
mod me;
mod search;
mod users;
