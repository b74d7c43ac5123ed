//! argon2id hashing. Hashing is CPU-bound: it runs on the blocking pool,
//! at most one per core at a time, so a login burst queues instead of
//! starving the executor or exhausting memory.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use domain::Password;
use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Verified against when the account does not exist, so an unknown email
    /// costs the same time as a wrong password.
    dummy_hash: Arc<String>,
}

impl Hasher {
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|err| anyhow::anyhow!("invalid argon2 parameters: {err}"))?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let dummy_hash = hash_with(&params, "dummy password for timing equalisation")?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(cores)),
            dummy_hash: Arc::new(dummy_hash),
        })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        let params = self.params.clone();
        let password = password.expose().to_string();
        tokio::task::spawn_blocking(move || hash_with(&params, &password)).await?
    }

    /// `true` if `candidate` matches `stored`; with no stored hash it still
    /// does the work and answers `false`.
    pub async fn verify(&self, candidate: &str, stored: Option<String>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let params = self.params.clone();
        let candidate = candidate.to_string();
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.as_str().to_string());
        let matches =
            tokio::task::spawn_blocking(move || verify_with(&params, &candidate, &hash)).await?;
        Ok(known && matches)
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_with(params: &Params, password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| anyhow::anyhow!("hashing failed: {err}"))
}

/// Verifies with the parameters stored in the hash itself, so hashes made
/// before a parameter change keep working.
pub fn verify_with(params: &Params, password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2(params)
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hasher = Hasher::new(64, 1, 1).unwrap();
        let password = Password::parse("correct horse battery").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(hasher
            .verify("correct horse battery", Some(hash.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify("wrong horse battery", Some(hash))
            .await
            .unwrap());
        assert!(!hasher.verify("correct horse battery", None).await.unwrap());
    }
}
