//! Access tokens: issuing them, and the in-memory gate every token passes.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use jsonwebtoken::Header;
use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;
use warden_guard::{Claims, ClientClaims, TokenCheck};

use crate::auth::error::SigningError;
use crate::auth::keys::KeyRing;
use crate::domain::{UserChange, UserRecord, UserSecurity};

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
/// it) has `iat < now + 1` and fails; a token for the user is issued no
/// earlier than `now + 1` (see [`issuing_time`]).
pub fn next_valid_after(now: i64) -> i64 {
    now + 1
}

/// The longest [`issuing_time`] waits: one second, the granularity of
/// `iat`. A `tokens_valid_after` further ahead comes from a clock that runs
/// ahead of ours (another instance's).
const MAX_ISSUE_WAIT: Duration = Duration::from_secs(1);

/// When to issue a token for `user`, given that it is `now`: `now`, or,
/// in the second of the user's last security change, the start of the
/// next second, once the clock has reached it.
///
/// Tokens issued before the change and after it in that same second are
/// told apart by waiting rather than by stamping the later ones with the
/// next second: an `iat` ahead of the clock is refused by verifiers that
/// check it. The wait (under a second) falls only on a token issued in the
/// second of its user's own change, such as the one a password change
/// answers with.
pub async fn issuing_time(user: &UserRecord, now: i64) -> i64 {
    let valid_after = user.tokens_valid_after;
    if now >= valid_after {
        return now;
    }
    let start = UNIX_EPOCH + Duration::from_secs(u64::try_from(valid_after).unwrap_or(0));
    if let Ok(wait) = start.duration_since(SystemTime::now())
        && wait <= MAX_ISSUE_WAIT
    {
        tokio::time::sleep(wait).await;
    }
    self::now()
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
    /// The client a user signed in to (RFC 9068); absent for the password
    /// grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
}

/// The claims of a client's own token (`client_credentials`): no user, so
/// no session, roles or username; `sub` is the client id.
#[derive(Serialize)]
struct ClientAccessClaims<'a> {
    iss: &'a str,
    sub: String,
    client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    scope: &'a str,
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
    ) -> Result<AccessToken, SigningError> {
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
    ) -> Result<AccessToken, SigningError> {
        self.issue_through(user, scope, sid, None, now, grant)
    }

    /// Like [`TokenIssuer::issue_for`], for a session opened through the
    /// OAuth client `client` (which the token names as `client_id`).
    pub fn issue_through(
        &self,
        user: &UserRecord,
        scope: &str,
        sid: Uuid,
        client: Option<Uuid>,
        now: i64,
        grant: &'static str,
    ) -> Result<AccessToken, SigningError> {
        let keys = self.keys.load();
        let key = &keys.current;
        let header = access_header(key);
        // `iat` is never before the user's last security change, so the
        // token passes the gate. Callers issue at [`issuing_time`], so this
        // is `now` unless a clock ahead of ours made the change; `nbf`
        // stays the true time, so the token is usable at once either way.
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
            client_id: client.map(|c| c.to_string()),
        };
        let token = key.sign(&header, &claims)?;
        metrics::counter!("warden_tokens_issued_total", "grant" => grant).increment(1);
        Ok(AccessToken {
            token,
            expires_in: self.ttl,
        })
    }

    /// Signs a client's own access token (`client_credentials`): `sub` and
    /// `client_id` are the client's id.
    pub fn issue_client(
        &self,
        client: Uuid,
        scope: &str,
        now: i64,
    ) -> Result<AccessToken, SigningError> {
        let keys = self.keys.load();
        let key = &keys.current;
        let header = access_header(key);
        let claims = ClientAccessClaims {
            iss: &self.issuer,
            sub: client.to_string(),
            client_id: client.to_string(),
            aud: self.audience.as_deref(),
            exp: now + self.ttl as i64,
            iat: now,
            nbf: now,
            jti: Uuid::now_v7().to_string(),
            scope,
        };
        let token = key.sign(&header, &claims)?;
        metrics::counter!("warden_tokens_issued_total", "grant" => "client_credentials")
            .increment(1);
        Ok(AccessToken {
            token,
            expires_in: self.ttl,
        })
    }
}

/// The JOSE header of every access token: RFC 9068's `typ` and the key's
/// id.
fn access_header(key: &crate::auth::keys::SigningKey) -> Header {
    let mut header = Header::new(key.algorithm);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(key.kid.clone());
    header
}

/// Where a user stands, as far as their tokens go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Active,
    Disabled,
    Deleted,
}

/// What the gate knows of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gate {
    /// Tokens with an earlier `iat` fail; for a deleted user, when they
    /// were deleted (so the entry can go once every token has expired).
    valid_after: i64,
    standing: Standing,
    /// The user's `security_version` this entry reflects.
    version: i64,
    /// The local write that made this entry (0: read from the database).
    epoch: u64,
    /// When (in the gate's own sequence) what this entry publishes —
    /// `valid_after` and `standing` — last changed: the revocation feed
    /// answers a cursor with the entries changed after it.
    seq: u64,
}

impl Gate {
    fn read(u: &UserSecurity) -> Self {
        Self {
            valid_after: u.tokens_valid_after,
            standing: if u.disabled {
                Standing::Disabled
            } else {
                Standing::Active
            },
            version: u.security_version,
            epoch: 0,
            seq: 0,
        }
    }

    /// Whether `other` publishes the same thing (the revocation feed's
    /// view: the time and the standing).
    fn publishes_as(&self, other: &Gate) -> bool {
        self.valid_after == other.valid_after && self.standing == other.standing
    }

    /// Whether `fresh` should replace this entry: a deletion is final, and
    /// an older version never undoes a newer one.
    fn yields_to(&self, fresh: &Gate) -> bool {
        self.standing != Standing::Deleted
            && (fresh.standing == Standing::Deleted || fresh.version >= self.version)
    }
}

/// Per-user revocation state, kept in memory, so a token check never waits
/// for the database: a token fails at once when its user is deleted or
/// disabled, or when it was issued (`iat`) before the user's last password,
/// role or disabled change.
///
/// Only users whose unexpired tokens may fail are kept: those disabled,
/// deleted, or with a security change within an access-token lifetime. A
/// user the gate does not know has had no such change for longer than any
/// token lives, so every token of theirs that is not expired is good. This
/// keeps the gate small however many users the database holds.
///
/// Writes made by this process update it directly ([`UserGate::set`],
/// [`UserGate::remove`]); writes made elsewhere — the CLI, another
/// instance — arrive from the database's change log
/// ([`UserGate::apply_changes`]). A deletion is final, and entries carry the
/// user's `security_version`, so a late read never undoes a newer change.
///
/// The maps are sharded ([`DashMap`]), so concurrent token checks do not
/// contend on one lock, and hashed with foldhash (seeded per process): their
/// keys are ids from verified tokens, not attacker-chosen, and SipHash cost
/// more than the rest of the lookup.
///
/// Every entry carries a sequence number, assigned when it is inserted or
/// what it publishes changes, for the revocation feed
/// ([`crate::auth::revocations`]): writers take a small lock to assign it
/// and bump a watch channel, so a long-poll wakes at once. The token check
/// ([`TokenCheck::is_live`]) takes neither.
#[derive(Default)]
pub struct UserGate {
    users: DashMap<Uuid, Gate, foldhash::fast::RandomState>,
    /// Ended sessions, with when they ended; kept until every access token
    /// of theirs has expired, then pruned.
    revoked_sessions: DashMap<Uuid, Ended, foldhash::fast::RandomState>,
    /// OAuth clients deleted by this process, with when: their own tokens
    /// (`client_credentials`) and every user token naming them fail. Kept
    /// until those tokens have expired, then pruned. Not published on the
    /// revocation feed and not read from the database: the routes that
    /// take a client's own token (introspection, the feed) ask the store
    /// whether the client is still registered, so another instance refuses
    /// it too; a resource server verifying offline accepts it until it
    /// expires (an access-token lifetime), see docs/reference/http-api.md.
    deleted_clients: DashMap<Uuid, i64, foldhash::fast::RandomState>,
    epoch: AtomicU64,
    /// Serialises the writers' sequence numbers: an entry with sequence
    /// number `n` is in the maps before [`UserGate::watermark`] reaches `n`.
    writes: Mutex<()>,
    /// The last sequence number assigned, published once its entry is in.
    watermark: AtomicU64,
    /// The watermark, for waiting on a change.
    changed: watch::Sender<u64>,
}

/// An ended session: when, and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ended {
    at: i64,
    seq: u64,
}

/// Hands out sequence numbers inside [`UserGate::write`].
struct Seq {
    last: u64,
    bumped: bool,
}

impl Seq {
    fn next(&mut self) -> u64 {
        self.last += 1;
        self.bumped = true;
        self.last
    }
}

/// One published entry of the gate: an ended session or a user's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEntry {
    /// Session `sid` ended at `ended_at`.
    Session { sid: Uuid, ended_at: i64 },
    /// The user's tokens issued before `tokens_before` fail; all of them
    /// when disabled or deleted.
    User {
        sub: Uuid,
        tokens_before: i64,
        disabled: bool,
        deleted: bool,
    },
}

impl FeedEntry {
    /// A hash that is the same in every process of the same build (fixed
    /// key), so instances holding the same state agree on its fingerprint.
    fn fingerprint(&self) -> u64 {
        const KEY: u64 = 0x7761_7264_656e_6664; // "wardenfd"
        let mut h = foldhash::fast::FixedState::with_seed(KEY).build_hasher();
        match *self {
            Self::Session { sid, ended_at } => {
                0u8.hash(&mut h);
                sid.as_u128().hash(&mut h);
                ended_at.hash(&mut h);
            }
            Self::User {
                sub,
                tokens_before,
                disabled,
                deleted,
            } => {
                1u8.hash(&mut h);
                sub.as_u128().hash(&mut h);
                tokens_before.hash(&mut h);
                disabled.hash(&mut h);
                deleted.hash(&mut h);
            }
        }
        h.finish()
    }
}

/// What the gate publishes, as of one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedView {
    /// Every entry with a sequence number up to this one is included (when
    /// asked from the start) or was in an earlier view.
    pub watermark: u64,
    /// The entries asked for.
    pub entries: Vec<FeedEntry>,
    /// XOR of [`FeedEntry::fingerprint`] over every published entry (not
    /// only those asked for): equal in two processes holding the same state.
    pub fingerprint: u64,
}

impl UserGate {
    /// Runs one write under the writers' lock, handing it sequence
    /// numbers; publishes the new watermark if it used any.
    fn write<R>(&self, f: impl FnOnce(&mut Seq) -> R) -> R {
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let mut seq = Seq {
            last: self.watermark.load(Ordering::Acquire),
            bumped: false,
        };
        let result = f(&mut seq);
        if seq.bumped {
            self.watermark.store(seq.last, Ordering::Release);
            self.changed.send_replace(seq.last);
        }
        result
    }

    fn upsert(&self, id: Uuid, mut fresh: Gate, seq: &mut Seq) {
        match self.users.entry(id) {
            Entry::Occupied(mut e) => {
                let g = e.get_mut();
                if g.yields_to(&fresh) {
                    fresh.seq = if g.publishes_as(&fresh) {
                        g.seq
                    } else {
                        seq.next()
                    };
                    *g = fresh;
                }
            }
            Entry::Vacant(e) => {
                fresh.seq = seq.next();
                e.insert(fresh);
            }
        }
    }

    /// The last sequence number whose entry is in the gate.
    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::Acquire)
    }

    /// A receiver that sees every change of the watermark (each write that
    /// changed what the gate publishes).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// What the gate publishes to resource servers: every ended session
    /// and every user entry that can still affect an access token not
    /// expired at `now` (ended or changed at or after `horizon`, and every
    /// disabled user); of them, only those changed after sequence number
    /// `since` in [`FeedView::entries`] (all with `None`).
    pub fn feed(&self, since: Option<u64>, horizon: i64) -> FeedView {
        // Read first: entries up to it are all in the maps now; a later one
        // seen below is sent again after the next cursor.
        let watermark = self.watermark();
        let wanted = |seq: u64| match since {
            None => true,
            Some(since) => seq > since && seq <= watermark,
        };
        let mut view = FeedView {
            watermark,
            ..FeedView::default()
        };
        for e in self.revoked_sessions.iter() {
            if e.at < horizon {
                continue;
            }
            let entry = FeedEntry::Session {
                sid: *e.key(),
                ended_at: e.at,
            };
            view.fingerprint ^= entry.fingerprint();
            if wanted(e.seq) {
                view.entries.push(entry);
            }
        }
        for e in self.users.iter() {
            if e.standing != Standing::Disabled && e.valid_after < horizon {
                continue;
            }
            let entry = FeedEntry::User {
                sub: *e.key(),
                tokens_before: e.valid_after,
                disabled: e.standing == Standing::Disabled,
                deleted: e.standing == Standing::Deleted,
            };
            view.fingerprint ^= entry.fingerprint();
            if wanted(e.seq) {
                view.entries.push(entry);
            }
        }
        view
    }

    fn next_epoch(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Records `user` as just written by this process.
    pub fn set(&self, user: &UserRecord) {
        let fresh = Gate {
            valid_after: user.tokens_valid_after,
            standing: if user.disabled {
                Standing::Disabled
            } else {
                Standing::Active
            },
            version: user.security_version,
            epoch: self.next_epoch(),
            seq: 0,
        };
        self.write(|seq| self.upsert(user.id, fresh, seq));
    }

    /// Records that this process deleted the user, at `at`.
    pub fn remove(&self, id: Uuid, at: i64) {
        let fresh = Gate {
            valid_after: at,
            standing: Standing::Deleted,
            version: i64::MAX,
            epoch: self.next_epoch(),
            seq: 0,
        };
        self.write(|seq| self.upsert(id, fresh, seq));
    }

    /// Call before reading the users to watch for a full reload; pass the
    /// result to [`UserGate::reload`].
    pub fn reload_started(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Replaces what the gate knows with `watched` (from
    /// [`crate::storage::Store::users_to_watch`]), read after
    /// [`UserGate::reload_started`] returned `started`. Deletions, and
    /// local writes made since, are kept.
    pub fn reload(&self, watched: &[UserSecurity], started: u64) {
        let listed: HashSet<Uuid> = watched.iter().map(|u| u.id).collect();
        self.write(|seq| {
            self.users.retain(|id, g| {
                listed.contains(id) || g.standing == Standing::Deleted || g.epoch > started
            });
            for u in watched {
                self.upsert(u.id, Gate::read(u), seq);
            }
        });
    }

    /// Applies users changed or deleted elsewhere. A change is kept if the
    /// user may have tokens it makes fail: disabled, deleted, or changed
    /// at or after `horizon`, or already watched.
    pub fn apply_changes(&self, changes: &[UserChange], horizon: i64) {
        if changes.is_empty() {
            return;
        }
        self.write(|seq| {
            for c in changes {
                match &c.current {
                    None => self.upsert(
                        c.id,
                        Gate {
                            valid_after: c.changed_at,
                            standing: Standing::Deleted,
                            version: i64::MAX,
                            epoch: 0,
                            seq: 0,
                        },
                        seq,
                    ),
                    Some(u) => {
                        if u.disabled
                            || u.tokens_valid_after >= horizon
                            || self.users.contains_key(&c.id)
                        {
                            self.upsert(c.id, Gate::read(u), seq);
                        }
                    }
                }
            }
        });
    }

    /// Ends session `sid` for access tokens (at `at`, unless it ended
    /// already).
    pub fn revoke_session(&self, sid: Uuid, at: i64) {
        // A session ends once: an earlier end time (the database's, read
        // by the sync) stands.
        if self.revoked_sessions.contains_key(&sid) {
            return;
        }
        self.apply_revocations(&[(sid, at)]);
    }

    /// Adds sessions ended elsewhere.
    pub fn apply_revocations(&self, revoked: &[(Uuid, i64)]) {
        // The sync reads every recent revocation each time: most are known.
        if revoked
            .iter()
            .all(|(sid, _)| self.revoked_sessions.contains_key(sid))
        {
            return;
        }
        self.write(|seq| {
            for &(sid, at) in revoked {
                if let Entry::Vacant(e) = self.revoked_sessions.entry(sid) {
                    e.insert(Ended {
                        at,
                        seq: seq.next(),
                    });
                }
            }
        });
    }

    /// Ends every token of the OAuth client `client`, deleted at `at`.
    pub fn revoke_client(&self, client: Uuid, at: i64) {
        self.deleted_clients.entry(client).or_insert(at);
    }

    /// Forgets what no unexpired token can depend on any more: sessions
    /// ended, users changed and users deleted, clients deleted before
    /// `horizon`. Disabled users stay.
    pub fn prune(&self, horizon: i64) {
        self.revoked_sessions.retain(|_, e| e.at >= horizon);
        self.deleted_clients.retain(|_, at| *at >= horizon);
        self.users
            .retain(|_, g| g.standing == Standing::Disabled || g.valid_after >= horizon);
    }

    /// Number of users the gate watches.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

impl TokenCheck for UserGate {
    fn is_live(&self, claims: &Claims) -> bool {
        let Ok(id) = Uuid::parse_str(&claims.sub) else {
            return false;
        };
        // Not watched: no change since any unexpired token was issued.
        let user_ok = self
            .users
            .get(&id)
            .is_none_or(|g| g.standing == Standing::Active && claims.iat >= g.valid_after);
        if !user_ok {
            return false;
        }
        if let Some(client) = &claims.client_id
            && !self.client_live(client)
        {
            return false;
        }
        // (No `is_empty` shortcut: on a sharded map it visits every shard.)
        match Uuid::parse_str(&claims.sid) {
            Ok(sid) => !self.revoked_sessions.contains_key(&sid),
            Err(_) => false,
        }
    }

    fn is_client_live(&self, claims: &ClientClaims) -> bool {
        self.client_live(&claims.client_id)
    }
}

impl UserGate {
    fn client_live(&self, client: &str) -> bool {
        match Uuid::parse_str(client) {
            Ok(id) => !self.deleted_clients.contains_key(&id),
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
            client_id: None,
        };
        gate.is_live(&claims)
    }

    fn gate_with(users: &[UserSecurity]) -> UserGate {
        let gate = UserGate::default();
        gate.reload(users, gate.reload_started());
        gate
    }

    fn changed(u: UserSecurity, at: i64) -> UserChange {
        UserChange {
            id: u.id,
            current: Some(u),
            changed_at: at,
        }
    }

    fn deleted(id: Uuid, at: i64) -> UserChange {
        UserChange {
            id,
            current: None,
            changed_at: at,
        }
    }

    #[test]
    fn only_a_change_of_what_is_published_takes_a_sequence_number() {
        let (id, sid) = (Uuid::now_v7(), Uuid::now_v7());
        let gate = gate_with(&[sec(id, 1, 100, false)]);
        let changes = gate.subscribe();
        let start = gate.watermark();
        assert_eq!(start, 1);
        // The sync reads the same state again and again: nothing new.
        gate.reload(&[sec(id, 1, 100, false)], gate.reload_started());
        gate.apply_changes(&[changed(sec(id, 2, 100, false), 100)], 0);
        gate.apply_revocations(&[]);
        assert_eq!(gate.watermark(), start);
        assert!(!changes.has_changed().unwrap());

        gate.revoke_session(sid, 100);
        gate.revoke_session(sid, 150); // ends once
        gate.apply_revocations(&[(sid, 100)]);
        assert_eq!(gate.watermark(), start + 1);
        gate.apply_changes(&[changed(sec(id, 3, 200, true), 200)], 0);
        assert_eq!(gate.watermark(), start + 2);
        assert!(changes.has_changed().unwrap());

        let all = gate.feed(None, 0);
        assert_eq!(all.entries.len(), 2);
        let delta = gate.feed(Some(start + 1), 0);
        assert_eq!(
            delta.entries,
            [FeedEntry::User {
                sub: id,
                tokens_before: 200,
                disabled: true,
                deleted: false
            }]
        );
        assert_eq!(delta.fingerprint, all.fingerprint);
        // Past the horizon only the disabled user is published.
        let later = gate.feed(None, 1000);
        assert_eq!(later.entries.len(), 1);
        assert_ne!(later.fingerprint, all.fingerprint);
    }

    #[test]
    fn users_the_gate_does_not_watch_are_live() {
        let gate = UserGate::default();
        assert!(live(&gate, Uuid::now_v7(), 10));
        assert!(gate.is_empty());
    }

    #[test]
    fn a_stale_change_does_not_undo_a_local_password_change() {
        let id = Uuid::now_v7();
        let gate = gate_with(&[sec(id, 0, 0, false)]);
        gate.set(&user(id, 1, 100, false)); // committed after the log was read
        gate.apply_changes(&[changed(sec(id, 0, 0, false), 90)], 0);
        assert!(!live(&gate, id, 50));
        assert!(live(&gate, id, 100));
    }

    #[test]
    fn changes_made_elsewhere_apply() {
        let id = Uuid::now_v7();
        let gate = UserGate::default();
        assert!(live(&gate, id, 10));
        gate.apply_changes(&[changed(sec(id, 1, 5, true), 5)], 0);
        assert!(!live(&gate, id, 10), "disabled elsewhere");
        gate.apply_changes(&[changed(sec(id, 2, 20, false), 20)], 0);
        assert!(!live(&gate, id, 10), "re-enabled: older tokens stay dead");
        assert!(live(&gate, id, 20));
    }

    #[test]
    fn a_change_before_the_horizon_is_not_watched() {
        let id = Uuid::now_v7();
        let gate = UserGate::default();
        // A profile edit of a user whose last security change is long past.
        gate.apply_changes(&[changed(sec(id, 3, 100, false), 5000)], 1000);
        assert!(gate.is_empty());
        assert!(live(&gate, id, 2000));
    }

    #[test]
    fn a_deletion_elsewhere_ends_every_token_until_they_have_expired() {
        let id = Uuid::now_v7();
        let gate = UserGate::default();
        gate.apply_changes(&[deleted(id, 1000)], 0);
        assert!(!live(&gate, id, 999));
        assert!(!live(&gate, id, 2000));
        // A late read of the user from before the delete changes nothing.
        gate.apply_changes(&[changed(sec(id, 7, 1000, false), 999)], 0);
        gate.reload(&[sec(id, 7, 1000, false)], gate.reload_started());
        assert!(!live(&gate, id, 2000));
        gate.prune(1000);
        assert_eq!(gate.len(), 1, "kept while its tokens may live");
        gate.prune(1001);
        assert!(gate.is_empty());
    }

    #[test]
    fn a_local_delete_is_final() {
        let id = Uuid::now_v7();
        let gate = gate_with(&[sec(id, 0, 0, false)]);
        gate.remove(id, 1000);
        gate.apply_changes(&[changed(sec(id, 0, 0, false), 900)], 0);
        assert!(!live(&gate, id, 2000));
    }

    #[test]
    fn prune_drops_old_changes_but_keeps_disabled_users() {
        let (changed_id, disabled) = (Uuid::now_v7(), Uuid::now_v7());
        let gate = gate_with(&[sec(changed_id, 1, 100, false), sec(disabled, 1, 100, true)]);
        gate.prune(101);
        assert_eq!(gate.len(), 1);
        assert!(
            live(&gate, changed_id, 50),
            "any such token has expired by now"
        );
        assert!(!live(&gate, disabled, 500));
    }

    #[test]
    fn a_reload_drops_what_is_no_longer_watched_but_not_newer_local_writes() {
        let (re_enabled, local) = (Uuid::now_v7(), Uuid::now_v7());
        let gate = gate_with(&[sec(re_enabled, 1, 100, true)]);
        let started = gate.reload_started();
        gate.set(&user(local, 1, 500, false)); // committed after the read
        gate.reload(&[], started);
        assert!(live(&gate, re_enabled, 200));
        assert!(!live(&gate, local, 400));
    }

    #[test]
    fn a_revoked_session_is_not_live_until_pruned() {
        let id = Uuid::now_v7();
        let gate = UserGate::default();
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
            client_id: None,
        };
        assert!(gate.is_live(&claims(sid)));
        gate.revoke_session(sid, 100);
        assert!(!gate.is_live(&claims(sid)));
        assert!(
            gate.is_live(&claims(Uuid::now_v7())),
            "other sessions live on"
        );
        gate.prune(100);
        assert!(!gate.is_live(&claims(sid)));
        gate.prune(101);
        assert!(gate.is_live(&claims(sid)));
    }

    #[test]
    fn a_deleted_clients_tokens_fail_until_pruned() {
        let (user, client, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let gate = UserGate::default();
        let own = |client: Uuid| ClientClaims {
            iss: String::new(),
            sub: client.to_string(),
            client_id: client.to_string(),
            aud: None,
            exp: 0,
            iat: 10,
            nbf: 0,
            jti: String::new(),
            scope: String::new(),
        };
        let through = |client: Option<Uuid>| Claims {
            iss: String::new(),
            sub: user.to_string(),
            aud: None,
            exp: 0,
            iat: 10,
            nbf: 0,
            jti: String::new(),
            sid: Uuid::now_v7().to_string(),
            scope: String::new(),
            roles: vec![],
            username: String::new(),
            client_id: client.map(|c| c.to_string()),
        };
        assert!(gate.is_client_live(&own(client)));
        assert!(gate.is_live(&through(Some(client))));
        gate.revoke_client(client, 100);
        assert!(!gate.is_client_live(&own(client)));
        assert!(!gate.is_live(&through(Some(client))));
        assert!(gate.is_client_live(&own(other)), "other clients live on");
        assert!(gate.is_live(&through(None)), "password sessions too");
        let mut bad = own(client);
        bad.client_id = "not-a-uuid".into();
        assert!(!gate.is_client_live(&bad));
        gate.prune(100);
        assert!(!gate.is_client_live(&own(client)));
        gate.prune(101);
        assert!(gate.is_client_live(&own(client)));
    }
}
