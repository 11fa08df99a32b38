//! Persistence behind one trait, one implementation per backend.
//!
//! Queries are runtime `sqlx::query_as` (not the `query!` macros), so one
//! build serves every backend without a database at compile time; the SQL is
//! covered by the integration tests instead.

mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Connection settings (PostgreSQL; SQLite uses its own fixed ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseOptions {
    pub max_connections: u32,
    /// How long a request waits for a connection before it gets 503.
    pub acquire_timeout: Duration,
    /// PostgreSQL's `statement_timeout` for every connection.
    pub statement_timeout: Duration,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// A user as stored, password hash included. Never serialised to clients:
/// routes turn it into [`crate::domain::profile::UserView`].
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    /// Access tokens issued (`iat`) before this second are no longer valid.
    pub tokens_valid_after: i64,
    /// Bumped by every password, role or disabled change.
    pub security_version: i64,
    /// Bumped by every change of the row.
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl UserRecord {
    /// A new account with a fresh UUIDv7 id, created at `now`.
    pub fn new(
        username: String,
        email: String,
        full_name: Option<String>,
        password_hash: String,
        roles: Vec<String>,
        now: i64,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            username,
            email,
            full_name,
            password_hash,
            roles,
            disabled: false,
            tokens_valid_after: 0,
            security_version: 0,
            revision: 0,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Changes to a user; `None` leaves a field as it is. Setting `roles` or
/// `disabled` is a security change: it bumps `security_version` and moves
/// `tokens_valid_after` to `valid_after`.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub username: Option<String>,
    pub email: Option<String>,
    pub full_name: Option<Option<String>>,
    pub roles: Option<Vec<String>>,
    pub disabled: Option<bool>,
}

impl UserChanges {
    /// Whether applying these changes must end the user's earlier tokens.
    pub fn is_security_change(&self) -> bool {
        self.roles.is_some() || self.disabled.is_some()
    }
}

/// One page of users in id order (UUIDv7: creation order), for keyset
/// pagination: `after` is the last id of the previous page.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub after: Option<Uuid>,
    pub limit: u32,
    /// Case-insensitive prefix of the username or the email.
    pub prefix: Option<String>,
}

/// What the in-memory token gate needs to know of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserSecurity {
    pub id: Uuid,
    pub tokens_valid_after: i64,
    pub disabled: bool,
    pub security_version: i64,
    /// The row's revision, for caches.
    pub revision: i64,
}

/// A user updated or deleted, from the `user_changes` log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserChange {
    pub id: Uuid,
    /// The user as they are now; `None` once deleted.
    pub current: Option<UserSecurity>,
    /// When the (latest) change was logged, by the database's clock.
    pub changed_at: i64,
}

/// The `user_changes` log from some moment on.
#[derive(Debug, Clone, Default)]
pub struct UserChangeLog {
    /// The database's clock (unix seconds) just before the log was read:
    /// the next read starts a margin before it.
    pub read_at: i64,
    /// One entry per user, in no particular order.
    pub changes: Vec<UserChange>,
}

/// A `like` pattern that matches the JSON `roles` column of a user with
/// the built-in `admin` role ([`crate::domain::roles::ROLE_ADMIN`]): role names are
/// stored as a JSON array of strings, so the quotes delimit the name.
const ADMIN_ROLES_LIKE: &str = "%\"admin\"%";

/// How long (seconds) the `user_changes` log keeps a row, at least: a
/// server that has not read the log for longer reloads in full.
pub const USER_CHANGE_RETENTION: i64 = 24 * 3600;

/// A signing key as stored.
#[derive(Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub algorithm: String,
    pub private_key: Vec<u8>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// A login session: `id` is the `sid` claim of its access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub scope: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl SessionRecord {
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// A presented refresh token, once known to be genuine (see
/// [`crate::auth::refresh_tokens::RefreshTokens::resolve`]): which session and
/// generation it stands for, and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedRefresh {
    pub session: Uuid,
    /// `-1` for a token that had been used before the upgrade to
    /// per-session generations (older than every stored generation).
    pub generation: i64,
    pub hash: [u8; 32],
}

/// A session's refresh-token state: one row per session however often it
/// rotates, which is all that rotation, grace retries and reuse detection
/// need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    /// Generation of the current token: 0 at login, +1 per rotation.
    pub generation: i64,
    /// SHA-256 of the current token; `None` for a session that had no
    /// usable token when it was upgraded.
    pub hash: Option<Vec<u8>>,
    /// When the current token was issued, which is when the previous one
    /// was used.
    pub issued_at: i64,
    /// SHA-256 of the previous token (generation - 1), for the grace retry.
    pub previous_hash: Option<Vec<u8>>,
}

/// A session with its refresh-token state.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub session: SessionRecord,
    pub refresh: RefreshState,
}

impl RefreshRecord {
    /// Whether the session is live and younger than `max_lifetime` (a
    /// session refreshed before the absolute lifetime existed may have an
    /// expiry beyond it).
    pub fn is_live(&self, now: i64, max_lifetime: i64) -> bool {
        self.session.is_live(now) && self.session.created_at.saturating_add(max_lifetime) > now
    }

    /// Whether `presented` is this session's current, usable token.
    pub fn is_current(&self, presented: &PresentedRefresh, now: i64, max_lifetime: i64) -> bool {
        self.is_live(now, max_lifetime)
            && presented.generation == self.refresh.generation
            && same_hash(self.refresh.hash.as_deref(), &presented.hash)
    }
}

fn same_hash(stored: Option<&[u8]>, presented: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    stored.is_some_and(|s| bool::from(s.ct_eq(presented)))
}

/// What presenting a refresh token to a session does; decided by
/// [`refresh_step`] under the session row's lock, on every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshStep {
    /// The current token: rotate into its successor.
    Rotate,
    /// The previous token, within the grace period (so its successor has
    /// not been used): answer with the same successor again.
    Retry,
    /// A genuine older token: a replay. Revoke the session.
    Reuse,
    /// Not usable, and no evidence of theft.
    Invalid,
}

/// The refresh state machine, shared by the backends.
pub fn refresh_step(
    record: &RefreshRecord,
    presented: &PresentedRefresh,
    successor_hash: &[u8],
    now: i64,
    lifetimes: RefreshLifetimes,
) -> RefreshStep {
    let state = &record.refresh;
    if !record.is_live(now, lifetimes.max_lifetime) {
        return RefreshStep::Invalid;
    }
    if record.is_current(presented, now, lifetimes.max_lifetime) {
        return RefreshStep::Rotate;
    }
    let newest = state.generation;
    if presented.generation == newest - 1
        && same_hash(state.previous_hash.as_deref(), &presented.hash)
        && now - state.issued_at < lifetimes.grace
        && same_hash(state.hash.as_deref(), successor_hash)
    {
        return RefreshStep::Retry;
    }
    if presented.generation < newest {
        // Genuine (the caller checked its tag or found its legacy row) and
        // superseded: someone else may hold the session (RFC 9700 §4.14.2).
        return RefreshStep::Reuse;
    }
    // The current generation with the wrong secret, or one from the future
    // (a database restored from a backup): no proof of theft.
    RefreshStep::Invalid
}

/// When a session rotated at `now` ends: a refresh-token lifetime from
/// now, but never past its absolute lifetime.
pub fn refreshed_expiry(created_at: i64, now: i64, ttl: i64, max_lifetime: i64) -> i64 {
    now.saturating_add(ttl)
        .min(created_at.saturating_add(max_lifetime))
}

/// How long refresh tokens and sessions live, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshLifetimes {
    /// Of each refresh token from its issue.
    pub ttl: i64,
    /// Of a session from its creation, however often it is refreshed.
    pub max_lifetime: i64,
    /// In which the previous token may be retried for the same successor.
    pub grace: i64,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// First use: rotated into the successor, whose hash was stored.
    Rotated(SessionRecord),
    /// Already rotated, within the grace period, and its successor not yet
    /// used: answer with the same successor.
    Retry(SessionRecord),
    /// Already rotated and outside the grace period (or its successor was
    /// used): a replay. The whole session has been revoked.
    Reused { session: Uuid, user: Uuid },
    /// Unknown, expired, or its session ended.
    Invalid,
}

/// Rows the background purge deletes per statement, so that no single
/// delete holds SQLite's write lock for long.
pub const PURGE_BATCH: i64 = 1000;

/// A security event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: Uuid,
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub ip: Option<String>,
    /// A JSON object with the event's specifics.
    pub detail: Option<String>,
    pub created_at: i64,
}

/// A page of audit events, newest first: `before` is the last id of the
/// previous page.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub before: Option<Uuid>,
    pub limit: u32,
    pub user_id: Option<Uuid>,
    pub kind: Option<String>,
}

/// A user after a change, with the sessions the change ended (every live
/// session of the user for a security change, none otherwise).
#[derive(Debug, Clone)]
pub struct UserUpdate {
    pub user: UserRecord,
    pub ended_sessions: Vec<Uuid>,
}

/// What [`Store::set_password`] did.
#[derive(Debug, Clone)]
pub enum PasswordSet {
    /// Set, every session ended, the audit event stored: one transaction.
    Changed(Box<UserUpdate>),
    /// The user's security version is no longer the one the caller checked
    /// the current password against: nothing was written.
    Stale,
    /// No such user.
    Missing,
}

/// What [`Store::create_session`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOpened {
    /// Stored; `ended` are the user's oldest live sessions it ended to keep
    /// within the per-user cap.
    Opened { ended: Vec<Uuid> },
    /// The user was changed (password, roles, disabled), disabled or
    /// deleted after the caller read them: nothing was stored, so no
    /// session outlives a security change that its login preceded.
    Stale,
}

/// Which unique field a write collided with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueField {
    Username,
    Email,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The username or email is taken (case-insensitively).
    #[error("{0:?} already taken")]
    Conflict(UniqueField),
    /// The change would leave no enabled user with the `admin` role.
    #[error("the last admin cannot be removed, disabled or demoted")]
    LastAdmin,
    /// The database could not be reached or answered with an error.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be decoded (a bug or a hand-edited database).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Everything warden persists. One implementation per database backend.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies the embedded migrations of this backend.
    async fn migrate(&self) -> StoreResult<()>;
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    async fn insert_user(&self, user: &UserRecord) -> StoreResult<()>;
    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<UserRecord>>;
    /// By username or email, matched case-insensitively.
    async fn user_by_login(&self, login: &str) -> StoreResult<Option<UserRecord>>;
    /// Applies `changes`; `None` if the user does not exist. A security
    /// change (roles, disabled) also sets `tokens_valid_after` to
    /// `valid_after`, bumps the security version, ends every live session
    /// of the user and stores `audit` — all in one transaction, so a crash
    /// never leaves the change without its revocation. Refused with
    /// [`StoreError::LastAdmin`] when it would leave no enabled admin.
    async fn update_user(
        &self,
        id: Uuid,
        changes: &UserChanges,
        valid_after: i64,
        now: i64,
        audit: Option<&AuditRecord>,
    ) -> StoreResult<Option<UserUpdate>>;
    /// Sets the password hash and `tokens_valid_after`, bumps the security
    /// version, ends every live session of the user and stores `audit`, in
    /// one transaction — only if the user's security version is still
    /// `expected_version` (the one whose password the caller checked).
    async fn set_password(
        &self,
        id: Uuid,
        password_hash: &str,
        expected_version: i64,
        valid_after: i64,
        now: i64,
        audit: &AuditRecord,
    ) -> StoreResult<PasswordSet>;
    /// Deletes the user (their sessions go with them) and stores `audit`, in
    /// one transaction; `false` if no such user. Refused with
    /// [`StoreError::LastAdmin`] for the last enabled admin.
    async fn delete_user(&self, id: Uuid, audit: &AuditRecord) -> StoreResult<bool>;
    /// Every user, oldest first (for the CLI).
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// One page of users, by id.
    async fn query_users(&self, query: &UserQuery) -> StoreResult<Vec<UserRecord>>;
    /// The users whose tokens need a check of their own: disabled, or
    /// with a security change (`tokens_valid_after`) at or after `since`.
    /// Everyone else's unexpired tokens were all issued after their last
    /// change.
    async fn users_to_watch(&self, since: i64) -> StoreResult<Vec<UserSecurity>>;
    /// Users updated or deleted at or after `since` (database clock), each
    /// with their current state.
    async fn user_changes(&self, since: i64) -> StoreResult<UserChangeLog>;
    /// A value that changes whenever another connection or process has
    /// committed a write; the server polls it to resync its token gate
    /// after changes made elsewhere (the CLI, another instance).
    async fn change_marker(&self) -> StoreResult<i64>;

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    /// Inserts `key` only if its algorithm has no active key yet; atomic, so
    /// instances started together on an empty database create one key
    /// between them. `false` if another key was there first.
    async fn insert_first_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<bool>;
    /// Retires every active key of `algorithm` and inserts `key`, in one
    /// transaction.
    async fn rotate_signing_key(&self, key: &SigningKeyRecord, now: i64) -> StoreResult<()>;

    /// The named secret, created with `value` if it does not exist yet (the
    /// first writer wins; every caller gets the stored value).
    async fn secret_or_insert(&self, name: &str, value: &[u8], now: i64) -> StoreResult<Vec<u8>>;

    /// Stores a new session with the hash of its first refresh token
    /// (generation 0, expiring with the session) — only if the user is
    /// still enabled at `expected_version` (the security version the login
    /// checked), atomically with any concurrent security change. Past
    /// `max_live` live sessions of the user, the oldest end.
    async fn create_session(
        &self,
        session: &SessionRecord,
        refresh_hash: &[u8],
        expected_version: i64,
        max_live: u32,
    ) -> StoreResult<SessionOpened>;
    /// Presents a genuine refresh token for rotation into `successor_hash`
    /// (see [`refresh_step`]); atomic, so concurrent presentations see one
    /// rotation. The successor expires `ttl` seconds from `now`, but never
    /// more than `max_lifetime` seconds after the session was created.
    async fn rotate_refresh_token(
        &self,
        presented: &PresentedRefresh,
        successor_hash: &[u8],
        now: i64,
        lifetimes: RefreshLifetimes,
    ) -> StoreResult<RefreshOutcome>;
    /// A session with its refresh-token state.
    async fn refresh_record(&self, session: Uuid) -> StoreResult<Option<RefreshRecord>>;
    /// A refresh token issued before the upgrade to per-session
    /// generations, by hash: its session, and whether it had been used.
    async fn legacy_refresh_token(&self, hash: &[u8]) -> StoreResult<Option<(Uuid, bool)>>;
    async fn session(&self, id: Uuid) -> StoreResult<Option<SessionRecord>>;
    /// Live sessions of a user, newest first, at most `limit`, and only
    /// those older than `before` (the last id of the previous page).
    async fn user_sessions(
        &self,
        user: Uuid,
        now: i64,
        before: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<SessionRecord>>;
    /// Ends a session; `false` if it was not live.
    async fn revoke_session(&self, id: Uuid, now: i64) -> StoreResult<bool>;
    /// Ends every live session of a user, returning their ids, and stores
    /// `audit` with it, in one transaction.
    async fn revoke_user_sessions(
        &self,
        user: Uuid,
        now: i64,
        audit: Option<&AuditRecord>,
    ) -> StoreResult<Vec<Uuid>>;
    /// Sessions revoked at or after `since`, with when.
    async fn revoked_sessions(&self, since: i64) -> StoreResult<Vec<(Uuid, i64)>>;
    async fn insert_audit(&self, event: &AuditRecord) -> StoreResult<()>;
    async fn query_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;

    /// Deletes expired pre-upgrade refresh tokens, sessions that ended
    /// before `ended_before`, `user_changes` rows older than
    /// [`USER_CHANGE_RETENTION`] (and than `ended_before`), and audit events
    /// created before `audit_before` (if set), [`PURGE_BATCH`] rows per
    /// statement; returns how many rows went.
    async fn purge(
        &self,
        now: i64,
        ended_before: i64,
        audit_before: Option<i64>,
    ) -> StoreResult<u64>;
}

/// Opens the store named by `url` (`sqlite://...` or `postgres://...`).
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    connect_with(url, &DatabaseOptions::default()).await
}

/// Opens the store named by `url` with `options`.
pub async fn connect_with(url: &str, options: &DatabaseOptions) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url, options).await?))
    } else {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_pattern_names_the_admin_role() {
        assert_eq!(
            ADMIN_ROLES_LIKE,
            format!("%\"{}\"%", crate::domain::roles::ROLE_ADMIN)
        );
    }

    fn record(generation: i64, issued_at: i64) -> RefreshRecord {
        RefreshRecord {
            session: SessionRecord {
                id: Uuid::now_v7(),
                user_id: Uuid::now_v7(),
                scope: "me".to_owned(),
                user_agent: None,
                ip: None,
                created_at: 0,
                last_used_at: issued_at,
                expires_at: 1000,
                revoked_at: None,
            },
            refresh: RefreshState {
                generation,
                hash: Some(vec![generation as u8; 32]),
                issued_at,
                previous_hash: Some(vec![generation as u8 - 1; 32]),
            },
        }
    }

    fn token(r: &RefreshRecord, generation: i64) -> PresentedRefresh {
        PresentedRefresh {
            session: r.session.id,
            generation,
            hash: [generation as u8; 32],
        }
    }

    #[test]
    fn the_refresh_state_machine() {
        let r = record(5, 100);
        let current = [5u8; 32];
        let lifetimes = RefreshLifetimes {
            ttl: 100,
            max_lifetime: 900,
            grace: 10,
        };
        let step = |p: &PresentedRefresh, now: i64| refresh_step(&r, p, &current, now, lifetimes);
        assert_eq!(step(&token(&r, 5), 101), RefreshStep::Rotate);
        // The previous token: retried within the grace, reused after it.
        assert_eq!(step(&token(&r, 4), 109), RefreshStep::Retry);
        assert_eq!(step(&token(&r, 4), 110), RefreshStep::Reuse);
        // Older generations are always a reuse.
        assert_eq!(step(&token(&r, 1), 101), RefreshStep::Reuse);
        assert_eq!(step(&token(&r, -1), 101), RefreshStep::Reuse);
        // The current generation with the wrong secret, or a future one.
        let mut wrong = token(&r, 5);
        wrong.hash = [9; 32];
        assert_eq!(step(&wrong, 101), RefreshStep::Invalid);
        assert_eq!(step(&token(&r, 6), 101), RefreshStep::Invalid);
        // An ended session answers nothing else.
        assert_eq!(step(&token(&r, 5), 1000), RefreshStep::Invalid);
        assert_eq!(step(&token(&r, 1), 1000), RefreshStep::Invalid);
        // So does one past its absolute lifetime, whatever its expiry says.
        assert_eq!(step(&token(&r, 5), 900), RefreshStep::Invalid);
        assert_eq!(step(&token(&r, 4), 900), RefreshStep::Invalid);
    }

    #[test]
    fn a_refresh_never_extends_a_session_past_its_lifetime() {
        assert_eq!(refreshed_expiry(0, 10, 100, 1000), 110);
        assert_eq!(refreshed_expiry(0, 950, 100, 1000), 1000);
        assert_eq!(refreshed_expiry(0, 1, i64::MAX, i64::MAX), i64::MAX);
    }
}
