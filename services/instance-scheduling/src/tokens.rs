//! Connection tokens: short JWTs that let one client into one instance,
//! signed with the scheduler's keys (crate `signing`: in the scheduling
//! database, shared by every replica, published at
//! `/api/scheduling/.well-known/jwks.json`). The host agent checks them
//! itself; the scheduler then moves the session to `connected`, once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use signing::Keyring;
use uuid::Uuid;

/// The `typ` of a connection token's header.
pub const CONNECTION_TOKEN_TYPE: &str = "connection+jwt";

/// A connection token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionClaims {
    /// The instance it admits to.
    pub aud: String,
    /// The session.
    pub sid: String,
    /// The user.
    pub sub: String,
    pub iat: i64,
    /// The reservation's end.
    pub exp: i64,
    pub jti: String,
}

/// Signs the token for `session` of `user` on `instance`, valid until
/// `expires_at`.
pub fn connection_token(
    keyring: &Keyring,
    instance: Uuid,
    session: Uuid,
    user: Uuid,
    token_id: Uuid,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<String> {
    let claims = ConnectionClaims {
        aud: instance.to_string(),
        sid: session.to_string(),
        sub: user.to_string(),
        iat: Utc::now().timestamp(),
        exp: expires_at.timestamp(),
        jti: token_id.to_string(),
    };
    keyring.sign(CONNECTION_TOKEN_TYPE, &claims)
}
