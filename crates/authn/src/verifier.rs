use domain::claims::{AccessClaims, ACCESS_TOKEN_TYPE, AUDIENCE};
use futures_util::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

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
///
/// A signature check costs tens of microseconds, so tokens already verified
/// are remembered (by their exact text) until they expire; a hit still
/// requires the signing key to be current, so a retired key takes its
/// tokens with it.
#[derive(Clone)]
pub struct Verifier {
    keys: Arc<dyn KeyProvider>,
    validation: Validation,
    verified: Arc<Mutex<HashMap<String, AccessClaims>>>,
}

/// Verified tokens remembered at most; the cache starts over when full.
const CACHE_CAPACITY: usize = 10_000;

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
        Self {
            keys,
            validation,
            verified: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn remembered(&self, token: &str) -> Option<AccessClaims> {
        let now = chrono_now();
        let mut cache = self.verified.lock().ok()?;
        match cache.get(token) {
            Some(claims) if claims.exp + Self::LEEWAY_SECS as i64 > now => Some(claims.clone()),
            Some(_) => {
                cache.remove(token);
                None
            }
            None => None,
        }
    }

    fn remember(&self, token: &str, claims: &AccessClaims) {
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(token.to_string(), claims.clone());
        }
    }

    /// Checks signature and claims. `jku`, `x5u` and an embedded `jwk` are
    /// never consulted: keys come only from the configured provider.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        self.check(token, true).await
    }

    /// [`verify`](Self::verify) for a token presented once and held on to
    /// (a WebSocket's auth frame): it is not remembered, since it would
    /// not be asked again, and ten thousand connections would fill the
    /// cache with their tokens.
    pub async fn verify_once(&self, token: &str) -> Result<AccessClaims, TokenError> {
        self.check(token, false).await
    }

    async fn check(&self, token: &str, remember: bool) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::WrongAlgorithm);
        }
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(TokenError::WrongType);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.keys.key(kid).await.ok_or(TokenError::UnknownKey)?;
        if let Some(claims) = self.remembered(token) {
            return Ok(claims);
        }
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &self.validation)
            .map_err(|err| TokenError::Invalid(err.to_string()))?;
        if data.claims.sub.is_empty() {
            return Err(TokenError::Invalid("empty sub".into()));
        }
        if remember {
            self.remember(token, &data.claims);
        }
        Ok(data.claims)
    }
}
