use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use http::request::Parts;

use crate::extract::{Principal, bearer_token, principal};
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
        Self::granted_by(|s| claims.has_scope(s))
    }

    /// Whether `has` says yes to every scope of the set.
    fn granted_by(has: impl Fn(&str) -> bool) -> bool {
        Self::names().iter().all(|s| has(s))
    }
}

impl<S: Scope> Scopes for S {
    fn names() -> Vec<&'static str> {
        vec![S::NAME]
    }

    fn granted(claims: &Claims) -> bool {
        claims.has_scope(S::NAME)
    }

    fn granted_by(has: impl Fn(&str) -> bool) -> bool {
        has(S::NAME)
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
/// `P` is what kind of token: [`Claims`] (the default: a user's token),
/// [`ClientClaims`](crate::ClientClaims) (a client's own token, from the
/// `client_credentials` grant) or [`Caller`](crate::Caller) (either). A
/// token of another kind is refused with 401 like a bad one.
///
/// Rejects with 401 like [`Claims`] when the token is missing or invalid,
/// and with the contract's 403 when it lacks a scope:
/// `WWW-Authenticate: Bearer error="insufficient_scope", scope="<scopes>"`
/// (every scope the route needs, space-separated)
/// and `{"detail": "Not enough permissions"}`.
///
/// ```
/// use axum::{Router, extract::FromRef, routing::{get, post}};
/// use warden_guard::{Caller, Claims, ClientClaims, RequireScope, Verifier, scope};
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
/// // A service calling with its own client_credentials token.
/// async fn sync_courses(auth: RequireScope<CoursesRead, ClientClaims>) -> String {
///     format!("synced for client {}", auth.client_id)
/// }
///
/// // A user or a service.
/// async fn course_count(auth: RequireScope<CoursesRead, Caller>) -> String {
///     format!("asked by {} (client {:?})", auth.sub(), auth.client_id())
/// }
///
/// fn router(state: AppState) -> Router {
///     Router::new()
///         .route("/courses", get(list_courses))
///         .route("/grades", post(post_grade))
///         .route("/courses/sync", post(sync_courses))
///         .route("/courses/count", get(course_count))
///         .with_state(state)
/// }
/// ```
pub struct RequireScope<S, P = Claims> {
    claims: Arc<P>,
    _scopes: PhantomData<fn() -> S>,
}

impl<S> RequireScope<S, Claims> {
    /// The verified claims.
    pub fn into_claims(self) -> Claims {
        Arc::unwrap_or_clone(self.claims)
    }
}

impl<S, P: Clone> RequireScope<S, P> {
    /// The verified token's claims.
    pub fn into_inner(self) -> P {
        Arc::unwrap_or_clone(self.claims)
    }
}

impl<S, P> Deref for RequireScope<S, P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.claims
    }
}

impl<S, P: std::fmt::Debug> std::fmt::Debug for RequireScope<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RequireScope").field(&self.claims).finish()
    }
}

impl<St, S, P> FromRequestParts<St> for RequireScope<S, P>
where
    Verifier: FromRef<St>,
    St: Send + Sync,
    S: Scopes,
    P: Principal,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?.ok_or(AuthError::Missing)?;
        let claims = principal::<P>(token, &Verifier::from_ref(state)).await?;
        if S::granted_by(|s| claims.has_scope(s)) {
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
