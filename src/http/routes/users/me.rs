//! The current user's own routes: `/users/me` and `/users/me/password`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use warden_guard::RequireScope;

use super::{
    Actor, DeleteConfirmation, PasswordChange, ProfileUpdate, check_password, patch_user,
    token_user,
};
use crate::auth::accounts;
use crate::auth::password_check::Purpose;
use crate::auth::sessions;
use crate::auth::tokens;
use crate::domain::profile::UserView;
use crate::http::body::{self, JsonObject};
use crate::http::error::{Error, Result};
use crate::http::routes::{ClientMeta, TokenResponse};
use crate::http::scopes::Me;
use crate::http::state::AppState;

/// 409 detail: the password was changed, but the account changed again
/// before the fresh session could be opened.
const CHANGED_AFTER: &str =
    "The password was changed, but the account changed again at the same time; sign in again";

/// Read your own account
///
/// The user the bearer token belongs to. Needs scope `me`; this is the
/// tutorial's `GET /users/me`.
#[utoipa::path(
    get,
    path = "/users/me",
    tag = "users",
    security(("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The current user", body = UserView),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `me`", body = crate::http::routes::Detail),
    )
)]
pub async fn get_current_user(
    State(state): State<AppState>,
    claims: RequireScope<Me>,
) -> Result<Response> {
    let user = token_user(&state, &claims).await?;
    // The same bytes `Json(UserView::from(..))` would write, serialized
    // once when the user was cached.
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        user.view_json(),
    )
        .into_response())
}

/// Change your own profile
///
/// Changes your `username`, `email` or `full_name`; fields left out stay
/// as they are. Roles and the disabled flag cannot be changed here (403),
/// nor the password (`PUT /users/me/password`).
#[utoipa::path(
    patch,
    path = "/users/me",
    tag = "users",
    request_body = ProfileUpdate,
    security(("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Updated user", body = UserView),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `me`, or the body tries to change roles or disabled", body = crate::http::routes::Detail,
            examples(
                ("missing_scope" = (summary = "The token lacks scope me", value = json!({"detail": "Not enough permissions"}))),
                ("own_roles" = (summary = "The body changes roles or disabled", value = json!({"detail": "You cannot change your own roles or disabled flag"}))),
            )),
        (status = 409, description = "Username or email already registered", body = crate::http::routes::Detail),
        (status = 413, description = "Body over 64 KiB", body = crate::http::routes::Detail),
        (status = 415, description = "Not JSON", body = crate::http::routes::Detail),
        (status = 422, description = "Invalid input", body = crate::http::routes::ValidationErrorBody,
            example = json!({"detail": [{"loc": ["body", "email"], "msg": "value is not a valid email address: it must contain exactly one @", "type": "value_error"}]})),
    )
)]
pub async fn update_current_user(
    State(state): State<AppState>,
    claims: RequireScope<Me>,
    JsonObject(body): JsonObject,
) -> Result<Json<UserView>> {
    let user = token_user(&state, &claims).await?;
    let updated = patch_user(&state, user.id, &body, Actor::Itself).await?;
    Ok(Json(UserView::from(&updated)))
}

/// Delete your own account
///
/// Confirm with your password (`{"password": "..."}`). Every session and
/// token of the account ends; 204. The last admin cannot delete itself
/// (409).
#[utoipa::path(
    delete,
    path = "/users/me",
    tag = "users",
    request_body = DeleteConfirmation,
    security(("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Incorrect password", body = crate::http::routes::Detail,
            example = json!({"detail": "Incorrect password"})),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 409, description = "The last admin account", body = crate::http::routes::Detail,
            example = json!({"detail": crate::http::error::LAST_ADMIN})),
        (status = 413, description = "Body over 64 KiB", body = crate::http::routes::Detail),
        (status = 415, description = "Not JSON", body = crate::http::routes::Detail),
        (status = 422, description = "Invalid input", body = crate::http::routes::ValidationErrorBody,
            example = json!({"detail": [{"loc": ["body", "password"], "msg": "Field required", "type": "missing"}]})),
        (status = 429, description = "Too many failed password checks; see Retry-After", body = crate::http::routes::Detail),
        (status = 503, description = "Password hashing queue full; see Retry-After", body = crate::http::routes::Detail),
    )
)]
pub async fn delete_current_user(
    State(state): State<AppState>,
    client: ClientMeta,
    claims: RequireScope<Me>,
    headers: axum::http::HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<StatusCode> {
    let user = token_user(&state, &claims).await?;
    let confirmation: DeleteConfirmation = body::parse(&body, ())?;
    check_password(
        &state,
        &user,
        &confirmation.password,
        &client,
        &headers,
        Purpose::AccountDeletion,
    )
    .await?;
    accounts::delete(&state, user.id, "self").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change your password
///
/// Takes `{"current_password", "new_password"}`. Every earlier token and
/// session of the account stops working, and a fresh token pair is
/// returned (the shape of `POST /token`). With `?cookie=true` the fresh
/// refresh token replaces the browser's refresh cookie instead of
/// appearing in the body (the old cookie's session has just ended).
#[utoipa::path(
    put,
    path = "/users/me/password",
    tag = "users",
    params(("cookie" = Option<bool>, Query, description = "Browser cookie mode, as for POST /token")),
    request_body = PasswordChange,
    security(("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Changed; a fresh token", body = TokenResponse),
        (status = 400, description = "Incorrect current password, or cookie mode from another origin", body = crate::http::routes::Detail,
            examples(
                ("wrong_password" = (summary = "Wrong current password", value = json!({"detail": "Incorrect password"}))),
                ("cookie_origin" = (summary = "Cookie mode from a foreign page", value = json!({"detail": crate::http::cookies::COOKIE_MODE_ORIGIN_REFUSED}))),
            )),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 413, description = "Body over 64 KiB", body = crate::http::routes::Detail),
        (status = 415, description = "Not JSON", body = crate::http::routes::Detail),
        (status = 422, description = "New password refused", body = crate::http::routes::ValidationErrorBody,
            example = json!({"detail": [{"loc": ["body", "new_password"], "msg": "This password is too common; choose a less guessable one", "type": "value_error"}]})),
        (status = 429, description = "Too many failed password checks; see Retry-After", body = crate::http::routes::Detail),
        (status = 503, description = "Password hashing queue full; see Retry-After", body = crate::http::routes::Detail),
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    client: ClientMeta,
    claims: RequireScope<Me>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response> {
    let cookie_mode = crate::http::cookies::wants_cookie(query.as_deref());
    if cookie_mode && !state.cookies.may_set_cookie(&headers) {
        return Err(Error::BadRequest(
            crate::http::cookies::COOKIE_MODE_ORIGIN_REFUSED.to_owned(),
        ));
    }
    let user = token_user(&state, &claims).await?;
    let change: PasswordChange = body::parse(&body, (user.username.as_str(), user.email.as_str()))?;
    check_password(
        &state,
        &user,
        &change.current_password,
        &client,
        &headers,
        Purpose::PasswordChange,
    )
    .await?;
    let user = accounts::change_password(&state, &user, &change.new_password, client.ip.as_deref())
        .await?;
    let now = tokens::now();
    // The caller continues in a fresh session.
    let Some((tokens, _)) =
        sessions::open_session(&state, &user, claims.scope.clone(), &client, now).await?
    else {
        return Err(Error::StateConflict(CHANGED_AFTER.to_owned()));
    };
    Ok(state.cookies.respond(tokens, cookie_mode))
}
