//! Errors of the domain's own rules: a value that breaks a validation rule
//! (one [`FieldError`] per field, collected into FastAPI's 422 list by the
//! HTTP tier) and the OAuth 2.0 error codes a grant can fail with.

use serde::Serialize;
use utoipa::ToSchema;

/// One broken rule of one input field, in FastAPI's shape.
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
    /// The authenticated client may not use this grant.
    UnauthorizedClient,
}

impl GrantError {
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidGrant => "invalid_grant",
            Self::InvalidScope => "invalid_scope",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnauthorizedClient => "unauthorized_client",
        }
    }
}
