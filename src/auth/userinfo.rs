//! OpenID Connect's UserInfo endpoint (OIDC Core §5.3): the claims about
//! the user that a verified access token's scopes release. The token has
//! been verified by the HTTP tier's verifier (signature, expiry, revoked
//! session, the user's standing), the same check every protected route
//! makes.

use uuid::Uuid;
use warden_guard::{AuthError, Claims};

use crate::auth::id_tokens::{self, UserClaims};
use crate::auth::{Error, Result, Services};
use crate::domain::roles::SCOPE_OPENID;

/// The claims for the holder of `claims`: 403 `insufficient_scope` for a
/// token without `openid` (RFC 6750 §3.1), 401 `invalid_token` when the
/// user is gone or disabled.
pub async fn userinfo(state: &Services, claims: &Claims) -> Result<UserClaims> {
    if !claims.has_scope(SCOPE_OPENID) {
        return Err(Error::Unauthenticated(AuthError::InsufficientScope(
            SCOPE_OPENID.to_owned(),
        )));
    }
    let id = Uuid::parse_str(&claims.sub).map_err(|_| AuthError::Invalid)?;
    match state.users.get(state.store.as_ref(), id).await? {
        Some(user) if !user.disabled => Ok(id_tokens::user_claims(&user, &claims.scope)),
        _ => Err(AuthError::Invalid.into()),
    }
}
