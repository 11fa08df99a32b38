use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use http::header::AUTHORIZATION;
use http::request::Parts;

use crate::{AuthError, Claims, Verifier};

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
