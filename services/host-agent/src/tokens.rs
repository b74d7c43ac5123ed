//! Connection tokens, checked here before the scheduler is asked: a JWT
//! the scheduler signed (EdDSA, `typ` `connection+jwt`, `kid` of a key in
//! its JWKS) for one session (`sid`) of one user (`sub`) on one instance
//! (`aud`), until the reservation ends (`exp`). Keys come only from the
//! configured provider (the scheduler's JWKS, cached by `authn`): `jku`,
//! `x5u` and an embedded `jwk` are never looked at.

use authn::KeyProvider;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use std::sync::Arc;
use uuid::Uuid;

/// The `typ` of a connection token's header (instance-scheduling's
/// `tokens::CONNECTION_TOKEN_TYPE`).
pub const CONNECTION_TOKEN_TYPE: &str = "connection+jwt";

/// Clock skew allowed between the scheduler and this machine, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// What a valid token admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub session_id: Uuid,
    pub user_id: Uuid,
}

/// Why a token was refused. The text is safe to show the client: it never
/// contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the connection token is malformed")]
    Malformed,
    #[error("the connection token must be signed with EdDSA")]
    WrongAlgorithm,
    #[error("the token is not a connection token")]
    WrongType,
    #[error("the connection token's signing key is unknown")]
    UnknownKey,
    #[error("the connection token's signature is not valid")]
    BadSignature,
    #[error("the connection token has expired")]
    Expired,
    #[error("the connection token is for another instance")]
    OtherInstance,
    #[error("the connection token is invalid: {0}")]
    Invalid(String),
}

/// The claims the agent needs; `aud` and `exp` are checked by the
/// validation, `iat` and `jti` are the scheduler's business.
#[derive(Debug, Deserialize)]
struct ConnectionClaims {
    sid: String,
    sub: String,
}

/// Whether the token must still be within its `exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Connecting: the reservation must not be over.
    Enforced,
    /// Leaving: the token names the session the caller holds, and the
    /// reservation's end (which is all `exp` is) passed long ago.
    Ignored,
}

/// Verifies connection tokens for this instance. Cheap to clone.
#[derive(Clone)]
pub struct ConnectionTokens {
    keys: Arc<dyn KeyProvider>,
}

impl ConnectionTokens {
    pub fn new(keys: Arc<dyn KeyProvider>) -> Self {
        Self { keys }
    }

    /// Fetches the key set once, so that the first client does not wait
    /// for it. A kid nobody uses is asked for: the provider fetches the
    /// set when it has none, and caches it.
    pub async fn warm_up(&self) {
        let _ = self.keys.key(String::new()).await;
    }

    /// A token a client presents to connect to `instance`: every rule,
    /// expiry included.
    pub async fn admit(&self, token: &str, instance: Uuid) -> Result<Admission, TokenRefusal> {
        self.check(token, instance, Expiry::Enforced).await
    }

    /// A token a client presents to say it leaves: every rule but expiry
    /// (`exp` must still be there).
    pub async fn identify(&self, token: &str, instance: Uuid) -> Result<Admission, TokenRefusal> {
        self.check(token, instance, Expiry::Ignored).await
    }

    async fn check(
        &self,
        token: &str,
        instance: Uuid,
        expiry: Expiry,
    ) -> Result<Admission, TokenRefusal> {
        // The header is read before any key is looked up, so that `alg:
        // none` or HS256 (an attacker "signing" with the public key) never
        // reach a verification.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRefusal::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenRefusal::WrongAlgorithm);
        }
        if header.typ.as_deref() != Some(CONNECTION_TOKEN_TYPE) {
            return Err(TokenRefusal::WrongType);
        }
        let kid = header.kid.ok_or(TokenRefusal::UnknownKey)?;
        let key = self.keys.key(kid).await.ok_or(TokenRefusal::UnknownKey)?;
        let data =
            jsonwebtoken::decode::<ConnectionClaims>(token, &key, &validation(instance, expiry))
                .map_err(|err| refusal(err.kind()))?;
        admission(data.claims)
    }
}

fn validation(instance: Uuid, expiry: Expiry) -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[instance.to_string()]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    validation.validate_exp = expiry == Expiry::Enforced;
    // Only when the token has one; the scheduler's do not.
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECS;
    validation
}

fn refusal(kind: &ErrorKind) -> TokenRefusal {
    match kind {
        ErrorKind::ExpiredSignature => TokenRefusal::Expired,
        ErrorKind::InvalidAudience => TokenRefusal::OtherInstance,
        ErrorKind::InvalidSignature => TokenRefusal::BadSignature,
        ErrorKind::InvalidAlgorithm => TokenRefusal::WrongAlgorithm,
        ErrorKind::MissingRequiredClaim(claim) => {
            TokenRefusal::Invalid(format!("the `{claim}` claim is missing"))
        }
        ErrorKind::ImmatureSignature => TokenRefusal::Invalid("it is not valid yet".into()),
        ErrorKind::Json(_) => {
            TokenRefusal::Invalid("the `sid` or `sub` claim is missing or not text".into())
        }
        _ => TokenRefusal::Malformed,
    }
}

fn admission(claims: ConnectionClaims) -> Result<Admission, TokenRefusal> {
    let session_id = Uuid::parse_str(&claims.sid)
        .map_err(|_| TokenRefusal::Invalid("`sid` is not a session id".into()))?;
    let user_id = Uuid::parse_str(&claims.sub)
        .map_err(|_| TokenRefusal::Invalid("`sub` is not a user id".into()))?;
    Ok(Admission {
        session_id,
        user_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use authn::{Jwk, JwkSet, StaticKeys};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use serde_json::{json, Value};

    /// An Ed25519 key as the scheduler's keyring makes them, and a
    /// verifier that knows it (and only it).
    struct Signer {
        kid: String,
        encoding: EncodingKey,
        public_key: Vec<u8>,
    }

    impl Signer {
        fn generate(kid: &str) -> Self {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            Self {
                kid: kid.to_string(),
                encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
                public_key: pair.public_key().as_ref().to_vec(),
            }
        }

        fn tokens(&self) -> ConnectionTokens {
            let keys = StaticKeys::default();
            keys.replace(&JwkSet {
                keys: vec![Jwk::ed25519(&self.kid, &self.public_key)],
            });
            ConnectionTokens::new(Arc::new(keys))
        }

        fn sign_with(&self, typ: Option<&str>, claims: &Value) -> String {
            let mut header = Header::new(Algorithm::EdDSA);
            header.typ = typ.map(str::to_string);
            header.kid = Some(self.kid.clone());
            jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
        }

        fn sign(&self, claims: &Value) -> String {
            self.sign_with(Some(CONNECTION_TOKEN_TYPE), claims)
        }
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    struct Case {
        instance: Uuid,
        session: Uuid,
        user: Uuid,
    }

    impl Case {
        fn new() -> Self {
            Self {
                instance: Uuid::new_v4(),
                session: Uuid::new_v4(),
                user: Uuid::new_v4(),
            }
        }

        /// The claims the scheduler's `tokens::connection_token` signs.
        fn claims(&self, exp: i64) -> Value {
            json!({
                "aud": self.instance.to_string(),
                "sid": self.session.to_string(),
                "sub": self.user.to_string(),
                "iat": now(),
                "exp": exp,
                "jti": Uuid::new_v4().to_string(),
            })
        }
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    #[tokio::test]
    async fn a_token_from_the_scheduler_admits_its_session() {
        let signer = Signer::generate("k1");
        let case = Case::new();
        let token = signer.sign(&case.claims(now() + 60));
        let admitted = signer.tokens().admit(&token, case.instance).await.unwrap();
        assert_eq!(
            admitted,
            Admission {
                session_id: case.session,
                user_id: case.user
            }
        );
    }

    #[tokio::test]
    async fn a_token_for_another_instance_is_refused() {
        let signer = Signer::generate("k1");
        let case = Case::new();
        let token = signer.sign(&case.claims(now() + 60));
        let refused = signer.tokens().admit(&token, Uuid::new_v4()).await;
        assert_eq!(refused, Err(TokenRefusal::OtherInstance));
    }

    #[tokio::test]
    async fn an_expired_token_is_refused_past_the_leeway() {
        let signer = Signer::generate("k1");
        let case = Case::new();
        let tokens = signer.tokens();
        let expired = signer.sign(&case.claims(now() - LEEWAY_SECS as i64 - 5));
        assert_eq!(
            tokens.admit(&expired, case.instance).await,
            Err(TokenRefusal::Expired)
        );
        // Within the leeway, a skewed clock is forgiven.
        let just_over = signer.sign(&case.claims(now() - 1));
        assert!(tokens.admit(&just_over, case.instance).await.is_ok());
        // Leaving names the session, whatever the reservation's end.
        assert_eq!(
            tokens
                .identify(&expired, case.instance)
                .await
                .map(|a| a.session_id),
            Ok(case.session)
        );
    }

    #[tokio::test]
    async fn a_tampered_token_is_refused() {
        let signer = Signer::generate("k1");
        let case = Case::new();
        let tokens = signer.tokens();
        let token = signer.sign(&case.claims(now() + 60));
        let parts: Vec<&str> = token.split('.').collect();
        // Another session in the payload, the signature left as it was.
        let mut claims = case.claims(now() + 60);
        claims["sid"] = json!(Uuid::new_v4().to_string());
        let forged = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
        assert_eq!(
            tokens.admit(&forged, case.instance).await,
            Err(TokenRefusal::BadSignature)
        );
        // Signed by a key with the same kid that is not the scheduler's.
        let impostor = Signer::generate("k1").sign(&case.claims(now() + 60));
        assert_eq!(
            tokens.admit(&impostor, case.instance).await,
            Err(TokenRefusal::BadSignature)
        );
        // A kid the scheduler never published.
        let unknown = Signer::generate("k2").sign(&case.claims(now() + 60));
        assert_eq!(
            tokens.admit(&unknown, case.instance).await,
            Err(TokenRefusal::UnknownKey)
        );
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let signer = Signer::generate("k1");
        let case = Case::new();
        let header = json!({"alg": "none", "typ": CONNECTION_TOKEN_TYPE, "kid": "k1"});
        let unsigned = format!("{}.{}.", b64(&header), b64(&case.claims(now() + 60)));
        assert!(signer
            .tokens()
            .admit(&unsigned, case.instance)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn hs256_is_refused_even_with_the_public_key_as_secret() {
        let signer = Signer::generate("k1");
        let case = Case::new();
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(CONNECTION_TOKEN_TYPE.to_string());
        header.kid = Some("k1".to_string());
        let token = jsonwebtoken::encode(
            &header,
            &case.claims(now() + 60),
            &EncodingKey::from_secret(&signer.public_key),
        )
        .unwrap();
        assert_eq!(
            signer.tokens().admit(&token, case.instance).await,
            Err(TokenRefusal::WrongAlgorithm)
        );
    }

    #[tokio::test]
    async fn another_kind_of_token_is_refused() {
        let signer = Signer::generate("k1");
        let case = Case::new();
        let tokens = signer.tokens();
        let claims = case.claims(now() + 60);
        for typ in [Some("at+jwt"), Some("JWT"), None] {
            let token = signer.sign_with(typ, &claims);
            assert_eq!(
                tokens.admit(&token, case.instance).await,
                Err(TokenRefusal::WrongType),
                "{typ:?}"
            );
        }
    }

    #[tokio::test]
    async fn every_claim_the_agent_relies_on_is_required() {
        let signer = Signer::generate("k1");
        let case = Case::new();
        let tokens = signer.tokens();
        for claim in ["sid", "sub", "exp", "aud"] {
            let mut claims = case.claims(now() + 60);
            if let Some(map) = claims.as_object_mut() {
                map.remove(claim);
            }
            let token = signer.sign(&claims);
            assert!(
                matches!(
                    tokens.admit(&token, case.instance).await,
                    Err(TokenRefusal::Invalid(_))
                ),
                "without {claim}"
            );
        }
        let mut claims = case.claims(now() + 60);
        claims["sid"] = json!("not-a-session");
        let token = signer.sign(&claims);
        assert!(matches!(
            tokens.admit(&token, case.instance).await,
            Err(TokenRefusal::Invalid(_))
        ));
        assert_eq!(
            tokens.admit("not a jwt", case.instance).await,
            Err(TokenRefusal::Malformed)
        );
    }
}
