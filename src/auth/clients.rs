//! OAuth clients: registration and client authentication at the token
//! endpoint. The registry's rules (which redirect URIs, grants and scopes a
//! client may have) are the domain's (`domain::client`); this service adds
//! the secret: 256 random bits shown once, stored as SHA-256, compared in
//! constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::audit::{self, Event};
use crate::auth::error::RandomError;
use crate::auth::{Error, Result, Services};
use crate::domain::ClientRecord;
use crate::domain::client::{
    ClientFieldError, DEFAULT_ID_TOKEN_ALGORITHM, GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN,
    validate_client,
};
use crate::domain::error::{FieldError, GrantError};
use crate::domain::roles::{OPENID_SCOPES, SCOPE_ME, is_openid_scope};

/// Every client secret starts with this, so secret scanners (and people)
/// can tell a leaked warden client secret from other strings.
pub const SECRET_PREFIX: &str = "wdn_cs_";

/// A client as registered, before defaults: what `POST /clients` and
/// `warden clients create` take.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub name: String,
    pub public: bool,
    pub first_party: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    /// Default: `authorization_code` and `refresh_token`.
    pub grant_types: Option<Vec<String>>,
    /// Default: `me` and the OpenID scopes.
    pub scopes: Option<Vec<String>>,
    /// Default: `RS256`.
    pub id_token_signed_response_alg: Option<String>,
}

/// A new client secret: the value to show once, and what is stored.
pub struct ClientSecret {
    pub secret: String,
    pub hash: [u8; 32],
}

impl ClientSecret {
    pub fn generate() -> std::result::Result<Self, RandomError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(RandomError)?;
        let secret = format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let hash = hash_secret(&secret);
        Ok(Self { secret, hash })
    }
}

/// SHA-256 of a presented secret. A fast hash suffices: the secret has
/// 256 random bits, so the hash cannot be searched for it.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The 422 of a registration that breaks a rule of `domain::client`.
fn client_field_error(e: ClientFieldError) -> Error {
    let index = e.index.map(|i| i.to_string());
    let mut loc = vec!["body", e.field];
    if let Some(i) = &index {
        loc.push(i);
    }
    Error::Validation(vec![FieldError::new(&loc, e.message, "value_error")])
}

/// Whether `scope` may be registered for a client: a role grants it, or it
/// is an OpenID scope.
pub fn known_scope(state: &Services, scope: &str) -> bool {
    is_openid_scope(scope) || state.config.roles.all_scopes().contains(scope)
}

/// Registers a client; for a confidential one, also returns its secret,
/// which is not stored and cannot be shown again. `actor` is the admin (or
/// `None` for the CLI), for the audit event.
pub async fn create(
    state: &Services,
    new: NewClient,
    actor: Option<Uuid>,
    ip: Option<&str>,
    now: i64,
) -> Result<(ClientRecord, Option<String>)> {
    let secret = if new.public {
        None
    } else {
        Some(ClientSecret::generate()?)
    };
    let mut scopes = new.scopes.unwrap_or_else(|| {
        std::iter::once(SCOPE_ME)
            .chain(OPENID_SCOPES.iter().copied())
            .map(str::to_owned)
            .collect()
    });
    dedup_keep_order(&mut scopes);
    let mut grant_types = new.grant_types.unwrap_or_else(|| {
        vec![
            GRANT_AUTHORIZATION_CODE.to_owned(),
            GRANT_REFRESH_TOKEN.to_owned(),
        ]
    });
    dedup_keep_order(&mut grant_types);
    let client = ClientRecord {
        id: Uuid::now_v7(),
        name: new.name,
        public: new.public,
        first_party: new.first_party,
        secret_hash: secret.as_ref().map(|s| s.hash.to_vec()),
        secret_created_at: secret.as_ref().map(|_| now),
        redirect_uris: new.redirect_uris,
        post_logout_redirect_uris: new.post_logout_redirect_uris,
        backchannel_logout_uri: new.backchannel_logout_uri,
        grant_types,
        scopes,
        id_token_signed_response_alg: new
            .id_token_signed_response_alg
            .unwrap_or_else(|| DEFAULT_ID_TOKEN_ALGORITHM.to_owned()),
        created_at: now,
        updated_at: now,
    };
    validate_client(&client, |s| known_scope(state, s)).map_err(client_field_error)?;
    let event = Event::new("client_created")
        .user(actor)
        .ip(ip)
        .detail("client_id", client.id.to_string())
        .detail("name", client.name.clone())
        .into_record();
    state.store.insert_client(&client, &event).await?;
    audit::log(&event);
    Ok((client, secret.map(|s| s.secret)))
}

fn dedup_keep_order(list: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    list.retain(|item| seen.insert(item.clone()));
}

/// How a client authenticated at the token endpoint (RFC 6749 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `Authorization: Basic` (`client_secret_basic`).
    Basic,
    /// `client_id` and `client_secret` in the form (`client_secret_post`).
    Post,
    /// Only `client_id`: a public client (`none`).
    None,
}

/// The client credentials of a token request, as the HTTP tier read them.
#[derive(Debug, Clone)]
pub struct PresentedClient {
    pub client_id: String,
    pub secret: Option<String>,
    pub method: AuthMethod,
}

/// Authenticates the client of a token request: a confidential client by
/// its secret (Basic or post), a public one by its id alone. Every failure
/// is the same `invalid_client` (401; with `WWW-Authenticate: Basic` when
/// the client used Basic), whether the client is unknown, has another
/// secret, or used a method its kind does not allow.
pub async fn authenticate(state: &Services, presented: &PresentedClient) -> Result<ClientRecord> {
    let invalid = || Error::InvalidClient {
        basic: presented.method == AuthMethod::Basic,
    };
    let client = match Uuid::parse_str(&presented.client_id) {
        Ok(id) => state.store.client(id).await?,
        Err(_) => None,
    };
    // The hash is computed and compared whether or not the client exists,
    // so the answer takes as long for an unknown client as for a wrong
    // secret.
    let presented_hash = presented.secret.as_deref().map(hash_secret);
    let Some(client) = client else {
        if let Some(hash) = presented_hash {
            let _ = bool::from(hash.ct_eq(&[0u8; 32]));
        }
        return Err(invalid());
    };
    match (client.public, presented.method, presented_hash) {
        (true, AuthMethod::None, None) => Ok(client),
        (false, AuthMethod::Basic | AuthMethod::Post, Some(hash)) => {
            let stored = client.secret_hash.as_deref().unwrap_or(&[]);
            if bool::from(hash.as_slice().ct_eq(stored)) {
                Ok(client)
            } else {
                Err(invalid())
            }
        }
        _ => Err(invalid()),
    }
}

/// `unauthorized_client` (RFC 6749 §5.2): the client may not use `grant`.
pub fn require_grant(client: &ClientRecord, grant: &str) -> Result<()> {
    if client.allows_grant(grant) {
        Ok(())
    } else {
        Err(Error::Grant(
            GrantError::UnauthorizedClient,
            format!("This client is not allowed the {grant} grant"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_has_the_prefix_256_random_bits_and_its_hash() {
        let a = ClientSecret::generate().unwrap();
        let b = ClientSecret::generate().unwrap();
        assert!(a.secret.starts_with(SECRET_PREFIX));
        let random = URL_SAFE_NO_PAD
            .decode(&a.secret[SECRET_PREFIX.len()..])
            .unwrap();
        assert_eq!(random.len(), 32);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.hash, hash_secret(&a.secret));
        assert_ne!(a.hash, hash_secret(&b.secret));
    }
}
