//! Refresh tokens: generation, hashing, and the keyed successor.
//!
//! A refresh token is 256 bits from the operating system's CSPRNG,
//! base64url-encoded; the database keeps only its SHA-256. Rotation derives
//! the successor from the presented token with a keyed hash (HMAC-SHA256
//! under a server secret), so a retry of the same token within the grace
//! period can be answered with the same successor without storing any token
//! in the clear.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::storage::Store;

const SECRET_NAME: &str = "refresh_successor_key";

/// The server's refresh-token successor key.
#[derive(Clone)]
pub struct RefreshTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for RefreshTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshTokens(<key redacted>)")
    }
}

/// 256 random bits from the OS, base64url.
fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("OS random source failed: {e}"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

impl RefreshTokens {
    /// Loads the successor key, creating it on first start. Every instance
    /// on one database shares it.
    pub async fn load(store: &dyn Store, now: i64) -> anyhow::Result<Self> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| anyhow::anyhow!("OS random source failed: {e}"))?;
        let key = store.secret_or_insert(SECRET_NAME, &fresh, now).await?;
        Ok(Self { key })
    }

    /// A new refresh token for a new session.
    pub fn generate(&self) -> Result<String, crate::error::Error> {
        random_token().map_err(|e| crate::error::Error::Internal(e.to_string()))
    }

    /// The token `token` rotates into: deterministic, unguessable without
    /// the key.
    pub fn successor(&self, token: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(b"warden refresh successor\0");
        mac.update(token.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// What the database stores for `token`.
    pub fn hash(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors_are_deterministic_and_keyed() {
        let a = RefreshTokens { key: vec![1; 32] };
        let b = RefreshTokens { key: vec![2; 32] };
        let t = random_token().unwrap();
        assert_eq!(a.successor(&t), a.successor(&t));
        assert_ne!(a.successor(&t), b.successor(&t));
        assert_ne!(a.successor(&t), t);
        assert_eq!(URL_SAFE_NO_PAD.decode(&t).unwrap().len(), 32);
    }

    #[test]
    fn tokens_are_unique() {
        assert_ne!(random_token().unwrap(), random_token().unwrap());
    }
}
