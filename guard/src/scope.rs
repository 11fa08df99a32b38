use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use http::request::Parts;

use crate::extract::bearer_token;
use crate::{AuthError, Claims, Verifier};

/// A scope a route requires, named by a type so the requirement is part of
/// the handler's signature. Declare one with [`scope!`](crate::scope).
pub trait Scope {
    /// The scope token, e.g. `"grades:write"`.
    const NAME: &'static str;
}

/// One scope or a tuple of scopes, all of which are required.
pub trait Scopes {
    /// Every scope of the set.
    fn names() -> Vec<&'static str>;

    /// Whether `claims` grants every scope of the set.
    fn granted(claims: &Claims) -> bool {
        Self::names().iter().all(|s| claims.has_scope(s))
    }
}

impl<S: Scope> Scopes for S {
    fn names() -> Vec<&'static str> {
        vec![S::NAME]
    }

    fn granted(claims: &Claims) -> bool {
        claims.has_scope(S::NAME)
    }
}

macro_rules! tuple_scopes {
    ($($t:ident),+) => {
        impl<$($t: Scope),+> Scopes for ($($t,)+) {
            fn names() -> Vec<&'static str> {
                vec![$($t::NAME),+]
            }
        }
    };
}
tuple_scopes!(A, B);
tuple_scopes!(A, B, C);
tuple_scopes!(A, B, C, D);

/// Declares scope marker types for [`RequireScope`].
///
/// ```
/// warden_guard::scope!(pub GradesWrite = "grades:write");
/// warden_guard::scope!(CoursesRead = "courses:read");
/// use warden_guard::Scope;
/// assert_eq!(GradesWrite::NAME, "grades:write");
/// ```
#[macro_export]
macro_rules! scope {
    ($vis:vis $name:ident = $scope:literal) => {
        #[doc = concat!("The `", $scope, "` scope.")]
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;
        impl $crate::Scope for $name {
            const NAME: &'static str = $scope;
        }
    };
}

/// The claims of a valid token that grants every scope of `S`.
///
/// Rejects with 401 like [`Claims`] when the token is missing or invalid,
/// and with the contract's 403 when it lacks a scope:
/// `WWW-Authenticate: Bearer error="insufficient_scope", scope="<scopes>"`
/// (every scope the route needs, space-separated)
/// and `{"detail": "Not enough permissions"}`.
///
/// ```
/// use axum::{Router, extract::FromRef, routing::{get, post}};
/// use warden_guard::{Claims, RequireScope, Verifier, scope};
///
/// scope!(CoursesRead = "courses:read");
/// scope!(GradesWrite = "grades:write");
///
/// #[derive(Clone, FromRef)]
/// struct AppState { verifier: Verifier }
///
/// async fn list_courses(_: RequireScope<CoursesRead>) -> &'static str { "[]" }
///
/// // Both scopes required; the claims are there when the handler runs.
/// async fn post_grade(auth: RequireScope<(CoursesRead, GradesWrite)>) -> String {
///     format!("graded by {}", auth.username)
/// }
///
/// fn router(state: AppState) -> Router {
///     Router::new()
///         .route("/courses", get(list_courses))
///         .route("/grades", post(post_grade))
///         .with_state(state)
/// }
/// ```
pub struct RequireScope<S> {
    claims: Arc<Claims>,
    _scopes: PhantomData<fn() -> S>,
}

impl<S> RequireScope<S> {
    /// The verified claims.
    pub fn into_claims(self) -> Claims {
        Arc::unwrap_or_clone(self.claims)
    }
}

impl<S> Deref for RequireScope<S> {
    type Target = Claims;

    fn deref(&self) -> &Claims {
        &self.claims
    }
}

impl<S> std::fmt::Debug for RequireScope<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RequireScope").field(&self.claims).finish()
    }
}

impl<St, S> FromRequestParts<St> for RequireScope<S>
where
    Verifier: FromRef<St>,
    St: Send + Sync,
    S: Scopes,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?.ok_or(AuthError::Missing)?;
        let claims = Verifier::from_ref(state).verify_request(token).await?;
        if S::granted(&claims) {
            Ok(Self {
                claims,
                _scopes: PhantomData,
            })
        } else {
            // RFC 6750 §3: `scope` lists every scope the resource needs.
            Err(AuthError::InsufficientScope(S::names().join(" ")))
        }
    }
}
