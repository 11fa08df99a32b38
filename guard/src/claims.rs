use serde::{Deserialize, Serialize};

use crate::AuthError;

/// The claims of a warden access token issued to a user (RFC 9068
/// profile): by the password grant, or through an OAuth client (the
/// authorization code flow and its refreshes, which add `client_id`).
///
/// Every field but `aud` and `client_id` is required: a token missing one
/// is not a user's access token and is rejected as `"Invalid token"` — in
/// particular a client's own token (`client_credentials`, see
/// [`ClientClaims`]) is never a `Claims`. Duplicate keys in the payload are
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
    /// The OAuth client the user signed in to (RFC 9068 `client_id`);
    /// `None` for the password grant, which takes no client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl Claims {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        has_scope(&self.scope, scope)
    }

    /// `Ok(())` if the token grants `scope`, else the contract's 403:
    /// `WWW-Authenticate: Bearer error="insufficient_scope", scope="<scope>"`
    /// and `{"detail": "Not enough permissions"}`.
    pub fn require_scope(&self, scope: &str) -> Result<(), AuthError> {
        require_scope(&self.scope, scope)
    }

    /// Whether the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// The claims of a token a client obtained for itself with the
/// `client_credentials` grant (a service calling an API on its own
/// behalf): `sub` and `client_id` are the client's id, and there is no
/// session, no roles and no username, since no user is behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientClaims {
    /// Issuer: warden's public base URL.
    pub iss: String,
    /// Subject: the client's id (equal to `client_id`).
    pub sub: String,
    /// The client's id (RFC 9068).
    pub client_id: String,
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
    /// Granted scopes, space-separated.
    pub scope: String,
}

impl ClientClaims {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        has_scope(&self.scope, scope)
    }

    /// Like [`Claims::require_scope`].
    pub fn require_scope(&self, scope: &str) -> Result<(), AuthError> {
        require_scope(&self.scope, scope)
    }
}

/// Who a valid token speaks for: a user (possibly through a client) or a
/// client on its own behalf. The extractor for routes that serve both.
///
/// ```
/// use warden_guard::{AuthError, Caller};
///
/// async fn report(caller: Caller) -> Result<String, AuthError> {
///     caller.require_scope("reports:read")?;
///     Ok(match &caller {
///         Caller::User(user) => format!("for {}", user.username),
///         Caller::Client(client) => format!("for the service {}", client.client_id),
///     })
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    User(Claims),
    Client(ClientClaims),
}

impl Caller {
    /// The subject: a user id, or the client's id.
    pub fn sub(&self) -> &str {
        match self {
            Self::User(c) => &c.sub,
            Self::Client(c) => &c.sub,
        }
    }

    /// The granted scopes, space-separated.
    pub fn scope(&self) -> &str {
        match self {
            Self::User(c) => &c.scope,
            Self::Client(c) => &c.scope,
        }
    }

    /// The client the token was issued to, if any: always for a client's
    /// token, and for a user's token obtained through a client.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::User(c) => c.client_id.as_deref(),
            Self::Client(c) => Some(&c.client_id),
        }
    }

    /// The user's claims, when a user is behind the token.
    pub fn user(&self) -> Option<&Claims> {
        match self {
            Self::User(c) => Some(c),
            Self::Client(_) => None,
        }
    }

    /// The client's claims, when the token is a client's own.
    pub fn client(&self) -> Option<&ClientClaims> {
        match self {
            Self::User(_) => None,
            Self::Client(c) => Some(c),
        }
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        has_scope(self.scope(), scope)
    }

    /// Like [`Claims::require_scope`].
    pub fn require_scope(&self, scope: &str) -> Result<(), AuthError> {
        require_scope(self.scope(), scope)
    }
}

fn has_scope(granted: &str, scope: &str) -> bool {
    granted.split(' ').any(|s| s == scope)
}

fn require_scope(granted: &str, scope: &str) -> Result<(), AuthError> {
    if has_scope(granted, scope) {
        Ok(())
    } else {
        Err(AuthError::InsufficientScope(scope.to_owned()))
    }
}

/// Every claim either kind of token may carry, as decoded; sorted into a
/// [`Claims`] or a [`ClientClaims`] by [`RawClaims::classify`].
#[derive(Deserialize)]
pub(crate) struct RawClaims {
    iss: String,
    sub: String,
    #[serde(default)]
    aud: Option<String>,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    scope: String,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

/// A verified token of either kind, shared (the verifier's cache holds it).
#[derive(Debug, Clone)]
pub enum Verified {
    User(std::sync::Arc<Claims>),
    Client(std::sync::Arc<ClientClaims>),
}

impl Verified {
    pub(crate) fn exp(&self) -> i64 {
        match self {
            Self::User(c) => c.exp,
            Self::Client(c) => c.exp,
        }
    }

    pub(crate) fn nbf(&self) -> i64 {
        match self {
            Self::User(c) => c.nbf,
            Self::Client(c) => c.nbf,
        }
    }

    pub(crate) fn into_caller(self) -> Caller {
        match self {
            Self::User(c) => Caller::User(std::sync::Arc::unwrap_or_clone(c)),
            Self::Client(c) => Caller::Client(std::sync::Arc::unwrap_or_clone(c)),
        }
    }
}

impl RawClaims {
    /// A user's token has a session, roles and a username; a client's has
    /// none of them and `client_id` equal to `sub`. Anything in between is
    /// neither (`None`): not a token warden issues.
    pub(crate) fn classify(self) -> Option<Verified> {
        match (self.sid, self.roles, self.username) {
            (Some(sid), Some(roles), Some(username)) => {
                Some(Verified::User(std::sync::Arc::new(Claims {
                    iss: self.iss,
                    sub: self.sub,
                    aud: self.aud,
                    exp: self.exp,
                    iat: self.iat,
                    nbf: self.nbf,
                    jti: self.jti,
                    sid,
                    scope: self.scope,
                    roles,
                    username,
                    client_id: self.client_id,
                })))
            }
            (None, None, None) => {
                let client_id = self.client_id?;
                if client_id != self.sub {
                    return None;
                }
                Some(Verified::Client(std::sync::Arc::new(ClientClaims {
                    iss: self.iss,
                    sub: self.sub,
                    client_id,
                    aud: self.aud,
                    exp: self.exp,
                    iat: self.iat,
                    nbf: self.nbf,
                    jti: self.jti,
                    scope: self.scope,
                })))
            }
            _ => None,
        }
    }
}
