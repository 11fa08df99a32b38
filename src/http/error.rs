//! One error type for every route, mapped to the contract's responses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use warden_guard::AuthError;

use crate::auth;
use crate::auth::error::{PasswordError, RandomError, SigningError};
use crate::domain::UniqueField;
use crate::storage::StoreError;

pub use crate::auth::error::LAST_ADMIN;
pub use crate::domain::error::{FieldError, GrantError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 422 with FastAPI's list of field errors.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 400 `{"detail"}`.
    #[error("{0}")]
    BadRequest(String),
    /// 400 with RFC 6749 `error`, `error_description` and `detail`.
    #[error("{1}")]
    Grant(GrantError, String),
    /// 401 `invalid_client` (RFC 6749 §5.2), with `WWW-Authenticate:
    /// Basic` only when the client authenticated with Basic.
    #[error("client authentication failed")]
    InvalidClient { basic: bool },
    /// 401 or 403 from token verification or a scope check.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 403 `{"detail"}`: authenticated (or anonymous) but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("not found")]
    NotFound,
    /// 409: username or email taken.
    #[error("conflict")]
    Conflict(UniqueField),
    /// 409 `{"detail"}`: the request conflicts with the state of the
    /// account (the last admin, a concurrent security change).
    #[error("{0}")]
    StateConflict(String),
    /// 408: the request took longer than [`crate::http::timeout::REQUEST_TIMEOUT`].
    #[error("request timed out")]
    Timeout,
    /// 413.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(&'static str),
    /// 429 with `Retry-After`: too many failed logins (or registrations)
    /// from this address or for this account; the seconds to wait.
    #[error("throttled for {0} s")]
    Throttled(i64, &'static str),
    /// 503 with `Retry-After`: the password-hashing queue is full.
    #[error("password hashing queue is full")]
    Busy,
    /// 503 with `Retry-After`: the database is unreachable.
    #[error("database unavailable")]
    Unavailable(#[source] StoreError),
    /// 500; logged with its cause chain, never shown to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A broken invariant of warden itself (a bug), as the cause of a 500.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Bug(pub &'static str);

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn field(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        Self::Validation(vec![FieldError::new(loc, msg, kind)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_) | Self::Grant(..) => StatusCode::BAD_REQUEST,
            Self::Auth(e) => e.status(),
            Self::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::StateConflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Throttled(..) => StatusCode::TOO_MANY_REQUESTS,
            Self::Busy | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The parts' own errors reach a handler's `?` through the service error.
macro_rules! through_service_error {
    ($($part:ty),*) => {$(
        impl From<$part> for Error {
            fn from(e: $part) -> Self {
                auth::Error::from(e).into()
            }
        }
    )*};
}
through_service_error!(StoreError, PasswordError, SigningError, RandomError);

/// Each service failure becomes its response; a failing part stays the
/// `source`, so the 500's log line names the cause.
impl From<auth::Error> for Error {
    fn from(e: auth::Error) -> Self {
        use auth::Error as E;
        match e {
            E::Validation(errors) => Self::Validation(errors),
            E::BadRequest(detail) => Self::BadRequest(detail),
            E::Grant(code, description) => Self::Grant(code, description),
            E::InvalidClient { basic } => Self::InvalidClient { basic },
            E::Unauthenticated(e) => Self::Auth(e),
            E::Forbidden(detail) => Self::Forbidden(detail),
            E::NotFound => Self::NotFound,
            E::Conflict(field) => Self::Conflict(field),
            E::StateConflict(detail) => Self::StateConflict(detail),
            E::Throttled(seconds, what) => Self::Throttled(seconds, what),
            E::Store(StoreError::Database(db)) if is_unavailable(&db) => {
                Self::Unavailable(StoreError::Database(db))
            }
            E::Password(PasswordError::Busy) => Self::Busy,
            E::Password(PasswordError::TooManyChecks) => {
                Self::Throttled(1, crate::auth::passwords::TOO_MANY_CHECKS)
            }
            other => Self::Internal(Box::new(other)),
        }
    }
}

/// `error` and each of its sources, `: `-separated, for one log line.
fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

/// Whether a database error means "the database is not answering right
/// now" (503, retry later) rather than a bug (500).
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // PostgreSQL: connection exceptions (08), operator intervention
            // such as a shutdown or a cancelled statement (57), insufficient
            // resources (53), "database not accepting connections" (55000).
            code.starts_with("08")
                || code.starts_with("57")
                || code.starts_with("53")
                || code == "55000"
        }),
        _ => false,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = match self {
            Self::Auth(e) => return e.into_response(),
            Self::Validation(errors) => Json(json!({ "detail": errors })).into_response(),
            Self::Grant(code, description) => {
                let mut r = Json(json!({
                    "error": code.code(),
                    "error_description": description,
                    "detail": description,
                }))
                .into_response();
                // RFC 6749 §5.2 errors carry the same no-cache headers as §5.1.
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r.headers_mut()
                    .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
                r
            }
            Self::InvalidClient { basic } => {
                let description = "Client authentication failed";
                let mut r = Json(json!({
                    "error": "invalid_client",
                    "error_description": description,
                    "detail": description,
                }))
                .into_response();
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                if basic {
                    // Only to a client that itself used Basic (RFC 6749
                    // §5.2): anyone else would be a browser popping up a
                    // password prompt.
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(r#"Basic realm="warden", charset="UTF-8""#),
                    );
                }
                r
            }
            Self::BadRequest(detail) | Self::Forbidden(detail) | Self::StateConflict(detail) => {
                Json(json!({ "detail": detail })).into_response()
            }
            Self::NotFound => Json(json!({ "detail": "Not Found" })).into_response(),
            // One message for both fields: the 409 itself is what the contract
            // requires; naming the field would confirm which identifier (often
            // an email address) belongs to an account.
            Self::Conflict(_) => {
                Json(json!({ "detail": "Username or email already registered" })).into_response()
            }
            Self::PayloadTooLarge => {
                Json(json!({ "detail": "Request body is larger than 64 KiB" })).into_response()
            }
            Self::Timeout => Json(json!({ "detail": "Request timed out" })).into_response(),
            Self::UnsupportedMediaType(expected) => Json(json!({
                "detail": format!("Unsupported media type: expected {expected}")
            }))
            .into_response(),
            Self::Throttled(seconds, what) => {
                let mut r = Json(json!({
                    "detail": format!("Too many {what}; try again in {seconds} seconds")
                }))
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            Self::Busy => {
                let mut r = Json(json!({ "detail": "Server busy, retry shortly" })).into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Self::Unavailable(cause) => {
                tracing::warn!(cause = %cause_chain(&cause), "database unavailable");
                let mut r =
                    Json(json!({ "detail": "Service temporarily unavailable, retry shortly" }))
                        .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
                r
            }
            Self::Internal(cause) => {
                // Logged once, here; the client learns nothing of the cause.
                tracing::error!(cause = %cause_chain(cause.as_ref()), "internal error");
                Json(json!({ "detail": "Internal Server Error" })).into_response()
            }
        };
        *response.status_mut() = status;
        response
    }
}
