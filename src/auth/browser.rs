//! The hosted pages' browser session and their CSRF tokens.
//!
//! **The browser session** is a warden session like any other (a row in
//! `sessions`, with `browser` set), opened by a sign-in on `/login`. Its
//! cookie, `warden_session`, holds the session's first refresh token
//! (`<session id>.0.<secret>`, see `refresh_tokens.rs`): the database keeps
//! only its hash, and a presented cookie is checked exactly like a
//! presented refresh token (the tag, then the stored hash in constant
//! time). Because it *is* the session, everything that ends sessions —
//! `POST /logout`, `DELETE /users/me/sessions/{id}`, a password change,
//! disabling or deleting the user — ends the browser session too, and it is
//! listed in `GET /users/me/sessions`. It lasts `browser_session_ttl`
//! seconds from its sign-in (and never longer than the session itself).
//!
//! **CSRF**: every form of the hosted pages carries a hidden `csrf_token`
//! that is HMAC-SHA256, under a server key, of the browser's pre-session
//! cookie `warden_csrf` (256 random bits, set by the first page). A
//! request whose field does not match its own cookie is refused before
//! anything is read or changed. Another site can neither read the cookie
//! nor compute the HMAC, and a token taken from one browser does not fit
//! another browser's cookie.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::audit::{self, Event};
use crate::auth::error::{GrantError, RandomError};
use crate::auth::password_check::{self, PasswordCheck, Purpose};
use crate::auth::sessions::{ClientMeta, SessionVia};
use crate::auth::{Error, Result, Services, tokens};
use crate::domain::UserRecord;
use crate::storage::{Store, StoreResult};

const CSRF_KEY_NAME: &str = "browser_csrf_key";

/// The server's CSRF key, shared by every instance on one database.
#[derive(Clone)]
pub struct BrowserKeys {
    csrf: Vec<u8>,
}

impl std::fmt::Debug for BrowserKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrowserKeys(<key redacted>)")
    }
}

impl BrowserKeys {
    /// Loads the CSRF key, creating it on first start.
    pub async fn load(store: &dyn Store, now: i64) -> anyhow::Result<Self> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| anyhow::anyhow!("OS random source failed: {e}"))?;
        let csrf = store.secret_or_insert(CSRF_KEY_NAME, &fresh, now).await?;
        Ok(Self { csrf })
    }

    /// A new pre-session cookie value: 256 random bits, base64url.
    pub fn new_pre_session(&self) -> std::result::Result<String, RandomError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(RandomError)?;
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The form token of the pre-session cookie `pre_session`.
    pub fn csrf_token(&self, pre_session: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(pre_session))
    }

    fn mac(&self, pre_session: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.csrf)
            .expect("HMAC takes keys of any length");
        mac.update(b"warden csrf\0");
        mac.update(pre_session.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `token` (the form's field) belongs to `pre_session` (the
    /// request's cookie); compared in constant time. Either missing is no.
    pub fn csrf_ok(&self, pre_session: Option<&str>, token: Option<&str>) -> bool {
        let (Some(pre), Some(token)) = (pre_session, token) else {
            return false;
        };
        if pre.is_empty() || pre.len() > 64 {
            return false;
        }
        let Ok(presented) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        presented.ct_eq(&self.mac(pre)).into()
    }
}

/// A live browser session, as its cookie proved it.
#[derive(Debug, Clone)]
pub struct BrowserSession {
    pub id: Uuid,
    pub user: UserRecord,
    /// When the user signed in (RFC 3339's `auth_time`, as Unix seconds).
    pub auth_time: i64,
}

/// The browser session the cookie `cookie` stands for, if it is live: a
/// genuine token, the session's current one, a browser session, younger
/// than `browser_session_ttl`, of a user who is not disabled.
pub async fn current(state: &Services, cookie: Option<&str>) -> Result<Option<BrowserSession>> {
    let Some(cookie) = cookie else {
        return Ok(None);
    };
    let now = tokens::now();
    let Some(presented) = state.refresh.resolve(state.store.as_ref(), cookie).await? else {
        return Ok(None);
    };
    let Some(record) = state.store.refresh_record(presented.session).await? else {
        return Ok(None);
    };
    let ttl = state.config.clients.browser_session_ttl as i64;
    if !record.session.browser
        || !record.is_current(
            &presented,
            now,
            state.config.sessions.session_max_lifetime as i64,
        )
        || record.session.created_at.saturating_add(ttl) <= now
    {
        return Ok(None);
    }
    match user(state.store.as_ref(), record.session.user_id).await? {
        Some(user) if !user.disabled => Ok(Some(BrowserSession {
            id: record.session.id,
            user,
            auth_time: record.session.created_at,
        })),
        _ => Ok(None),
    }
}

async fn user(store: &dyn Store, id: Uuid) -> StoreResult<Option<UserRecord>> {
    store.user_by_id(id).await
}

/// A sign-in on the hosted login page: the very password check of the
/// password grant (`password_check`, with the login purpose, so the same
/// throttle counters, the same 429 and the same audit events as
/// `POST /token`), then a new browser session. Returns the cookie value
/// and the user's id. Wrong credentials are `invalid_grant` with
/// [`crate::auth::grants::BAD_CREDENTIALS`], as at `/token`.
pub async fn sign_in(
    state: &Services,
    login: &str,
    password: &str,
    client: &ClientMeta,
    device_cookies: &[&str],
) -> Result<(String, Uuid)> {
    let address = client.ip.as_deref().unwrap_or("unknown");
    password_check::check_before_lookup(
        state,
        login,
        address,
        state
            .devices
            .any_known(device_cookies.iter().copied(), tokens::now()),
        Purpose::Login,
    )
    .await?;
    let user = state.store.user_by_login(login).await?;
    let known_device = user.as_ref().is_some_and(|u| {
        state
            .devices
            .known(device_cookies.iter().copied(), u.id, tokens::now())
    });
    let right = password_check::check(
        state,
        PasswordCheck {
            login,
            user: user.as_ref(),
            password,
            address,
            known_device,
            purpose: Purpose::Login,
        },
    )
    .await?;
    let bad = || {
        Error::Grant(
            GrantError::InvalidGrant,
            crate::auth::grants::BAD_CREDENTIALS.to_owned(),
        )
    };
    let mut user = match user {
        Some(u) if right => u,
        _ => return Err(bad()),
    };
    // As in the password grant: a security change between the check and
    // the session ends this sign-in too, unless the password is the same.
    let mut retries = 0;
    let (tokens, sid) = loop {
        let scope = state
            .config
            .roles
            .scopes_of(&user.roles)
            .into_iter()
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(opened) = crate::auth::sessions::open_session_with(
            state,
            &user,
            scope,
            client,
            Uuid::now_v7(),
            SessionVia::Browser,
            tokens::now(),
        )
        .await?
        {
            break opened;
        }
        retries += 1;
        match state.store.user_by_id(user.id).await? {
            Some(fresh)
                if !fresh.disabled && fresh.password_hash == user.password_hash && retries < 3 =>
            {
                user = fresh;
            }
            _ => return Err(bad()),
        }
    };
    state.gate.set(&user);
    state.users.put(&user);
    metrics::counter!("warden_logins_total", "result" => "ok").increment(1);
    audit::record(
        state.store.as_ref(),
        Event::new("login_succeeded")
            .user(user.id)
            .session(sid)
            .ip(client.ip.as_deref())
            .detail("via", "browser"),
    )
    .await;
    let cookie = tokens
        .refresh_token
        .expect("a new session has a refresh token");
    Ok((cookie, user.id))
}

/// Ends the browser session of `cookie`, if it is one; `true` if a
/// session ended.
pub async fn sign_out(state: &Services, cookie: Option<&str>) -> Result<bool> {
    let Some(session) = current(state, cookie).await? else {
        return Ok(false);
    };
    let now = tokens::now();
    let ended = crate::auth::sessions::end_session(state, session.id, now).await?;
    audit::record(
        state.store.as_ref(),
        Event::new("logout")
            .user(session.user.id)
            .session(session.id)
            .detail("via", "browser"),
    )
    .await;
    Ok(ended)
}

/// An access token for the browser session itself, for warden's own
/// account page (`POST /account/session`): its `sid` is the browser
/// session's, so signing out there (`POST /logout`) ends the browser
/// session, and its scopes are the session's that the user's roles still
/// grant. No refresh token: the page asks again with the cookie.
pub async fn access_token(
    state: &Services,
    session: &BrowserSession,
) -> Result<crate::auth::sessions::TokenResponse> {
    let now = tokens::now();
    let Some(record) = state.store.refresh_record(session.id).await? else {
        return Err(Error::Grant(
            GrantError::InvalidGrant,
            "The browser session has ended".to_owned(),
        ));
    };
    let own = state.config.roles.scopes_of(&session.user.roles);
    let scope: Vec<&str> = record
        .session
        .scope
        .split(' ')
        .filter(|s| own.contains(s))
        .collect();
    let scope = scope.join(" ");
    let issued_at = tokens::issuing_time(&session.user, now).await;
    let issued = state.tokens.issue_for(
        &session.user,
        &scope,
        session.id,
        issued_at,
        "browser_session",
    )?;
    Ok(crate::auth::sessions::TokenResponse {
        access_token: issued.token,
        token_type: "bearer",
        expires_in: issued.expires_in,
        scope,
        refresh_token: None,
        id_token: None,
    })
}
