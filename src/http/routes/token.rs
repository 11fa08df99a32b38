//! `POST /token` (RFC 6749): the password grant (§4.3), the refresh grant
//! (§6), the authorization code grant (§4.1.3, with PKCE) and the client
//! credentials grant (§4.4); client authentication (§2.3.1); revocation
//! (RFC 7009) and introspection (RFC 7662).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warden_guard::{Caller, RequireScope};

use crate::auth::audit::{self, Event};
use crate::auth::clients::{self, AuthMethod, PresentedClient};
use crate::auth::code_grant::{self, CodeRequest};
use crate::auth::grants;
use crate::auth::tokens;
use crate::domain::ClientRecord;
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
    /// `password` (may be omitted), `refresh_token`, `authorization_code`
    /// or `client_credentials`.
    pub grant_type: Option<String>,
    /// Password grant: a username or an email address.
    pub username: Option<String>,
    /// Password grant.
    pub password: Option<String>,
    /// Refresh grant: the refresh token to rotate. Omitted in cookie mode:
    /// then the `warden_refresh` cookie is used, from an allowed `Origin`.
    pub refresh_token: Option<String>,
    /// Space-separated scopes to request; all of the user's when omitted
    /// (the client's, for `client_credentials`).
    pub scope: Option<String>,
    /// Authorization code grant: the code `/authorize` returned.
    pub code: Option<String>,
    /// Authorization code grant: the redirect URI sent to `/authorize`
    /// (required when one was sent there).
    pub redirect_uri: Option<String>,
    /// Authorization code grant: the PKCE verifier (RFC 7636), 43–128
    /// characters of `[A-Za-z0-9-._~]`.
    pub code_verifier: Option<String>,
    /// A registered client's id (`client_secret_post`, or `none` for a
    /// public client). Ignored by the password grant.
    pub client_id: Option<String>,
    /// A confidential client's secret (`client_secret_post`); or send
    /// both in `Authorization: Basic` (`client_secret_basic`), not both ways.
    pub client_secret: Option<String>,
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
            code: owned(p.optional("code")),
            redirect_uri: owned(p.optional("redirect_uri")),
            code_verifier: owned(p.optional("code_verifier")),
            client_id: owned(p.optional("client_id")),
            client_secret: owned(p.optional("client_secret")),
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
/// `grant_type` may be left out, as FastAPI's form allows), the refresh
/// grant (`grant_type=refresh_token`, `refresh_token`), the authorization
/// code grant (`grant_type=authorization_code`, `code`, `redirect_uri`,
/// `code_verifier`) and the client credentials grant
/// (`grant_type=client_credentials`, optional `scope`). Takes `application/x-www-form-urlencoded` as OAuth 2.0 requires, and a
/// JSON object with the same fields. An unknown user, a wrong password and a
/// disabled account get the same answer, after the same amount of work.
///
/// A registered client authenticates with `Authorization: Basic`
/// (`client_secret_basic`, id and secret form-urlencoded inside it),
/// `client_id` and `client_secret` in the body (`client_secret_post`), or
/// `client_id` alone (`none`, public clients). The password grant takes no
/// client and ignores any client authentication. A refresh token issued
/// through a client is refreshed only by that client.
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
        (status = 400, description = "invalid_grant, invalid_request, invalid_scope, unauthorized_client or unsupported_grant_type", body = crate::http::routes::OAuthErrorBody,
            examples(
                ("invalid_grant" = (summary = "Wrong username or password", value = json!({"error": "invalid_grant", "error_description": crate::auth::grants::BAD_CREDENTIALS, "detail": crate::auth::grants::BAD_CREDENTIALS}))),
                ("invalid_request" = (summary = "A required parameter is missing", value = json!({"error": "invalid_request", "error_description": "Missing required parameter: username", "detail": "Missing required parameter: username"}))),
                ("invalid_scope" = (summary = "A scope no role grants", value = json!({"error": "invalid_scope", "error_description": "Unknown scope: admin:everything", "detail": "Unknown scope: admin:everything"}))),
                ("unsupported_grant_type" = (summary = "A grant warden does not have", value = json!({"error": "unsupported_grant_type", "error_description": "Unsupported grant_type: implicit", "detail": "Unsupported grant_type: implicit"}))),
                ("unauthorized_client" = (summary = "The client may not use this grant", value = json!({"error": "unauthorized_client", "error_description": "This client is not allowed the client_credentials grant", "detail": "This client is not allowed the client_credentials grant"}))),
            )),
        (status = 401, description = "invalid_client: unknown client, wrong secret, or no client authentication for a grant that needs it; `WWW-Authenticate: Basic` only when the client used Basic", body = crate::http::routes::OAuthErrorBody,
            example = json!({"error": "invalid_client", "error_description": "Client authentication failed", "detail": "Client authentication failed"})),
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
    client_meta: ClientMeta,
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
                &client_meta,
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
        Some("refresh_token") => {
            let client = match presented_client(&headers, &request)? {
                // A bare `client_id` that names no registered public client
                // is no client at all, as in v1: clients of the password
                // grant (authlib's OAuth2Session, for one) send their own
                // unregistered id with every refresh. It proves nothing,
                // so ignoring it opens nothing: a session issued through a
                // client is refreshed only by that client, authenticated.
                Some(presented) if presented.method == clients::AuthMethod::None => {
                    match clients::authenticate(&state, &presented).await {
                        Ok(client) => Some(client),
                        Err(crate::auth::Error::InvalidClient { .. }) => None,
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(presented) => Some(clients::authenticate(&state, &presented).await?),
                None => None,
            };
            refresh(&state, &request, &headers, cookie_mode, client.as_ref()).await
        }
        Some("authorization_code") => {
            let client = required_client(&state, &headers, &request).await?;
            let code = CodeRequest {
                code: request.code.as_deref(),
                redirect_uri: request.redirect_uri.as_deref(),
                code_verifier: request.code_verifier.as_deref(),
            };
            let tokens = code_grant::redeem(&state, &client, &code, &client_meta).await?;
            Ok(state.cookies.respond(tokens, cookie_mode))
        }
        Some("client_credentials") => {
            let client = required_client(&state, &headers, &request).await?;
            let tokens =
                grants::client_credentials(&state, &client, request.scope.as_deref()).await?;
            // No refresh token, so nothing for a cookie to hold.
            Ok(state.cookies.respond(tokens, false))
        }
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
    client: Option<&ClientRecord>,
) -> Result<Response> {
    let scope = request.scope.as_deref();
    if let Ok(token) = required(request.refresh_token.as_deref(), "refresh_token") {
        let tokens = grants::refresh(state, token, scope, client).await?;
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
    match grants::refresh(state, &token, scope, client)
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

/// Why two ways of client authentication at once are refused.
pub const TWO_CLIENT_METHODS: &str = "Client authentication must use one method: the Authorization: Basic header or client_secret in the body, not both";

fn invalid_request(description: &str) -> Error {
    Error::Grant(GrantError::InvalidRequest, description.to_owned())
}

/// The client credentials of a token request (RFC 6749 §2.3.1), if any:
/// `Authorization: Basic` (`client_secret_basic`), `client_id` and
/// `client_secret` in the body (`client_secret_post`), or `client_id`
/// alone (`none`, a public client).
///
/// A Basic header with an empty client id — Swagger UI's `Basic Og==` —
/// counts as none. A `client_id` in the body beside Basic is accepted when
/// it names the same client (many libraries send it anyway); a
/// `client_secret` in the body beside Basic is two methods at once, and
/// refused with `invalid_request`. An empty `client_secret` counts as
/// none.
fn presented_client(
    headers: &HeaderMap,
    request: &TokenRequest,
) -> Result<Option<PresentedClient>> {
    let nonempty = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_owned);
    let form_id = nonempty(&request.client_id);
    let form_secret = nonempty(&request.client_secret);
    if let Some((id, secret)) = basic_credentials(headers)? {
        if form_secret.is_some() || form_id.as_ref().is_some_and(|f| *f != id) {
            return Err(invalid_request(TWO_CLIENT_METHODS));
        }
        return Ok(Some(PresentedClient {
            client_id: id,
            secret: Some(secret),
            method: AuthMethod::Basic,
        }));
    }
    match (form_id, form_secret) {
        (Some(client_id), Some(secret)) => Ok(Some(PresentedClient {
            client_id,
            secret: Some(secret),
            method: AuthMethod::Post,
        })),
        (Some(client_id), None) => Ok(Some(PresentedClient {
            client_id,
            secret: None,
            method: AuthMethod::None,
        })),
        (None, Some(_)) => Err(missing_parameter("client_id")),
        (None, None) => Ok(None),
    }
}

/// The authenticated client of a grant that needs one; 401
/// `invalid_client` without client authentication.
async fn required_client(
    state: &AppState,
    headers: &HeaderMap,
    request: &TokenRequest,
) -> Result<ClientRecord> {
    let Some(presented) = presented_client(headers, request)? else {
        return Err(Error::InvalidClient { basic: false });
    };
    Ok(clients::authenticate(state, &presented).await?)
}

/// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`
/// (RFC 6749 §2.3.1, RFC 7617), decoded. `None` without a Basic header or
/// with an empty client id; a Basic header that does not decode is 401
/// `invalid_client` (with the Basic challenge: the client tried Basic).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let Some((scheme, encoded)) = value.to_str().ok().and_then(|v| v.split_once(' ')) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let bad = || Error::InvalidClient { basic: true };
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let Some((id, secret)) = decoded.split_once(':') else {
        return Err(bad());
    };
    let id = form_decode(id).ok_or_else(bad)?;
    if id.is_empty() {
        return Ok(None);
    }
    let secret = form_decode(secret).ok_or_else(bad)?;
    Ok(Some((id, secret)))
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a
/// space, `%XX` a byte; a `%` not followed by two hex digits stays as it
/// is. `None` if the bytes are not UTF-8.
fn form_decode(value: &str) -> Option<String> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) =>
            {
                out.push(h << 4 | l);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
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
    /// The OAuth client the token was issued to or through (absent for
    /// the password grant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `Bearer` for access tokens, `refresh_token` for refresh tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// 401 `"Invalid token"` for a client's own token whose client is gone.
/// The gate refuses such a token at once only on the instance that
/// deleted the client; the routes a client token may call (introspection,
/// the revocation feed) read the database anyway, so they ask it too, and
/// every instance refuses alike.
pub async fn client_still_registered(state: &AppState, caller: &Caller) -> Result<()> {
    let Caller::Client(c) = caller else {
        return Ok(());
    };
    let registered = match Uuid::parse_str(&c.client_id) {
        Ok(id) => state.store.client(id).await?.is_some(),
        Err(_) => false,
    };
    if registered {
        Ok(())
    } else {
        Err(Error::Auth(warden_guard::AuthError::Invalid))
    }
}

/// Introspect a token
///
/// Whether a token is live, and what it grants (RFC 7662). The caller
/// needs a bearer token with scope `tokens:introspect`: a user's, or a
/// resource server's own `client_credentials` token. A revoked, expired,
/// malformed or foreign token is `{"active": false}`. A client's own token
/// answers `sub` and `client_id` (the client's id), `scope`, `exp`, `iat`,
/// `jti` and `token_type`; a token through a client also names its
/// `client_id`.
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
    caller: RequireScope<TokensIntrospect, Caller>,
    params: OAuthParams,
) -> Result<Response> {
    let request: IntrospectRequest = params.parse()?;
    client_still_registered(&state, &caller).await?;
    let token = request.token.as_str();
    let now = tokens::now();
    let mut answer = Introspection::default();
    let verified = state.verifier.verify_caller(token);
    if let Ok(Caller::Client(c)) = verified {
        // The gate knows only of deletions made by this instance: ask the
        // store, so every instance answers alike.
        let exists = match Uuid::parse_str(&c.client_id) {
            Ok(id) => state.store.client(id).await?.is_some(),
            Err(_) => false,
        };
        if exists {
            answer = Introspection {
                active: true,
                sub: Some(c.sub),
                scope: Some(c.scope),
                exp: Some(c.exp),
                iat: Some(c.iat),
                jti: Some(c.jti),
                client_id: Some(c.client_id),
                token_type: Some("Bearer".to_owned()),
                iss: Some(c.iss),
                ..Introspection::default()
            };
        }
    } else if let Ok(Caller::User(c)) = verified {
        answer = Introspection {
            active: true,
            sub: Some(c.sub),
            scope: Some(c.scope),
            exp: Some(c.exp),
            iat: Some(c.iat),
            jti: Some(c.jti),
            sid: Some(c.sid),
            username: Some(c.username),
            client_id: c.client_id,
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
            client_id: r.session.client_id.map(|c| c.to_string()),
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
