//! The grants of the token endpoint (RFC 6749): the password grant (§4.3),
//! the refresh grant (§6) with rotation and reuse detection (RFC 9700) and
//! its binding to the client a session was issued through, and the client
//! credentials grant (§4.4). The authorization code grant is
//! `auth::code_grant`. The HTTP tier reads the form and the cookies, calls
//! one of these and writes the response; the rules are here.

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::auth::audit::{self, Event};
use crate::auth::error::GrantError;
use crate::auth::id_tokens::{self, IdTokenSession};
use crate::auth::refresh_tokens::RefreshTokens;
use crate::auth::sessions::{ClientMeta, PASSWORD_AMR, TokenResponse};
use crate::auth::{Error, Result, Services, tokens};
use crate::domain::client::GRANT_CLIENT_CREDENTIALS;
use crate::domain::roles::{Roles, is_openid_scope};
use crate::domain::{ClientRecord, RefreshLifetimes, RefreshOutcome, UserRecord};

pub const BAD_CREDENTIALS: &str = "Incorrect username or password";

/// Parses the requested scope: `None` when absent or empty; every scope
/// must be one some role grants.
pub fn requested_scopes<'a>(
    roles: &Roles,
    scope: Option<&'a str>,
) -> Result<Option<BTreeSet<&'a str>>> {
    requested_scopes_of(roles, scope, false)
}

/// [`requested_scopes`]; with `openid`, the OpenID scopes (which no role
/// grants, and only a grant through a client may carry) are known too.
pub fn requested_scopes_of<'a>(
    roles: &Roles,
    scope: Option<&'a str>,
    openid: bool,
) -> Result<Option<BTreeSet<&'a str>>> {
    let Some(scope) = scope else { return Ok(None) };
    let wanted: BTreeSet<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    if wanted.is_empty() {
        return Ok(None);
    }
    let known = |s: &str| roles.all_scopes().contains(s) || (openid && is_openid_scope(s));
    if let Some(unknown) = wanted.iter().find(|s| !known(s)) {
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

/// The password grant; with the token response, the user it was issued to.
///
/// `device_cookies`: the request's known-device cookies (lock-out
/// resistance, see `auth::devices`).
pub async fn password(
    state: &Services,
    login: &str,
    password: &str,
    scope: Option<&str>,
    client: &ClientMeta,
    device_cookies: &[&str],
) -> Result<(TokenResponse, Uuid)> {
    let requested = requested_scopes(&state.config.roles, scope)?;

    let address = client.ip.as_deref().unwrap_or("unknown");
    // Throttled before the account is looked up: a flood of refused
    // attempts costs no database read.
    crate::auth::password_check::check_before_lookup(
        state,
        login,
        address,
        state
            .devices
            .any_known(device_cookies.iter().copied(), tokens::now()),
        crate::auth::password_check::Purpose::Login,
    )
    .await?;
    let user = state.store.user_by_login(login).await?;
    let known_device = user.as_ref().is_some_and(|u| {
        state
            .devices
            .known(device_cookies.iter().copied(), u.id, tokens::now())
    });
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
///
/// `client`: the client that authenticated with the request, if any. A
/// session issued through a client is refreshed only by that client, and
/// a session of the password grant only without one; anything else is
/// `invalid_grant`, decided before the rotation, so a refusal spends
/// nothing and the rightful holder's next refresh still works.
pub async fn refresh(
    state: &Services,
    token: &str,
    scope: Option<&str>,
    client: Option<&ClientRecord>,
) -> Result<TokenResponse> {
    let requested = requested_scopes_of(&state.config.roles, scope, client.is_some())?;
    if let Some(client) = client {
        crate::auth::clients::require_grant(client, crate::domain::client::GRANT_REFRESH_TOKEN)?;
    }
    let now = tokens::now();
    // A forged token (a session id seen in some access token, with a
    // made-up secret) stops here, before the database: nothing is revoked.
    let Some(presented) = state.refresh.resolve(state.store.as_ref(), token).await? else {
        return Err(invalid_refresh());
    };
    let Some(record) = state.store.refresh_record(presented.session).await? else {
        return Err(invalid_refresh());
    };
    // The client binding (the session's client never changes, so the
    // rotation below sees the same one).
    if record.session.client_id != client.map(|c| c.id) {
        return Err(invalid_refresh());
    }
    // A browser session's token is the `warden_session` cookie, which the
    // hosted pages check without rotating: it is not a refresh token for
    // anyone to trade in at the token endpoint (that would also break the
    // cookie).
    if record.session.browser {
        return Err(invalid_refresh());
    }
    // A scope the session does not hold is refused before the rotation:
    // refused after it, the client would never see the successor, and its
    // next refresh with this (then spent) token would count as reuse and
    // end the session. Only the current token is judged here; any other
    // goes on to the rotation, which decides retry or reuse.
    if let Some(wanted) = &requested
        && record.is_current(
            &presented,
            now,
            state.config.sessions.session_max_lifetime as i64,
        )
        && let Some(user) = state.store.user_by_id(record.session.user_id).await?
        && !user.disabled
    {
        ungranted_scope(state, &user, &record.session.scope, client, wanted)?;
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
                ttl: state.config.sessions.refresh_token_ttl as i64,
                max_lifetime: state.config.sessions.session_max_lifetime as i64,
                grace: state.config.sessions.refresh_reuse_grace as i64,
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
    // Never wider than the login granted, nor than the user's roles (and
    // the client's scopes) allow now; a request may narrow it. (Checked
    // before the rotation too; a role change in between has ended the
    // session, so this refusal after a committed rotation needs a race.)
    let session_scopes = session_scopes(state, &user, &session.scope, client);
    let scope: Vec<&str> = match &requested {
        None => session_scopes,
        Some(wanted) => {
            ungranted_scope(state, &user, &session.scope, client, wanted)?;
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
    let issued = state.tokens.issue_through(
        &user,
        &scope,
        session.id,
        session.client_id,
        issued_at,
        "refresh_token",
    )?;
    // OIDC Core §12.2: a new id token for the same authentication (its
    // `auth_time` and `sid`), without the `nonce`.
    let id_token = match client {
        Some(client) => {
            id_tokens::issue(
                state,
                client,
                &user,
                &scope,
                &issued.token,
                &IdTokenSession {
                    browser_session: session.parent_session,
                    auth_time: session.auth_time.unwrap_or(session.created_at),
                    amr: session.amr.as_deref().unwrap_or(PASSWORD_AMR),
                    nonce: None,
                },
            )
            .await?
        }
        None => None,
    };
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "bearer",
        expires_in: issued.expires_in,
        scope,
        refresh_token: Some(successor),
        id_token,
    })
}

/// `grant_type=client_credentials` (RFC 6749 §4.4): an access token for
/// the authenticated confidential `client` itself — `sub` and `client_id`
/// are its id, no session, no refresh token. `scope` must lie within the
/// client's registered scopes; without one, the token carries all of them
/// but the OpenID scopes (which describe a user, and there is none).
pub async fn client_credentials(
    state: &Services,
    client: &ClientRecord,
    scope: Option<&str>,
) -> Result<TokenResponse> {
    // A public client cannot keep a secret, so it cannot prove it is
    // itself (RFC 6749 §4.4): whatever its registration says.
    if client.public {
        return Err(Error::Grant(
            GrantError::UnauthorizedClient,
            format!("A public client is not allowed the {GRANT_CLIENT_CREDENTIALS} grant"),
        ));
    }
    crate::auth::clients::require_grant(client, GRANT_CLIENT_CREDENTIALS)?;
    let allowed = |s: &str| !is_openid_scope(s) && client.scopes.iter().any(|c| c == s);
    let wanted: Vec<&str> = scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let granted: Vec<&str> = if wanted.is_empty() {
        client
            .scopes
            .iter()
            .map(String::as_str)
            .filter(|s| allowed(s))
            .collect()
    } else {
        if let Some(extra) = wanted.iter().find(|s| !allowed(s)) {
            return Err(Error::Grant(
                GrantError::InvalidScope,
                format!("Scope {extra} is not allowed for this client"),
            ));
        }
        wanted
    };
    if granted.is_empty() {
        return Err(Error::Grant(
            GrantError::InvalidScope,
            "This client has no scope it may obtain for itself".to_owned(),
        ));
    }
    let scope = granted.join(" ");
    let issued = state
        .tokens
        .issue_client(client.id, &scope, tokens::now())?;
    // Not an audit event: a service fetching its token every few minutes
    // is routine, and the client's creation, secret rotation and deletion
    // are audited. A debug line for tracing a misbehaving client.
    tracing::debug!(client_id = %client.id, scope = %scope, "client_credentials token issued");
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "bearer",
        expires_in: issued.expires_in,
        scope,
        refresh_token: None,
        id_token: None,
    })
}

/// The scopes a refresh of a session granted `granted` may carry: those
/// the user's roles still grant — and, for a session through `client`, the
/// OpenID scopes, each only while the client may still have it.
pub(crate) fn session_scopes<'a>(
    state: &Services,
    user: &UserRecord,
    granted: &'a str,
    client: Option<&ClientRecord>,
) -> Vec<&'a str> {
    let own = state.config.roles.scopes_of(&user.roles);
    granted
        .split(' ')
        .filter(|s| match client {
            None => own.contains(s),
            Some(c) => (own.contains(s) || is_openid_scope(s)) && c.scopes.iter().any(|cs| cs == s),
        })
        .collect()
}

/// 400 `invalid_scope` when `wanted` asks for a scope beyond the session's.
fn ungranted_scope(
    state: &Services,
    user: &UserRecord,
    granted: &str,
    client: Option<&ClientRecord>,
    wanted: &BTreeSet<&str>,
) -> Result<()> {
    let held = session_scopes(state, user, granted, client);
    match wanted.iter().find(|w| !held.contains(w)) {
        Some(extra) => Err(Error::Grant(
            GrantError::InvalidScope,
            format!("Scope {extra} was not granted to this session"),
        )),
        None => Ok(()),
    }
}
