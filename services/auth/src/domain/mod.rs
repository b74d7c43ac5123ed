//! Auth's own rules: password hashing, opaque tokens, signing keys.

pub mod keys;
pub mod password;
pub mod secret;
