//! Sessions: opening one per login, `POST /logout`, and the current user's
//! session list.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warden_guard::{Claims, RequireScope};

use crate::auth::audit::{self, Event};
use crate::auth::sessions;
use crate::domain::profile::rfc3339;
use crate::http::body::{self, FromQuery, QueryFields};
use crate::http::error::Result;
use crate::http::routes::users::{encode_cursor, page_cursor, page_limit};
use crate::http::scopes::Me;
use crate::http::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(logout))
        .routes(routes!(list_sessions))
        .routes(routes!(delete_session))
}

/// One of your sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub created_at: String,
    pub last_used_at: String,
    /// When its refresh token expires (never after the session's absolute
    /// lifetime, `WARDEN_SESSION_MAX_LIFETIME` from `created_at`).
    pub expires_at: String,
    pub user_agent: Option<String>,
    /// A name for the device, from `user_agent`: "Firefox on Linux",
    /// "Safari on iPhone", "curl"; "Unknown device" without one. A display
    /// hint only: the client chooses its user agent.
    #[schema(example = "Firefox on Linux")]
    pub device: String,
    pub ip: Option<String>,
    /// Whether this is the session of the token making the request.
    pub current: bool,
}

/// Sign out
///
/// Ends the session of the calling token (`?all=true`: every session of
/// the user). The session's refresh token stops working at once, its
/// access tokens on their next request. The browser's refresh cookie, if
/// any, is cleared. Any valid access token may sign out, whatever its
/// scope.
#[utoipa::path(
    post,
    path = "/logout",
    tag = "sessions",
    params(("all" = Option<bool>, Query, description = "End every session of the user")),
    security(("OAuth2PasswordBearer" = []), ("bearerAuth" = [])),
    responses(
        (status = 204, description = "Logged out; the refresh cookie is cleared"),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    claims: Claims,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let all = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "all" && matches!(v.as_ref(), "true" | "1"));
    let now = crate::auth::tokens::now();
    let sid = Uuid::parse_str(&claims.sid).map_err(|_| warden_guard::AuthError::Invalid)?;
    let event = Event::new("logout")
        .user_str(&claims.sub)
        .session(sid)
        .detail("all", all);
    if all {
        // Every session, the current one included, and the event: one
        // transaction.
        let user = Uuid::parse_str(&claims.sub).map_err(|_| warden_guard::AuthError::Invalid)?;
        sessions::end_user_sessions(&state, user, now, Some(event)).await?;
    } else {
        sessions::end_session(&state, sid, now).await?;
        audit::record(state.store.as_ref(), event).await;
    }
    // The cookie (Path=/token) is not sent here, and its session has just
    // ended anyway; expiring it keeps the browser from holding a dead one.
    Ok(state
        .cookies
        .cleared(StatusCode::NO_CONTENT.into_response()))
}

const DEFAULT_LIMIT: u32 = 50;

/// Query of `GET /users/me/sessions`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionListQuery {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// From the previous page's `Link: <...>; rel="next"` URL; opaque.
    #[param(value_type = Option<String>)]
    pub cursor: Option<Uuid>,
}

impl FromQuery for SessionListQuery {
    fn read(query: &mut QueryFields<'_>) -> Self {
        let mut list = Self {
            limit: None,
            cursor: None,
        };
        for value in query.values("limit") {
            list.limit = page_limit(query, value).or(list.limit);
        }
        for value in query.values("cursor") {
            list.cursor = page_cursor(query, value).or(list.cursor);
        }
        list
    }
}

/// Parses `limit` and `cursor`: the page size and the last session id of
/// the previous page.
fn parse_page(raw: Option<&str>) -> Result<(u32, Option<Uuid>)> {
    let list: SessionListQuery = body::parse_query(raw)?;
    Ok((list.limit.unwrap_or(DEFAULT_LIMIT), list.cursor))
}

/// List your sessions
///
/// Your live sessions, newest first, a page at a time, each with a
/// `device` name read from its user agent ("Firefox on Linux"). The body stays a plain array (as in v1). When more sessions follow, the
/// response carries `Link: <URL>; rel="next"` (RFC 8288) with the next
/// page's URL; the last page has no `Link`. Keyset pagination by session
/// id, so a session opened while you page through never shifts a page.
#[utoipa::path(
    get,
    path = "/users/me/sessions",
    tag = "sessions",
    params(SessionListQuery),
    security(("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Sessions; `Link: <...>; rel=\"next\"` when more follow", body = Vec<SessionView>,
            headers(("link" = String, description = "The next page (RFC 8288), if any"))),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `me`", body = crate::http::routes::Detail),
        (status = 422, description = "Invalid `limit` or `cursor`", body = crate::http::routes::ValidationErrorBody),
    )
)]
pub async fn list_sessions(
    State(state): State<AppState>,
    claims: RequireScope<Me>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let (limit, before) = parse_page(raw.as_deref())?;
    let user = Uuid::parse_str(&claims.sub).map_err(|_| warden_guard::AuthError::Invalid)?;
    // One extra row tells whether another page follows.
    let mut sessions = state
        .store
        .user_sessions(user, crate::auth::tokens::now(), before, limit + 1)
        .await?;
    let next = if sessions.len() > limit as usize {
        sessions.truncate(limit as usize);
        sessions.last().map(|s| {
            format!(
                "<{}/users/me/sessions?limit={limit}&cursor={}>; rel=\"next\"",
                state.tokens.issuer(),
                encode_cursor(s.id)
            )
        })
    } else {
        None
    };
    let body = Json(
        sessions
            .into_iter()
            .map(|s| SessionView {
                current: s.id.to_string() == claims.sid,
                id: s.id,
                created_at: rfc3339(s.created_at),
                last_used_at: rfc3339(s.last_used_at),
                expires_at: rfc3339(s.expires_at),
                device: crate::http::device::describe(s.user_agent.as_deref().unwrap_or("")),
                user_agent: s.user_agent,
                ip: s.ip,
            })
            .collect::<Vec<_>>(),
    );
    let mut response = body.into_response();
    if let Some(link) = next.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// End one of your sessions
///
/// Signs out another device: its refresh token stops at once, its access
/// tokens on their next request. An id that is not a live session of yours
/// (another user's, ended, unknown) answers 404.
#[utoipa::path(
    delete,
    path = "/users/me/sessions/{id}",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    security(("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `me`", body = crate::http::routes::Detail),
        (status = 404, description = "No such live session of yours", body = crate::http::routes::Detail),
    )
)]
pub async fn delete_session(
    State(state): State<AppState>,
    claims: RequireScope<Me>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let now = crate::auth::tokens::now();
    let Ok(id) = Uuid::parse_str(&id) else {
        return Err(crate::http::error::Error::NotFound);
    };
    match state.store.session(id).await? {
        Some(s) if s.user_id.to_string() == claims.sub && s.is_live(now) => {
            sessions::end_session(&state, id, now).await?;
            audit::record(
                state.store.as_ref(),
                Event::new("session_ended")
                    .user_str(&claims.sub)
                    .session(id),
            )
            .await;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(crate::http::error::Error::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_1_to_200_sessions_after_a_valid_cursor() {
        assert_eq!(parse_page(None).unwrap(), (50, None));
        assert_eq!(parse_page(Some("limit=200")).unwrap(), (200, None));
        let id = Uuid::now_v7();
        let q = format!("limit=1&cursor={}", encode_cursor(id));
        assert_eq!(parse_page(Some(&q)).unwrap(), (1, Some(id)));
        for bad in [
            "limit=0",
            "limit=201",
            "limit=ten",
            "cursor=%00",
            "cursor=AAAA",
        ] {
            assert!(parse_page(Some(bad)).is_err(), "{bad}");
        }
    }
}
