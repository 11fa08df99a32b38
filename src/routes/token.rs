//! `POST /token`: the OAuth 2.0 password grant (RFC 6749 §4.3).

use std::collections::BTreeSet;

use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::body::OAuthParams;
use crate::error::{Error, GrantError, Result};
use crate::passwords::Password;
use crate::roles::Roles;
use crate::routes::TokenResponse;
use crate::state::AppState;
use crate::storage::UserRecord;
use crate::tokens;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(issue_token))
}

/// The form of `POST /token` (also accepted as a JSON object).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the form; the handler reads `OAuthParams`
pub struct TokenRequest {
    /// `password` (may be omitted).
    grant_type: Option<String>,
    /// A username or an email address.
    username: String,
    password: String,
    /// Space-separated scopes to request; all of the user's when omitted.
    scope: Option<String>,
}

const BAD_CREDENTIALS: &str = "Incorrect username or password";

fn required<'a>(params: &'a OAuthParams, name: &str) -> Result<&'a str> {
    match params.0.get(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Error::Grant(
            GrantError::InvalidRequest,
            format!("Missing required parameter: {name}"),
        )),
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
#[utoipa::path(
    post,
    path = "/token",
    tag = "tokens",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Token issued", body = TokenResponse),
        (status = 400, description = "invalid_grant, invalid_request, invalid_scope or unsupported_grant_type", body = crate::routes::OAuthErrorBody),
        (status = 413, description = "Body over 64 KiB", body = crate::routes::Detail),
        (status = 415, description = "Not a form or JSON body", body = crate::routes::Detail),
        (status = 503, description = "Password hashing queue full; see Retry-After", body = crate::routes::Detail),
    )
)]
pub async fn issue_token(
    State(state): State<AppState>,
    params: OAuthParams,
) -> Result<TokenResponse> {
    match params.0.get("grant_type").map(String::as_str) {
        None | Some("") | Some("password") => {}
        Some("refresh_token") => {
            return Err(Error::Grant(
                GrantError::UnsupportedGrantType,
                "The refresh_token grant is not available yet".to_owned(),
            ));
        }
        Some(other) => {
            return Err(Error::Grant(
                GrantError::UnsupportedGrantType,
                format!("Unsupported grant_type: {other}"),
            ));
        }
    }
    let login = required(&params, "username")?;
    let password = required(&params, "password")?;
    let requested = requested_scopes(
        &state.config.roles,
        params.0.get("scope").map(String::as_str),
    )?;

    let user = state.store.user_by_login(login).await?;
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    // Always one argon2 verification, even for an unknown user (against a
    // dummy hash), so timing does not reveal which accounts exist.
    let ok = state.hasher.verify(Password::new(password), phc).await?;
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        _ => {
            metrics::counter!("warden_logins_total", "result" => "failed").increment(1);
            tracing::info!(event = "login_failed", "login failed");
            return Err(Error::Grant(
                GrantError::InvalidGrant,
                BAD_CREDENTIALS.to_owned(),
            ));
        }
    };
    let scope = grant_scopes(&state.config.roles, &user, requested.as_ref())?;
    state.gate.set(&user);
    let now = tokens::now();
    let issued = state.tokens.issue(&user, &scope, Uuid::now_v7(), now)?;
    metrics::counter!("warden_logins_total", "result" => "ok").increment(1);
    tracing::info!(event = "login_succeeded", user_id = %user.id, "login succeeded");
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "bearer",
        expires_in: issued.expires_in,
        scope,
    })
}
