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

/// The keys in use: `current` signs, all of `keys` verify.
#[derive(Clone)]
pub struct KeyRing {
    pub current: SigningKey,
    pub keys: Vec<SigningKey>,
}

impl KeyRing {
    /// The verification key set for [`warden_guard::Verifier`].
    pub fn key_set(&self) -> KeySet {
        let mut set = KeySet::new();
        for k in &self.keys {
            set.insert(k.kid.clone(), k.decoding.clone());
        }
        set
    }

    /// The public JWKS document (`{"keys": []}` under HS256).
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self
                .keys
                .iter()
                .filter_map(|k| k.public_jwk.clone())
                .collect(),
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

fn parse_algorithm(name: &str) -> Option<Algorithm> {
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
        });
    }
    let mut jwk = Jwk::from_encoding_key(&encoding, alg)?;
    let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    let decoding = DecodingKey::from_jwk(&jwk)?;
    Ok(SigningKey {
        kid,
        algorithm: alg,
        encoding,
        decoding,
        public_jwk: Some(jwk),
        created_at,
    })
}

/// Loads the key ring for the configured algorithm, generating and storing
/// the first key if there is none.
pub async fn load_or_create(
    config: &Config,
    store: &dyn Store,
    now: i64,
) -> anyhow::Result<KeyRing> {
    if let Some(ring) = load_ring(config, store, now).await? {
        return Ok(ring);
    }
    let alg = config.tokens.jwt_algorithm;
    let material = generate(alg)?;
    let key = load(alg, &material, now)?;
    let created = store
        .insert_first_signing_key(&SigningKeyRecord {
            kid: key.kid.clone(),
            algorithm: algorithm_name(alg).to_owned(),
            private_key: material,
            created_at: now,
            retired_at: None,
        })
        .await?;
    if created {
        tracing::info!(kid = %key.kid, algorithm = algorithm_name(alg), "generated a new signing key");
    }
    load_ring(config, store, now)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the new signing key did not load"))
}

/// The configured algorithm's keys that may still verify a live token: the
/// active one (the newest, if several), and retired ones whose last token
/// can still be unexpired (retired less than an access-token lifetime ago).
/// `None` when there is no active key.
pub async fn load_ring(
    config: &Config,
    store: &dyn Store,
    now: i64,
) -> anyhow::Result<Option<KeyRing>> {
    let alg = config.tokens.jwt_algorithm;
    if let (Algorithm::HS256, Some(secret)) = (alg, &config.tokens.jwt_secret) {
        let key = load(alg, &secret.0, now)?;
        return Ok(Some(KeyRing {
            current: key.clone(),
            keys: vec![key],
        }));
    }
    let window = config.tokens.access_token_ttl as i64;
    let mut active: Vec<SigningKey> = Vec::new();
    let mut keys = Vec::new();
    for record in store.signing_keys().await? {
        if parse_algorithm(&record.algorithm) != Some(alg) {
            continue;
        }
        if record.retired_at.is_some_and(|at| at + window <= now) {
            continue;
        }
        let key = load(alg, &record.private_key, record.created_at).map_err(|e| {
            anyhow::anyhow!("stored signing key {} cannot be loaded: {e}", record.kid)
        })?;
        if record.retired_at.is_none() {
            active.push(key.clone());
        }
        keys.push(key);
    }
    let Some(current) = active.into_iter().max_by_key(|k| k.created_at) else {
        return Ok(None);
    };
    Ok(Some(KeyRing { current, keys }))
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

/// Generates a new signing key for the configured algorithm and makes it
/// the active one; the previous key is retired (it keeps verifying tokens
/// until they expire).
pub async fn rotate(
    config: &Config,
    store: &dyn Store,
    now: i64,
) -> Result<SigningKey, RotateError> {
    let alg = config.tokens.jwt_algorithm;
    if alg == Algorithm::HS256 && config.tokens.jwt_secret.is_some() {
        return Err(RotateError::ConfiguredSecret);
    }
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
    Ok(key)
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
