use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use http::header::AUTHORIZATION;
use http::request::Parts;

use crate::claims::Verified;
use crate::{AuthError, Caller, Claims, ClientClaims, Verifier};

/// The bearer token of the request, if any (RFC 6750 §2.1; the scheme is
/// case-insensitive). A non-Bearer `Authorization` header — Swagger UI's
/// `Basic Og==`, say — counts as no token.
pub(crate) fn bearer_token(parts: &Parts) -> Result<Option<&str>, AuthError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| AuthError::Invalid)?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() {
        return Ok(None);
    }
    Ok(Some(token))
}

/// What an extractor can hand a handler: [`Claims`] (a user's token, with
/// or without a client), [`ClientClaims`] (a client's own token) or
/// [`Caller`] (either). A token of the other kind is refused with 401
/// `"Invalid token"`, as if it were not warden's. Sealed: implemented only
/// by those three.
pub trait Principal: sealed::Sealed + Send + Sync + 'static {
    /// Whether the token grants `scope`.
    fn has_scope(&self, scope: &str) -> bool;
}

pub(crate) mod sealed {
    use std::sync::Arc;

    /// How a [`Principal`](super::Principal) is taken from a verified token.
    pub trait Sealed: Sized {
        #[doc(hidden)]
        fn pick(verified: crate::claims::Verified) -> Option<Arc<Self>>;
    }
}

impl sealed::Sealed for Claims {
    fn pick(verified: Verified) -> Option<Arc<Self>> {
        match verified {
            Verified::User(c) => Some(c),
            Verified::Client(_) => None,
        }
    }
}

impl Principal for Claims {
    fn has_scope(&self, scope: &str) -> bool {
        Claims::has_scope(self, scope)
    }
}

impl sealed::Sealed for ClientClaims {
    fn pick(verified: Verified) -> Option<Arc<Self>> {
        match verified {
            Verified::User(_) => None,
            Verified::Client(c) => Some(c),
        }
    }
}

impl Principal for ClientClaims {
    fn has_scope(&self, scope: &str) -> bool {
        ClientClaims::has_scope(self, scope)
    }
}

impl sealed::Sealed for Caller {
    fn pick(verified: Verified) -> Option<Arc<Self>> {
        Some(Arc::new(verified.into_caller()))
    }
}

impl Principal for Caller {
    fn has_scope(&self, scope: &str) -> bool {
        Caller::has_scope(self, scope)
    }
}

/// The request's token as a `P`: 401 without one, with a bad one, or with
/// one of the other kind.
pub(crate) async fn principal<P: Principal>(
    token: &str,
    verifier: &Verifier,
) -> Result<Arc<P>, AuthError> {
    let verified = verifier.verify_any_request(token).await?;
    P::pick(verified).ok_or(AuthError::Invalid)
}

impl<S> FromRequestParts<S> for Claims
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?.ok_or(AuthError::Missing)?;
        Verifier::from_ref(state)
            .verify_request(token)
            .await
            .map(Arc::unwrap_or_clone)
    }
}

impl<S> OptionalFromRequestParts<S> for Claims
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match bearer_token(parts)? {
            None => Ok(None),
            Some(token) => Verifier::from_ref(state)
                .verify_request(token)
                .await
                .map(|c| Some(Arc::unwrap_or_clone(c))),
        }
    }
}

/// Implements the required and the optional extractor for a principal
/// other than [`Claims`] (whose impls above keep their own fast path).
macro_rules! principal_extractor {
    ($ty:ty) => {
        impl<S> FromRequestParts<S> for $ty
        where
            Verifier: FromRef<S>,
            S: Send + Sync,
        {
            type Rejection = AuthError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                let token = bearer_token(parts)?.ok_or(AuthError::Missing)?;
                principal::<$ty>(token, &Verifier::from_ref(state))
                    .await
                    .map(Arc::unwrap_or_clone)
            }
        }

        impl<S> OptionalFromRequestParts<S> for $ty
        where
            Verifier: FromRef<S>,
            S: Send + Sync,
        {
            type Rejection = AuthError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Option<Self>, Self::Rejection> {
                match bearer_token(parts)? {
                    None => Ok(None),
                    Some(token) => principal::<$ty>(token, &Verifier::from_ref(state))
                        .await
                        .map(|c| Some(Arc::unwrap_or_clone(c))),
                }
            }
        }
    };
}
principal_extractor!(ClientClaims);
principal_extractor!(Caller);
