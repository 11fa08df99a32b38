use serde::{Deserialize, Serialize};

use crate::AuthError;

/// The claims of a warden access token (RFC 9068 profile).
///
/// Every field is required: a token missing one is not a warden access token
/// and is rejected as `"Invalid token"`. Duplicate keys in the payload are
/// rejected too (serde refuses a duplicate field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: warden's public base URL.
    pub iss: String,
    /// Subject: the user's id (a UUIDv7 string).
    pub sub: String,
    /// Audience, present when warden is configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Not before, seconds since the Unix epoch.
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
    /// Session id: every token of one login shares it.
    pub sid: String,
    /// Granted scopes, space-separated (RFC 8693 / RFC 9068 form).
    pub scope: String,
    /// The user's roles when the token was issued.
    pub roles: Vec<String>,
    /// The user's username when the token was issued.
    pub username: String,
}

impl Claims {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }

    /// `Ok(())` if the token grants `scope`, else the contract's 403:
    /// `WWW-Authenticate: Bearer error="insufficient_scope", scope="<scope>"`
    /// and `{"detail": "Not enough permissions"}`.
    pub fn require_scope(&self, scope: &str) -> Result<(), AuthError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope(scope.to_owned()))
        }
    }

    /// Whether the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}
