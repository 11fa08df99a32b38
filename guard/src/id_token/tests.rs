//! The ID token and logout token checks, one test per check, with keys
//! generated here and tokens signed by jsonwebtoken.

use std::sync::{Arc, OnceLock};

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;

const ISSUER: &str = "http://issuer.test";
const CLIENT: &str = "client-1";
const NOW: i64 = 1_800_000_000;
const NONCE: &str = "n-0S6_WzA2Mj";
const ACCESS_TOKEN: &str = "an.access.token";

struct TestKey {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

fn material(alg: Algorithm) -> Vec<u8> {
    let mut rng = rand::rng();
    match alg {
        Algorithm::EdDSA => {
            use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes};
            let sk = ed25519_dalek::SigningKey::generate(&mut rng);
            KeypairBytes {
                secret_key: sk.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_der()
            .unwrap()
            .as_bytes()
            .to_vec()
        }
        Algorithm::ES256 => {
            use p256::elliptic_curve::Generate;
            use p256::pkcs8::EncodePrivateKey;
            let sk = p256::SecretKey::generate_from_rng(&mut rng);
            sk.to_pkcs8_der().unwrap().as_bytes().to_vec()
        }
        Algorithm::RS256 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            let sk = rsa::PrivateKey::new(&mut rng, 2048).unwrap();
            sk.to_pkcs1_der().unwrap().as_bytes().to_vec()
        }
        other => panic!("no test key for {other:?}"),
    }
}

fn key(alg: Algorithm, kid: &str) -> TestKey {
    let material = material(alg);
    let encoding = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_der(&material),
        Algorithm::ES256 => EncodingKey::from_ec_der(&material),
        _ => EncodingKey::from_rsa_der(&material),
    };
    let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::from(alg));
    TestKey {
        alg,
        kid: kid.to_owned(),
        encoding,
        jwk,
    }
}

/// One key of each kind, generated once (RSA takes a while).
fn keys() -> &'static [TestKey; 3] {
    static KEYS: OnceLock<[TestKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            key(Algorithm::RS256, "rsa-1"),
            key(Algorithm::ES256, "ec-1"),
            key(Algorithm::EdDSA, "ed-1"),
        ]
    })
}

fn rsa() -> &'static TestKey {
    &keys()[0]
}

fn jwks() -> JwkSet {
    JwkSet {
        keys: keys().iter().map(|k| k.jwk.clone()).collect(),
    }
}

const ALL: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

fn verifier_for(algorithms: &[Algorithm]) -> IdTokenVerifier {
    IdTokenVerifier::builder(ISSUER, CLIENT, KeySet::from_jwks_for(&jwks(), algorithms))
        .algorithms(algorithms)
        .clock(Arc::new(|| NOW))
        .build()
}

fn verifier() -> IdTokenVerifier {
    verifier_for(&ALL)
}

fn id_claims_for(alg: Algorithm) -> Value {
    json!({
        "iss": ISSUER, "sub": "user-1", "aud": CLIENT, "exp": NOW + 300, "iat": NOW - 5,
        "auth_time": NOW - 60, "nonce": NONCE, "at_hash": at_hash(alg, ACCESS_TOKEN),
        "sid": "browser-session-1", "amr": ["pwd"], "preferred_username": "alice",
        "name": "Alice Liddell", "email": "alice@example.com", "email_verified": true,
    })
}

fn sign_with(key: &TestKey, typ: Option<&str>, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.typ = typ.map(str::to_owned);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// An ID token signed with `key`, as warden signs them (`typ` `JWT`).
fn sign(key: &TestKey, claims: &Value) -> String {
    sign_with(key, Some("JWT"), Some(&key.kid), claims)
}

fn id_token(claims: impl FnOnce(&mut Value)) -> String {
    let mut c = id_claims_for(Algorithm::RS256);
    claims(&mut c);
    sign(rsa(), &c)
}

fn verify(token: &str) -> Result<IdTokenClaims, IdTokenError> {
    verifier().verify(token, Some(NONCE), Some(ACCESS_TOKEN))
}

fn logout_claims_json() -> Value {
    json!({
        "iss": ISSUER, "aud": CLIENT, "iat": NOW - 2, "exp": NOW + 120, "jti": "j-1",
        "sub": "user-1", "sid": "browser-session-1",
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    })
}

fn logout_token(claims: impl FnOnce(&mut Value)) -> String {
    let mut c = logout_claims_json();
    claims(&mut c);
    sign_with(rsa(), Some("logout+jwt"), Some(&rsa().kid), &c)
}

/// Replaces a JWT's header with `header` (the signature then covers
/// something else; checks before it see only the header).
fn with_header(token: &str, header: &Value) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

#[test]
fn a_good_id_token_of_each_algorithm_verifies_with_its_claims() {
    for key in keys() {
        let token = sign(key, &id_claims_for(key.alg));
        let claims = verifier()
            .verify(&token, Some(NONCE), Some(ACCESS_TOKEN))
            .unwrap_or_else(|e| panic!("{:?}: {e}", key.alg));
        assert_eq!(claims.sub, "user-1");
        assert_eq!(claims.iss, ISSUER);
        assert_eq!(claims.aud, [CLIENT]);
        assert_eq!(claims.sid.as_deref(), Some("browser-session-1"));
        assert_eq!(claims.auth_time, Some(NOW - 60));
        assert_eq!(claims.amr, ["pwd"]);
        assert_eq!(claims.nonce.as_deref(), Some(NONCE));
        assert_eq!(claims.preferred_username.as_deref(), Some("alice"));
        assert_eq!(claims.name.as_deref(), Some("Alice Liddell"));
        assert_eq!(claims.email.as_deref(), Some("alice@example.com"));
        assert_eq!(claims.email_verified, Some(true));
        assert_eq!((claims.exp, claims.iat), (NOW + 300, NOW - 5));
        assert_eq!(claims.raw["at_hash"], at_hash(key.alg, ACCESS_TOKEN));
    }
}

#[test]
fn without_nonce_or_access_token_those_checks_are_skipped() {
    let token = id_token(|c| {
        c.as_object_mut().unwrap().remove("nonce");
        c.as_object_mut().unwrap().remove("at_hash");
    });
    assert!(verifier().verify(&token, None, None).is_ok());
}

#[test]
fn the_issuer_must_match_exactly() {
    assert_eq!(
        verify(&id_token(|c| c["iss"] = json!("http://evil.test"))),
        Err(IdTokenError::Issuer)
    );
    assert_eq!(
        verify(&id_token(|c| c["iss"] = json!("http://issuer.test/"))),
        Err(IdTokenError::Issuer)
    );
    let token = id_token(|c| {
        c.as_object_mut().unwrap().remove("iss");
    });
    assert_eq!(verify(&token), Err(IdTokenError::Issuer));
}

#[test]
fn the_audience_must_contain_the_client_id() {
    assert_eq!(
        verify(&id_token(|c| c["aud"] = json!("client-2"))),
        Err(IdTokenError::Audience)
    );
    assert_eq!(
        verify(&id_token(|c| c["aud"] = json!(["client-2", "client-3"]))),
        Err(IdTokenError::Audience)
    );
    let token = id_token(|c| {
        c.as_object_mut().unwrap().remove("aud");
    });
    assert_eq!(verify(&token), Err(IdTokenError::Audience));
    // The client among one-element and several audiences.
    assert!(verify(&id_token(|c| c["aud"] = json!([CLIENT]))).is_ok());
    let several = |c: &mut Value| {
        c["aud"] = json!(["client-2", CLIENT]);
        c["azp"] = json!(CLIENT);
    };
    assert!(verify(&id_token(several)).is_ok());
}

#[test]
fn several_audiences_need_azp_and_azp_must_be_the_client() {
    assert_eq!(
        verify(&id_token(|c| c["aud"] = json!(["client-2", CLIENT]))),
        Err(IdTokenError::AuthorizedParty)
    );
    let foreign = |c: &mut Value| {
        c["aud"] = json!(["client-2", CLIENT]);
        c["azp"] = json!("client-2");
    };
    assert_eq!(
        verify(&id_token(foreign)),
        Err(IdTokenError::AuthorizedParty)
    );
    assert_eq!(
        verify(&id_token(|c| c["azp"] = json!("client-2"))),
        Err(IdTokenError::AuthorizedParty)
    );
}

#[test]
fn the_nonce_must_be_the_expected_one() {
    assert_eq!(
        verify(&id_token(|c| c["nonce"] = json!("another"))),
        Err(IdTokenError::Nonce)
    );
    assert_eq!(
        verify(&id_token(|c| c["nonce"] = json!(format!("{NONCE}x")))),
        Err(IdTokenError::Nonce)
    );
    let token = id_token(|c| {
        c.as_object_mut().unwrap().remove("nonce");
    });
    assert_eq!(verify(&token), Err(IdTokenError::Nonce));
    assert_eq!(
        verifier().verify(&id_token(|_| {}), Some("another"), None),
        Err(IdTokenError::Nonce)
    );
}

#[test]
fn at_hash_must_match_the_access_token() {
    let token = id_token(|_| {});
    assert_eq!(
        verifier().verify(&token, Some(NONCE), Some("another.access.token")),
        Err(IdTokenError::AtHash)
    );
    let token = id_token(|c| {
        c.as_object_mut().unwrap().remove("at_hash");
    });
    assert_eq!(verify(&token), Err(IdTokenError::AtHash));
}

#[test]
fn at_hash_uses_the_hash_of_the_algorithm() {
    // SHA-256 for RS256 and ES256: 16 bytes, 22 base64url characters;
    // SHA-512 for EdDSA: 32 bytes, 43 characters.
    assert_eq!(at_hash(Algorithm::RS256, ACCESS_TOKEN).len(), 22);
    assert_eq!(
        at_hash(Algorithm::ES256, ACCESS_TOKEN),
        at_hash(Algorithm::RS256, ACCESS_TOKEN)
    );
    assert_eq!(at_hash(Algorithm::EdDSA, ACCESS_TOKEN).len(), 43);
    // An EdDSA token with the SHA-256 hash is refused.
    let ed = &keys()[2];
    let mut c = id_claims_for(Algorithm::EdDSA);
    c["at_hash"] = json!(at_hash(Algorithm::RS256, ACCESS_TOKEN));
    assert_eq!(verify(&sign(ed, &c)), Err(IdTokenError::AtHash));
    // The left half of the full digest, base64url without padding.
    let full = sha2::Sha256::digest(ACCESS_TOKEN.as_bytes());
    assert_eq!(
        at_hash(Algorithm::RS256, ACCESS_TOKEN),
        URL_SAFE_NO_PAD.encode(&full[..16])
    );
    let full = sha2::Sha512::digest(ACCESS_TOKEN.as_bytes());
    assert_eq!(
        at_hash(Algorithm::EdDSA, ACCESS_TOKEN),
        URL_SAFE_NO_PAD.encode(&full[..32])
    );
}

#[test]
fn an_expired_token_is_refused_beyond_the_leeway() {
    assert!(verify(&id_token(|c| c["exp"] = json!(NOW - 59))).is_ok());
    assert_eq!(
        verify(&id_token(|c| c["exp"] = json!(NOW - 60))),
        Err(IdTokenError::Expired)
    );
    assert_eq!(
        verify(&id_token(|c| c["exp"] = json!(NOW - 3600))),
        Err(IdTokenError::Expired)
    );
    let token = id_token(|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    assert_eq!(verify(&token), Err(IdTokenError::MissingClaim("exp")));
    // No leeway: expired at `exp`.
    let strict = IdTokenVerifier::builder(ISSUER, CLIENT, KeySet::from_jwks_for(&jwks(), &ALL))
        .leeway(Duration::ZERO)
        .clock(Arc::new(|| NOW))
        .build();
    let token = id_token(|c| c["exp"] = json!(NOW));
    assert_eq!(
        strict.verify(&token, None, None),
        Err(IdTokenError::Expired)
    );
}

#[test]
fn iat_must_be_present_and_not_in_the_future() {
    let token = id_token(|c| {
        c.as_object_mut().unwrap().remove("iat");
    });
    assert_eq!(verify(&token), Err(IdTokenError::MissingClaim("iat")));
    assert_eq!(
        verify(&id_token(|c| c["iat"] = json!(NOW + 3600))),
        Err(IdTokenError::NotYetValid)
    );
    assert_eq!(
        verify(&id_token(|c| c["nbf"] = json!(NOW + 3600))),
        Err(IdTokenError::NotYetValid)
    );
    assert!(verify(&id_token(|c| c["iat"] = json!(NOW + 30))).is_ok());
}

#[test]
fn alg_none_is_not_a_token() {
    let token = id_token(|_| {});
    let unsigned = with_header(
        &token,
        &json!({"alg": "none", "typ": "JWT", "kid": rsa().kid}),
    );
    let (head, rest) = unsigned.split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();
    assert_eq!(
        verify(&format!("{head}.{payload}.")),
        Err(IdTokenError::Malformed)
    );
    assert_eq!(verify("not a token"), Err(IdTokenError::Malformed));
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    // The classic confusion: HMAC keyed with the RSA public key's bytes.
    let public = serde_json::to_vec(&rsa().jwk).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(rsa().kid.clone());
    let secret = EncodingKey::from_secret(&public).unwrap();
    let token = jsonwebtoken::encode(&header, &id_claims_for(Algorithm::HS256), &secret).unwrap();
    assert_eq!(verify(&token), Err(IdTokenError::Algorithm));
    // HS256 cannot even be allowed.
    let v = verifier_for(&[Algorithm::RS256, Algorithm::HS256]);
    assert_eq!(v.algorithms(), [Algorithm::RS256]);
    assert_eq!(v.verify(&token, None, None), Err(IdTokenError::Algorithm));
}

#[test]
fn only_allowed_algorithms_and_only_the_keys_own_algorithm() {
    let ed = &keys()[2];
    let token = sign(ed, &id_claims_for(Algorithm::EdDSA));
    // The default allow-list is RS256 alone.
    let default = IdTokenVerifier::builder(ISSUER, CLIENT, KeySet::from_jwks_for(&jwks(), &ALL))
        .clock(Arc::new(|| NOW))
        .build();
    assert_eq!(
        default.verify(&token, None, None),
        Err(IdTokenError::Algorithm)
    );
    assert!(verifier().verify(&token, None, None).is_ok());
    // An ES256 token naming the RSA key's kid: never verified with it.
    let ec = &keys()[1];
    let token = sign_with(
        ec,
        Some("JWT"),
        Some(&rsa().kid),
        &id_claims_for(Algorithm::ES256),
    );
    assert_eq!(verify(&token), Err(IdTokenError::Algorithm));
    // A JWK that declares RS256 does not verify RS384, though of its family.
    let mut set = KeySet::new();
    set.insert_for(
        &rsa().kid,
        DecodingKey::from_jwk(&rsa().jwk).unwrap(),
        Algorithm::RS256,
    );
    assert!(set.get_for(&rsa().kid, Algorithm::RS384).is_none());
    assert!(set.get_for(&rsa().kid, Algorithm::RS256).is_some());
}

#[test]
fn a_token_brings_no_key_of_its_own() {
    // A `jwk` header with the attacker's key and an unknown kid.
    let attacker = key(Algorithm::EdDSA, "attacker");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("attacker".to_owned());
    header.jwk = Some(attacker.jwk.clone());
    header.jku = Some("http://evil.test/jwks".to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &id_claims_for(Algorithm::EdDSA),
        &attacker.encoding,
    )
    .unwrap();
    assert_eq!(verify(&token), Err(IdTokenError::UnknownKid));
    // Signed by the attacker under our key's kid: the signature fails.
    let token = sign_with(
        &attacker,
        Some("JWT"),
        Some("ed-1"),
        &id_claims_for(Algorithm::EdDSA),
    );
    assert_eq!(verify(&token), Err(IdTokenError::Signature));
}

#[test]
fn an_unknown_kid_is_refused_and_no_kid_needs_a_single_key() {
    let token = sign_with(
        rsa(),
        Some("JWT"),
        Some("rsa-2"),
        &id_claims_for(Algorithm::RS256),
    );
    assert_eq!(verify(&token), Err(IdTokenError::UnknownKid));
    // No kid: the one RS256 key.
    let token = sign_with(rsa(), Some("JWT"), None, &id_claims_for(Algorithm::RS256));
    assert!(verify(&token).is_ok());
    // No kid and two RS256 keys: which one is not ours to guess.
    let mut set = KeySet::from_jwks_for(&jwks(), &ALL);
    let other = key(Algorithm::RS256, "rsa-2");
    set.insert_for(
        "rsa-2",
        DecodingKey::from_jwk(&other.jwk).unwrap(),
        Algorithm::RS256,
    );
    let v = IdTokenVerifier::builder(ISSUER, CLIENT, set)
        .algorithms(&ALL)
        .clock(Arc::new(|| NOW))
        .build();
    assert_eq!(v.verify(&token, None, None), Err(IdTokenError::UnknownKid));
}

#[test]
fn a_tampered_token_fails_the_signature() {
    let token = id_token(|_| {});
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["sub"] = json!("admin");
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    assert_eq!(verify(&parts.join(".")), Err(IdTokenError::Signature));
}

#[test]
fn an_access_token_is_not_an_id_token() {
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        let token = sign_with(
            rsa(),
            Some(typ),
            Some(&rsa().kid),
            &id_claims_for(Algorithm::RS256),
        );
        assert_eq!(verify(&token), Err(IdTokenError::WrongType), "{typ}");
    }
    // Without `typ` (other providers) it is an ID token.
    let token = sign_with(
        rsa(),
        None,
        Some(&rsa().kid),
        &id_claims_for(Algorithm::RS256),
    );
    assert!(verify(&token).is_ok());
}

#[test]
fn a_logout_token_is_not_an_id_token() {
    assert_eq!(
        verifier().verify(&logout_token(|_| {}), None, None),
        Err(IdTokenError::WrongType)
    );
    // Even without its `typ`: the `events` claim gives it away.
    let token = sign(rsa(), &logout_claims_json());
    assert_eq!(
        verifier().verify(&token, None, None),
        Err(IdTokenError::WrongType)
    );
}

#[test]
fn a_good_logout_token_verifies() {
    let claims = verifier()
        .verify_logout_token(&logout_token(|_| {}))
        .unwrap();
    assert_eq!(claims.sub.as_deref(), Some("user-1"));
    assert_eq!(claims.sid.as_deref(), Some("browser-session-1"));
    assert_eq!(claims.jti, "j-1");
    assert_eq!(claims.iss, ISSUER);
    assert_eq!((claims.iat, claims.exp), (NOW - 2, Some(NOW + 120)));
    // `sid` alone or `sub` alone will do; `application/logout+jwt` too.
    let sid_only = logout_token(|c| {
        c.as_object_mut().unwrap().remove("sub");
    });
    assert!(verifier().verify_logout_token(&sid_only).is_ok());
    let mut c = logout_claims_json();
    c.as_object_mut().unwrap().remove("sid");
    let token = sign_with(rsa(), Some("application/logout+jwt"), Some(&rsa().kid), &c);
    assert_eq!(verifier().verify_logout_token(&token).unwrap().sid, None);
}

#[test]
fn an_id_token_is_not_a_logout_token() {
    assert_eq!(
        verifier().verify_logout_token(&id_token(|_| {})),
        Err(IdTokenError::WrongType)
    );
    // An access token neither.
    let token = sign_with(
        rsa(),
        Some("at+jwt"),
        Some(&rsa().kid),
        &logout_claims_json(),
    );
    assert_eq!(
        verifier().verify_logout_token(&token),
        Err(IdTokenError::WrongType)
    );
    // The right `typ` without the event.
    let token =
        logout_token(|c| c["events"] = json!({"http://schemas.openid.net/event/other": {}}));
    assert_eq!(
        verifier().verify_logout_token(&token),
        Err(IdTokenError::WrongType)
    );
    let token = logout_token(|c| {
        c.as_object_mut().unwrap().remove("events");
    });
    assert_eq!(
        verifier().verify_logout_token(&token),
        Err(IdTokenError::WrongType)
    );
}

#[test]
fn a_logout_token_with_a_nonce_is_refused() {
    let token = logout_token(|c| c["nonce"] = json!(NONCE));
    assert_eq!(
        verifier().verify_logout_token(&token),
        Err(IdTokenError::NonceInLogoutToken)
    );
}

#[test]
fn a_logout_token_names_a_session_or_a_user_and_has_a_jti() {
    let token = logout_token(|c| {
        let c = c.as_object_mut().unwrap();
        c.remove("sid");
        c.remove("sub");
    });
    assert_eq!(
        verifier().verify_logout_token(&token),
        Err(IdTokenError::MissingClaim("sid"))
    );
    let token = logout_token(|c| {
        c.as_object_mut().unwrap().remove("jti");
    });
    assert_eq!(
        verifier().verify_logout_token(&token),
        Err(IdTokenError::MissingClaim("jti"))
    );
}

#[test]
fn a_logout_token_has_the_id_tokens_iss_aud_and_time_checks() {
    let v = verifier();
    assert_eq!(
        v.verify_logout_token(&logout_token(|c| c["iss"] = json!("http://evil.test"))),
        Err(IdTokenError::Issuer)
    );
    assert_eq!(
        v.verify_logout_token(&logout_token(|c| c["aud"] = json!("client-2"))),
        Err(IdTokenError::Audience)
    );
    assert_eq!(
        v.verify_logout_token(&logout_token(|c| c["exp"] = json!(NOW - 61))),
        Err(IdTokenError::Expired)
    );
    let token = logout_token(|c| {
        c.as_object_mut().unwrap().remove("iat");
    });
    assert_eq!(
        v.verify_logout_token(&token),
        Err(IdTokenError::MissingClaim("iat"))
    );
    // Without `exp`: good for 10 minutes after `iat`.
    let fresh = logout_token(|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    assert!(v.verify_logout_token(&fresh).is_ok());
    let old = logout_token(|c| {
        c.as_object_mut().unwrap().remove("exp");
        c["iat"] = json!(NOW - 700);
    });
    assert_eq!(v.verify_logout_token(&old), Err(IdTokenError::Expired));
    // Signed by a key we do not hold.
    let token = sign_with(
        rsa(),
        Some("logout+jwt"),
        Some("rsa-9"),
        &logout_claims_json(),
    );
    assert_eq!(v.verify_logout_token(&token), Err(IdTokenError::UnknownKid));
}

#[test]
fn from_jwks_json_keeps_only_the_allowed_algorithms_keys() {
    let text = serde_json::to_string(&jwks()).unwrap();
    let v = IdTokenVerifier::from_jwks_json(&text, ISSUER, CLIENT, &[Algorithm::EdDSA]).unwrap();
    assert_eq!(v.keys().len(), 1);
    assert!(matches!(
        IdTokenVerifier::from_jwks_json(&text, ISSUER, CLIENT, &[Algorithm::PS256]),
        Err(VerifierError::NoKeys)
    ));
    // An encryption key is skipped.
    let mut enc = rsa().jwk.clone();
    enc.common.key_algorithm = Some(KeyAlgorithm::RSA_OAEP);
    let set = KeySet::from_jwks_for(&JwkSet { keys: vec![enc] }, &ALL);
    assert!(set.is_empty());
}

#[cfg(feature = "remote")]
mod discovered {
    use std::sync::Mutex;

    use axum::Router;
    use axum::extract::State;
    use axum::routing::get;

    use super::*;

    #[derive(Clone)]
    struct Provider {
        issuer: Arc<Mutex<String>>,
        jwks: Arc<Mutex<JwkSet>>,
        jwks_hits: Arc<Mutex<u32>>,
    }

    /// A tiny OpenID Provider: discovery and JWKS on a loopback port.
    async fn provider(jwks: JwkSet) -> (String, Provider) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Provider {
            issuer: Arc::new(Mutex::new(url.clone())),
            jwks: Arc::new(Mutex::new(jwks)),
            jwks_hits: Arc::new(Mutex::new(0)),
        };
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(p): State<Provider>| async move {
                    let issuer = p.issuer.lock().unwrap().clone();
                    axum::Json(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}))
                }),
            )
            .route(
                "/jwks",
                get(|State(p): State<Provider>| async move {
                    *p.jwks_hits.lock().unwrap() += 1;
                    axum::Json(p.jwks.lock().unwrap().clone())
                }),
            )
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, state)
    }

    fn claims_at(issuer: &str) -> Value {
        let mut c = id_claims_for(Algorithm::RS256);
        c["iss"] = json!(issuer);
        c
    }

    #[tokio::test]
    async fn discovery_then_one_key_refresh_for_a_new_kid() {
        let (url, provider) = provider(JwkSet {
            keys: vec![rsa().jwk.clone()],
        })
        .await;
        let v = IdTokenVerifier::discover(&url, CLIENT)
            .clock(Arc::new(|| NOW))
            .unknown_kid_interval(Duration::ZERO)
            .start()
            .await
            .unwrap();
        assert_eq!(v.key_fetches(), 1);
        let token = sign(rsa(), &claims_at(&url));
        assert!(
            v.verify_async(&token, Some(NONCE), Some(ACCESS_TOKEN))
                .await
                .is_ok()
        );
        assert_eq!(v.key_fetches(), 1, "a known kid fetches nothing");

        // warden rotated: a new key, published after our fetch.
        let rotated = key(Algorithm::RS256, "rsa-rotated");
        provider.jwks.lock().unwrap().keys.push(rotated.jwk.clone());
        let token = sign(&rotated, &claims_at(&url));
        assert_eq!(v.verify(&token, None, None), Err(IdTokenError::UnknownKid));
        assert!(
            v.verify_async(&token, Some(NONCE), Some(ACCESS_TOKEN))
                .await
                .is_ok()
        );
        assert_eq!(v.key_fetches(), 2);

        // A made-up kid: one more fetch, then refused.
        let token = sign_with(rsa(), Some("JWT"), Some("made-up"), &claims_at(&url));
        assert_eq!(
            v.verify_async(&token, None, None).await,
            Err(IdTokenError::UnknownKid)
        );
        assert_eq!(v.key_fetches(), 3);
        assert_eq!(*provider.jwks_hits.lock().unwrap(), 3);
    }

    #[tokio::test]
    async fn unknown_kids_fetch_at_most_once_per_interval() {
        let (url, provider) = provider(JwkSet {
            keys: vec![rsa().jwk.clone()],
        })
        .await;
        let v = IdTokenVerifier::discover(&url, CLIENT)
            .clock(Arc::new(|| NOW))
            .unknown_kid_interval(Duration::from_secs(3600))
            .start()
            .await
            .unwrap();
        for kid in ["a", "b", "c"] {
            let token = sign_with(rsa(), Some("JWT"), Some(kid), &claims_at(&url));
            assert_eq!(
                v.verify_logout_token_async(&token).await,
                Err(IdTokenError::WrongType)
            );
            assert_eq!(
                v.verify_async(&token, None, None).await,
                Err(IdTokenError::UnknownKid)
            );
        }
        // The one at start, and one for the first unknown kid.
        assert_eq!(*provider.jwks_hits.lock().unwrap(), 2);
    }

    #[tokio::test]
    async fn the_discovered_issuer_must_be_the_configured_one() {
        let (url, provider) = provider(jwks()).await;
        *provider.issuer.lock().unwrap() = "http://elsewhere.test".to_owned();
        let e = IdTokenVerifier::discover(&url, CLIENT)
            .start()
            .await
            .unwrap_err();
        assert!(matches!(e, RemoteError::IssuerMismatch { .. }), "{e}");
    }

    #[tokio::test]
    async fn no_key_for_the_allowed_algorithms_fails_at_start() {
        let (url, _provider) = provider(JwkSet {
            keys: vec![keys()[2].jwk.clone()],
        })
        .await;
        let e = IdTokenVerifier::discover(&url, CLIENT)
            .start()
            .await
            .unwrap_err();
        assert!(matches!(e, RemoteError::NoKeys { .. }), "{e}");
        let v = IdTokenVerifier::discover(&url, CLIENT)
            .algorithms(&[Algorithm::EdDSA])
            .start()
            .await
            .unwrap();
        assert_eq!(v.keys().len(), 1);
    }

    use crate::RemoteError;
}
