//! `GET` and `POST /userinfo` (OpenID Connect Core §5.3): the claims
//! about the user that a bearer access token with `openid` releases.
//! Errors are RFC 6750's: 401 with `WWW-Authenticate: Bearer` (and
//! `error="invalid_token"` for a bad one), 403 `insufficient_scope` for a
//! token without `openid`.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use warden_guard::AuthError;

use crate::auth::id_tokens::UserClaims;
use crate::auth::userinfo;
use crate::http::error::{Error, GrantError, Result};
use crate::http::state::AppState;

pub const PATH: &str = "/userinfo";

/// The 400 of a token sent both in the header and in the body.
const BOTH_WAYS: &str =
    "The access token was sent both in the Authorization header and in the body";

/// A form with one token in it is small; the server's own limit (64 KiB)
/// applies before this one.
const MAX_BODY: usize = 64 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_userinfo, post_userinfo))
}

/// The bearer token of the `Authorization` header (RFC 6750 §2.1; the
/// scheme is case-insensitive); a header of another scheme is no token.
fn header_token(headers: &HeaderMap) -> Result<Option<String>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| AuthError::Invalid)?;
    Ok(value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
        .filter(|token| !token.is_empty()))
}

async fn answer(state: &AppState, token: Option<String>) -> Result<Response> {
    let token = token.ok_or(AuthError::Missing)?;
    let claims = state.verifier.verify_request(&token).await?;
    let body: UserClaims = userinfo::userinfo(state, &claims).await?;
    // Claims about a person: no shared cache may keep them.
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    )
        .into_response())
}

/// The user's claims
///
/// OpenID Connect UserInfo: a bearer access token whose scope has `openid`
/// → `sub`, plus `preferred_username` and `name` with `profile`, `email`
/// and `email_verified` with `email`.
#[utoipa::path(
    get,
    path = "/userinfo",
    tag = "users",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The claims the token's scopes release", body = Object,
            example = json!({"sub": "0193...", "preferred_username": "alice", "name": "Alice", "email": "alice@example.com", "email_verified": false})),
        (status = 401, description = "No, an invalid or an expired token (`WWW-Authenticate: Bearer`)", body = crate::http::routes::Detail),
        (status = 403, description = "The token lacks scope `openid` (`error=\"insufficient_scope\"`)", body = crate::http::routes::Detail),
    )
)]
pub async fn get_userinfo(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    answer(&state, header_token(&headers)?).await
}

/// The user's claims (POST)
///
/// As `GET /userinfo`; the token may also come in an
/// `application/x-www-form-urlencoded` body as the field `access_token`
/// (RFC 6750 §2.2), but not both ways at once.
#[utoipa::path(
    post,
    path = "/userinfo",
    tag = "users",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The claims the token's scopes release", body = Object),
        (status = 400, description = "The token sent both in the header and in the form", body = crate::http::routes::OAuthErrorBody,
            example = json!({"error": "invalid_request", "error_description": BOTH_WAYS, "detail": BOTH_WAYS})),
        (status = 401, description = "No, an invalid or an expired token (`WWW-Authenticate: Bearer`)", body = crate::http::routes::Detail),
        (status = 403, description = "The token lacks scope `openid` (`error=\"insufficient_scope\"`)", body = crate::http::routes::Detail),
    )
)]
// The body is read from the raw request: it is optional, and only a form
// is looked into (a body of another type carries no token).
pub async fn post_userinfo(State(state): State<AppState>, request: Request) -> Result<Response> {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let from_header = header_token(&headers)?;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let from_form = if is_form {
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| Error::PayloadTooLarge)?;
        let mut found = form_urlencoded::parse(&body)
            .filter(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned());
        let first = found.next();
        if found.next().is_some() {
            return Err(invalid_request(
                "Parameter \"access_token\" was sent more than once",
            ));
        }
        first.filter(|t| !t.is_empty())
    } else {
        None
    };
    // RFC 6750 §2: a client must not use more than one method.
    if from_header.is_some() && from_form.is_some() {
        return Err(invalid_request(BOTH_WAYS));
    }
    answer(&state, from_header.or(from_form)).await
}

fn invalid_request(description: &str) -> Error {
    Error::Grant(GrantError::InvalidRequest, description.to_owned())
}
