//! What a service call can fail with. Each failure of a part keeps its own
//! type ([`StoreError`], [`PasswordError`], [`SigningError`],
//! [`RandomError`]) as the `source`, so the log line of a 500 shows the
//! whole cause chain; the HTTP tier (`http::error`) maps every variant to
//! the contract's response.

use warden_guard::AuthError;

use crate::domain::UniqueField;
pub use crate::domain::error::{FieldError, GrantError};
use crate::storage::StoreError;

/// The 409 detail when a change would leave no enabled admin.
pub const LAST_ADMIN: &str = "This is the last admin account: it cannot be deleted, disabled or lose the admin role until another user is an admin";

/// A failure of the password-hashing pool (`auth::passwords`).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The bounded queue is full: retry shortly (503).
    #[error("the password-hashing queue is full")]
    Busy,
    /// This account already has its share of checks running (429, 1 s).
    #[error("too many password checks for one account at once")]
    TooManyChecks,
    /// A worker thread is gone (a bug or a panic in argon2).
    #[error("the password-hashing worker stopped")]
    WorkerStopped,
    /// argon2 refused to hash (a bug: the parameters are checked at start).
    #[error("argon2 failed: {0}")]
    Hash(String),
}

/// Signing an access token failed (`auth::keys`).
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("a {header:?} header for a {key:?} key")]
    AlgorithmMismatch {
        header: jsonwebtoken::Algorithm,
        key: jsonwebtoken::Algorithm,
    },
    #[error("jsonwebtoken has no crypto provider")]
    NoProvider,
    #[error("encoding the token failed")]
    Encode(#[from] serde_json::Error),
    #[error("the signer failed")]
    Sign(#[from] jsonwebtoken::errors::Error),
    #[error("the signature failed")]
    Signature(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The operating system's random source failed (refresh tokens, keys).
#[derive(Debug, thiserror::Error)]
#[error("the OS random source failed")]
pub struct RandomError(#[source] pub getrandom::Error);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that breaks the domain's rules: FastAPI's 422 list.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A request the rules refuse with a message (`Incorrect password`).
    #[error("{0}")]
    BadRequest(String),
    /// An OAuth 2.0 grant error (RFC 6749 §5.2).
    #[error("{1}")]
    Grant(GrantError, String),
    /// Client authentication failed (RFC 6749 §5.2 `invalid_client`);
    /// `basic`: the client tried `Authorization: Basic`.
    #[error("client authentication failed")]
    InvalidClient { basic: bool },
    /// The token or the user behind it is not (or no longer) valid.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// Authenticated (or anonymous) but not allowed.
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    /// Username or email taken.
    #[error("conflict")]
    Conflict(UniqueField),
    /// The change conflicts with the state of the account (the last admin).
    #[error("{0}")]
    StateConflict(String),
    /// Too many attempts; the seconds to wait, and of what.
    #[error("throttled for {0} s")]
    Throttled(i64, &'static str),
    #[error("the database failed")]
    Store(#[source] StoreError),
    #[error("password hashing failed")]
    Password(#[from] PasswordError),
    #[error("signing an access token failed")]
    Signing(#[from] SigningError),
    #[error("making a secret failed")]
    Random(#[from] RandomError),
}

impl Error {
    pub fn field(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        Self::Validation(vec![FieldError::new(loc, msg, kind)])
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(field) => Self::Conflict(field),
            StoreError::LastAdmin => Self::StateConflict(LAST_ADMIN.to_owned()),
            other => Self::Store(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
