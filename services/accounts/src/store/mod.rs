//! Queries, one module per table.

pub mod profiles;
