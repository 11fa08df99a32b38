//! `POST /token`: the OAuth 2.0 password grant (RFC 6749 §4.3).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warden_guard::RequireScope;

use crate::auth::audit::{self, Event};
use crate::auth::grants;
use crate::auth::tokens;
use crate::http::body::{FromForm, OAuthParams, Params, missing_parameter};
use crate::http::cookies;
use crate::http::error::{Error, GrantError, Result};
use crate::http::routes::{ClientMeta, TokenResponse};
use crate::http::scopes::TokensIntrospect;
use crate::http::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_token))
        .routes(routes!(revoke_token))
        .routes(routes!(introspect_token))
}

/// The form of `POST /token` (also accepted as a JSON object).
// Which fields a grant needs is the grant's business (the handler's), so
// none is required here. No `Debug`: it holds a password or a token.
#[derive(ToSchema)]
pub struct TokenRequest {
    /// `password` (may be omitted) or `refresh_token`.
    pub grant_type: Option<String>,
    /// Password grant: a username or an email address.
    pub username: Option<String>,
    /// Password grant.
    pub password: Option<String>,
    /// Refresh grant: the refresh token to rotate. Omitted in cookie mode:
    /// then the `warden_refresh` cookie is used, from an allowed `Origin`.
    pub refresh_token: Option<String>,
    /// Space-separated scopes to request; all of the user's when omitted.
    pub scope: Option<String>,
}

impl FromForm for TokenRequest {
    fn read(p: &mut Params<'_>) -> Option<Self> {
        let owned = |v: Option<&str>| v.map(str::to_owned);
        Some(Self {
            grant_type: owned(p.optional("grant_type")),
            username: owned(p.optional("username")),
            password: owned(p.optional("password")),
            refresh_token: owned(p.optional("refresh_token")),
            scope: owned(p.optional("scope")),
        })
    }
}

/// A parameter the grant needs; an empty value counts as missing.
fn required<'a>(value: Option<&'a str>, name: &str) -> Result<&'a str> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(missing_parameter(name)),
    }
}

/// Sign in or refresh: issue an access token
///
/// The password grant (`username`, which may be an email, and `password`;
/// `grant_type` may be left out, as FastAPI's form allows) or the refresh
/// grant (`grant_type=refresh_token`, `refresh_token`). Takes `application/x-www-form-urlencoded` as OAuth 2.0 requires, and a
/// JSON object with the same fields. An unknown user, a wrong password and a
/// disabled account get the same answer, after the same amount of work.
///
/// With `?cookie=true` (for browsers) the refresh token is set as an
/// `HttpOnly` cookie (`Path=/token`, `SameSite=Strict`) instead of being
/// returned in the body. A refresh without `refresh_token` uses that
/// cookie, only from warden's own origin or a configured CORS origin, and
/// rotates it. Cookie mode is refused (400 `invalid_request`) for a request
/// whose `Origin` is any other.
#[utoipa::path(
    post,
    path = "/token",
    tag = "tokens",
    params(("cookie" = Option<bool>, Query, description = "Browser cookie mode: the refresh token goes into an HttpOnly cookie, not the body")),
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Token issued", body = TokenResponse),
        (status = 400, description = "invalid_grant, invalid_request, invalid_scope or unsupported_grant_type", body = crate::http::routes::OAuthErrorBody,
            examples(
                ("invalid_grant" = (summary = "Wrong username or password", value = json!({"error": "invalid_grant", "error_description": crate::auth::grants::BAD_CREDENTIALS, "detail": crate::auth::grants::BAD_CREDENTIALS}))),
                ("invalid_request" = (summary = "A required parameter is missing", value = json!({"error": "invalid_request", "error_description": "Missing required parameter: username", "detail": "Missing required parameter: username"}))),
                ("invalid_scope" = (summary = "A scope no role grants", value = json!({"error": "invalid_scope", "error_description": "Unknown scope: admin:everything", "detail": "Unknown scope: admin:everything"}))),
                ("unsupported_grant_type" = (summary = "A grant warden does not have", value = json!({"error": "unsupported_grant_type", "error_description": "Unsupported grant_type: client_credentials", "detail": "Unsupported grant_type: client_credentials"}))),
            )),
        (status = 413, description = "Body over 64 KiB", body = crate::http::routes::Detail),
        (status = 415, description = "Not a form or JSON body", body = crate::http::routes::Detail),
        (status = 422, description = "A field or its name contains control characters", body = crate::http::routes::ValidationErrorBody,
            example = json!({"detail": [{"loc": ["body", "username"], "msg": "String should not contain control characters", "type": "string_control_character"}]})),
        (status = 429, description = "Too many failed logins; see Retry-After", body = crate::http::routes::Detail),
        (status = 503, description = "Password hashing queue full; see Retry-After", body = crate::http::routes::Detail),
    )
)]
pub async fn issue_token(
    State(state): State<AppState>,
    client: ClientMeta,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    params: OAuthParams,
) -> Result<Response> {
    let request: TokenRequest = params.parse()?;
    let cookie_mode = cookies::wants_cookie(query.as_deref());
    // Before any work: a foreign page must not get a cookie set (login
    // CSRF). invalid_request, not invalid_grant: the credentials were not
    // judged, the request is malformed for its context (RFC 6749 §5.2).
    if cookie_mode && !state.cookies.may_set_cookie(&headers) {
        return Err(Error::Grant(
            GrantError::InvalidRequest,
            cookies::COOKIE_MODE_ORIGIN_REFUSED.to_owned(),
        ));
    }
    match request.grant_type.as_deref() {
        None | Some("") | Some("password") => {
            let device_cookies: Vec<&str> =
                cookies::values(&headers, state.devices.name()).collect();
            let (tokens, user) = grants::password(
                &state,
                required(request.username.as_deref(), "username")?,
                required(request.password.as_deref(), "password")?,
                request.scope.as_deref(),
                &client,
                &device_cookies,
            )
            .await?;
            let mut response = state.cookies.respond(tokens, cookie_mode);
            // This browser (if it is one) is now a known device of the
            // user: lock-out resistance, see devices.rs.
            response.headers_mut().append(
                axum::http::header::SET_COOKIE,
                cookies::device_cookie(&state.devices, user, tokens::now()),
            );
            Ok(response)
        }
        Some("refresh_token") => refresh(&state, &request, &headers, cookie_mode).await,
        Some(other) => Err(Error::Grant(
            GrantError::UnsupportedGrantType,
            format!("Unsupported grant_type: {other}"),
        )),
    }
}

/// The refresh grant, from the `refresh_token` field or, without one, the
/// cookie. A refresh paid with the cookie always answers in cookie mode
/// (the rotated token must replace the cookie, or the next reload would
/// present a spent token); a dead cookie is cleared.
async fn refresh(
    state: &AppState,
    request: &TokenRequest,
    headers: &HeaderMap,
    cookie_mode: bool,
) -> Result<Response> {
    let scope = request.scope.as_deref();
    if let Ok(token) = required(request.refresh_token.as_deref(), "refresh_token") {
        let tokens = grants::refresh(state, token, scope).await?;
        return Ok(state.cookies.respond(tokens, cookie_mode));
    }
    let Some(token) = cookies::read(headers) else {
        return Err(missing_parameter("refresh_token"));
    };
    if !state.cookies.origin_allowed(headers) {
        return Err(Error::Grant(
            GrantError::InvalidGrant,
            COOKIE_ORIGIN_REFUSED.to_owned(),
        ));
    }
    match grants::refresh(state, &token, scope)
        .await
        .map_err(Error::from)
    {
        Ok(tokens) => Ok(state.cookies.respond(tokens, true)),
        Err(e @ Error::Grant(GrantError::InvalidGrant, _)) => {
            Ok(state.cookies.cleared(e.into_response()))
        }
        Err(e) => Err(e),
    }
}

/// Why a cookie refresh from another origin is refused.
pub const COOKIE_ORIGIN_REFUSED: &str = "The refresh token cookie is accepted only from warden's own origin or a configured CORS origin";

/// The session a genuine refresh token (of any generation) belongs to.
async fn refresh_session(state: &AppState, token: &str) -> Result<Option<Uuid>> {
    Ok(state
        .refresh
        .resolve(state.store.as_ref(), token)
        .await?
        .map(|p| p.session))
}

/// `POST /token/revoke` form (RFC 7009).
// No `Debug`: it holds a token.
#[derive(ToSchema)]
pub struct RevokeRequest {
    /// An access token or a refresh token.
    pub token: String,
    /// `access_token` or `refresh_token`; a hint only.
    pub token_type_hint: Option<String>,
}

impl FromForm for RevokeRequest {
    fn read(p: &mut Params<'_>) -> Option<Self> {
        let token = p.required("token");
        let token_type_hint = p.optional("token_type_hint").map(str::to_owned);
        Some(Self {
            token: token?.to_owned(),
            token_type_hint,
        })
    }
}

/// Revoke a token
///
/// RFC 7009. Revoking either kind ends its whole session: the refresh
/// token at once, the session's access tokens on their next request.
/// Always 200, whether or not the token was valid.
#[utoipa::path(
    post,
    path = "/token/revoke",
    tag = "tokens",
    request_body(content = RevokeRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, description = "No `token` parameter", body = crate::http::routes::OAuthErrorBody,
            example = json!({"error": "invalid_request", "error_description": "Missing required parameter: token", "detail": "Missing required parameter: token"})),
        (status = 413, description = "Body over 64 KiB", body = crate::http::routes::Detail),
        (status = 415, description = "Not a form or JSON body", body = crate::http::routes::Detail),
        (status = 422, description = "A field or its name contains control characters", body = crate::http::routes::ValidationErrorBody,
            example = json!({"detail": [{"loc": ["body", "token"], "msg": "String should not contain control characters", "type": "string_control_character"}]})),
    )
)]
pub async fn revoke_token(State(state): State<AppState>, params: OAuthParams) -> Result<Response> {
    let RevokeRequest {
        token,
        token_type_hint,
    } = params.parse()?;
    let token = token.as_str();
    let now = tokens::now();
    let hint_access = token_type_hint.as_deref() == Some("access_token");
    let mut sid = None;
    if !hint_access {
        sid = refresh_session(&state, token).await?;
    }
    if sid.is_none() {
        // Only a token that verifies can name a session to end.
        sid = state
            .verifier
            .verify(token)
            .ok()
            .and_then(|c| Uuid::parse_str(&c.sid).ok());
    }
    if sid.is_none() && hint_access {
        sid = refresh_session(&state, token).await?;
    }
    if let Some(sid) = sid {
        crate::auth::sessions::end_session(&state, sid, now).await?;
        audit::record(
            state.store.as_ref(),
            Event::new("token_revoked").session(sid),
        )
        .await;
    }
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        "",
    )
        .into_response())
}

/// `POST /token/introspect` form (RFC 7662).
// No `Debug`: it holds a token.
#[derive(ToSchema)]
pub struct IntrospectRequest {
    pub token: String,
    /// Accepted and ignored: warden tells both kinds apart itself.
    pub token_type_hint: Option<String>,
}

impl FromForm for IntrospectRequest {
    fn read(p: &mut Params<'_>) -> Option<Self> {
        let token = p.required("token");
        let token_type_hint = p.optional("token_type_hint").map(str::to_owned);
        Some(Self {
            token: token?.to_owned(),
            token_type_hint,
        })
    }
}

/// Introspection response (RFC 7662 §2.2); only `active` when inactive.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `Bearer` for access tokens, `refresh_token` for refresh tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// Introspect a token
///
/// Whether a token is live, and what it grants (RFC 7662). The caller
/// needs a bearer token with scope `tokens:introspect`. A revoked,
/// expired, malformed or foreign token is `{"active": false}`.
#[utoipa::path(
    post,
    path = "/token/introspect",
    tag = "tokens",
    request_body(content = IntrospectRequest, content_type = "application/x-www-form-urlencoded"),
    security(("OAuth2PasswordBearer" = ["tokens:introspect"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Introspection", body = Introspection),
        (status = 400, description = "No `token` parameter", body = crate::http::routes::OAuthErrorBody,
            example = json!({"error": "invalid_request", "error_description": "Missing required parameter: token", "detail": "Missing required parameter: token"})),
        (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::routes::Detail),
        (status = 403, description = "Bearer token lacks `tokens:introspect`", body = crate::http::routes::Detail),
        (status = 413, description = "Body over 64 KiB", body = crate::http::routes::Detail),
        (status = 415, description = "Not a form or JSON body", body = crate::http::routes::Detail),
        (status = 422, description = "A field or its name contains control characters", body = crate::http::routes::ValidationErrorBody,
            example = json!({"detail": [{"loc": ["body", "token"], "msg": "String should not contain control characters", "type": "string_control_character"}]})),
    )
)]
pub async fn introspect_token(
    State(state): State<AppState>,
    _caller: RequireScope<TokensIntrospect>,
    params: OAuthParams,
) -> Result<Response> {
    let request: IntrospectRequest = params.parse()?;
    let token = request.token.as_str();
    let now = tokens::now();
    let mut answer = Introspection::default();
    if let Ok(c) = state.verifier.verify(token) {
        answer = Introspection {
            active: true,
            sub: Some(c.sub),
            scope: Some(c.scope),
            exp: Some(c.exp),
            iat: Some(c.iat),
            jti: Some(c.jti),
            sid: Some(c.sid),
            username: Some(c.username),
            token_type: Some("Bearer".to_owned()),
            iss: Some(c.iss),
        };
    } else if let Some(presented) = state.refresh.resolve(state.store.as_ref(), token).await?
        && let Some(r) = state.store.refresh_record(presented.session).await?
        && r.is_current(
            &presented,
            now,
            state.config.sessions.session_max_lifetime as i64,
        )
        && let Some(user) = state.store.user_by_id(r.session.user_id).await?
        && !user.disabled
    {
        answer = Introspection {
            active: true,
            sub: Some(user.id.to_string()),
            scope: Some(r.session.scope),
            exp: Some(r.session.expires_at),
            iat: Some(r.refresh.issued_at),
            jti: None,
            sid: Some(r.session.id.to_string()),
            username: Some(user.username),
            token_type: Some("refresh_token".to_owned()),
            iss: Some(state.tokens.issuer().to_owned()),
        };
    }
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(answer),
    )
        .into_response())
}
