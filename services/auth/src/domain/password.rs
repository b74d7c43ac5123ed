//! argon2id hashing on dedicated threads, one per core, each reusing its own
//! working memory.
//!
//! Why not `spawn_blocking` and a fresh allocation per hash: every hash
//! needs `m_cost` KiB (19 MiB by default). Allocated per call, on whatever
//! blocking thread runs it, glibc keeps the freed blocks in per-thread
//! arenas (a 1 GiB resident set after a login burst was measured) and each
//! call pays the page faults of fresh memory. A fixed set of workers bounds
//! the memory to `cores x m_cost`, allocated on first use, and queues a burst
//! instead of starving the executor.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use domain::Password;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

enum Job {
    Hash {
        password: String,
        reply: oneshot::Sender<anyhow::Result<String>>,
    },
    Verify {
        password: String,
        hash: String,
        reply: oneshot::Sender<bool>,
    },
}

#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::Sender<Job>,
    /// Verified against when the account does not exist, so an unknown email
    /// costs the same time as a wrong password. Random salt and output with
    /// the real parameters: it costs a full hash and never matches.
    dummy_hash: Arc<String>,
}

impl Hasher {
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|err| anyhow::anyhow!("invalid argon2 parameters: {err}"))?;
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        for index in 0..workers {
            let receiver = receiver.clone();
            let params = params.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || work(&receiver, &params))?;
        }
        let dummy_hash = Arc::new(phc_string(&params, &random_salt()?, &random_bytes::<32>())?);
        Ok(Self { jobs, dummy_hash })
    }

    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Hash {
                password: password.expose().to_string(),
                reply,
            })
            .map_err(|_| anyhow::anyhow!("password hashing workers are gone"))?;
        answer.await?
    }

    /// `true` if `candidate` matches `stored`; with no stored hash it still
    /// does the work and answers `false`.
    pub async fn verify(&self, candidate: &str, stored: Option<String>) -> anyhow::Result<bool> {
        let known = stored.is_some();
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Verify {
                password: candidate.to_string(),
                hash: stored.unwrap_or_else(|| self.dummy_hash.as_str().to_string()),
                reply,
            })
            .map_err(|_| anyhow::anyhow!("password hashing workers are gone"))?;
        Ok(answer.await? && known)
    }
}

fn work(receiver: &Mutex<mpsc::Receiver<Job>>, params: &Params) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        match job {
            Job::Hash { password, reply } => {
                let _ = reply.send(hash_with(params, &password, &mut memory));
            }
            Job::Verify {
                password,
                hash,
                reply,
            } => {
                let _ = reply.send(verify_with(&password, &hash, &mut memory));
            }
        }
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

fn random_salt() -> anyhow::Result<SaltString> {
    SaltString::encode_b64(&random_bytes::<16>()).map_err(|err| anyhow::anyhow!("salt: {err}"))
}

fn blocks(memory: &mut Vec<Block>, params: &Params) -> usize {
    let needed = params.block_count();
    if memory.len() < needed {
        memory.resize(needed, Block::default());
    }
    needed
}

fn phc_string(params: &Params, salt: &SaltString, output: &[u8]) -> anyhow::Result<String> {
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: params
            .try_into()
            .map_err(|err| anyhow::anyhow!("params: {err}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(output).map_err(|err| anyhow::anyhow!("output: {err}"))?),
    };
    Ok(hash.to_string())
}

fn hash_with(params: &Params, password: &str, memory: &mut Vec<Block>) -> anyhow::Result<String> {
    let salt = random_salt()?;
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|err| anyhow::anyhow!("salt: {err}"))?;
    let mut output = [0u8; 32];
    let count = blocks(memory, params);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt_raw,
            &mut output,
            &mut memory[..count],
        )
        .map_err(|err| anyhow::anyhow!("hashing failed: {err}"))?;
    phc_string(params, &salt, &output)
}

/// Verifies with the parameters stored in the hash itself, so hashes made
/// before a parameter change keep working. Comparison is constant-time.
fn verify_with(password: &str, hash: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return false;
    }
    let (Ok(params), Some(expected), Some(salt)) =
        (Params::try_from(&parsed), parsed.hash, parsed.salt)
    else {
        return false;
    };
    let version = parsed
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or(Version::V0x13);
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut output = vec![0u8; expected.len()];
    let count = blocks(memory, &params);
    let computed = Argon2::new(Algorithm::Argon2id, version, params)
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt_raw,
            &mut output,
            &mut memory[..count],
        );
    computed.is_ok() && Output::new(&output).is_ok_and(|actual| actual == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;

    #[tokio::test]
    async fn hashes_are_standard_argon2id_and_verify() {
        let hasher = Hasher::new(64, 1, 1).unwrap();
        let password = Password::parse("correct horse battery").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(hasher
            .verify("correct horse battery", Some(hash.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify("wrong horse battery", Some(hash.clone()))
            .await
            .unwrap());
        assert!(!hasher.verify("correct horse battery", None).await.unwrap());
        assert!(!hasher.verify("x", Some("not a hash".into())).await.unwrap());
        // Interoperable with the reference implementation, both ways.
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse battery", &parsed)
            .is_ok());
        let foreign = argon2::PasswordHasher::hash_password(
            &Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(128, 2, 1, None).unwrap(),
            ),
            b"another one",
            &random_salt().unwrap(),
        )
        .unwrap()
        .to_string();
        assert!(
            hasher.verify("another one", Some(foreign)).await.unwrap(),
            "older parameters still verify"
        );
    }

    #[test]
    fn the_dummy_hash_uses_the_real_parameters() {
        let hasher = Hasher::new(256, 3, 1).unwrap();
        assert!(
            hasher
                .dummy_hash
                .starts_with("$argon2id$v=19$m=256,t=3,p=1$"),
            "{}",
            hasher.dummy_hash
        );
    }
}
