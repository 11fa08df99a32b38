//! Refresh tokens: generation, hashing, the keyed successor, and parsing.
//!
//! A refresh token is `<session id>.<generation>.<secret>`, opaque to
//! clients. The secret is 256 bits followed by a 128-bit tag:
//!
//! - generation 0 (the login) draws the 256 bits from the operating
//!   system's CSPRNG; every later generation's bits are HMAC-SHA256 of the
//!   whole previous token under a server key. So a retry of the same token
//!   within the grace period gets the same successor, without any token
//!   stored in the clear: the database keeps only SHA-256 hashes.
//! - the tag is HMAC-SHA256(key, session id, generation), truncated. It
//!   proves that *this server* issued a token for that session and
//!   generation, so a presented old generation can be told apart from a
//!   forgery in O(1): only a genuine old token triggers reuse detection
//!   (which revokes the session). The session id alone, which every access
//!   token carries as `sid`, is not enough to end somebody's session.
//!
//! Why a tag rather than walking the chain forward from the presented
//! token to the stored current hash: the walk costs one HMAC per
//! generation between them, a number the token's holder controls (a client
//! may rotate thousands of times), so it needs a cap — and a thief who
//! rotates past the cap would escape reuse detection. The tag has neither
//! cost nor cap.
//!
//! Tokens issued before this format (43 characters, no dots) are still
//! accepted: see [`ParsedRefresh::Legacy`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::error::RandomError;
use crate::domain::PresentedRefresh;
use crate::storage::{Store, StoreResult};

const SECRET_NAME: &str = "refresh_successor_key";

/// Bytes of the secret part drawn from the CSPRNG or the successor HMAC.
const SECRET_BYTES: usize = 32;
/// Bytes of the tag that binds the session id and generation.
const TAG_BYTES: usize = 16;

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

/// What a presented refresh token claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedRefresh {
    /// A token of this format whose tag verified: genuinely issued for this
    /// session and generation (its secret is checked against the stored
    /// hash).
    Session(PresentedRefresh),
    /// A token issued before the format carried its session (43 base64url
    /// characters); found by its hash in `legacy_refresh_tokens`.
    Legacy([u8; 32]),
    /// Malformed, or a forged tag.
    Invalid,
}

/// 256 random bits from the OS.
fn random_secret() -> Result<[u8; SECRET_BYTES], RandomError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(RandomError)?;
    Ok(bytes)
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

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes keys of any length")
    }

    fn tag(&self, session: Uuid, generation: i64) -> [u8; TAG_BYTES] {
        let mut mac = self.mac();
        mac.update(b"warden refresh tag\0");
        mac.update(session.as_bytes());
        mac.update(&generation.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }

    fn format(&self, session: Uuid, generation: i64, secret: &[u8]) -> String {
        let mut blob = Vec::with_capacity(SECRET_BYTES + TAG_BYTES);
        blob.extend_from_slice(secret);
        blob.extend_from_slice(&self.tag(session, generation));
        format!(
            "{}.{generation}.{}",
            session.hyphenated(),
            URL_SAFE_NO_PAD.encode(blob)
        )
    }

    /// The first refresh token (generation 0) of a new session.
    pub fn generate(&self, session: Uuid) -> Result<String, RandomError> {
        let secret = random_secret()?;
        Ok(self.format(session, 0, &secret))
    }

    /// The token `token` rotates into, of session `session` at
    /// `generation`: deterministic, unguessable without the key.
    pub fn successor(&self, token: &str, session: Uuid, generation: i64) -> String {
        let mut mac = self.mac();
        mac.update(b"warden refresh successor\0");
        mac.update(token.as_bytes());
        self.format(session, generation, &mac.finalize().into_bytes())
    }

    /// Reads a presented token. Only the format and the tag are checked
    /// here; whether it is the session's current token is the store's
    /// business.
    pub fn parse(&self, token: &str) -> ParsedRefresh {
        let mut parts = token.splitn(3, '.');
        let (Some(first), second, third) = (parts.next(), parts.next(), parts.next()) else {
            return ParsedRefresh::Invalid;
        };
        let (Some(generation), Some(blob)) = (second, third) else {
            return if is_legacy(first) {
                ParsedRefresh::Legacy(Self::hash(token))
            } else {
                ParsedRefresh::Invalid
            };
        };
        // Canonical forms only, so one token has one spelling (and one hash).
        let Ok(session) = Uuid::try_parse(first) else {
            return ParsedRefresh::Invalid;
        };
        if first != session.hyphenated().to_string()
            || generation.is_empty()
            || generation.len() > 18
            || !generation.bytes().all(|b| b.is_ascii_digit())
            || (generation.len() > 1 && generation.starts_with('0'))
        {
            return ParsedRefresh::Invalid;
        }
        let Ok(generation) = generation.parse::<i64>() else {
            return ParsedRefresh::Invalid;
        };
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(blob) else {
            return ParsedRefresh::Invalid;
        };
        if bytes.len() != SECRET_BYTES + TAG_BYTES {
            return ParsedRefresh::Invalid;
        }
        let genuine: bool = bytes[SECRET_BYTES..]
            .ct_eq(&self.tag(session, generation))
            .into();
        if !genuine {
            return ParsedRefresh::Invalid;
        }
        ParsedRefresh::Session(PresentedRefresh {
            session,
            generation,
            hash: Self::hash(token),
        })
    }

    /// The session and generation a presented token stands for, if it is
    /// genuine: a token of this format by its tag, an older one by its row
    /// in `legacy_refresh_tokens`.
    pub async fn resolve(
        &self,
        store: &dyn Store,
        token: &str,
    ) -> StoreResult<Option<PresentedRefresh>> {
        match self.parse(token) {
            ParsedRefresh::Session(p) => Ok(Some(p)),
            ParsedRefresh::Invalid => Ok(None),
            ParsedRefresh::Legacy(hash) => {
                Ok(store
                    .legacy_refresh_token(&hash)
                    .await?
                    .map(|(session, used)| PresentedRefresh {
                        session,
                        // The upgrade made each session's unused token its
                        // generation 0; a token already used then is older.
                        generation: if used { -1 } else { 0 },
                        hash,
                    }))
            }
        }
    }

    /// What the database stores for `token`.
    pub fn hash(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }
}

/// A token of the format before sessions were in it: 256 bits, base64url.
fn is_legacy(token: &str) -> bool {
    token.len() == 43 && URL_SAFE_NO_PAD.decode(token).is_ok_and(|b| b.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(byte: u8) -> RefreshTokens {
        RefreshTokens {
            key: vec![byte; 32],
        }
    }

    #[test]
    fn successors_are_deterministic_and_keyed() {
        let (a, b) = (keyed(1), keyed(2));
        let sid = Uuid::now_v7();
        let t = a.generate(sid).unwrap();
        assert_eq!(a.successor(&t, sid, 1), a.successor(&t, sid, 1));
        assert_ne!(a.successor(&t, sid, 1), b.successor(&t, sid, 1));
        assert_ne!(a.successor(&t, sid, 1), t);
        let ParsedRefresh::Session(p) = a.parse(&a.successor(&t, sid, 1)) else {
            panic!("the successor parses");
        };
        assert_eq!((p.session, p.generation), (sid, 1));
    }

    #[test]
    fn tokens_carry_their_session_and_are_unique() {
        let a = keyed(1);
        let sid = Uuid::now_v7();
        let (t1, t2) = (a.generate(sid).unwrap(), a.generate(sid).unwrap());
        assert_ne!(t1, t2);
        assert!(t1.starts_with(&format!("{sid}.0.")));
        let secret = URL_SAFE_NO_PAD
            .decode(t1.rsplit('.').next().unwrap())
            .unwrap();
        assert_eq!(secret.len(), 48);
        assert_eq!(
            a.parse(&t1),
            ParsedRefresh::Session(PresentedRefresh {
                session: sid,
                generation: 0,
                hash: RefreshTokens::hash(&t1)
            })
        );
    }

    #[test]
    fn forged_tags_other_keys_and_odd_spellings_are_invalid() {
        let (a, b) = (keyed(1), keyed(2));
        let sid = Uuid::now_v7();
        let t = a.successor(&a.generate(sid).unwrap(), sid, 5);
        let random = URL_SAFE_NO_PAD.encode([7u8; 48]);
        for bad in [
            format!("{sid}.5.{random}"),
            b.successor(&b.generate(sid).unwrap(), sid, 5),
            t.replacen(".5.", ".4.", 1),
            t.replacen(".5.", ".05.", 1),
            t.replacen(".5.", ".+5.", 1),
            t.replacen(".5.", ".-1.", 1),
            t.replacen(&sid.to_string(), &sid.to_string().to_uppercase(), 1),
            t.replacen(&sid.to_string(), &Uuid::now_v7().to_string(), 1),
            format!("{t}x"),
            format!("{sid}.99999999999999999999.{random}"),
            String::new(),
            "not-a-refresh-token".to_owned(),
            ".".repeat(3),
        ] {
            assert_eq!(a.parse(&bad), ParsedRefresh::Invalid, "{bad}");
        }
    }

    #[test]
    fn pre_upgrade_tokens_are_recognised_by_shape() {
        let a = keyed(1);
        let old = URL_SAFE_NO_PAD.encode([9u8; 32]);
        assert_eq!(
            a.parse(&old),
            ParsedRefresh::Legacy(RefreshTokens::hash(&old))
        );
        assert_eq!(a.parse(&old[1..]), ParsedRefresh::Invalid);
    }
}
