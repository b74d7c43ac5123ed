//! Access-token verification for every service: RFC 8725 rules with the
//! algorithm pinned to EdDSA, keys from the auth service's JWKS (cached,
//! refetched on an unknown `kid` at most once per interval), an actix
//! extractor for the caller, and role guards.

mod caller;
pub use caller::bearer_token;
mod jwks;
mod verifier;

pub use caller::Caller;
pub use jwks::{Jwk, JwkSet, JwksClient, StaticKeys};
pub use verifier::{KeyProvider, TokenError, Verifier};
