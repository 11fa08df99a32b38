//! `/users`: registration, the current user's own routes (`me`), and the
//! admin routes (`admin`) with their ownership rules.

mod admin;
mod me;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warden_guard::{AuthError, Claims};

use crate::audit::{self, Event};
use crate::body::{Fields, JsonObject};
use crate::config::Registration;
use crate::error::{Error, Result};
use crate::model::{self, Email, UserView, Username};
use crate::passwords::Password;
use crate::roles::ROLE_USER;
use crate::routes::ClientMeta;
use crate::state::AppState;
use crate::storage::{UserChanges, UserRecord};
use crate::tokens;

// Globs, so utoipa's generated `__path_*` items come along for `routes!`.
pub use admin::*;
pub use me::*;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(
            get_current_user,
            update_current_user,
            delete_current_user
        ))
        .routes(routes!(change_password))
        .routes(routes!(get_user, update_user, delete_user))
}

/// `POST /users` body.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body; handlers read it field by field
pub struct RegisterRequest {
    /// 3–32 characters of `[A-Za-z0-9_.-]`, unique case-insensitively.
    #[schema(
        example = "alice",
        min_length = 3,
        max_length = 32,
        pattern = "^[A-Za-z0-9_.-]{3,32}$"
    )]
    username: String,
    /// Unique case-insensitively; at most 254 bytes.
    #[schema(example = "alice@example.com", format = "email", max_length = 254)]
    email: String,
    /// 8–1024 characters; not a common password, not the username or email.
    #[schema(
        example = "correct horse battery staple",
        min_length = 8,
        max_length = 1024
    )]
    password: String,
    #[schema(max_length = 128)]
    full_name: Option<String>,
}

/// `PATCH /users/me` and `PATCH /users/{id}` body: any subset of the
/// fields; `roles` and `disabled` only with `users:write`, never on yourself.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ProfileUpdate {
    username: Option<String>,
    email: Option<String>,
    full_name: Option<String>,
    roles: Option<Vec<String>>,
    disabled: Option<bool>,
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

/// The record of the token's user, for a token that passed the gate. A
/// token whose user vanished between the gate and here is simply invalid.
pub(crate) async fn token_user(
    state: &AppState,
    claims: &Claims,
) -> Result<Arc<crate::cache::CachedUser>> {
    let id = Uuid::parse_str(&claims.sub).map_err(|_| AuthError::Invalid)?;
    match state.users.get(state.store.as_ref(), id).await? {
        Some(u) if !u.disabled => Ok(u),
        _ => Err(AuthError::Invalid.into()),
    }
}

/// The current password of a signed-in user, checked through the
/// throttled, audited path every password check takes; a wrong one is 400
/// `Incorrect password`.
pub(crate) async fn check_password(
    state: &AppState,
    user: &UserRecord,
    password: &str,
    client: &ClientMeta,
    headers: &axum::http::HeaderMap,
    purpose: crate::password_check::Purpose,
) -> Result<()> {
    let check = crate::password_check::PasswordCheck {
        login: &user.username,
        user: Some(user),
        password,
        address: client.ip.as_deref().unwrap_or("unknown"),
        known_device: state.devices.known(headers, user.id, tokens::now()),
        purpose,
    };
    if crate::password_check::check(state, check).await? {
        Ok(())
    } else {
        Err(Error::BadRequest("Incorrect password".to_owned()))
    }
}

/// Who is changing a user, which decides the fields they may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Actor {
    /// The user themself: own profile fields only, never own roles or
    /// disabled flag (not even with `users:write`).
    Itself,
    /// Someone else, with `users:write`: also `roles` and `disabled`.
    Admin,
}

/// Validates a PATCH body and applies it to the user `target`.
pub(crate) async fn patch_user(
    state: &AppState,
    target: Uuid,
    body: &Map<String, Value>,
    actor: Actor,
) -> Result<UserRecord> {
    let touches_security = body.contains_key("roles") || body.contains_key("disabled");
    if touches_security && actor == Actor::Itself {
        return Err(Error::Forbidden(
            "You cannot change your own roles or disabled flag".to_owned(),
        ));
    }
    let mut f = Fields::new(body);
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
    let roles = f.optional_str_list("roles").and_then(|roles| {
        let mut unique: Vec<String> = Vec::new();
        for r in roles {
            if !unique.iter().any(|u| u == r) {
                unique.push(r.to_owned());
            }
        }
        if unique.is_empty() {
            f.invalid("roles", "A user needs at least one role".to_owned());
            return None;
        }
        match state.config.roles.check_known(&unique) {
            Ok(()) => Some(unique),
            Err(m) => {
                f.invalid("roles", m);
                None
            }
        }
    });
    let disabled = f.optional_bool("disabled");
    f.finish()?;
    let changes = UserChanges {
        username: username.map(Username::into_inner),
        email: email.map(Email::into_inner),
        full_name,
        roles,
        disabled,
    };
    let now = tokens::now();
    // A security change ends every session of the user and is audited in
    // the same transaction.
    let event = changes.is_security_change().then(|| {
        let mut event = Event::new("user_security_changed").user(target);
        if let Some(roles) = &changes.roles {
            event = event.detail("roles", roles.clone());
        }
        if let Some(disabled) = changes.disabled {
            event = event.detail("disabled", disabled);
        }
        event.into_record()
    });
    let update = state
        .store
        .update_user(
            target,
            &changes,
            tokens::next_valid_after(now),
            now,
            event.as_ref(),
        )
        .await?
        .ok_or(Error::NotFound)?;
    let updated = update.user;
    state.users.put(&updated);
    if let Some(event) = &event {
        // Every earlier token of the user fails from this moment.
        state.gate.set(&updated);
        crate::routes::sessions::sessions_ended(state, &update.ended_sessions, now);
        audit::log(event);
    }
    Ok(updated)
}

/// The fields of a registration, validated.
pub struct NewUser<'a> {
    pub username: Username,
    pub email: Email,
    pub password: &'a str,
    pub full_name: Option<String>,
}

/// Validates a `POST /users` body, collecting every problem into one 422.
/// Pure, so the request fuzzer (`fuzz/`) drives it directly.
pub fn parse_registration(body: &Map<String, Value>) -> Result<NewUser<'_>> {
    let mut f = Fields::new(body);
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
    Ok(NewUser {
        username,
        email,
        password,
        full_name,
    })
}

/// Register a new account.
///
/// Open to anyone while registration is open; the new user gets the
/// `user` role. At most `WARDEN_THROTTLE_PER_ADDRESS` registrations per
/// address and window.
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
        (status = 429, description = "Too many registrations from this address; see Retry-After", body = crate::routes::Detail),
        (status = 503, description = "Password hashing queue full; see Retry-After", body = crate::routes::Detail),
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    client: crate::routes::ClientMeta,
    JsonObject(body): JsonObject,
) -> Result<Response> {
    if state.config.registration == Registration::Closed {
        return Err(Error::Forbidden("Registration is closed".to_owned()));
    }
    let address = client.ip.as_deref().unwrap_or("unknown");
    if let Err(wait) = state.throttle.begin_registration(address, tokens::now()) {
        audit::record(
            state.store.as_ref(),
            Event::new("registration_throttled")
                .ip(Some(address))
                .detail("retry_after", wait),
        )
        .await;
        return Err(Error::Throttled(wait, "registrations from this address"));
    }
    let NewUser {
        username,
        email,
        password,
        full_name,
    } = parse_registration(&body)?;

    let password_hash = state.hasher.hash(Password::new(password)).await?;
    let now = tokens::now();
    let user = UserRecord::new(
        username.into_inner(),
        email.into_inner(),
        full_name,
        password_hash,
        vec![ROLE_USER.to_owned()],
        now,
    );
    state.store.insert_user(&user).await?;
    state.gate.set(&user);
    state.users.put(&user);
    audit::record(
        state.store.as_ref(),
        Event::new("user_registered")
            .user(user.id)
            .ip(client.ip.as_deref()),
    )
    .await;
    let location = HeaderValue::from_str(&format!("/users/{}", user.id))
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(UserView::from(&user)),
    )
        .into_response())
}
