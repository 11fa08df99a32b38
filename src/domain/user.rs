//! Users: the account record, changes to it, and what the token gate
//! needs to know of it.

use uuid::Uuid;

/// A user as stored, password hash included. Never serialised to clients:
/// routes turn it into a view of their own.
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

/// A user after a change, with the sessions the change ended (every live
/// session of the user for a security change, none otherwise).
#[derive(Debug, Clone)]
pub struct UserUpdate {
    pub user: UserRecord,
    pub ended_sessions: Vec<Uuid>,
}

/// What `Store::set_password` did.
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

/// Which unique field a write collided with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueField {
    Username,
    Email,
}
