//! `GET /token/revocations`: the revocation feed resource servers follow
//! (the logic is in [`crate::auth::revocations`]).

use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warden_guard::{Caller, RequireScope};

use crate::auth::revocations::MAX_WAIT_SECS;
use crate::auth::tokens::FeedEntry;
use crate::http::body::{self, FromQuery, QueryFields};
use crate::http::error::Result;
use crate::http::scopes::TokensIntrospect;
use crate::http::state::AppState;

/// The path, also named in the metadata (`warden_revocation_feed_endpoint`).
pub const PATH: &str = "/token/revocations";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(revocation_feed))
}

/// Query of `GET /token/revocations`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// The `cursor` of the previous answer; opaque. Missing or not
    /// understood: the whole state is answered.
    pub cursor: Option<String>,
    /// Seconds (0–55, default 0) to wait for a change when there is nothing
    /// new (a long-poll).
    pub wait: Option<u64>,
}

impl FromQuery for FeedQuery {
    fn read(query: &mut QueryFields<'_>) -> Self {
        let mut feed = Self {
            cursor: None,
            wait: None,
        };
        for value in query.values("cursor") {
            feed.cursor = Some(value.to_owned());
        }
        for value in query.values("wait") {
            match value.parse::<i64>() {
                Ok(n) if (0..=MAX_WAIT_SECS as i64).contains(&n) => feed.wait = Some(n as u64),
                Ok(n) if n < 0 => query.invalid(
                    "wait",
                    "Input should be greater than or equal to 0",
                    "greater_than_equal",
                ),
                Ok(_) => query.invalid(
                    "wait",
                    format!("Input should be less than or equal to {MAX_WAIT_SECS}"),
                    "less_than_equal",
                ),
                Err(_) => query.invalid("wait", "Input should be a valid integer", "int_parsing"),
            }
        }
        feed
    }
}

/// An ended session.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedSession {
    /// The session id: the `sid` claim of its tokens.
    pub sid: Uuid,
    /// When it ended, seconds since the Unix epoch.
    pub ended_at: i64,
}

/// A user whose tokens (some or all) fail: the user's latest state,
/// replacing an earlier entry for the same `sub`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedUser {
    /// The user id: the `sub` claim of their tokens.
    pub sub: Uuid,
    /// Tokens with an `iat` before this (seconds since the Unix epoch) fail.
    pub tokens_before: i64,
    /// Every token of the user fails.
    pub disabled: bool,
    /// Every token of the user fails (the user is gone).
    pub deleted: bool,
}

/// One answer of the revocation feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevocationFeedPage {
    /// Pass it back as `cursor` on the next poll; opaque.
    pub cursor: String,
    /// `true`: this is the whole state, replace yours; `false`: what changed
    /// since the cursor, merge it.
    pub full: bool,
    /// Access-token lifetime, seconds: an entry can be forgotten once
    /// `ended_at` (or `tokens_before`) + this + 60 is past, except a
    /// disabled user's.
    pub access_token_ttl: u64,
    pub sessions: Vec<RevokedSession>,
    pub users: Vec<RevokedUser>,
}

/// Revocation feed for resource servers
///
/// What the token checks of warden itself know, for services that verify
/// warden's tokens offline: ended sessions and users whose tokens died. A
/// token is revoked if its `sid` is listed in `sessions`, or its `sub` has a
/// `users` entry with `disabled` or `deleted`, or with `tokens_before` after
/// the token's `iat`.
///
/// Without a cursor (or with one not understood) the answer is the whole
/// state (`full: true`); with the previous answer's cursor, only what
/// changed since (`full: false`). With nothing new and `wait` > 0 the
/// answer waits until something changes or `wait` seconds pass (a
/// long-poll); a logout reaches a waiting poll within about 100 ms. Only
/// entries that can still affect an unexpired token are sent.
/// `warden-guard`'s `Remote` follows this feed. Requires scope
/// `tokens:introspect`.
#[utoipa::path(
    get,
    path = "/token/revocations",
    tag = "tokens",
    params(FeedQuery),
    security(("OAuth2PasswordBearer" = ["tokens:introspect"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The state (`full`) or what changed since the cursor", body = RevocationFeedPage),
        (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::routes::Detail),
        (status = 403, description = "Bearer token lacks scope tokens:introspect", body = crate::http::routes::Detail),
        (status = 422, description = "wait is not an integer from 0 to 55", body = crate::http::routes::ValidationErrorBody,
            example = json!({"detail": [{"loc": ["query", "wait"], "msg": "Input should be less than or equal to 55", "type": "less_than_equal"}]})),
    )
)]
pub async fn revocation_feed(
    State(state): State<AppState>,
    caller: RequireScope<TokensIntrospect, Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RevocationFeedPage>> {
    let query: FeedQuery = body::parse_query(raw.as_deref())?;
    crate::http::routes::token::client_still_registered(&state, &caller).await?;
    let ttl = state.config.tokens.access_token_ttl;
    let page = state
        .feed
        .poll(
            &state.gate,
            query.cursor.as_deref(),
            Duration::from_secs(query.wait.unwrap_or(0)),
            ttl,
        )
        .await;
    let (mut sessions, mut users) = (Vec::new(), Vec::new());
    for entry in page.entries {
        match entry {
            FeedEntry::Session { sid, ended_at } => sessions.push(RevokedSession { sid, ended_at }),
            FeedEntry::User {
                sub,
                tokens_before,
                disabled,
                deleted,
            } => users.push(RevokedUser {
                sub,
                tokens_before,
                disabled,
                deleted,
            }),
        }
    }
    Ok(Json(RevocationFeedPage {
        cursor: page.cursor,
        full: page.full,
        access_token_ttl: ttl,
        sessions,
        users,
    }))
}
