//! Chat's tables, one module each, and the assignments made by functions
//! of the schema.
pub mod agents;
pub mod assignments;
pub mod bookmarks;
pub mod messages;
pub mod rooms;
