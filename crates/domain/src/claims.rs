//! Access-token claims (RFC 9068 profile), shared by the issuer and verifiers.

use crate::role::Role;
use serde::{Deserialize, Serialize};

pub const AUDIENCE: &str = "platform";
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub roles: Vec<Role>,
    pub sid: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
}
