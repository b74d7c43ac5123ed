use domain::claims::{AccessClaims, ACCESS_TOKEN_TYPE, AUDIENCE};
use futures_util::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::sync::Arc;

/// Where verification keys come from, by `kid`.
pub trait KeyProvider: Send + Sync {
    fn key(&self, kid: String) -> BoxFuture<'_, Option<DecodingKey>>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token must be signed with EdDSA")]
    WrongAlgorithm,
    #[error("the token is not an access token")]
    WrongType,
    #[error("the token's signing key is unknown")]
    UnknownKey,
    #[error("the token is invalid: {0}")]
    Invalid(String),
}

/// Verifies access tokens. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    keys: Arc<dyn KeyProvider>,
    validation: Validation,
}

impl Verifier {
    /// Leeway for clock skew, in seconds.
    pub const LEEWAY_SECS: u64 = 5;

    pub fn new(issuer: &str, keys: Arc<dyn KeyProvider>) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = Self::LEEWAY_SECS;
        Self { keys, validation }
    }

    /// Checks signature and claims. `jku`, `x5u` and an embedded `jwk` are
    /// never consulted: keys come only from the configured provider.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::WrongAlgorithm);
        }
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(TokenError::WrongType);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.keys.key(kid).await.ok_or(TokenError::UnknownKey)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &self.validation)
            .map_err(|err| TokenError::Invalid(err.to_string()))?;
        if data.claims.sub.is_empty() {
            return Err(TokenError::Invalid("empty sub".into()));
        }
        Ok(data.claims)
    }
}
