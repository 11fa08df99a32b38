//! Persistence behind one trait, one implementation per backend.
//!
//! Queries are runtime `sqlx::query_as` (not the `query!` macros), so one
//! build serves every backend without a database at compile time; the SQL is
//! covered by the integration tests instead.

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

pub use sqlite::SqliteStore;

/// A user as stored, password hash included. Never serialised to clients:
/// routes turn it into [`crate::model::UserView`].
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
    pub created_at: i64,
    pub updated_at: i64,
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

/// What the in-memory token gate needs to know of every user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserSecurity {
    pub id: Uuid,
    pub tokens_valid_after: i64,
    pub disabled: bool,
    pub security_version: i64,
}

/// A signing key as stored.
#[derive(Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub algorithm: String,
    pub private_key: Vec<u8>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
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
    /// Applies `changes` (a security change also sets `tokens_valid_after`
    /// to `valid_after`); `None` if the user does not exist.
    async fn update_user(
        &self,
        id: Uuid,
        changes: &UserChanges,
        valid_after: i64,
        now: i64,
    ) -> StoreResult<Option<UserRecord>>;
    /// Sets the password hash, `tokens_valid_after`, and bumps the security
    /// version; `None` if no such user.
    async fn set_password(
        &self,
        id: Uuid,
        password_hash: &str,
        valid_after: i64,
        now: i64,
    ) -> StoreResult<Option<UserRecord>>;
    /// `false` if no such user.
    async fn delete_user(&self, id: Uuid) -> StoreResult<bool>;
    /// Every user, oldest first (for the CLI).
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// One page of users, by id.
    async fn query_users(&self, query: &UserQuery) -> StoreResult<Vec<UserRecord>>;
    /// The token-gate view of every user, loaded at start-up.
    async fn user_security(&self) -> StoreResult<Vec<UserSecurity>>;
    /// A value that changes whenever another connection or process has
    /// committed a write; the server polls it to resync its token gate
    /// after changes made elsewhere (the CLI, another instance).
    async fn change_marker(&self) -> StoreResult<i64>;

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<()>;
}

/// Opens the store named by `url` (`sqlite://...`).
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    Ok(Arc::new(SqliteStore::connect(url).await?))
}
