//! `/users`: registration, the current user's own routes (`me`), and the
//! admin routes (`admin`) with their ownership rules.

mod admin;
mod me;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warden_guard::{AuthError, Claims};

pub(crate) use crate::auth::accounts::{self, Actor, NewUser};
use crate::auth::tokens;
use crate::domain::profile::{self, Email, UserView, Username};
use crate::domain::roles::Roles;
use crate::domain::{UserChanges, UserRecord};
use crate::http::body::{self, Fields, FromJson, JsonObject};
use crate::http::error::{Error, Result};
use crate::http::routes::ClientMeta;
use crate::http::state::AppState;

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
// No `Debug`: it holds a password.
#[derive(ToSchema)]
pub struct RegisterRequest {
    /// 3–32 characters of `[A-Za-z0-9_.-]`, unique case-insensitively.
    #[schema(
        value_type = String,
        example = "alice",
        min_length = 3,
        max_length = 32,
        pattern = "^[A-Za-z0-9_.-]{3,32}$"
    )]
    pub username: Username,
    /// Unique case-insensitively; at most 254 bytes.
    #[schema(
        value_type = String,
        example = "alice@example.com",
        format = "email",
        max_length = 254
    )]
    pub email: Email,
    /// 8–1024 characters; not a common password, not the username or email.
    #[schema(
        example = "correct horse battery staple",
        min_length = 8,
        max_length = 1024
    )]
    pub password: String,
    #[schema(max_length = 128)]
    pub full_name: Option<String>,
}

impl FromJson for RegisterRequest {
    type Context<'c> = ();

    fn read(f: &mut Fields<'_>, (): ()) -> Option<Self> {
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
            profile::parse_full_name(n)
                .map_err(|m| f.invalid("full_name", m))
                .ok()
        });
        if let Some(p) = password {
            let (u, e) = (
                username.as_ref().map_or("", |u| u.as_str()),
                email.as_ref().map_or("", |e| e.as_str()),
            );
            if let Err(m) = profile::check_new_password(p, u, e) {
                f.invalid("password", m);
            }
        }
        Some(Self {
            username: username?,
            email: email?,
            password: password?.to_owned(),
            full_name,
        })
    }
}

/// `PATCH /users/me` and `PATCH /users/{id}` body: any subset of the
/// fields; `roles` and `disabled` only with `users:write`, never on yourself.
#[derive(ToSchema)]
// Optional but not nullable: only `full_name` may be `null`.
pub struct ProfileUpdate {
    #[schema(value_type = String, required = false)]
    pub username: Option<Username>,
    #[schema(value_type = String, required = false)]
    pub email: Option<Email>,
    /// `null` clears the name.
    // Absent: `None`; `null`: `Some(None)`.
    #[schema(value_type = Option<String>)]
    pub full_name: Option<Option<String>>,
    /// At least one, each a configured role; duplicates are dropped.
    #[schema(value_type = Vec<String>, required = false)]
    pub roles: Option<Vec<String>>,
    #[schema(value_type = bool, required = false)]
    pub disabled: Option<bool>,
}

/// Every field of a PATCH is optional, so a malformed one is simply not
/// set (its problem is recorded) and the update is always read: the
/// handler's own checks then join the same 422.
impl FromJson for ProfileUpdate {
    /// The configured roles, which `roles` must be among.
    type Context<'c> = &'c Roles;

    fn read(f: &mut Fields<'_>, roles_known: &Roles) -> Option<Self> {
        if f.sent("password") {
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
            Some(n) => profile::parse_full_name(n)
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
            match roles_known.check_known(&unique) {
                Ok(()) => Some(unique),
                Err(m) => {
                    f.invalid("roles", m);
                    None
                }
            }
        });
        let disabled = f.optional_bool("disabled");
        Some(Self {
            username,
            email,
            full_name,
            roles,
            disabled,
        })
    }
}

/// `PUT /users/me/password` body.
// No `Debug`: it holds a password.
#[derive(ToSchema)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

impl FromJson for PasswordChange {
    /// The user's username and email, which the new password must not be.
    type Context<'c> = (&'c str, &'c str);

    fn read(f: &mut Fields<'_>, (username, email): (&str, &str)) -> Option<Self> {
        let current = f.required_str("current_password");
        let new = f.required_str("new_password");
        if let Some(new) = new
            && let Err(m) = profile::check_new_password(new, username, email)
        {
            f.invalid("new_password", m);
        }
        Some(Self {
            current_password: current?.to_owned(),
            new_password: new?.to_owned(),
        })
    }
}

/// `DELETE /users/me` body.
// No `Debug`: it holds a password.
#[derive(ToSchema)]
pub struct DeleteConfirmation {
    pub password: String,
}

impl FromJson for DeleteConfirmation {
    type Context<'c> = ();

    fn read(f: &mut Fields<'_>, (): ()) -> Option<Self> {
        let password = f.required_str("password");
        Some(Self {
            password: password?.to_owned(),
        })
    }
}

/// The record of the token's user, for a token that passed the gate. A
/// token whose user vanished between the gate and here is simply invalid.
pub(crate) async fn token_user(
    state: &AppState,
    claims: &Claims,
) -> Result<Arc<crate::auth::cache::CachedUser>> {
    let id = Uuid::parse_str(&claims.sub).map_err(|_| AuthError::Invalid)?;
    match state.users.get(state.store.as_ref(), id).await? {
        Some(u) if !u.disabled => Ok(u),
        _ => Err(AuthError::Invalid.into()),
    }
}

/// The current password of a signed-in user, checked by
/// [`accounts::check_password`] with the request's address and device
/// cookie.
pub(crate) async fn check_password(
    state: &AppState,
    user: &UserRecord,
    password: &str,
    client: &ClientMeta,
    headers: &axum::http::HeaderMap,
    purpose: crate::auth::password_check::Purpose,
) -> Result<()> {
    let known_device =
        crate::http::cookies::known_device(&state.devices, headers, user.id, tokens::now());
    let address = client.ip.as_deref().unwrap_or("unknown");
    accounts::check_password(state, user, password, address, known_device, purpose).await?;
    Ok(())
}

/// Validates a PATCH body and applies it to the user `target`.
pub(crate) async fn patch_user(
    state: &AppState,
    target: Uuid,
    body: &Map<String, Value>,
    actor: Actor,
) -> Result<UserRecord> {
    // Before the fields: who may change what is decided by what was sent.
    let touches_security = body.contains_key("roles") || body.contains_key("disabled");
    accounts::may_change(actor, touches_security)?;
    let update: ProfileUpdate = body::parse(body, &state.config.roles)?;
    let changes = UserChanges {
        username: update.username.map(Username::into_inner),
        email: update.email.map(Email::into_inner),
        full_name: update.full_name,
        roles: update.roles,
        disabled: update.disabled,
    };
    Ok(accounts::update(state, target, changes, actor).await?)
}

/// Validates a `POST /users` body, collecting every problem into one 422.
/// Pure, so the request fuzzer (`fuzz/`) drives it directly.
pub fn parse_registration(body: &Map<String, Value>) -> Result<RegisterRequest> {
    body::parse(body, ())
}

/// Register a new account
///
/// Open to anyone while registration is open (`WARDEN_REGISTRATION`); the
/// new user gets the `user` role. Answers 201 with the user and a
/// `Location` header. At most `WARDEN_THROTTLE_PER_ADDRESS` registrations
/// per address and window.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = UserView),
        (status = 403, description = "Registration is closed", body = crate::http::routes::Detail,
            example = json!({"detail": "Registration is closed"})),
        (status = 409, description = "Username or email already registered", body = crate::http::routes::Detail),
        (status = 413, description = "Body over 64 KiB", body = crate::http::routes::Detail),
        (status = 415, description = "Not JSON", body = crate::http::routes::Detail),
        (status = 422, description = "Invalid input", body = crate::http::routes::ValidationErrorBody),
        (status = 429, description = "Too many registrations from this address; see Retry-After", body = crate::http::routes::Detail,
            example = json!({"detail": "Too many registrations from this address; try again in 42 seconds"})),
        (status = 503, description = "Password hashing queue full; see Retry-After", body = crate::http::routes::Detail),
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    client: crate::http::routes::ClientMeta,
    JsonObject(body): JsonObject,
) -> Result<Response> {
    let address = client.ip.as_deref().unwrap_or("unknown");
    accounts::register(&state, address).await?;
    let request = parse_registration(&body)?;
    let new = NewUser {
        username: request.username,
        email: request.email,
        password: &request.password,
        full_name: request.full_name,
    };
    let user =
        accounts::create(&state, new, Vec::new(), client.ip.as_deref(), Actor::Itself).await?;
    let location = HeaderValue::from_str(&format!("/users/{}", user.id))
        .map_err(|e| Error::Internal(Box::new(e)))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(UserView::from(&user)),
    )
        .into_response())
}
