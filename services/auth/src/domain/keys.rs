//! Access-token issuance, signed by the service's keyring (crate
//! `signing`: Ed25519 keys in auth's database; the newest signs, the
//! previous one is still published, so a rotation logs nobody out).

use domain::claims::{AccessClaims, ACCESS_TOKEN_TYPE, AUDIENCE};
use domain::{Role, SessionId, UserId};
pub use signing::Keyring;

/// Transaction advisory-lock key under which auth creates and rotates keys.
pub const KEYS_LOCK: i64 = 7_270_001;

/// An access token for `user_id` in `session_id`, valid `ttl_secs`.
pub fn issue_access_token(
    keyring: &Keyring,
    issuer: &str,
    user_id: UserId,
    session_id: SessionId,
    roles: &[Role],
    ttl_secs: u64,
) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = AccessClaims {
        iss: issuer.to_string(),
        aud: AUDIENCE.to_string(),
        sub: user_id.to_string(),
        roles: roles.to_vec(),
        sid: session_id.to_string(),
        iat: now,
        nbf: now,
        exp: now + ttl_secs as i64,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    keyring.sign(ACCESS_TOKEN_TYPE, &claims)
}
