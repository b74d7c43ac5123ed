//! Chat's tables, one module each.
pub mod agents;
pub mod bookmarks;
pub mod messages;
pub mod rooms;
