//! Integration tests of the chat service against real PostgreSQL and
//! RabbitMQ, one or two replicas per test; testkit signs the tokens and
//! publishes the events auth would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod assignment;
mod basics;
mod emails;
mod messages;
mod presence;
mod replicas;
mod rooms;
mod websocket;
