//! Signing keys: generated and stored on first start, loaded afterwards.
//!
//! Asymmetric keys (EdDSA, ES256, RS256) are stored as DER and published in
//! JWKS under their RFC 7638 thumbprint as `kid`. An HS256 secret is either
//! configured (`WARDEN_JWT_SECRET`, never stored) or generated and stored;
//! it is never published.

use std::cell::RefCell;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rand::RngExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::auth::error::SigningError;
use crate::config::Config;
use crate::domain::SigningKeyRecord;
use crate::storage::Store;
use warden_guard::KeySet;

/// A key that can sign tokens, with its public half.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// `None` for HS256: a shared secret is never published.
    pub public_jwk: Option<Jwk>,
    pub created_at: i64,
    /// Retired by a rotation: verifies until its tokens expire, signs
    /// nothing new.
    pub retired: bool,
}

impl SigningKey {
    /// A compact JWS of `claims` under `header`, signed with this key: what
    /// `jsonwebtoken::encode` makes, without its per-call key set-up.
    ///
    /// `encode` builds a signer from the key's DER on every call; for
    /// Ed25519 that derives the public key, which costs as much as the
    /// signature (callgrind: ~220 k of ~480 k instructions per login, on the
    /// async executor). Its signers are not `Send`, so each thread keeps the
    /// signer of the key it last signed with.
    pub fn sign<T: Serialize>(&self, header: &Header, claims: &T) -> Result<String, SigningError> {
        thread_local! {
            static SIGNER: RefCell<Option<(String, Box<dyn JwtSigner>)>> =
                const { RefCell::new(None) };
        }
        if header.alg != self.algorithm {
            return Err(SigningError::AlgorithmMismatch {
                header: header.alg,
                key: self.algorithm,
            });
        }
        let mut token = String::with_capacity(512);
        for part in [serde_json::to_vec(header)?, serde_json::to_vec(claims)?] {
            if !token.is_empty() {
                token.push('.');
            }
            URL_SAFE_NO_PAD.encode_string(part, &mut token);
        }
        let signature = SIGNER.with_borrow_mut(|cached| {
            if cached.as_ref().is_none_or(|(kid, _)| *kid != self.kid) {
                let provider = CryptoProvider::try_get_default().ok_or(SigningError::NoProvider)?;
                let signer = (provider.signer_factory)(&self.algorithm, &self.encoding)?;
                *cached = Some((self.kid.clone(), signer));
            }
            let (_, signer) = cached.as_ref().expect("set above");
            signer
                .try_sign(token.as_bytes())
                .map_err(|e| SigningError::Signature(Box::new(e)))
        })?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

/// The keys in use.
///
/// Access tokens are signed by `current` and verified by `keys`, which
/// hold only the configured algorithm's keys (`jwt_algorithm`): the
/// token check never tries a key of another kind. `others` are the keys
/// of the other algorithms in use — those id tokens and logout tokens are
/// signed with (`id_token_algorithm`, and every client's
/// `id_token_signed_response_alg`). JWKS publishes all of them.
#[derive(Clone)]
pub struct KeyRing {
    pub current: SigningKey,
    pub keys: Vec<SigningKey>,
    pub others: Vec<SigningKey>,
}

impl KeyRing {
    /// The verification key set for [`warden_guard::Verifier`]: the
    /// access-token algorithm's keys only.
    pub fn key_set(&self) -> KeySet {
        let mut set = KeySet::new();
        for k in &self.keys {
            set.insert(k.kid.clone(), k.decoding.clone());
        }
        set
    }

    /// Every loaded key, of every algorithm.
    pub fn all(&self) -> impl Iterator<Item = &SigningKey> {
        self.keys.iter().chain(&self.others)
    }

    /// The key that signs new tokens of `alg` (id tokens, logout tokens):
    /// the newest active one. `None` when `alg` has no key yet
    /// ([`ensure_key`] makes one).
    pub fn signing_key(&self, alg: Algorithm) -> Option<&SigningKey> {
        if alg == self.current.algorithm {
            return Some(&self.current);
        }
        self.others
            .iter()
            .filter(|k| k.algorithm == alg && !k.retired)
            .max_by_key(|k| k.created_at)
    }

    /// The key with id `kid`, of any algorithm, active or retired (for
    /// tokens warden verifies itself, such as an `id_token_hint`).
    pub fn find(&self, kid: &str) -> Option<&SigningKey> {
        self.all().find(|k| k.kid == kid)
    }

    /// Whether both rings hold the same keys, with the same one signing.
    pub fn same_keys(&self, other: &KeyRing) -> bool {
        self.current.kid == other.current.kid
            && self
                .all()
                .map(|k| (&k.kid, k.retired))
                .eq(other.all().map(|k| (&k.kid, k.retired)))
    }

    /// The public JWKS document: every asymmetric key, each with `alg`
    /// and `use` (`{"keys": []}` only under HS256 with no id-token key).
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.all().filter_map(|k| k.public_jwk.clone()).collect(),
        }
    }
}

pub fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::EdDSA => "EdDSA",
        Algorithm::ES256 => "ES256",
        Algorithm::RS256 => "RS256",
        Algorithm::HS256 => "HS256",
        _ => "unsupported",
    }
}

pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "EdDSA" => Some(Algorithm::EdDSA),
        "ES256" => Some(Algorithm::ES256),
        "RS256" => Some(Algorithm::RS256),
        "HS256" => Some(Algorithm::HS256),
        _ => None,
    }
}

/// A `kid` for an HMAC secret that reveals nothing usable about it.
fn hmac_kid(secret: &[u8]) -> String {
    let digest = Sha256::new_with_prefix(b"warden hs256 kid\0")
        .chain_update(secret)
        .finalize();
    format!("hs256-{}", URL_SAFE_NO_PAD.encode(&digest[..12]))
}

/// New private key material for `alg`, in the form [`load`] reads.
pub fn generate(alg: Algorithm) -> anyhow::Result<Vec<u8>> {
    let mut rng = rand::rng();
    Ok(match alg {
        Algorithm::EdDSA => {
            use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes};
            let sk = ed25519_dalek::SigningKey::generate(&mut rng);
            // jsonwebtoken wants PKCS#8 v1 (no embedded public key) to derive
            // the JWK; `SigningKey::to_pkcs8_der` writes v2.
            KeypairBytes {
                secret_key: sk.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_der()?
            .as_bytes()
            .to_vec()
        }
        Algorithm::ES256 => {
            use p256::elliptic_curve::Generate;
            use p256::pkcs8::EncodePrivateKey;
            let sk = p256::SecretKey::generate_from_rng(&mut rng);
            sk.to_pkcs8_der()?.as_bytes().to_vec()
        }
        Algorithm::RS256 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            let sk = rsa::PrivateKey::new(&mut rng, 2048)?;
            sk.to_pkcs1_der()?.as_bytes().to_vec()
        }
        Algorithm::HS256 => {
            let mut secret = vec![0u8; 32];
            rng.fill(&mut secret[..]);
            secret
        }
        other => anyhow::bail!("unsupported algorithm {other:?}"),
    })
}

/// Builds the signing key for stored or configured material.
pub fn load(alg: Algorithm, material: &[u8], created_at: i64) -> anyhow::Result<SigningKey> {
    let encoding = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_der(material),
        Algorithm::ES256 => EncodingKey::from_ec_der(material),
        Algorithm::RS256 => EncodingKey::from_rsa_der(material),
        Algorithm::HS256 => EncodingKey::from_secret(material)?,
        other => anyhow::bail!("unsupported algorithm {other:?}"),
    };
    if alg == Algorithm::HS256 {
        return Ok(SigningKey {
            kid: hmac_kid(material),
            algorithm: alg,
            decoding: DecodingKey::from_secret(material)?,
            encoding,
            public_jwk: None,
            created_at,
            retired: false,
        });
    }
    let mut jwk = Jwk::from_encoding_key(&encoding, alg)?;
    let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    // RFC 7517 `alg`: a relying party picks the key for the id token's
    // algorithm by it (several kinds are published side by side).
    jwk.common.key_algorithm = Some(jwk_algorithm(alg)?);
    let decoding = DecodingKey::from_jwk(&jwk)?;
    Ok(SigningKey {
        kid,
        algorithm: alg,
        encoding,
        decoding,
        public_jwk: Some(jwk),
        created_at,
        retired: false,
    })
}

/// The algorithms id tokens may be signed with (OpenID Connect requires
/// RS256; HS256 is not offered: the client would need warden's secret).
pub const ID_TOKEN_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

fn jwk_algorithm(alg: Algorithm) -> anyhow::Result<jsonwebtoken::jwk::KeyAlgorithm> {
    use jsonwebtoken::jwk::KeyAlgorithm;
    Ok(match alg {
        Algorithm::EdDSA => KeyAlgorithm::EdDSA,
        Algorithm::ES256 => KeyAlgorithm::ES256,
        Algorithm::RS256 => KeyAlgorithm::RS256,
        other => anyhow::bail!("no JWK algorithm for {other:?}"),
    })
}

/// Loads the key ring, first generating and storing a key for each
/// algorithm warden signs with from the start (the access tokens', the
/// default id-token algorithm and every client's) that has none.
pub async fn load_or_create(
    config: &Config,
    store: &dyn Store,
    now: i64,
) -> anyhow::Result<KeyRing> {
    let configured_secret =
        config.tokens.jwt_algorithm == Algorithm::HS256 && config.tokens.jwt_secret.is_some();
    if !configured_secret {
        ensure_key(store, config.tokens.jwt_algorithm, now).await?;
    }
    ensure_key(store, config.tokens.id_token_algorithm, now).await?;
    // A client may have registered another id-token algorithm (at
    // another instance, or before a change of the default): its key is
    // in JWKS from the start.
    for name in store.client_id_token_algorithms().await? {
        if let Some(alg) = parse_algorithm(&name).filter(|a| ID_TOKEN_ALGORITHMS.contains(a)) {
            ensure_key(store, alg, now).await?;
        }
    }
    load_ring(config, store, now)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the new signing key did not load"))
}

/// Makes sure `alg` has an active key, generating and storing one if not
/// (once across instances: the store inserts it only if there is still
/// none). Returns whether this call created it.
pub async fn ensure_key(store: &dyn Store, alg: Algorithm, now: i64) -> anyhow::Result<bool> {
    let name = algorithm_name(alg);
    let present = store
        .signing_keys()
        .await?
        .iter()
        .any(|r| r.algorithm == name && r.retired_at.is_none());
    if present {
        return Ok(false);
    }
    let material = generate(alg)?;
    let key = load(alg, &material, now)?;
    let created = store
        .insert_first_signing_key(&SigningKeyRecord {
            kid: key.kid.clone(),
            algorithm: name.to_owned(),
            private_key: material,
            created_at: now,
            retired_at: None,
        })
        .await?;
    if created {
        tracing::info!(kid = %key.kid, algorithm = name, "generated a new signing key");
    }
    Ok(created)
}

/// The keys that may still verify a live token: for the configured
/// access-token algorithm and for every id-token algorithm with a stored
/// key, the active ones and the retired ones whose last token can still
/// be unexpired (retired less than an access-token lifetime ago). `None`
/// when the access-token algorithm has no active key.
pub async fn load_ring(
    config: &Config,
    store: &dyn Store,
    now: i64,
) -> anyhow::Result<Option<KeyRing>> {
    let access = config.tokens.jwt_algorithm;
    let window = config.tokens.access_token_ttl as i64;
    let mut keys = Vec::new();
    let mut others = Vec::new();
    if let (Algorithm::HS256, Some(secret)) = (access, &config.tokens.jwt_secret) {
        keys.push(load(access, &secret.0, now)?);
    }
    let configured_secret = !keys.is_empty();
    for record in store.signing_keys().await? {
        let Some(alg) = parse_algorithm(&record.algorithm) else {
            continue;
        };
        let for_access = alg == access && !configured_secret;
        if !for_access && !ID_TOKEN_ALGORITHMS.contains(&alg) {
            continue;
        }
        if record.retired_at.is_some_and(|at| at + window <= now) {
            continue;
        }
        let mut key = load(alg, &record.private_key, record.created_at).map_err(|e| {
            anyhow::anyhow!("stored signing key {} cannot be loaded: {e}", record.kid)
        })?;
        key.retired = record.retired_at.is_some();
        if for_access {
            keys.push(key);
        } else {
            others.push(key);
        }
    }
    let Some(current) = keys
        .iter()
        .filter(|k| !k.retired)
        .max_by_key(|k| k.created_at)
        .cloned()
    else {
        return Ok(None);
    };
    Ok(Some(KeyRing {
        current,
        keys,
        others,
    }))
}

/// Why a key rotation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(
        "the HS256 secret comes from WARDEN_JWT_SECRET; rotate it by changing that setting on every instance"
    )]
    ConfiguredSecret,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What a rotation did.
pub struct Rotation {
    /// The new active keys, one per algorithm in use; the access-token
    /// algorithm's first.
    pub keys: Vec<SigningKey>,
    /// The access-token key is the configured HS256 secret, which only
    /// its setting rotates.
    pub configured_secret: bool,
}

/// Generates a new key for every algorithm in use (the access tokens'
/// and each with an active id-token key) and makes it the active one; the
/// previous keys are retired (they keep verifying tokens until those
/// expire).
pub async fn rotate(config: &Config, store: &dyn Store, now: i64) -> Result<Rotation, RotateError> {
    let access = config.tokens.jwt_algorithm;
    let configured_secret = access == Algorithm::HS256 && config.tokens.jwt_secret.is_some();
    let mut algorithms = Vec::new();
    if !configured_secret {
        algorithms.push(access);
    }
    let records = store
        .signing_keys()
        .await
        .map_err(|e| RotateError::Other(e.into()))?;
    for alg in ID_TOKEN_ALGORITHMS {
        let name = algorithm_name(alg);
        let active = records
            .iter()
            .any(|r| r.algorithm == name && r.retired_at.is_none());
        if active && !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.is_empty() {
        return Err(RotateError::ConfiguredSecret);
    }
    let mut keys = Vec::new();
    for alg in algorithms {
        let material = generate(alg)?;
        let key = load(alg, &material, now)?;
        store
            .rotate_signing_key(
                &SigningKeyRecord {
                    kid: key.kid.clone(),
                    algorithm: algorithm_name(alg).to_owned(),
                    private_key: material,
                    created_at: now,
                    retired_at: None,
                },
                now,
            )
            .await
            .map_err(|e| RotateError::Other(e.into()))?;
        keys.push(key);
    }
    Ok(Rotation {
        keys,
        configured_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips() {
        for alg in [
            Algorithm::EdDSA,
            Algorithm::ES256,
            Algorithm::RS256,
            Algorithm::HS256,
        ] {
            let material = generate(alg).unwrap();
            let key = load(alg, &material, 0).unwrap();
            let header = jsonwebtoken::Header::new(alg);
            let token = jsonwebtoken::encode(
                &header,
                &serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}),
                &key.encoding,
            )
            .unwrap();
            let mut v = jsonwebtoken::Validation::new(alg);
            v.set_required_spec_claims::<&str>(&[]);
            jsonwebtoken::decode::<serde_json::Value>(&token, &key.decoding, &v).unwrap();
            assert_eq!(key.public_jwk.is_some(), alg != Algorithm::HS256, "{alg:?}");
            // Same material, same kid: tokens survive a restart.
            assert_eq!(load(alg, &material, 0).unwrap().kid, key.kid);
        }
    }

    #[test]
    fn sign_writes_what_jsonwebtoken_encode_writes() {
        // All four signatures are deterministic (Ed25519, RFC 6979 ECDSA,
        // PKCS#1 v1.5, HMAC), so the tokens must be byte for byte the same.
        let claims = serde_json::json!({"sub": "x", "exp": 4_000_000_000u64, "scope": "me"});
        let mut keys = Vec::new();
        for alg in [
            Algorithm::EdDSA,
            Algorithm::ES256,
            Algorithm::RS256,
            Algorithm::HS256,
        ] {
            keys.push(load(alg, &generate(alg).unwrap(), 0).unwrap());
            keys.push(load(alg, &generate(alg).unwrap(), 0).unwrap());
        }
        // Twice round, so the thread's cached signer changes key each time.
        for key in keys.iter().chain(&keys) {
            let mut header = Header::new(key.algorithm);
            header.kid = Some(key.kid.clone());
            let expected = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
            assert_eq!(
                key.sign(&header, &claims).unwrap(),
                expected,
                "{:?}",
                key.algorithm
            );
        }
        let wrong = Header::new(Algorithm::HS256);
        assert!(keys[0].sign(&wrong, &claims).is_err());
    }
}
