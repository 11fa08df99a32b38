//! Sessions: opening one per login (its first token pair), ending one or
//! all of a user's, and telling this process's token gate at once. Every
//! grant, the password change and logout go through here.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::audit::{self, Event};
use crate::auth::refresh_tokens::RefreshTokens;
use crate::auth::{Result, Services};
use crate::domain::{SessionOpened, SessionRecord, UserRecord, refreshed_expiry};

/// The body of a successful token response (FastAPI's `{"access_token",
/// "token_type"}` plus RFC 6749's `expires_in` and `scope`).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// Opaque; rotates on every use (`grant_type=refresh_token`). Absent in
    /// cookie mode (`?cookie=true`), where it is an `HttpOnly` cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// OpenID Connect's id token, when `openid` was granted through a
    /// client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// Who is calling: recorded with a new session and shown in
/// `GET /users/me/sessions`. The address is the TCP peer's, or, behind a
/// configured trusted proxy, the client it forwarded for (the HTTP tier
/// reads both from the request).
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// RFC 8176's `amr` of a sign-in with a password.
pub const PASSWORD_AMR: &str = "pwd";

/// How a session came to be: which of the session's fields say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionVia {
    /// The password grant (or a password change that signs in again).
    Password,
    /// A grant through an OAuth client (the code flow), from the browser
    /// session the user signed in with.
    Client {
        client: Uuid,
        /// The browser session (`warden_session`) the code was issued in.
        browser_session: Uuid,
        /// When the user authenticated in it (OpenID `auth_time`).
        auth_time: i64,
    },
    /// The browser session of the hosted pages (`warden_session`).
    Browser,
}

/// Opens a session for `user` — as the caller read them and checked
/// their password — and returns its first token pair and its id. `None`
/// when the user has had a security change (password, roles, disabled)
/// since that read: then nothing was stored, and the caller decides again
/// from the user as they are now. Past the per-user cap, the user's oldest
/// sessions end.
pub async fn open_session(
    state: &Services,
    user: &UserRecord,
    scope: String,
    client: &ClientMeta,
    now: i64,
) -> Result<Option<(TokenResponse, Uuid)>> {
    open_session_with(
        state,
        user,
        scope,
        client,
        Uuid::now_v7(),
        SessionVia::Password,
        now,
    )
    .await
}

/// [`open_session`] with the session's id chosen by the caller (a code's
/// redemption records the id of the session it opens before opening it)
/// and how it came to be.
pub async fn open_session_with(
    state: &Services,
    user: &UserRecord,
    scope: String,
    client: &ClientMeta,
    id: Uuid,
    via: SessionVia,
    now: i64,
) -> Result<Option<(TokenResponse, Uuid)>> {
    let refresh = state.refresh.generate(id)?;
    // The first token, like every later one, ends with the session at the
    // latest.
    let mut expires_at = refreshed_expiry(
        now,
        now,
        state.config.sessions.refresh_token_ttl as i64,
        state.config.sessions.session_max_lifetime as i64,
    );
    // The browser session lasts its own lifetime (its cookie's Max-Age),
    // and the session list says so.
    if via == SessionVia::Browser {
        expires_at =
            expires_at.min(now.saturating_add(state.config.clients.browser_session_ttl as i64));
    }
    let session = SessionRecord {
        id,
        user_id: user.id,
        scope,
        user_agent: client.user_agent.clone(),
        ip: client.ip.clone(),
        created_at: now,
        last_used_at: now,
        expires_at,
        revoked_at: None,
        client_id: match via {
            SessionVia::Client { client, .. } => Some(client),
            SessionVia::Password | SessionVia::Browser => None,
        },
        browser: via == SessionVia::Browser,
        parent_session: match via {
            SessionVia::Client {
                browser_session, ..
            } => Some(browser_session),
            SessionVia::Password | SessionVia::Browser => None,
        },
        auth_time: Some(match via {
            SessionVia::Client { auth_time, .. } => auth_time,
            SessionVia::Password | SessionVia::Browser => now,
        }),
        // Every sign-in is by password so far (RFC 8176 `pwd`).
        amr: Some(PASSWORD_AMR.to_owned()),
    };
    let opened = state
        .store
        .create_session(
            &session,
            &RefreshTokens::hash(&refresh),
            user.security_version,
            state.config.sessions.max_sessions_per_user,
        )
        .await?;
    match opened {
        SessionOpened::Stale => return Ok(None),
        SessionOpened::Opened { ended } => {
            if !ended.is_empty() {
                sessions_ended(state, &ended, now);
                audit::record(
                    state.store.as_ref(),
                    Event::new("sessions_over_limit_ended")
                        .user(user.id)
                        .session(session.id)
                        .detail("ended", ended.len())
                        .detail("limit", state.config.sessions.max_sessions_per_user),
                )
                .await;
            }
        }
    }
    let issued_at = crate::auth::tokens::issuing_time(user, now).await;
    // A session through a client names it in its tokens (RFC 9068).
    let grant = match via {
        SessionVia::Client { .. } => "authorization_code",
        SessionVia::Password | SessionVia::Browser => "password",
    };
    let issued = state.tokens.issue_through(
        user,
        &session.scope,
        session.id,
        session.client_id,
        issued_at,
        grant,
    )?;
    Ok(Some((
        TokenResponse {
            access_token: issued.token,
            token_type: "bearer",
            expires_in: issued.expires_in,
            scope: session.scope,
            refresh_token: Some(refresh),
            id_token: None,
        },
        session.id,
    )))
}

/// Tells this process's token gate that `ended` sessions (already ended
/// in the database, with the sessions opened from them) are over, and
/// wakes the outbox worker for the back-channel logouts the store queued
/// with them; other instances read the ends from the database.
pub fn sessions_ended(state: &Services, ended: &[Uuid], now: i64) {
    for &sid in ended {
        state.gate.revoke_session(sid, now);
    }
    if !ended.is_empty() {
        crate::auth::outbox::wake();
    }
}

/// Ends one session — and, for a browser session, every session opened
/// from it: its refresh token at once, its access tokens on their next
/// request. `false` if it was not live.
pub async fn end_session(state: &Services, sid: Uuid, now: i64) -> Result<bool> {
    let ended = state.store.revoke_session(sid, now).await?;
    // The id itself too: a session ended elsewhere a moment ago is over
    // here at once as well.
    state.gate.revoke_session(sid, now);
    sessions_ended(state, &ended, now);
    Ok(!ended.is_empty())
}

/// Ends every session of a user, storing `event` (if any) in the same
/// transaction.
pub async fn end_user_sessions(
    state: &Services,
    user: Uuid,
    now: i64,
    event: Option<Event>,
) -> Result<()> {
    let row = event.map(Event::into_record);
    let ended = state
        .store
        .revoke_user_sessions(user, now, row.as_ref())
        .await?;
    sessions_ended(state, &ended, now);
    if let Some(row) = &row {
        audit::log(row);
    }
    Ok(())
}
