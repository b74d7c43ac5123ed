//! Opaque bearer secrets ([`Secret`]), and Ed25519 keys that sign a
//! service's JWTs, kept in the service's own
//! database so that every replica signs with the same key, and published
//! as a JWKS for those who verify (`authn`). The newest key signs; the
//! previous one is still published, so a rotation invalidates no token.
//!
//! A service that signs includes [`MIGRATION_SQL`] in its first migration
//! (a test of the service checks that the copy has not drifted), loads its
//! keys with [`store::ensure_one`] at start, and rotates them with
//! [`store::rotate`].

pub mod keys;
pub mod secret;
pub mod store;

pub use keys::{Keyring, StoredKey, KEPT_KEYS};
pub use secret::Secret;

/// The `signing_keys` table, as every signing service's first migration
/// must create it.
pub const MIGRATION_SQL: &str = include_str!("../sql/signing_keys.sql");
