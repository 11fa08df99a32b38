//! `POST /token`: the OAuth 2.0 password grant (RFC 6749 §4.3).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warden_guard::RequireScope;

use crate::auth::audit::{self, Event};
use crate::auth::refresh_tokens::RefreshTokens;
use crate::auth::tokens;
use crate::domain::roles::Roles;
use crate::http::body::OAuthParams;
use crate::http::cookies;
use crate::http::error::{Error, GrantError, Result};
use crate::http::routes::{ClientMeta, TokenResponse};
use crate::http::scopes::TokensIntrospect;
use crate::http::state::AppState;
use crate::storage::UserRecord;
use crate::storage::{RefreshLifetimes, RefreshOutcome};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_token))
        .routes(routes!(revoke_token))
        .routes(routes!(introspect_token))
}

/// The form of `POST /token` (also accepted as a JSON object).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the form; the handler reads `OAuthParams`
pub struct TokenRequest {
    /// `password` (may be omitted) or `refresh_token`.
    grant_type: Option<String>,
    /// Password grant: a username or an email address.
    username: Option<String>,
    /// Password grant.
    password: Option<String>,
    /// Refresh grant: the refresh token to rotate. Omitted in cookie mode:
    /// then the `warden_refresh` cookie is used, from an allowed `Origin`.
    refresh_token: Option<String>,
    /// Space-separated scopes to request; all of the user's when omitted.
    scope: Option<String>,
}

const BAD_CREDENTIALS: &str = "Incorrect username or password";

fn missing(name: &str) -> Error {
    Error::Grant(
        GrantError::InvalidRequest,
        format!("Missing required parameter: {name}"),
    )
}

fn required<'a>(params: &'a OAuthParams, name: &str) -> Result<&'a str> {
    match params.0.get(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(missing(name)),
    }
}

/// Parses the requested scope: `None` when absent or empty; every scope
/// must be one some role grants.
pub fn requested_scopes<'a>(
    roles: &Roles,
    scope: Option<&'a str>,
) -> Result<Option<BTreeSet<&'a str>>> {
    let Some(scope) = scope else { return Ok(None) };
    let wanted: BTreeSet<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    if wanted.is_empty() {
        return Ok(None);
    }
    if let Some(unknown) = wanted.iter().find(|s| !roles.all_scopes().contains(**s)) {
        return Err(Error::Grant(
            GrantError::InvalidScope,
            format!("Unknown scope: {unknown}"),
        ));
    }
    Ok(Some(wanted))
}

/// Granted = requested ∩ the user's scopes (all of them when none was
/// requested), space-separated in a stable order.
pub fn grant_scopes(
    roles: &Roles,
    user: &UserRecord,
    requested: Option<&BTreeSet<&str>>,
) -> Result<String> {
    let own = roles.scopes_of(&user.roles);
    let granted: Vec<&str> = match requested {
        None => own.into_iter().collect(),
        Some(wanted) => own.into_iter().filter(|s| wanted.contains(s)).collect(),
    };
    if granted.is_empty() {
        return Err(Error::Grant(
            GrantError::InvalidScope,
            "None of the requested scopes is granted to this user".to_owned(),
        ));
    }
    Ok(granted.join(" "))
}

/// Issue an access token for a username (or email) and password.
///
/// Takes `application/x-www-form-urlencoded` as OAuth 2.0 requires, and a
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
        (status = 400, description = "invalid_grant, invalid_request, invalid_scope or unsupported_grant_type", body = crate::http::routes::OAuthErrorBody),
        (status = 413, description = "Body over 64 KiB", body = crate::http::routes::Detail),
        (status = 415, description = "Not a form or JSON body", body = crate::http::routes::Detail),
        (status = 422, description = "A field or its name contains control characters", body = crate::http::routes::ValidationErrorBody),
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
    match params.0.get("grant_type").map(String::as_str) {
        None | Some("") | Some("password") => {
            let (tokens, user) = password_grant(&state, &client, &headers, &params).await?;
            let mut response = state.cookies.respond(tokens, cookie_mode);
            // This browser (if it is one) is now a known device of the
            // user: lock-out resistance, see devices.rs.
            response.headers_mut().append(
                axum::http::header::SET_COOKIE,
                cookies::device_cookie(&state.devices, user, tokens::now()),
            );
            Ok(response)
        }
        Some("refresh_token") => refresh(&state, &params, &headers, cookie_mode).await,
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
    params: &OAuthParams,
    headers: &HeaderMap,
    cookie_mode: bool,
) -> Result<Response> {
    if let Ok(token) = required(params, "refresh_token") {
        let tokens = refresh_grant(state, token, params).await?;
        return Ok(state.cookies.respond(tokens, cookie_mode));
    }
    let Some(token) = cookies::read(headers) else {
        return Err(missing("refresh_token"));
    };
    if !state.cookies.origin_allowed(headers) {
        return Err(Error::Grant(
            GrantError::InvalidGrant,
            COOKIE_ORIGIN_REFUSED.to_owned(),
        ));
    }
    match refresh_grant(state, &token, params).await {
        Ok(tokens) => Ok(state.cookies.respond(tokens, true)),
        Err(e @ Error::Grant(GrantError::InvalidGrant, _)) => {
            Ok(state.cookies.cleared(e.into_response()))
        }
        Err(e) => Err(e),
    }
}

/// Why a cookie refresh from another origin is refused.
pub const COOKIE_ORIGIN_REFUSED: &str = "The refresh token cookie is accepted only from warden's own origin or a configured CORS origin";

/// The password grant; with the token response, the user it was issued to.
async fn password_grant(
    state: &AppState,
    client: &ClientMeta,
    headers: &HeaderMap,
    params: &OAuthParams,
) -> Result<(TokenResponse, uuid::Uuid)> {
    let login = required(params, "username")?;
    let password = required(params, "password")?;
    let requested = requested_scopes(
        &state.config.roles,
        params.0.get("scope").map(String::as_str),
    )?;

    let address = client.ip.as_deref().unwrap_or("unknown");
    // Throttled before the account is looked up: a flood of refused
    // attempts costs no database read.
    crate::auth::password_check::check_before_lookup(
        state,
        login,
        address,
        state.devices.any_known(
            cookies::values(headers, state.devices.name()),
            tokens::now(),
        ),
        crate::auth::password_check::Purpose::Login,
    )
    .await?;
    let user = state.store.user_by_login(login).await?;
    let known_device = user
        .as_ref()
        .is_some_and(|u| cookies::known_device(&state.devices, headers, u.id, tokens::now()));
    // Throttled before any password work; always one argon2 verification,
    // even for an unknown user (against a dummy hash), so timing does not
    // reveal which accounts exist.
    let check = crate::auth::password_check::PasswordCheck {
        login,
        user: user.as_ref(),
        password,
        address,
        known_device,
        purpose: crate::auth::password_check::Purpose::Login,
    };
    let right = crate::auth::password_check::check(state, check).await?;
    let user = match user {
        Some(u) if right => u,
        _ => {
            return Err(Error::Grant(
                GrantError::InvalidGrant,
                BAD_CREDENTIALS.to_owned(),
            ));
        }
    };
    // The session is opened only if the user is still as the password
    // check saw them. A password, role or disabled change that committed
    // in between has ended every session of the user, and must end this
    // login too: decide again from the user as they are now.
    let mut user = user;
    let mut retries = 0;
    let (response, sid) = loop {
        let scope = grant_scopes(&state.config.roles, &user, requested.as_ref())?;
        if let Some(opened) =
            crate::auth::sessions::open_session(state, &user, scope, client, tokens::now()).await?
        {
            break opened;
        }
        retries += 1;
        match state.store.user_by_id(user.id).await? {
            // Same password (a role change): the check still holds, under
            // the new roles. Bounded, though a user changed three times
            // during one login is already absurd.
            Some(fresh)
                if !fresh.disabled && fresh.password_hash == user.password_hash && retries < 3 =>
            {
                user = fresh;
            }
            // A new password, disabled, deleted: the password that was
            // checked is no longer the account's.
            _ => {
                return Err(Error::Grant(
                    GrantError::InvalidGrant,
                    BAD_CREDENTIALS.to_owned(),
                ));
            }
        }
    };
    state.gate.set(&user);
    state.users.put(&user);
    metrics::counter!("warden_logins_total", "result" => "ok").increment(1);
    audit::record(
        state.store.as_ref(),
        Event::new("login_succeeded")
            .user(user.id)
            .session(sid)
            .ip(client.ip.as_deref()),
    )
    .await;
    Ok((response, user.id))
}

fn invalid_refresh() -> Error {
    Error::Grant(
        GrantError::InvalidGrant,
        "Invalid or expired refresh token".to_owned(),
    )
}

/// `grant_type=refresh_token`: rotate the refresh token, issue a new pair.
async fn refresh_grant(
    state: &AppState,
    token: &str,
    params: &OAuthParams,
) -> Result<TokenResponse> {
    let requested = requested_scopes(
        &state.config.roles,
        params.0.get("scope").map(String::as_str),
    )?;
    let now = tokens::now();
    // A forged token (a session id seen in some access token, with a
    // made-up secret) stops here, before the database: nothing is revoked.
    let Some(presented) = state.refresh.resolve(state.store.as_ref(), token).await? else {
        return Err(invalid_refresh());
    };
    // A scope the session does not hold is refused before the rotation:
    // refused after it, the client would never see the successor, and its
    // next refresh with this (then spent) token would count as reuse and
    // end the session. Only the current token is judged here; any other
    // goes on to the rotation, which decides retry or reuse.
    if let Some(wanted) = &requested
        && let Some(record) = state.store.refresh_record(presented.session).await?
        && record.is_current(&presented, now, state.config.session_max_lifetime as i64)
        && let Some(user) = state.store.user_by_id(record.session.user_id).await?
        && !user.disabled
    {
        ungranted_scope(state, &user, &record.session.scope, wanted)?;
    }
    let successor = state
        .refresh
        .successor(token, presented.session, presented.generation + 1);
    let outcome = state
        .store
        .rotate_refresh_token(
            &presented,
            &RefreshTokens::hash(&successor),
            now,
            RefreshLifetimes {
                ttl: state.config.refresh_token_ttl as i64,
                max_lifetime: state.config.session_max_lifetime as i64,
                grace: state.config.refresh_reuse_grace as i64,
            },
        )
        .await?;
    let session = match outcome {
        RefreshOutcome::Rotated(s) | RefreshOutcome::Retry(s) => s,
        RefreshOutcome::Reused { session, user } => {
            state.gate.revoke_session(session, now);
            audit::record(
                state.store.as_ref(),
                Event::new("refresh_reuse_detected")
                    .user(user)
                    .session(session),
            )
            .await;
            return Err(invalid_refresh());
        }
        RefreshOutcome::Invalid => return Err(invalid_refresh()),
    };
    let user = match state.store.user_by_id(session.user_id).await? {
        Some(u) if !u.disabled => u,
        _ => return Err(invalid_refresh()),
    };
    // Never wider than the login granted, nor than the user's roles allow
    // now; a request may narrow it. (Checked before the rotation too; a
    // role change in between has ended the session, so this refusal after
    // a committed rotation needs a race.)
    let session_scopes = session_scopes(state, &user, &session.scope);
    let scope: Vec<&str> = match &requested {
        None => session_scopes,
        Some(wanted) => {
            ungranted_scope(state, &user, &session.scope, wanted)?;
            session_scopes
                .into_iter()
                .filter(|s| wanted.contains(s))
                .collect()
        }
    };
    if scope.is_empty() {
        return Err(invalid_refresh());
    }
    let scope = scope.join(" ");
    let issued_at = tokens::issuing_time(&user, now).await;
    let issued = state
        .tokens
        .issue_for(&user, &scope, session.id, issued_at, "refresh_token")?;
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "bearer",
        expires_in: issued.expires_in,
        scope,
        refresh_token: Some(successor),
    })
}

/// The scopes a refresh of a session granted `granted` may carry: those
/// the user's roles still grant.
fn session_scopes<'a>(state: &AppState, user: &UserRecord, granted: &'a str) -> Vec<&'a str> {
    let own = state.config.roles.scopes_of(&user.roles);
    granted.split(' ').filter(|s| own.contains(s)).collect()
}

/// 400 `invalid_scope` when `wanted` asks for a scope beyond the session's.
fn ungranted_scope(
    state: &AppState,
    user: &UserRecord,
    granted: &str,
    wanted: &BTreeSet<&str>,
) -> Result<()> {
    let held = session_scopes(state, user, granted);
    match wanted.iter().find(|w| !held.contains(w)) {
        Some(extra) => Err(Error::Grant(
            GrantError::InvalidScope,
            format!("Scope {extra} was not granted to this session"),
        )),
        None => Ok(()),
    }
}

/// The session a genuine refresh token (of any generation) belongs to.
async fn refresh_session(state: &AppState, token: &str) -> Result<Option<Uuid>> {
    Ok(state
        .refresh
        .resolve(state.store.as_ref(), token)
        .await?
        .map(|p| p.session))
}

/// `POST /token/revoke` form (RFC 7009).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the form; the handler reads `OAuthParams`
pub struct RevokeRequest {
    /// An access token or a refresh token.
    token: String,
    /// `access_token` or `refresh_token`; a hint only.
    token_type_hint: Option<String>,
}

/// Revoke a token (RFC 7009). Revoking either kind ends its whole session:
/// the refresh token at once, the session's access tokens on their next
/// request. Always 200, whether or not the token was valid.
#[utoipa::path(
    post,
    path = "/token/revoke",
    tag = "tokens",
    request_body(content = RevokeRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, description = "No `token` parameter", body = crate::http::routes::OAuthErrorBody),
        (status = 413, description = "Body over 64 KiB", body = crate::http::routes::Detail),
        (status = 415, description = "Not a form or JSON body", body = crate::http::routes::Detail),
        (status = 422, description = "A field or its name contains control characters", body = crate::http::routes::ValidationErrorBody),
    )
)]
pub async fn revoke_token(State(state): State<AppState>, params: OAuthParams) -> Result<Response> {
    let token = required(&params, "token")?;
    let now = tokens::now();
    let hint_access = params.0.get("token_type_hint").map(String::as_str) == Some("access_token");
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
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct IntrospectRequest {
    token: String,
    token_type_hint: Option<String>,
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

/// Whether a token is live, and what it grants (RFC 7662). The caller needs
/// a token with scope `tokens:introspect`. A revoked, expired, malformed or
/// foreign token is `{"active": false}`.
#[utoipa::path(
    post,
    path = "/token/introspect",
    tag = "tokens",
    request_body(content = IntrospectRequest, content_type = "application/x-www-form-urlencoded"),
    security(("OAuth2PasswordBearer" = ["tokens:introspect"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Introspection", body = Introspection),
        (status = 400, description = "No `token` parameter", body = crate::http::routes::OAuthErrorBody),
        (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::routes::Detail),
        (status = 403, description = "Bearer token lacks `tokens:introspect`", body = crate::http::routes::Detail),
        (status = 413, description = "Body over 64 KiB", body = crate::http::routes::Detail),
        (status = 415, description = "Not a form or JSON body", body = crate::http::routes::Detail),
        (status = 422, description = "A field or its name contains control characters", body = crate::http::routes::ValidationErrorBody),
    )
)]
pub async fn introspect_token(
    State(state): State<AppState>,
    _caller: RequireScope<TokensIntrospect>,
    params: OAuthParams,
) -> Result<Response> {
    let token = required(&params, "token")?;
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
        && r.is_current(&presented, now, state.config.session_max_lifetime as i64)
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
