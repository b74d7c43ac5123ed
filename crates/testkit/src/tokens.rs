//! Access tokens for the tests of any service: an Ed25519 issuer that signs
//! the platform's claims (`typ` at+jwt, `kid`, `aud` platform) and serves
//! its JWKS over real HTTP, so a service under test fetches and verifies
//! keys exactly as it does auth's, without running auth.

use authn::{Jwk, JwkSet};
use domain::claims::{AccessClaims, ACCESS_TOKEN_TYPE, AUDIENCE};
use domain::Role;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

pub struct TestIssuer {
    issuer: String,
    kid: String,
    encoding: EncodingKey,
    jwks_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestIssuer {
    /// A fresh key, and its JWKS served on a local port.
    pub async fn start(issuer: &str) -> anyhow::Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("key generation failed"))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("generated key is unusable"))?;
        let kid = format!("test-{}", Uuid::new_v4().simple());
        let jwks = serde_json::to_string(&JwkSet {
            keys: vec![Jwk::ed25519(&kid, pair.public_key().as_ref())],
        })?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let jwks_url = format!("http://{}/.well-known/jwks.json", listener.local_addr()?);
        let server = tokio::spawn(serve(listener, jwks));
        Ok(Self {
            issuer: issuer.to_string(),
            kid,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwks_url,
            server,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where a service under test finds the keys (`AUTH_JWKS_URL`).
    pub fn jwks_url(&self) -> &str {
        &self.jwks_url
    }

    /// A token for `user` with `roles` and a session of its own, valid for
    /// 15 minutes.
    pub fn token(&self, user: Uuid, roles: &[Role]) -> String {
        let now = chrono::Utc::now().timestamp();
        self.sign(&AccessClaims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.to_string(),
            sub: user.to_string(),
            roles: roles.to_vec(),
            sid: Uuid::now_v7().to_string(),
            iat: now,
            nbf: now,
            exp: now + 900,
            jti: Uuid::new_v4().to_string(),
        })
    }

    /// Signs whatever claims a test wants (expired, foreign audience...).
    pub fn sign(&self, claims: &AccessClaims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_string());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }
}

/// Answers every request with the JWKS: enough HTTP/1.1 for a client that
/// asks for one document per connection.
async fn serve(listener: TcpListener, jwks: String) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let jwks = jwks.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
                if request.len() > 64 * 1024 {
                    return;
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
