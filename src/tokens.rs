//! Access tokens: issuing them, and the in-memory gate every token passes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use dashmap::DashMap;
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

    /// Swaps in a new key ring (after a rotation).
    pub fn replace_keys(&self, keys: KeyRing) {
        self.keys.store(Arc::new(keys));
    }

    /// Access token lifetime, seconds.
    pub fn ttl(&self) -> u64 {
        self.ttl
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
        self.issue_for(user, scope, sid, now, "password")
    }

    /// Like [`TokenIssuer::issue`], counting the token under `grant`.
    pub fn issue_for(
        &self,
        user: &UserRecord,
        scope: &str,
        sid: Uuid,
        now: i64,
        grant: &'static str,
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
        metrics::counter!("warden_tokens_issued_total", "grant" => grant).increment(1);
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
    /// The user's `security_version` this entry reflects.
    version: i64,
    /// The local write that made this entry (0: loaded from a snapshot).
    epoch: u64,
}

/// Per-user revocation state, kept in memory, so a token check never waits
/// for the database: a token fails at once when its user is deleted or
/// disabled, or when it was issued (`iat`) before the user's last password,
/// role or disabled change.
///
/// Writes made by this process update it directly ([`UserGate::set`],
/// [`UserGate::remove`]). Writes made elsewhere — the CLI, another instance —
/// arrive as snapshots ([`UserGate::apply_snapshot`]); a snapshot never
/// rolls back a newer local change, because entries carry the user's
/// `security_version` and local writes carry an epoch.
///
/// The map is sharded ([`DashMap`]), so concurrent token checks do not
/// contend on one lock.
#[derive(Default)]
pub struct UserGate {
    users: DashMap<Uuid, Gate>,
    /// Ended sessions, with when they ended; kept until every access token
    /// of theirs has expired, then pruned.
    revoked_sessions: DashMap<Uuid, i64>,
    /// Users deleted by this process: a snapshot taken before the delete
    /// committed must not bring them back. Ids are never reused.
    deleted: Mutex<HashMap<Uuid, u64>>,
    epoch: AtomicU64,
    /// When (unix seconds) the newest full snapshot of the users table was
    /// read. A user missing from it was deleted before then or created
    /// after: a token of an unknown user is live only if issued after this
    /// moment (a user another instance just registered), never before (a
    /// deleted user).
    snapshot_at: AtomicI64,
}

impl UserGate {
    /// A gate loaded from a full snapshot read at `read_at`.
    pub fn new(all: Vec<UserSecurity>) -> Self {
        Self::loaded(all, now())
    }

    /// A gate loaded from a full snapshot read at `read_at`.
    pub fn loaded(all: Vec<UserSecurity>, read_at: i64) -> Self {
        let gate = Self::default();
        gate.snapshot_at.store(read_at, Ordering::Release);
        for u in all {
            gate.users.insert(u.id, Gate::from_snapshot(&u));
        }
        gate
    }

    fn next_epoch(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Records `user` as just written by this process.
    pub fn set(&self, user: &UserRecord) {
        let fresh = Gate {
            valid_after: user.tokens_valid_after,
            disabled: user.disabled,
            version: user.security_version,
            epoch: self.next_epoch(),
        };
        self.users
            .entry(user.id)
            .and_modify(|g| {
                if fresh.version >= g.version {
                    *g = fresh;
                }
            })
            .or_insert(fresh);
    }

    /// Records that this process deleted the user.
    pub fn remove(&self, id: Uuid) {
        let epoch = self.next_epoch();
        self.deleted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, epoch);
        self.users.remove(&id);
    }

    /// Call before reading a snapshot; pass the result to
    /// [`UserGate::apply_snapshot`].
    pub fn snapshot_started(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Merges a full snapshot of the users table whose read began at
    /// `read_at` (unix seconds), after [`UserGate::snapshot_started`]
    /// returned `started`.
    pub fn apply_snapshot(&self, snapshot: Vec<UserSecurity>, started: u64, read_at: i64) {
        let mut deleted = self.deleted.lock().unwrap_or_else(|e| e.into_inner());
        let mut present = HashSet::with_capacity(snapshot.len());
        for u in &snapshot {
            if deleted.contains_key(&u.id) {
                continue;
            }
            present.insert(u.id);
            let fresh = Gate::from_snapshot(u);
            self.users
                .entry(u.id)
                .and_modify(|g| {
                    if fresh.version > g.version {
                        *g = fresh;
                    }
                })
                .or_insert(fresh);
        }
        // Gone from the table, and not written here since the snapshot
        // began: deleted elsewhere.
        self.users
            .retain(|id, g| present.contains(id) || g.epoch > started);
        // A later snapshot cannot contain these any more.
        deleted.retain(|_, epoch| *epoch > started);
        self.snapshot_at.fetch_max(read_at, Ordering::AcqRel);
    }

    /// Ends session `sid` for access tokens.
    pub fn revoke_session(&self, sid: Uuid, at: i64) {
        self.revoked_sessions.insert(sid, at);
    }

    /// Adds sessions ended elsewhere.
    pub fn apply_revocations(&self, revoked: &[(Uuid, i64)]) {
        for &(sid, at) in revoked {
            self.revoked_sessions.entry(sid).or_insert(at);
        }
    }

    /// Forgets sessions ended before `before`: their access tokens have all
    /// expired.
    pub fn prune_revocations(&self, before: i64) {
        self.revoked_sessions.retain(|_, at| *at >= before);
    }

    /// Number of users the gate knows.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

impl Gate {
    fn from_snapshot(u: &UserSecurity) -> Self {
        Self {
            valid_after: u.tokens_valid_after,
            disabled: u.disabled,
            version: u.security_version,
            epoch: 0,
        }
    }
}

impl TokenCheck for UserGate {
    fn is_live(&self, claims: &Claims) -> bool {
        let Ok(id) = Uuid::parse_str(&claims.sub) else {
            return false;
        };
        let user_ok = match self.users.get(&id) {
            Some(g) => !g.disabled && claims.iat >= g.valid_after,
            // Not in the last snapshot: registered since (by another
            // instance) if the token is newer than the snapshot, else gone.
            // One second of slack for clocks of different instances.
            None => {
                claims.iat >= self.snapshot_at.load(Ordering::Acquire) - 1
                    && !self
                        .deleted
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains_key(&id)
            }
        };
        if !user_ok {
            return false;
        }
        // (No `is_empty` shortcut: on a sharded map it visits every shard.)
        match Uuid::parse_str(&claims.sid) {
            Ok(sid) => !self.revoked_sessions.contains_key(&sid),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: Uuid, version: i64, valid_after: i64, disabled: bool) -> UserRecord {
        UserRecord {
            id,
            username: "u".into(),
            email: "u@example.com".into(),
            full_name: None,
            password_hash: String::new(),
            roles: vec![],
            disabled,
            tokens_valid_after: valid_after,
            security_version: version,
            revision: version,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn sec(id: Uuid, version: i64, valid_after: i64, disabled: bool) -> UserSecurity {
        UserSecurity {
            id,
            tokens_valid_after: valid_after,
            disabled,
            security_version: version,
            revision: version,
        }
    }

    fn live(gate: &UserGate, id: Uuid, iat: i64) -> bool {
        let claims = Claims {
            iss: String::new(),
            sub: id.to_string(),
            aud: None,
            exp: 0,
            iat,
            nbf: 0,
            jti: String::new(),
            sid: Uuid::now_v7().to_string(),
            scope: String::new(),
            roles: vec![],
            username: String::new(),
        };
        gate.is_live(&claims)
    }

    #[test]
    fn a_stale_snapshot_does_not_undo_a_local_password_change() {
        let id = Uuid::now_v7();
        let gate = UserGate::new(vec![sec(id, 0, 0, false)]);
        let started = gate.snapshot_started();
        let stale = vec![sec(id, 0, 0, false)];
        gate.set(&user(id, 1, 100, false)); // committed after the snapshot read
        gate.apply_snapshot(stale, started, 0);
        assert!(!live(&gate, id, 50));
        assert!(live(&gate, id, 100));
    }

    #[test]
    fn a_newer_snapshot_applies_changes_made_elsewhere() {
        let id = Uuid::now_v7();
        let gate = UserGate::new(vec![sec(id, 0, 0, false)]);
        assert!(live(&gate, id, 10));
        let started = gate.snapshot_started();
        gate.apply_snapshot(vec![sec(id, 1, 0, true)], started, 0);
        assert!(!live(&gate, id, 10), "disabled elsewhere");
    }

    #[test]
    fn users_missing_from_a_snapshot_are_dropped_unless_created_since() {
        let (old, new) = (Uuid::now_v7(), Uuid::now_v7());
        let gate = UserGate::new(vec![sec(old, 0, 0, false)]);
        let started = gate.snapshot_started();
        gate.set(&user(new, 0, 0, false)); // registered after the snapshot began
        gate.apply_snapshot(vec![], started, 0);
        assert!(!live(&gate, old, 10), "deleted elsewhere");
        assert!(live(&gate, new, 10));
    }

    #[test]
    fn a_stale_snapshot_does_not_resurrect_a_local_delete() {
        let id = Uuid::now_v7();
        let gate = UserGate::new(vec![sec(id, 0, 0, false)]);
        let started = gate.snapshot_started();
        gate.remove(id);
        gate.apply_snapshot(vec![sec(id, 0, 0, false)], started, 0);
        assert!(!live(&gate, id, 10));
    }

    #[test]
    fn a_revoked_session_is_not_live_until_pruned() {
        let id = Uuid::now_v7();
        let gate = UserGate::new(vec![sec(id, 0, 0, false)]);
        let sid = Uuid::now_v7();
        let claims = |sid: Uuid| Claims {
            iss: String::new(),
            sub: id.to_string(),
            aud: None,
            exp: 0,
            iat: 10,
            nbf: 0,
            jti: String::new(),
            sid: sid.to_string(),
            scope: String::new(),
            roles: vec![],
            username: String::new(),
        };
        assert!(gate.is_live(&claims(sid)));
        gate.revoke_session(sid, 100);
        assert!(!gate.is_live(&claims(sid)));
        assert!(
            gate.is_live(&claims(Uuid::now_v7())),
            "other sessions live on"
        );
        gate.prune_revocations(100);
        assert!(!gate.is_live(&claims(sid)));
        gate.prune_revocations(101);
        assert!(gate.is_live(&claims(sid)));
    }

    #[test]
    fn unknown_users_are_live_only_with_tokens_newer_than_the_snapshot() {
        let gate = UserGate::loaded(vec![], 1000);
        // Registered through another instance after the snapshot.
        assert!(live(&gate, Uuid::now_v7(), 1000));
        // Issued before the snapshot, yet not in it: deleted.
        assert!(!live(&gate, Uuid::now_v7(), 990));
    }

    #[test]
    fn a_locally_deleted_user_is_not_live_even_with_a_new_token() {
        let id = Uuid::now_v7();
        let gate = UserGate::loaded(vec![sec(id, 0, 0, false)], 1000);
        gate.remove(id);
        assert!(!live(&gate, id, 2000));
    }
}
