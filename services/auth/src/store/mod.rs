//! Queries, one module per table. Functions take a connection so callers can
//! compose them in one transaction.

pub mod email_tokens;
pub mod sessions;
pub mod throttle;
pub mod users;
