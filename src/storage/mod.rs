//! Persistence behind one trait, with one SQL implementation for both
//! backends.
//!
//! [`Store`] is what the rest of warden uses. [`sql::SqlStore`] implements it
//! for SQLite and PostgreSQL with the same query text and row mapping; what
//! really differs between them (transaction start, row locks, the change
//! marker, connect options, migrations) sits in `dialect`.
//!
//! Queries are runtime `sqlx::query_as` (not the `query!` macros), so one
//! build serves every backend without a database at compile time; the SQL is
//! covered by the integration tests instead.

mod dialect;
mod oauth;
mod outbox;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{
    AuditQuery, AuditRecord, AuthorizationCodeRecord, ClientRecord, CodeRedemption, ConsentRecord,
    OutboxItem, PasswordSet, PresentedRefresh, RefreshLifetimes, RefreshOutcome, RefreshRecord,
    SessionOpened, SessionRecord, SigningKeyRecord, UniqueField, UserChangeLog, UserChanges,
    UserQuery, UserRecord, UserSecurity, UserUpdate,
};
pub use sql::SqlStore;

use crate::config::DatabaseOptions;

/// How long (seconds) the `user_changes` log keeps a row, at least: a
/// server that has not read the log for longer reloads in full.
pub const USER_CHANGE_RETENTION: i64 = 24 * 3600;

/// Rows the background purge deletes per statement, so that no single
/// delete holds SQLite's write lock for long.
pub const PURGE_BATCH: i64 = 1000;

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
    /// The database could not be opened or reached at all: one line
    /// naming it (the file, or the PostgreSQL user and host:port), the
    /// cause and what to do.
    #[error("{0}")]
    Open(String),
    /// A stored row could not be decoded (a bug or a hand-edited database).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Everything warden persists; [`SqlStore`] implements it for both backends.
/// The authorization server's part is [`OAuthStore`].
#[async_trait]
pub trait Store: OAuthStore + OutboxStore + Send + Sync + 'static {
    /// Applies the embedded migrations of this backend.
    async fn migrate(&self) -> StoreResult<()>;
    /// Whether warden's migrations were ever applied here (by `warden
    /// migrate` or `serve`), rather than this being an empty database.
    async fn is_migrated(&self) -> StoreResult<bool>;
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Stops the change watch (SQLite's counter connection, PostgreSQL's
    /// `LISTEN` task) and closes the pool, waiting for connections in use
    /// to come back; afterwards every call fails with a closed-pool
    /// [`StoreError::Database`]. Closing twice is harmless. A store dropped
    /// without it still stops its listener, but its connections close in
    /// the background.
    async fn close(&self);

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
    /// Deletes the user (their sessions go with them, ended first so their
    /// clients' back-channel logouts are queued) and stores `audit`, in one
    /// transaction; `false` if no such user. Refused with
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
    /// Ends a session and the sessions opened from it (a browser
    /// session's apps), queueing their back-channel logouts; every ended
    /// id, none if it was not live.
    async fn revoke_session(&self, id: Uuid, now: i64) -> StoreResult<Vec<Uuid>>;
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

/// The authorization server's records: OAuth clients, the consents users
/// gave them and authorization codes (implemented in `oauth.rs`).
#[async_trait]
pub trait OAuthStore: Send + Sync + 'static {
    /// Stores a new client and `audit`, in one transaction.
    async fn insert_client(&self, client: &ClientRecord, audit: &AuditRecord) -> StoreResult<()>;
    async fn client(&self, id: Uuid) -> StoreResult<Option<ClientRecord>>;
    /// Every `id_token_signed_response_alg` some client registered.
    async fn client_id_token_algorithms(&self) -> StoreResult<Vec<String>>;
    /// One page of clients by id: those after `after`, at most `limit`.
    async fn query_clients(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<ClientRecord>>;
    /// Writes every field of `client` but its id, secret and creation
    /// time, and stores `audit`; `false` if there is no such client.
    async fn update_client(&self, client: &ClientRecord, audit: &AuditRecord) -> StoreResult<bool>;
    /// Replaces the client's secret hash (the old secret stops working at
    /// once) and stores `audit`; `false` if there is no such client.
    async fn set_client_secret(
        &self,
        id: Uuid,
        secret_hash: &[u8],
        now: i64,
        audit: &AuditRecord,
    ) -> StoreResult<bool>;
    /// Deletes the client with its codes and consents, ends every live
    /// session issued through it and stores `audit`, in one transaction;
    /// the ended sessions' ids, or `None` if there was no such client.
    async fn delete_client(
        &self,
        id: Uuid,
        now: i64,
        audit: &AuditRecord,
    ) -> StoreResult<Option<Vec<Uuid>>>;

    /// Inserts or replaces the consent of (user, client).
    async fn put_consent(&self, consent: &ConsentRecord) -> StoreResult<()>;
    async fn consent(&self, user: Uuid, client: Uuid) -> StoreResult<Option<ConsentRecord>>;
    /// Every consent of a user with the client's name, newest first.
    async fn user_consents(&self, user: Uuid) -> StoreResult<Vec<(ConsentRecord, String)>>;
    /// Withdraws a consent: deletes it, ends the user's live sessions
    /// through that client and stores `audit`, in one transaction; the
    /// ended sessions' ids, or `None` if there was no such consent.
    async fn delete_consent(
        &self,
        user: Uuid,
        client: Uuid,
        now: i64,
        audit: &AuditRecord,
    ) -> StoreResult<Option<Vec<Uuid>>>;

    async fn insert_code(&self, code: &AuthorizationCodeRecord) -> StoreResult<()>;
    /// Spends the code with hash `hash` — atomically, so of two concurrent
    /// redemptions exactly one is [`CodeRedemption::Redeemed`] — and
    /// records `session` as the session its redemption opens. An expired
    /// code is [`CodeRedemption::Unknown`].
    async fn redeem_code(
        &self,
        hash: &[u8],
        session: Uuid,
        now: i64,
    ) -> StoreResult<CodeRedemption>;
}

/// The outbox (implemented in `outbox.rs`): side effects queued with the
/// change that causes them — session ends queue their back-channel
/// logouts — and carried out by a worker that claims rows with a lease.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Claims at most `limit` rows of `kind` due at `now` that nobody holds
    /// a lease on, leasing them until `lease_until` and counting the
    /// attempt; atomic, so two instances never claim the same row.
    async fn claim_outbox(
        &self,
        kind: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<OutboxItem>>;
    /// The row was carried out.
    async fn outbox_done(&self, id: Uuid, now: i64) -> StoreResult<()>;
    /// The attempt failed with `error`; the next one is due at `due_at`.
    async fn outbox_retry(&self, id: Uuid, due_at: i64, error: &str) -> StoreResult<()>;
    /// Given up after the last attempt failed with `error`.
    async fn outbox_failed(&self, id: Uuid, now: i64, error: &str) -> StoreResult<()>;
    /// Rows not done yet.
    async fn outbox_depth(&self) -> StoreResult<i64>;
}

/// Opens the store named by `url` (`sqlite://...` or `postgres://...`).
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    connect_with(url, &DatabaseOptions::default()).await
}

/// Opens the store named by `url` with `options`.
pub async fn connect_with(url: &str, options: &DatabaseOptions) -> StoreResult<Arc<dyn Store>> {
    Ok(Arc::new(SqlStore::connect(url, options).await?))
}
