//! `/users`: registration and the self-service routes of the current user.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warden_guard::Claims;

use crate::body::{Fields, JsonObject};
use crate::config::Registration;
use crate::error::{Error, Result};
use crate::model::{self, Email, UserView, Username};
use crate::passwords::Password;
use crate::roles::{ROLE_USER, SCOPE_ME};
use crate::routes::TokenResponse;
use crate::state::AppState;
use crate::storage::{ProfileChanges, UserRecord};
use crate::tokens;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(
            get_current_user,
            update_current_user,
            delete_current_user
        ))
        .routes(routes!(change_password))
}

/// `POST /users` body.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body; handlers read it field by field
pub struct RegisterRequest {
    /// 3–32 characters of `[A-Za-z0-9_.-]`, unique case-insensitively.
    #[schema(example = "alice")]
    username: String,
    #[schema(example = "alice@example.com")]
    email: String,
    /// 8–1024 characters; not a common password, not the username or email.
    #[schema(example = "correct horse battery staple")]
    password: String,
    full_name: Option<String>,
}

/// `PATCH /users/me` body: any subset of the fields.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ProfileUpdate {
    username: Option<String>,
    email: Option<String>,
    full_name: Option<String>,
}

/// `PUT /users/me/password` body.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `DELETE /users/me` body.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct DeleteConfirmation {
    password: String,
}

/// The current user's record, for a token that passed the gate. A token
/// whose user vanished between the gate and here is simply invalid.
async fn current_user(state: &AppState, claims: &Claims) -> Result<UserRecord> {
    claims.require_scope(SCOPE_ME)?;
    let id = Uuid::parse_str(&claims.sub).map_err(|_| warden_guard::AuthError::Invalid)?;
    match state.store.user_by_id(id).await? {
        Some(u) if !u.disabled => Ok(u),
        _ => Err(warden_guard::AuthError::Invalid.into()),
    }
}

async fn check_password(state: &AppState, user: &UserRecord, password: &str) -> Result<()> {
    let ok = state
        .hasher
        .verify(Password::new(password), Some(user.password_hash.clone()))
        .await?;
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest("Incorrect password".to_owned()))
    }
}

/// Register a new account.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = UserView),
        (status = 403, description = "Registration is closed", body = crate::routes::Detail),
        (status = 409, description = "Username or email already registered", body = crate::routes::Detail),
        (status = 413, description = "Body over 64 KiB", body = crate::routes::Detail),
        (status = 415, description = "Not JSON", body = crate::routes::Detail),
        (status = 422, description = "Invalid input", body = crate::routes::ValidationErrorBody),
        (status = 503, description = "Password hashing queue full; see Retry-After", body = crate::routes::Detail),
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response> {
    if state.config.registration == Registration::Closed {
        return Err(Error::Forbidden("Registration is closed".to_owned()));
    }
    let mut f = Fields::new(&body);
    let username = f.required_str("username");
    let email = f.required_str("email");
    let password = f.required_str("password");
    let full_name = f.nullable_str("full_name").flatten();

    let username = username.and_then(|u| {
        Username::parse(u)
            .map_err(|m| f.invalid("username", m))
            .ok()
    });
    let email = email.and_then(|e| Email::parse(e).map_err(|m| f.invalid("email", m)).ok());
    let full_name = full_name.and_then(|n| {
        model::parse_full_name(n)
            .map_err(|m| f.invalid("full_name", m))
            .ok()
    });
    if let Some(p) = password {
        let (u, e) = (
            username.as_ref().map_or("", |u| u.as_str()),
            email.as_ref().map_or("", |e| e.as_str()),
        );
        if let Err(m) = model::check_new_password(p, u, e) {
            f.invalid("password", m);
        }
    }
    f.finish()?;
    let (Some(username), Some(email), Some(password)) = (username, email, password) else {
        return Err(Error::Internal("validated fields missing".to_owned()));
    };

    let password_hash = state.hasher.hash(Password::new(password)).await?;
    let now = tokens::now();
    let user = UserRecord {
        id: Uuid::now_v7(),
        username: username.into_inner(),
        email: email.into_inner(),
        full_name,
        password_hash,
        roles: vec![ROLE_USER.to_owned()],
        disabled: false,
        tokens_valid_after: 0,
        created_at: now,
        updated_at: now,
    };
    state.store.insert_user(&user).await?;
    state.gate.set(&user);
    tracing::info!(event = "user_registered", user_id = %user.id, "user registered");
    let location = HeaderValue::from_str(&format!("/users/{}", user.id))
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(UserView::from(&user)),
    )
        .into_response())
}

/// The current user.
#[utoipa::path(
    get,
    path = "/users/me",
    tag = "users",
    security(("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The current user", body = UserView),
        (status = 401, description = "Missing, invalid or expired token", body = crate::routes::Detail),
        (status = 403, description = "Token lacks scope `me`", body = crate::routes::Detail),
    )
)]
pub async fn get_current_user(
    State(state): State<AppState>,
    claims: Claims,
) -> Result<Json<UserView>> {
    let user = current_user(&state, &claims).await?;
    Ok(Json(UserView::from(&user)))
}

/// Change your own username, email or full name. Roles and the disabled
/// flag cannot be changed here.
#[utoipa::path(
    patch,
    path = "/users/me",
    tag = "users",
    request_body = ProfileUpdate,
    security(("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Updated user", body = UserView),
        (status = 401, description = "Missing, invalid or expired token", body = crate::routes::Detail),
        (status = 403, description = "Token lacks scope `me`, or the body tries to change roles or disabled", body = crate::routes::Detail),
        (status = 409, description = "Username or email already registered", body = crate::routes::Detail),
        (status = 422, description = "Invalid input", body = crate::routes::ValidationErrorBody),
    )
)]
pub async fn update_current_user(
    State(state): State<AppState>,
    claims: Claims,
    JsonObject(body): JsonObject,
) -> Result<Json<UserView>> {
    let user = current_user(&state, &claims).await?;
    if body.contains_key("roles") || body.contains_key("disabled") {
        return Err(Error::Forbidden(
            "You cannot change your own roles or disabled flag".to_owned(),
        ));
    }
    let mut f = Fields::new(&body);
    if body.contains_key("password") {
        f.invalid(
            "password",
            "Change the password with PUT /users/me/password".to_owned(),
        );
    }
    let username = f.optional_str("username").and_then(|u| {
        Username::parse(u)
            .map_err(|m| f.invalid("username", m))
            .ok()
    });
    let email = f
        .optional_str("email")
        .and_then(|e| Email::parse(e).map_err(|m| f.invalid("email", m)).ok());
    let full_name = f.nullable_str("full_name").and_then(|n| match n {
        None => Some(None),
        Some(n) => model::parse_full_name(n)
            .map_err(|m| f.invalid("full_name", m))
            .ok()
            .map(Some),
    });
    f.finish()?;
    let changes = ProfileChanges {
        username: username.map(Username::into_inner),
        email: email.map(Email::into_inner),
        full_name,
    };
    let updated = state
        .store
        .update_profile(user.id, &changes, tokens::now())
        .await?
        .ok_or(warden_guard::AuthError::Invalid)?;
    Ok(Json(UserView::from(&updated)))
}

/// Delete your own account; confirm with your password. All sessions end.
#[utoipa::path(
    delete,
    path = "/users/me",
    tag = "users",
    request_body = DeleteConfirmation,
    security(("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Incorrect password", body = crate::routes::Detail),
        (status = 401, description = "Missing, invalid or expired token", body = crate::routes::Detail),
        (status = 422, description = "Invalid input", body = crate::routes::ValidationErrorBody),
    )
)]
pub async fn delete_current_user(
    State(state): State<AppState>,
    claims: Claims,
    JsonObject(body): JsonObject,
) -> Result<StatusCode> {
    let user = current_user(&state, &claims).await?;
    let mut f = Fields::new(&body);
    let password = f.required_str("password");
    f.finish()?;
    check_password(&state, &user, password.unwrap_or_default()).await?;
    state.store.delete_user(user.id).await?;
    state.gate.remove(user.id);
    tracing::info!(event = "user_deleted", user_id = %user.id, "user deleted their account");
    Ok(StatusCode::NO_CONTENT)
}

/// Change your password. Every earlier token of the account stops working;
/// a fresh token is returned.
#[utoipa::path(
    put,
    path = "/users/me/password",
    tag = "users",
    request_body = PasswordChange,
    security(("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Changed; a fresh token", body = TokenResponse),
        (status = 400, description = "Incorrect current password", body = crate::routes::Detail),
        (status = 401, description = "Missing, invalid or expired token", body = crate::routes::Detail),
        (status = 422, description = "New password refused", body = crate::routes::ValidationErrorBody),
        (status = 503, description = "Password hashing queue full; see Retry-After", body = crate::routes::Detail),
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    claims: Claims,
    JsonObject(body): JsonObject,
) -> Result<TokenResponse> {
    let mut user = current_user(&state, &claims).await?;
    let mut f = Fields::new(&body);
    let current = f.required_str("current_password");
    let new = f.required_str("new_password");
    if let Some(new) = new
        && let Err(m) = model::check_new_password(new, &user.username, &user.email)
    {
        f.invalid("new_password", m);
    }
    f.finish()?;
    let (Some(current), Some(new)) = (current, new) else {
        return Err(Error::Internal("validated fields missing".to_owned()));
    };
    check_password(&state, &user, current).await?;
    let hash = state.hasher.hash(Password::new(new)).await?;
    let now = tokens::now();
    let valid_after = tokens::next_valid_after(now);
    if !state
        .store
        .set_password(user.id, &hash, valid_after, now)
        .await?
    {
        return Err(warden_guard::AuthError::Invalid.into());
    }
    user.password_hash = hash;
    user.tokens_valid_after = valid_after;
    user.updated_at = now;
    state.gate.set(&user);
    tracing::info!(event = "password_changed", user_id = %user.id, "password changed");
    let scope = claims.scope.clone();
    let issued = state.tokens.issue(&user, &scope, Uuid::now_v7(), now)?;
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "bearer",
        expires_in: issued.expires_in,
        scope,
    })
}
