//! The admin routes: `GET /users` and `GET/PATCH/DELETE /users/{id}`.
//!
//! Ownership: a user may read and edit their own profile through
//! `/users/{id}` just as through `/users/me`; reading anyone else needs
//! `users:read`, changing anyone else (including `roles` and `disabled`)
//! needs `users:write`, and nobody changes their own roles or disabled flag.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use warden_guard::{Claims, RequireScope};

use super::{Actor, patch_user};
use crate::domain::UserQuery;
use crate::domain::profile::UserView;
use crate::domain::roles::{SCOPE_ME, SCOPE_USERS_READ, SCOPE_USERS_WRITE};
use crate::http::body::{self, FromQuery, JsonObject, QueryFields};
use crate::http::error::{Error, FieldError, Result};
use crate::http::scopes::{UsersRead, UsersWrite};
use crate::http::state::AppState;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;
/// The longest `q` (characters): as long as the longest email.
const MAX_Q: usize = 254;

/// Query of `GET /users`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub cursor: Option<Uuid>,
    /// Case-insensitive prefix of the username or the email (at most 254
    /// characters).
    pub q: Option<String>,
}

impl FromQuery for ListQuery {
    fn read(query: &mut QueryFields<'_>) -> Self {
        let mut list = Self {
            limit: None,
            cursor: None,
            q: None,
        };
        for value in query.values("limit") {
            list.limit = page_limit(query, value).or(list.limit);
        }
        for value in query.values("cursor") {
            list.cursor = page_cursor(query, value).or(list.cursor);
        }
        for value in query.values("q") {
            // Emails are at most 254 bytes: a longer prefix matches nothing,
            // and an unbounded one is an unbounded LIKE pattern (SQLite
            // refuses one of 50 k bytes as "too complex").
            if value.chars().count() > MAX_Q {
                query.invalid(
                    "q",
                    format!("String should have at most {MAX_Q} characters"),
                    "string_too_long",
                );
            } else if !value.is_empty() {
                list.q = Some(value.to_owned());
            }
        }
        list
    }
}

/// A `limit` of `GET /users` and `GET /users/me/sessions`: 1–200.
pub(crate) fn page_limit(query: &mut QueryFields<'_>, value: &str) -> Option<u32> {
    match value.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Some(n),
        Ok(_) => {
            query.invalid(
                "limit",
                "Input should be between 1 and 200",
                "less_than_equal",
            );
            None
        }
        Err(_) => {
            query.invalid("limit", "Input should be a valid integer", "int_parsing");
            None
        }
    }
}

/// A `cursor` of a list route: the last id of the previous page.
pub(crate) fn page_cursor(query: &mut QueryFields<'_>, value: &str) -> Option<Uuid> {
    let id = decode_cursor(value);
    if id.is_none() {
        query.invalid("cursor", "Invalid cursor", "value_error");
    }
    id
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Cursors are opaque to clients: the last id of a page, base64url.
pub(crate) fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub(crate) fn decode_cursor(cursor: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    Uuid::from_slice(&bytes).ok()
}

fn parse_list_query(raw: Option<&str>) -> Result<UserQuery> {
    let list: ListQuery = body::parse_query(raw)?;
    Ok(UserQuery {
        after: list.cursor,
        limit: list.limit.unwrap_or(DEFAULT_LIMIT),
        prefix: list.q,
    })
}

fn parse_id(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| {
        Error::Validation(vec![FieldError::new(
            &["path", "id"],
            "Input should be a valid UUID",
            "uuid_parsing",
        )])
    })
}

/// Whether the token belongs to user `id` and may act on its own account.
fn is_self(claims: &Claims, id: Uuid) -> bool {
    Uuid::parse_str(&claims.sub).is_ok_and(|sub| sub == id) && claims.has_scope(SCOPE_ME)
}

/// List users
///
/// In creation order, a page at a time (keyset pagination: stable while
/// users are being added). `q` keeps users whose username or email starts
/// with it. Needs scope `users:read`.
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    params(ListQuery),
    security(("OAuth2PasswordBearer" = ["users:read"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `users:read`", body = crate::http::routes::Detail),
        (status = 422, description = "Invalid `limit`, `cursor` or `q`", body = crate::http::routes::ValidationErrorBody),
    )
)]
pub async fn list_users(
    State(state): State<AppState>,
    _auth: RequireScope<UsersRead>,
    RawQuery(raw): RawQuery,
) -> Result<Json<UserPage>> {
    let mut query = parse_list_query(raw.as_deref())?;
    let limit = query.limit as usize;
    // One extra row tells whether another page follows.
    query.limit += 1;
    let mut users = state.store.query_users(&query).await?;
    let next_cursor = if users.len() > limit {
        users.truncate(limit);
        users.last().map(|u| encode_cursor(u.id))
    } else {
        None
    };
    Ok(Json(UserPage {
        items: users.iter().map(UserView::from).collect(),
        next_cursor,
    }))
}

/// Read a user
///
/// Yourself (scope `me`), or anyone with scope `users:read`.
#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    security(("OAuth2PasswordBearer" = ["users:read"]), ("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Another user, and the token lacks `users:read`", body = crate::http::routes::Detail),
        (status = 404, description = "No such user", body = crate::http::routes::Detail),
        (status = 422, description = "The id is not a UUID", body = crate::http::routes::ValidationErrorBody),
    )
)]
pub async fn get_user(
    State(state): State<AppState>,
    claims: Claims,
    Path(id): Path<String>,
) -> Result<Json<UserView>> {
    let id = parse_id(&id)?;
    if !is_self(&claims, id) {
        claims.require_scope(SCOPE_USERS_READ)?;
    }
    let user = state.store.user_by_id(id).await?.ok_or(Error::NotFound)?;
    Ok(Json(UserView::from(&user)))
}

/// Change a user
///
/// Yourself: profile fields only. With `users:write`: anyone else's
/// profile, `roles` and `disabled` too; a role or disabled change ends
/// every earlier token and session of that user at once.
#[utoipa::path(
    patch,
    path = "/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    request_body = super::ProfileUpdate,
    security(("OAuth2PasswordBearer" = ["users:write"]), ("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The updated user", body = UserView),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Another user without `users:write`, or your own roles/disabled flag", body = crate::http::routes::Detail,
            examples(
                ("missing_scope" = (summary = "Another user, without users:write", value = json!({"detail": "Not enough permissions"}))),
                ("own_roles" = (summary = "Your own roles or disabled flag", value = json!({"detail": "You cannot change your own roles or disabled flag"}))),
            )),
        (status = 404, description = "No such user", body = crate::http::routes::Detail),
        (status = 409, description = "Username or email already registered, or the last admin would lose the role", body = crate::http::routes::Detail,
            examples(
                ("taken" = (summary = "Username or email taken", value = json!({"detail": "Username or email already registered"}))),
                ("last_admin" = (summary = "The last admin", value = json!({"detail": crate::http::error::LAST_ADMIN}))),
            )),
        (status = 413, description = "Body over 64 KiB", body = crate::http::routes::Detail),
        (status = 415, description = "Not JSON", body = crate::http::routes::Detail),
        (status = 422, description = "Invalid input, or the id is not a UUID", body = crate::http::routes::ValidationErrorBody,
            examples(
                ("invalid_email" = (summary = "A field breaks its rule", value = json!({"detail": [{"loc": ["body", "email"], "msg": "value is not a valid email address: it must contain exactly one @", "type": "value_error"}]}))),
                ("invalid_id" = (summary = "The id is not a UUID", value = json!({"detail": [{"loc": ["path", "id"], "msg": "Input should be a valid UUID", "type": "uuid_parsing"}]}))),
            )),
    )
)]
pub async fn update_user(
    State(state): State<AppState>,
    claims: Claims,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<UserView>> {
    let id = parse_id(&id)?;
    let actor = if is_self(&claims, id) {
        Actor::Itself
    } else {
        claims.require_scope(SCOPE_USERS_WRITE)?;
        if Uuid::parse_str(&claims.sub).is_ok_and(|sub| sub == id) {
            // An admin token without `me` is still the admin's own account.
            Actor::Itself
        } else {
            Actor::Admin
        }
    };
    let updated = patch_user(&state, id, &body, actor).await?;
    Ok(Json(UserView::from(&updated)))
}

/// Delete a user
///
/// Needs scope `users:write`. Every token and session of the user fails at
/// once; the last admin cannot be deleted (409).
#[utoipa::path(
    delete,
    path = "/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    security(("OAuth2PasswordBearer" = ["users:write"]), ("bearerAuth" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `users:write`", body = crate::http::routes::Detail),
        (status = 404, description = "No such user", body = crate::http::routes::Detail),
        (status = 409, description = "The last admin account", body = crate::http::routes::Detail,
            example = json!({"detail": crate::http::error::LAST_ADMIN})),
        (status = 422, description = "The id is not a UUID", body = crate::http::routes::ValidationErrorBody),
    )
)]
pub async fn delete_user(
    State(state): State<AppState>,
    auth: RequireScope<UsersWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = parse_id(&id)?;
    crate::auth::accounts::delete(&state, id, &auth.sub).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)), Some(id));
        assert_eq!(decode_cursor("not a cursor"), None);
        assert_eq!(decode_cursor("AAAA"), None);
    }

    #[test]
    fn limit_must_be_1_to_200() {
        assert_eq!(parse_list_query(Some("limit=200")).unwrap().limit, 200);
        assert_eq!(parse_list_query(None).unwrap().limit, 50);
        assert!(parse_list_query(Some("limit=0")).is_err());
        assert!(parse_list_query(Some("limit=201")).is_err());
        assert!(parse_list_query(Some("limit=ten")).is_err());
    }
}
