//! The `email` queue: render the template, send once per idempotency key.

pub mod handler;
pub mod templates;
pub mod transport;
