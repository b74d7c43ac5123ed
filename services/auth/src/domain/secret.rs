//! Opaque bearer secrets (refresh tokens, email tokens): the signing
//! crate's, shared with the scheduler's instance credentials.
pub use signing::Secret;
