//! The platform's shared vocabulary: ids, roles, validated values, the JWT
//! claims and the versioned contracts of events and jobs.

pub mod claims;
pub mod ids;
pub mod instance;
pub mod messages;
pub mod role;
pub mod status;
pub mod values;

pub use ids::{SessionId, UserId};
pub use role::Role;
pub use status::AccountStatus;
pub use values::{DisplayName, Email, Password, ValueError};
