use crate::verifier::KeyProvider;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::future::BoxFuture;
use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One public key as published (RFC 7517 / RFC 8037 for Ed25519).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

impl Jwk {
    pub fn ed25519(kid: &str, public_key: &[u8]) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(public_key),
            kid: kid.into(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
        }
    }

    /// Only Ed25519 signing keys are accepted, whatever else a set holds.
    pub fn decoding_key(&self) -> Option<DecodingKey> {
        let usable =
            self.kty == "OKP" && self.crv == "Ed25519" && self.alg == "EdDSA" && self.use_ == "sig";
        let raw = URL_SAFE_NO_PAD.decode(&self.x).ok()?;
        (usable && raw.len() == 32).then(|| DecodingKey::from_ed_der(&raw))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// Keys fetched from a JWKS URL and cached. An unknown `kid` triggers a
/// refetch, but not more often than `min_refetch_interval`, so a flood of
/// forged kids cannot turn into a flood of requests to the auth service.
pub struct JwksClient {
    url: String,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: Mutex<Option<Instant>>,
    min_refetch_interval: Duration,
    max_age: Duration,
}

impl JwksClient {
    pub fn new(url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            url: url.into(),
            http,
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
            min_refetch_interval: Duration::from_secs(10),
            max_age: Duration::from_secs(300),
        }
    }

    /// How long fetched keys are trusted before the set is fetched again, so
    /// a key retired by rotation stops verifying here too.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    async fn is_stale(&self) -> bool {
        self.last_fetch
            .lock()
            .await
            .is_none_or(|at| at.elapsed() >= self.max_age)
    }

    pub fn with_min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    fn cached(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    /// Fetches the set unless one was fetched (or failed) within the minimum
    /// interval. The attempt is recorded when it completes: a request that
    /// is cancelled mid-fetch (its client went away) does not hold back the
    /// next one.
    async fn refetch(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refetch_interval) {
            return;
        }
        let fetched = async {
            self.http
                .get(&self.url)
                .send()
                .await?
                .error_for_status()?
                .json::<JwkSet>()
                .await
        }
        .await;
        *last = Some(Instant::now());
        match fetched {
            Ok(set) => {
                let keys: HashMap<_, _> = set
                    .keys
                    .iter()
                    .filter_map(|jwk| jwk.decoding_key().map(|key| (jwk.kid.clone(), key)))
                    .collect();
                if let Ok(mut cache) = self.keys.write() {
                    *cache = keys;
                }
            }
            Err(err) => tracing::warn!(url = %self.url, error = %err, "JWKS fetch failed"),
        }
    }
}

impl KeyProvider for JwksClient {
    fn key(&self, kid: String) -> BoxFuture<'_, Option<DecodingKey>> {
        Box::pin(async move {
            if self.is_stale().await {
                self.refetch().await;
            } else if let Some(key) = self.cached(&kid) {
                return Some(key);
            } else {
                self.refetch().await;
            }
            self.cached(&kid)
        })
    }
}

/// Keys held in memory, replaced as a whole (the auth service's own keyring).
#[derive(Clone, Default)]
pub struct StaticKeys(Arc<RwLock<HashMap<String, DecodingKey>>>);

impl StaticKeys {
    pub fn replace(&self, set: &JwkSet) {
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| jwk.decoding_key().map(|key| (jwk.kid.clone(), key)))
            .collect();
        if let Ok(mut current) = self.0.write() {
            *current = keys;
        }
    }
}

impl KeyProvider for StaticKeys {
    fn key(&self, kid: String) -> BoxFuture<'_, Option<DecodingKey>> {
        let key = self.0.read().ok().and_then(|keys| keys.get(&kid).cloned());
        Box::pin(async move { key })
    }
}
