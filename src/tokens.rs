//! Access tokens: issuing them, and the in-memory gate every token passes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use jsonwebtoken::Header;
use serde::Serialize;
use uuid::Uuid;
use warden_guard::{Claims, TokenCheck};

use crate::error::Error;
use crate::keys::KeyRing;
use crate::storage::{UserRecord, UserSecurity};

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The moment from which a user's new tokens are valid after a security
/// change at `now`: the next whole second. A token carries `iat` in whole
/// seconds, so every token issued during the second of the change (before
/// it) has `iat < now + 1` and fails; tokens issued after the change get
/// `iat = now + 1` (see [`TokenIssuer::issue`]).
pub fn next_valid_after(now: i64) -> i64 {
    now + 1
}

#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    sid: String,
    scope: &'a str,
    roles: &'a [String],
    username: &'a str,
}

/// An issued access token.
pub struct AccessToken {
    pub token: String,
    pub expires_in: u64,
}

/// Signs access tokens with the current key.
pub struct TokenIssuer {
    keys: ArcSwap<KeyRing>,
    issuer: String,
    audience: Option<String>,
    ttl: u64,
}

impl TokenIssuer {
    pub fn new(keys: KeyRing, issuer: String, audience: Option<String>, ttl: u64) -> Self {
        Self {
            keys: ArcSwap::from_pointee(keys),
            issuer,
            audience,
            ttl,
        }
    }

    pub fn keys(&self) -> arc_swap::Guard<Arc<KeyRing>> {
        self.keys.load()
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs an access token for `user` in session `sid` with `scope`.
    pub fn issue(
        &self,
        user: &UserRecord,
        scope: &str,
        sid: Uuid,
        now: i64,
    ) -> Result<AccessToken, Error> {
        let keys = self.keys.load();
        let key = &keys.current;
        let mut header = Header::new(key.algorithm);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(key.kid.clone());
        // `iat` is never before the user's last security change, so the
        // token passes the gate even when issued in the second of the change;
        // `nbf` stays the true time, so the token is usable at once.
        let iat = now.max(user.tokens_valid_after);
        let claims = AccessClaims {
            iss: &self.issuer,
            sub: user.id.to_string(),
            aud: self.audience.as_deref(),
            exp: now + self.ttl as i64,
            iat,
            nbf: now,
            jti: Uuid::now_v7().to_string(),
            sid: sid.to_string(),
            scope,
            roles: &user.roles,
            username: &user.username,
        };
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| Error::Internal(format!("signing failed: {e}")))?;
        metrics::counter!("warden_tokens_issued_total", "grant" => "password").increment(1);
        Ok(AccessToken {
            token,
            expires_in: self.ttl,
        })
    }
}

/// What the gate knows of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gate {
    valid_after: i64,
    disabled: bool,
}

/// Per-user revocation state, kept in memory and updated on every write, so
/// a token check never waits for the database: a token fails at once when
/// its user is deleted or disabled, or when it was issued before the user's
/// last password (or role) change.
#[derive(Default)]
pub struct UserGate {
    users: RwLock<HashMap<Uuid, Gate>>,
}

impl UserGate {
    pub fn new(all: Vec<UserSecurity>) -> Self {
        let users = all
            .into_iter()
            .map(|u| {
                (
                    u.id,
                    Gate {
                        valid_after: u.tokens_valid_after,
                        disabled: u.disabled,
                    },
                )
            })
            .collect();
        Self {
            users: RwLock::new(users),
        }
    }

    pub fn set(&self, user: &UserRecord) {
        let gate = Gate {
            valid_after: user.tokens_valid_after,
            disabled: user.disabled,
        };
        self.users
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.id, gate);
    }

    pub fn remove(&self, id: Uuid) {
        self.users
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

impl TokenCheck for UserGate {
    fn is_live(&self, claims: &Claims) -> bool {
        let Ok(id) = Uuid::parse_str(&claims.sub) else {
            return false;
        };
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        match users.get(&id) {
            Some(g) => !g.disabled && claims.iat >= g.valid_after,
            None => false,
        }
    }
}
