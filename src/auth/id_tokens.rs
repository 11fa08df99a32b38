//! OpenID Connect id tokens (OIDC Core §2, §3.1.3.6) and the claims about
//! the user that they share with `/userinfo` (§5.4: which claims each
//! scope releases).
//!
//! An id token is signed with the client's `id_token_signed_response_alg`
//! (RS256, ES256 or EdDSA), by the newest active key of that algorithm,
//! with `typ: JWT`: never `at+jwt`, so the access-token check (which
//! requires `at+jwt` and accepts only the access-token algorithm) refuses
//! an id token presented as a bearer token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;
use sha2::{Digest, Sha256, Sha512};

use crate::auth::error::SigningError;
use crate::auth::keys::{self, ID_TOKEN_ALGORITHMS, SigningKey};
use crate::auth::{Result, Services, tokens};
use crate::domain::roles::{SCOPE_EMAIL, SCOPE_OPENID, SCOPE_PROFILE};
use crate::domain::{ClientRecord, UserRecord};

/// The claims about the user that `scope` releases (OIDC Core §5.4):
/// `sub` always; `preferred_username` and `name` with `profile`; `email`
/// and `email_verified` with `email`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserClaims {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// The full name, or the username for a user who gave none (a
    /// relying party shows `name`; an empty one helps nobody).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Always `false` so far: warden does not verify addresses yet, and
    /// a relying party must not take an unverified address as proof.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// Whether the space-separated `scope` holds `wanted`.
pub fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

/// The claims of `user` that `scope` releases.
pub fn user_claims(user: &UserRecord, scope: &str) -> UserClaims {
    let profile = has_scope(scope, SCOPE_PROFILE);
    let email = has_scope(scope, SCOPE_EMAIL);
    UserClaims {
        sub: user.id.to_string(),
        preferred_username: profile.then(|| user.username.clone()),
        name: profile.then(|| {
            user.full_name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| user.username.clone())
        }),
        email: email.then(|| user.email.clone()),
        email_verified: email.then_some(false),
    }
}

/// The session an id token speaks of.
pub struct IdTokenSession<'a> {
    /// The browser session (the OpenID `sid`); `None` for a session from
    /// before warden recorded it, whose tokens then carry no `sid`.
    pub browser_session: Option<uuid::Uuid>,
    /// When the user authenticated (`auth_time`).
    pub auth_time: i64,
    /// RFC 8176 values, space-separated.
    pub amr: &'a str,
    /// The `/authorize` request's `nonce`: only in the code's response,
    /// never in a refresh's (OIDC Core §12.2).
    pub nonce: Option<&'a str>,
}

#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    aud: String,
    azp: String,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    at_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    amr: Vec<&'a str>,
    #[serde(flatten)]
    user: UserClaims,
}

/// The algorithm named `name`, if id tokens may be signed with it.
pub fn id_token_algorithm(name: &str) -> Option<Algorithm> {
    keys::parse_algorithm(name).filter(|alg| ID_TOKEN_ALGORITHMS.contains(alg))
}

/// `at_hash` (OIDC Core §3.1.3.6): the left half of the hash of the
/// access token's ASCII, base64url. The hash is the one of the signing
/// algorithm: SHA-256 for RS256 and ES256, SHA-512 for EdDSA (Ed25519
/// signs with SHA-512; OIDC Core errata set 2).
pub fn at_hash(alg: Algorithm, access_token: &str) -> String {
    let digest: Vec<u8> = match alg {
        Algorithm::EdDSA => Sha512::digest(access_token.as_bytes()).to_vec(),
        _ => Sha256::digest(access_token.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// The id token for the token response of `client`'s session, or `None`
/// when `scope` lacks `openid`.
pub async fn issue(
    state: &Services,
    client: &ClientRecord,
    user: &UserRecord,
    scope: &str,
    access_token: &str,
    session: &IdTokenSession<'_>,
) -> Result<Option<String>> {
    if !has_scope(scope, SCOPE_OPENID) {
        return Ok(None);
    }
    let alg = id_token_algorithm(&client.id_token_signed_response_alg).ok_or_else(|| {
        signing_error(format!(
            "client {} has an id-token algorithm warden does not sign with: {}",
            client.id, client.id_token_signed_response_alg
        ))
    })?;
    let key = signing_key(state, alg).await?;
    let now = tokens::now();
    let mut header = Header::new(alg);
    header.typ = Some("JWT".to_owned());
    header.kid = Some(key.kid.clone());
    let claims = IdClaims {
        iss: state.tokens.issuer(),
        aud: client.id.to_string(),
        azp: client.id.to_string(),
        exp: now + state.tokens.ttl() as i64,
        iat: now,
        auth_time: session.auth_time,
        nonce: session.nonce,
        at_hash: at_hash(alg, access_token),
        sid: session.browser_session.map(|s| s.to_string()),
        amr: session.amr.split(' ').filter(|s| !s.is_empty()).collect(),
        user: user_claims(user, scope),
    };
    Ok(Some(key.sign(&header, &claims)?))
}

fn signing_error(message: String) -> SigningError {
    SigningError::Signature(message.into())
}

/// The key that signs `alg`'s id tokens. A client may have registered
/// `alg` at another instance (or through the CLI), so a missing key is
/// made (once across instances) or loaded from the store here.
pub async fn signing_key(state: &Services, alg: Algorithm) -> Result<SigningKey> {
    if let Some(key) = state.tokens.keys().signing_key(alg) {
        return Ok(key.clone());
    }
    ensure_signing_key(state, alg).await?;
    state
        .tokens
        .keys()
        .signing_key(alg)
        .cloned()
        .ok_or_else(|| {
            signing_error(format!(
                "no {} key could be loaded",
                keys::algorithm_name(alg)
            ))
            .into()
        })
}

/// Makes sure `alg` has an active key in the store and in this process's
/// ring, so JWKS publishes it before any token it signs exists. Only the
/// id-token keys of the ring are replaced: the access-token keys (and the
/// verifier, which holds only those) change with a rotation, which the
/// periodic sync picks up as a whole.
pub async fn ensure_signing_key(state: &Services, alg: Algorithm) -> Result<()> {
    let now = tokens::now();
    let wrap = |e: anyhow::Error| crate::auth::Error::from(SigningError::Signature(e.into()));
    if state.tokens.keys().signing_key(alg).is_some() {
        return Ok(());
    }
    keys::ensure_key(state.store.as_ref(), alg, now)
        .await
        .map_err(wrap)?;
    let loaded = keys::load_ring(&state.config, state.store.as_ref(), now)
        .await
        .map_err(wrap)?;
    if let Some(loaded) = loaded {
        let mut ring = (**state.tokens.keys()).clone();
        ring.others = loaded.others;
        state.tokens.replace_keys(ring);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(full_name: Option<&str>) -> UserRecord {
        UserRecord::new(
            "alice".to_owned(),
            "alice@example.com".to_owned(),
            full_name.map(str::to_owned),
            String::new(),
            vec!["student".to_owned()],
            0,
        )
    }

    #[test]
    fn claims_follow_the_scopes() {
        let u = user(None);
        let c = user_claims(&u, "openid");
        assert_eq!(c.sub, u.id.to_string());
        assert!(c.name.is_none() && c.email.is_none() && c.preferred_username.is_none());
        let c = user_claims(&u, "openid profile");
        assert_eq!(c.name.as_deref(), Some("alice"), "username when no name");
        assert_eq!(c.preferred_username.as_deref(), Some("alice"));
        assert!(c.email.is_none());
        let c = user_claims(&user(Some("Alice Liddell")), "openid profile email");
        assert_eq!(c.name.as_deref(), Some("Alice Liddell"));
        assert_eq!(c.email.as_deref(), Some("alice@example.com"));
        assert_eq!(c.email_verified, Some(false));
    }

    #[test]
    fn at_hash_uses_the_algorithms_hash() {
        // OIDC Core §3.1.3.6 with SHA-256: 16 bytes → 22 characters;
        // SHA-512 for EdDSA: 32 bytes → 43.
        assert_eq!(at_hash(Algorithm::RS256, "token").len(), 22);
        assert_eq!(at_hash(Algorithm::ES256, "token").len(), 22);
        assert_eq!(at_hash(Algorithm::EdDSA, "token").len(), 43);
        let full = Sha256::digest(b"token");
        assert_eq!(
            at_hash(Algorithm::RS256, "token"),
            URL_SAFE_NO_PAD.encode(&full[..16])
        );
    }

    #[test]
    fn only_id_token_algorithms_are_accepted() {
        assert_eq!(id_token_algorithm("RS256"), Some(Algorithm::RS256));
        assert_eq!(id_token_algorithm("EdDSA"), Some(Algorithm::EdDSA));
        assert_eq!(id_token_algorithm("HS256"), None);
        assert_eq!(id_token_algorithm("none"), None);
    }
}
