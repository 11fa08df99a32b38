//! One error type for every route, mapped to the contract's responses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use warden_guard::AuthError;

use crate::storage::{StoreError, UniqueField};

/// One entry of a 422 body, in FastAPI's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where: `["body", "email"]`, `["query", "limit"]`, ...
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    pub fn new(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        Self {
            loc: loc.iter().map(|s| s.to_string()).collect(),
            msg: msg.into(),
            kind: kind.to_owned(),
        }
    }
}

/// An OAuth 2.0 error code of the token endpoint (RFC 6749 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    InvalidRequest,
    InvalidGrant,
    InvalidScope,
    UnsupportedGrantType,
}

impl GrantError {
    fn code(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidGrant => "invalid_grant",
            Self::InvalidScope => "invalid_scope",
            Self::UnsupportedGrantType => "unsupported_grant_type",
        }
    }
}

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
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// 500; logged, never shown to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The 409 detail when a change would leave no enabled admin.
pub const LAST_ADMIN: &str = "This is the last admin account: it cannot be deleted, disabled or lose the admin role until another user is an admin";

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

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(field) => Self::Conflict(field),
            StoreError::LastAdmin => Self::StateConflict(LAST_ADMIN.to_owned()),
            StoreError::Database(ref db) if is_unavailable(db) => Self::Unavailable(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
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
            Self::Unavailable(reason) => {
                tracing::warn!(%reason, "database unavailable");
                let mut r =
                    Json(json!({ "detail": "Service temporarily unavailable, retry shortly" }))
                        .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
                r
            }
            Self::Internal(reason) => {
                // Logged once, here; the client learns nothing of the cause.
                tracing::error!(%reason, "internal error");
                Json(json!({ "detail": "Internal Server Error" })).into_response()
            }
        };
        *response.status_mut() = status;
        response
    }
}
