//! OAuth clients: registration and client authentication at the token
//! endpoint. The registry's rules (which redirect URIs, grants and scopes a
//! client may have) are the domain's (`domain::client`); this service adds
//! the secret: 256 random bits shown once, stored as SHA-256, compared in
//! constant time.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::audit::{self, Event};
use crate::auth::error::RandomError;
use crate::auth::{Error, Result, Services};
use crate::domain::client::{
    ClientFieldError, GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN, validate_client,
};
use crate::domain::error::{FieldError, GrantError};
use crate::domain::roles::{OPENID_SCOPES, SCOPE_ME, is_openid_scope};
use crate::domain::{ClientRecord, ConsentRecord};

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
        id_token_signed_response_alg: new.id_token_signed_response_alg.unwrap_or_else(|| {
            crate::auth::keys::algorithm_name(state.config.tokens.id_token_algorithm).to_owned()
        }),
        created_at: now,
        updated_at: now,
    };
    validate_client(&client, |s| known_scope(state, s)).map_err(client_field_error)?;
    publish_id_token_key(state, &client).await?;
    let event = by(Event::new("client_created"), actor)
        .ip(ip)
        .detail("client_id", client.id.to_string())
        .detail("name", client.name.clone())
        .detail("public", client.public)
        .into_record();
    state.store.insert_client(&client, &event).await?;
    audit::log(&event);
    reload_origins(state).await;
    Ok((client, secret.map(|s| s.secret)))
}

/// Makes sure the client's id-token algorithm has a key, so JWKS
/// publishes it before the first id token it signs (a relying party that
/// fetched JWKS at registration finds it there).
async fn publish_id_token_key(state: &Services, client: &ClientRecord) -> Result<()> {
    if let Some(alg) =
        crate::auth::id_tokens::id_token_algorithm(&client.id_token_signed_response_alg)
    {
        crate::auth::id_tokens::ensure_signing_key(state, alg).await?;
    }
    Ok(())
}

/// The admin behind a change (`user_id` of its audit event), or the
/// command line (`by: cli`).
fn by(event: Event, actor: Option<Uuid>) -> Event {
    match actor {
        Some(admin) => event.user(admin),
        None => event.detail("by", "cli"),
    }
}

/// One client; `NotFound` if there is none with this id.
pub async fn get(state: &Services, id: Uuid) -> Result<ClientRecord> {
    state.store.client(id).await?.ok_or(Error::NotFound)
}

/// One page of clients by id (keyset pagination): those after `after`, at
/// most `limit`, and the id to continue after when more follow.
pub async fn list(
    state: &Services,
    after: Option<Uuid>,
    limit: u32,
) -> Result<(Vec<ClientRecord>, Option<Uuid>)> {
    // One extra row tells whether another page follows.
    let mut page = state.store.query_clients(after, limit + 1).await?;
    let next = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(|c| c.id)
    } else {
        None
    };
    Ok((page, next))
}

/// A partial update (`PATCH /clients/{id}`): each field given replaces the
/// registered one; `None` leaves it. `public` is not among them: a client
/// does not change kind (its secret, PKCE and consent rules depend on it);
/// register a new one instead.
#[derive(Debug, Clone, Default)]
pub struct ClientChanges {
    pub name: Option<String>,
    pub first_party: Option<bool>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// `Some(None)` removes it.
    pub backchannel_logout_uri: Option<Option<String>>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub id_token_signed_response_alg: Option<String>,
}

impl ClientChanges {
    /// The JSON names of the fields this update sets, for the audit event.
    fn fields(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("first_party", self.first_party.is_some()),
            ("redirect_uris", self.redirect_uris.is_some()),
            (
                "post_logout_redirect_uris",
                self.post_logout_redirect_uris.is_some(),
            ),
            (
                "backchannel_logout_uri",
                self.backchannel_logout_uri.is_some(),
            ),
            ("grant_types", self.grant_types.is_some()),
            ("scopes", self.scopes.is_some()),
            (
                "id_token_signed_response_alg",
                self.id_token_signed_response_alg.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// Applies `changes` to client `id`. The merged record is validated as a
/// whole with the registration's rules (`validate_client`), so no update
/// can make a client that could not have been registered: `client_credentials`
/// on a public client, `authorization_code` without redirect URIs, a
/// custom scheme on a confidential client. Sessions already issued through
/// the client are left alone (a narrower `scopes` bounds the next tokens;
/// deleting the client ends them all).
pub async fn update(
    state: &Services,
    id: Uuid,
    changes: ClientChanges,
    actor: Option<Uuid>,
    ip: Option<&str>,
    now: i64,
) -> Result<ClientRecord> {
    let mut client = get(state, id).await?;
    let fields = changes.fields();
    if let Some(name) = changes.name {
        client.name = name;
    }
    if let Some(first_party) = changes.first_party {
        client.first_party = first_party;
    }
    if let Some(uris) = changes.redirect_uris {
        client.redirect_uris = uris;
    }
    if let Some(uris) = changes.post_logout_redirect_uris {
        client.post_logout_redirect_uris = uris;
    }
    if let Some(uri) = changes.backchannel_logout_uri {
        client.backchannel_logout_uri = uri;
    }
    if let Some(mut grants) = changes.grant_types {
        dedup_keep_order(&mut grants);
        client.grant_types = grants;
    }
    if let Some(mut scopes) = changes.scopes {
        dedup_keep_order(&mut scopes);
        client.scopes = scopes;
    }
    if let Some(alg) = changes.id_token_signed_response_alg {
        client.id_token_signed_response_alg = alg;
    }
    validate_client(&client, |s| known_scope(state, s)).map_err(client_field_error)?;
    publish_id_token_key(state, &client).await?;
    client.updated_at = now;
    let event = by(Event::new("client_updated"), actor)
        .ip(ip)
        .detail("client_id", id.to_string())
        .detail("fields", fields)
        .into_record();
    if !state.store.update_client(&client, &event).await? {
        // Deleted between the read and the write.
        return Err(Error::NotFound);
    }
    audit::log(&event);
    reload_origins(state).await;
    Ok(client)
}

/// What rotating a public client's secret answers (409: the client's kind,
/// not the request, is the problem).
pub const PUBLIC_CLIENT_HAS_NO_SECRET: &str =
    "This is a public client: it has no secret to rotate (public clients use PKCE alone)";

/// Gives a confidential client a new secret, returned once; the old one
/// stops working at once (in this process and every other: it is checked
/// against the database on each token request).
pub async fn rotate_secret(
    state: &Services,
    id: Uuid,
    actor: Option<Uuid>,
    ip: Option<&str>,
    now: i64,
) -> Result<(ClientRecord, String)> {
    let mut client = get(state, id).await?;
    if client.public {
        return Err(Error::StateConflict(PUBLIC_CLIENT_HAS_NO_SECRET.to_owned()));
    }
    let secret = ClientSecret::generate()?;
    let event = by(Event::new("client_secret_rotated"), actor)
        .ip(ip)
        .detail("client_id", id.to_string())
        .into_record();
    if !state
        .store
        .set_client_secret(id, &secret.hash, now, &event)
        .await?
    {
        return Err(Error::NotFound);
    }
    audit::log(&event);
    client.secret_hash = Some(secret.hash.to_vec());
    client.secret_created_at = Some(now);
    client.updated_at = now;
    Ok((client, secret.secret))
}

/// Deletes a client and ends everything issued through it: its codes and
/// consents go, every live session opened through it ends (refresh tokens
/// at once; access tokens at once in this process, in others within their
/// sync interval). Returns how many sessions ended.
pub async fn delete(
    state: &Services,
    id: Uuid,
    actor: Option<Uuid>,
    ip: Option<&str>,
    now: i64,
) -> Result<usize> {
    let event = by(Event::new("client_deleted"), actor)
        .ip(ip)
        .detail("client_id", id.to_string())
        .into_record();
    let Some(ended) = state.store.delete_client(id, now, &event).await? else {
        return Err(Error::NotFound);
    };
    crate::auth::sessions::sessions_ended(state, &ended, now);
    // Its own client_credentials tokens have no session: the gate refuses
    // them by client.
    state.gate.revoke_client(id, now);
    audit::log(&event);
    tracing::info!(client_id = %id, sessions_ended = ended.len(), "client deleted");
    reload_origins(state).await;
    Ok(ended.len())
}

/// A user's remembered consents, each with the client's name, newest first.
pub async fn consents(state: &Services, user: Uuid) -> Result<Vec<(ConsentRecord, String)>> {
    Ok(state.store.user_consents(user).await?)
}

/// Withdraws the consent `user` gave `client`: the next authorization asks
/// again, and the user's sessions through that client end. `NotFound` when
/// there is no such consent.
pub async fn withdraw_consent(
    state: &Services,
    user: Uuid,
    client: Uuid,
    ip: Option<&str>,
    now: i64,
) -> Result<()> {
    let event = Event::new("consent_withdrawn")
        .user(user)
        .ip(ip)
        .detail("client_id", client.to_string())
        .into_record();
    let Some(ended) = state
        .store
        .delete_consent(user, client, now, &event)
        .await?
    else {
        return Err(Error::NotFound);
    };
    crate::auth::sessions::sessions_ended(state, &ended, now);
    audit::log(&event);
    Ok(())
}

/// The browser origins of public clients, which the token and revocation
/// endpoints answer with CORS (without credentials): the origin of each
/// `https` redirect URI, and for a loopback `http` one its host on any
/// port (RFC 8252 §7.3: the port is chosen at run time). Held in memory,
/// replaced after every change to the registry made by this process and
/// reloaded by the server's sync task (see `app.rs`) for changes made
/// elsewhere.
#[derive(Debug, Default)]
pub struct ClientOrigins {
    set: std::sync::RwLock<OriginSet>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct OriginSet {
    /// `https://app.example.com` (with its port, if not 443).
    exact: HashSet<String>,
    /// `127.0.0.1`, `[::1]`: any port of `http://HOST`.
    loopback_hosts: HashSet<String>,
}

impl OriginSet {
    fn of(clients: &[ClientRecord]) -> Self {
        let mut set = Self::default();
        for uri in clients
            .iter()
            .filter(|c| c.public)
            .flat_map(|c| &c.redirect_uris)
        {
            let Ok(url) = url::Url::parse(uri) else {
                continue;
            };
            match (url.scheme(), url.host_str()) {
                ("https", Some(_)) => {
                    set.exact.insert(url.origin().ascii_serialization());
                }
                ("http", Some(host)) => {
                    // Registration allows plain http only to loopback IPs.
                    set.loopback_hosts.insert(host.to_owned());
                }
                // Custom schemes: native apps, no browser origin.
                _ => {}
            }
        }
        set
    }
}

impl ClientOrigins {
    /// Whether `origin` (a request's `Origin` header) is a public client's.
    pub fn allows(&self, origin: &str) -> bool {
        let set = self.set.read().unwrap_or_else(|e| e.into_inner());
        if set.exact.contains(origin) {
            return true;
        }
        if set.loopback_hosts.is_empty() || !origin.starts_with("http://") {
            return false;
        }
        // An origin is scheme://host[:port], nothing more.
        match url::Url::parse(origin) {
            Ok(url) if url.path() == "/" && !origin.ends_with('/') => url
                .host_str()
                .is_some_and(|host| set.loopback_hosts.contains(host)),
            _ => false,
        }
    }

    /// Replaces the set with the origins of `clients` (all of them).
    pub fn replace(&self, clients: &[ClientRecord]) {
        let new = OriginSet::of(clients);
        let mut set = self.set.write().unwrap_or_else(|e| e.into_inner());
        if *set != new {
            *set = new;
        }
    }
}

/// Reads every client and replaces [`Services::client_origins`]. A failure
/// is logged and leaves the set as it was (the sync retries).
pub async fn reload_origins(state: &Services) {
    if let Err(e) = try_reload_origins(state).await {
        tracing::warn!(error = %e, "cannot reload the public clients' origins");
    }
}

/// [`reload_origins`], with its error.
pub async fn try_reload_origins(state: &Services) -> Result<()> {
    const PAGE: u32 = 500;
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = state.store.query_clients(after, PAGE).await?;
        let full = page.len() == PAGE as usize;
        after = page.last().map(|c| c.id);
        all.extend(page);
        if !full {
            break;
        }
    }
    state.client_origins.replace(&all);
    Ok(())
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
    use crate::domain::client::DEFAULT_ID_TOKEN_ALGORITHM;

    fn client(public: bool, uris: &[&str]) -> ClientRecord {
        ClientRecord {
            id: Uuid::now_v7(),
            name: "X".to_owned(),
            public,
            first_party: false,
            secret_hash: None,
            secret_created_at: None,
            redirect_uris: uris.iter().map(|u| u.to_string()).collect(),
            post_logout_redirect_uris: Vec::new(),
            backchannel_logout_uri: None,
            grant_types: vec![GRANT_AUTHORIZATION_CODE.to_owned()],
            scopes: Vec::new(),
            id_token_signed_response_alg: DEFAULT_ID_TOKEN_ALGORITHM.to_owned(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn public_clients_https_origins_and_loopback_hosts_on_any_port_are_allowed() {
        let origins = ClientOrigins::default();
        origins.replace(&[
            client(
                true,
                &[
                    "https://spa.example.com/cb?x=1",
                    "https://spa.example.com:8443/cb",
                    "http://127.0.0.1/cb",
                    "com.example.app:/cb",
                ],
            ),
            client(
                false,
                &["https://backend.example.com/cb", "http://[::1]/cb"],
            ),
        ]);
        for allowed in [
            "https://spa.example.com",
            "https://spa.example.com:8443",
            "http://127.0.0.1",
            "http://127.0.0.1:5173",
        ] {
            assert!(origins.allows(allowed), "{allowed}");
        }
        for refused in [
            "https://backend.example.com",
            "http://[::1]:5173",
            "http://spa.example.com",
            "https://spa.example.com.evil.test",
            "https://spa.example.com/",
            "http://127.0.0.1:5173/",
            "http://127.0.0.1:5173/cb",
            "http://127.0.0.2",
            "com.example.app:",
            "null",
            "",
        ] {
            assert!(!origins.allows(refused), "{refused}");
        }
        origins.replace(&[]);
        assert!(!origins.allows("https://spa.example.com"));
    }

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
