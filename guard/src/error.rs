use std::fmt;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Why a request was not let through. Each variant maps to exactly one of
/// the contract's responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// 401, no `error=` parameter: the request carried no bearer token.
    Missing,
    /// 401 `invalid_token`, detail "Token has expired".
    Expired,
    /// 401 `invalid_token`, detail "Invalid token": bad signature, wrong
    /// algorithm, unknown `kid`, wrong `typ`/`iss`/`aud`, `nbf` in the
    /// future, revoked, or anything else wrong with the token.
    Invalid,
    /// 403 `insufficient_scope`: a valid token without the named scope.
    InsufficientScope(String),
}

impl AuthError {
    /// The HTTP status of this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InsufficientScope(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The `detail` string of the JSON body.
    pub fn detail(&self) -> &'static str {
        match self {
            Self::Missing => "Not authenticated",
            Self::Expired => "Token has expired",
            Self::Invalid => "Invalid token",
            Self::InsufficientScope(_) => "Not enough permissions",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3).
    pub fn challenge(&self) -> HeaderValue {
        match self {
            Self::Missing => HeaderValue::from_static("Bearer"),
            Self::Expired => HeaderValue::from_static(
                r#"Bearer error="invalid_token", error_description="Token has expired""#,
            ),
            Self::Invalid => HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            Self::InsufficientScope(scope) => {
                // Scope tokens are printable ASCII without `"` or `\` (RFC 6749
                // §3.3), space-separated, so they can be quoted as they are;
                // anything else is dropped rather than risking a malformed
                // header.
                let scope: String = scope
                    .chars()
                    .filter(|c| (c.is_ascii_graphic() || *c == ' ') && *c != '"' && *c != '\\')
                    .collect();
                HeaderValue::from_str(&format!(
                    r#"Bearer error="insufficient_scope", scope="{scope}""#
                ))
                .unwrap_or_else(|_| {
                    HeaderValue::from_static(r#"Bearer error="insufficient_scope""#)
                })
            }
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail())
    }
}

impl std::error::Error for AuthError {}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let body = match self {
            Self::Missing => r#"{"detail":"Not authenticated"}"#,
            Self::Expired => r#"{"detail":"Token has expired"}"#,
            Self::Invalid => r#"{"detail":"Invalid token"}"#,
            Self::InsufficientScope(_) => r#"{"detail":"Not enough permissions"}"#,
        };
        (
            self.status(),
            [
                (header::WWW_AUTHENTICATE, self.challenge()),
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
            ],
            body,
        )
            .into_response()
    }
}
