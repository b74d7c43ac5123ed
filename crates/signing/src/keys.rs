//! Keys as stored, and the keyring that signs with the current one.

use authn::{Jwk, JwkSet};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// How many keys are kept (and published): the current and the previous.
pub const KEPT_KEYS: usize = 2;

/// A key as stored: PKCS#8 private key and raw public key.
#[derive(Clone)]
pub struct StoredKey {
    pub kid: String,
    pub private_key: Vec<u8>,
    pub public_key: Vec<u8>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl StoredKey {
    pub fn generate() -> anyhow::Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("key generation failed"))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("generated key is unusable"))?;
        let public_key = pair.public_key().as_ref().to_vec();
        // kid: a thumbprint of the public key, stable and unguessable.
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(&public_key)[..16]);
        Ok(Self {
            kid,
            private_key: pkcs8.as_ref().to_vec(),
            public_key,
        })
    }
}

/// The signing key and the published set, built from stored keys (newest
/// first).
#[derive(Clone)]
pub struct Keyring {
    kid: String,
    encoding: EncodingKey,
    jwks: JwkSet,
}

impl Keyring {
    pub fn from_stored(keys: &[StoredKey]) -> anyhow::Result<Self> {
        let current = keys
            .first()
            .ok_or_else(|| anyhow::anyhow!("no signing key"))?;
        Ok(Self {
            kid: current.kid.clone(),
            encoding: EncodingKey::from_ed_der(&current.private_key),
            jwks: JwkSet {
                keys: keys
                    .iter()
                    .take(KEPT_KEYS)
                    .map(|k| Jwk::ed25519(&k.kid, &k.public_key))
                    .collect(),
            },
        })
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// `claims` signed with EdDSA by the current key, with `typ` and the
    /// key's `kid` in the header.
    pub fn sign<C: Serialize>(&self, typ: &str, claims: &C) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(typ.to_string());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|err| anyhow::anyhow!("signing failed: {err}"))
    }
}
