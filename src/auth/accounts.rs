//! Accounts: registration, creation by an operator, profile and security
//! changes, role changes, and checking a signed-in user's password. The
//! HTTP handlers and the CLI call these, so a change made either way is
//! validated, audited, cached and seen by the token gate alike.

use uuid::Uuid;
use warden_guard::AuthError;

use crate::auth::audit::{self, Event};
use crate::auth::password_check::{self, PasswordCheck, Purpose};
use crate::auth::passwords::Password;
use crate::auth::{Error, Result, Services, sessions, tokens};
use crate::config::Registration;
use crate::domain::profile::{Email, Username};
use crate::domain::roles::ROLE_USER;
use crate::domain::{PasswordSet, UserChanges, UserRecord};

/// The fields of a new account, validated.
pub struct NewUser<'a> {
    pub username: Username,
    pub email: Email,
    pub password: &'a str,
    pub full_name: Option<String>,
}

/// Who is changing a user, which decides the fields they may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The user themself: own profile fields only, never own roles or
    /// disabled flag (not even with `users:write`).
    Itself,
    /// Someone else, with `users:write`: also `roles` and `disabled`.
    Admin,
    /// An operator at the command line (`warden users …`).
    Cli,
}

impl Actor {
    fn name(self) -> Option<&'static str> {
        match self {
            Actor::Cli => Some("cli"),
            Actor::Itself | Actor::Admin => None,
        }
    }
}

/// Self-registration (`POST /users`): refused while registration is
/// closed and throttled per client address, then [`create`] with the
/// `user` role.
pub async fn register(s: &Services, address: &str) -> Result<()> {
    if s.config.accounts.registration == Registration::Closed {
        return Err(Error::Forbidden("Registration is closed".to_owned()));
    }
    if let Err(wait) = s.throttle.begin_registration(address, tokens::now()) {
        audit::record(
            s.store.as_ref(),
            Event::new("registration_throttled")
                .ip(Some(address))
                .detail("retry_after", wait),
        )
        .await;
        return Err(Error::Throttled(wait, "registrations from this address"));
    }
    Ok(())
}

/// Stores a new account with `roles` (the `user` role when empty): its
/// password hashed on the hashing pool, the token gate and the cache told,
/// the creation audited (`user_registered`, with `by: cli` for an
/// operator's).
pub async fn create(
    s: &Services,
    new: NewUser<'_>,
    roles: Vec<String>,
    address: Option<&str>,
    actor: Actor,
) -> Result<UserRecord> {
    let roles = if roles.is_empty() {
        vec![ROLE_USER.to_owned()]
    } else {
        dedup(roles)
    };
    s.config
        .roles
        .check_known(&roles)
        .map_err(|m| Error::field(&["body", "roles"], m, "value_error"))?;
    let password_hash = s.hasher.hash(Password::new(new.password)).await?;
    let user = UserRecord::new(
        new.username.into_inner(),
        new.email.into_inner(),
        new.full_name,
        password_hash,
        roles,
        tokens::now(),
    );
    s.store.insert_user(&user).await?;
    s.gate.set(&user);
    s.users.put(&user);
    let mut event = Event::new("user_registered").user(user.id).ip(address);
    if let Some(by) = actor.name() {
        event = event.detail("by", by);
    }
    audit::record(s.store.as_ref(), event).await;
    Ok(user)
}

/// Refuses a change of one's own roles or disabled flag (403), before the
/// body is even read.
pub fn may_change(actor: Actor, touches_security: bool) -> Result<()> {
    if touches_security && actor == Actor::Itself {
        return Err(Error::Forbidden(
            "You cannot change your own roles or disabled flag".to_owned(),
        ));
    }
    Ok(())
}

/// Applies validated `changes` to the user `target`. A security change
/// (roles, disabled) ends every session of the user and is audited in the
/// same transaction, and every earlier token of the user fails at once.
pub async fn update(
    s: &Services,
    target: Uuid,
    changes: UserChanges,
    actor: Actor,
) -> Result<UserRecord> {
    may_change(actor, changes.is_security_change())?;
    let now = tokens::now();
    let event = changes.is_security_change().then(|| {
        let mut event = Event::new("user_security_changed").user(target);
        if let Some(roles) = &changes.roles {
            event = event.detail("roles", roles.clone());
        }
        if let Some(disabled) = changes.disabled {
            event = event.detail("disabled", disabled);
        }
        if let Some(by) = actor.name() {
            event = event.detail("by", by);
        }
        event.into_record()
    });
    let update = s
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
    s.users.put(&updated);
    if let Some(event) = &event {
        s.gate.set(&updated);
        sessions::sessions_ended(s, &update.ended_sessions, now);
        audit::log(event);
    }
    Ok(updated)
}

/// The user `who` names: an id, a username or an email (the last two
/// case-insensitively). `NotFound` when there is none.
pub async fn find(s: &Services, who: &str) -> Result<UserRecord> {
    if let Ok(id) = Uuid::parse_str(who)
        && let Some(user) = s.store.user_by_id(id).await?
    {
        return Ok(user);
    }
    s.store.user_by_login(who).await?.ok_or(Error::NotFound)
}

/// Sets the roles of the user `login` names (an id, username or email).
pub async fn set_roles(
    s: &Services,
    login: &str,
    roles: Vec<String>,
    actor: Actor,
) -> Result<UserRecord> {
    let roles = dedup(roles);
    if roles.is_empty() {
        return Err(Error::field(
            &["roles"],
            "A user needs at least one role",
            "value_error",
        ));
    }
    s.config
        .roles
        .check_known(&roles)
        .map_err(|m| Error::field(&["roles"], m, "value_error"))?;
    let user = find(s, login).await?;
    let changes = UserChanges {
        roles: Some(roles),
        ..Default::default()
    };
    update(s, user.id, changes, actor).await
}

/// The current password of a signed-in user, checked through the
/// throttled, audited path every password check takes; a wrong one is
/// `Incorrect password` (400).
pub async fn check_password(
    s: &Services,
    user: &UserRecord,
    password: &str,
    address: &str,
    known_device: bool,
    purpose: Purpose,
) -> Result<()> {
    let check = PasswordCheck {
        login: &user.username,
        user: Some(user),
        password,
        address,
        known_device,
        purpose,
    };
    if password_check::check(s, check).await? {
        Ok(())
    } else {
        Err(Error::BadRequest("Incorrect password".to_owned()))
    }
}

/// Deletes the user `target`, by `by` (`self`, an admin's id, `cli`):
/// every session ends and their tokens fail at once. `NotFound` when there
/// is no such user.
pub async fn delete(s: &Services, target: Uuid, by: &str) -> Result<()> {
    let event = Event::new("user_deleted")
        .user(target)
        .detail("by", by.to_owned())
        .into_record();
    if !s.store.delete_user(target, &event).await? {
        return Err(Error::NotFound);
    }
    audit::log(&event);
    s.gate.remove(target, tokens::now());
    s.users.remove(target);
    // The store queued the back-channel logouts of the user's sessions.
    crate::auth::outbox::wake();
    Ok(())
}

/// 409 detail: a security change of the account landed while a password
/// change was being checked.
pub const CHANGED_MEANWHILE: &str =
    "The account was changed while this request was being handled; try again";

/// Sets a new password for `user`, whose current password the caller has
/// just checked: the new hash, the end of every session and the audit
/// event are one transaction, made only if the account is still the one
/// that was checked. Returns the user as they are now.
pub async fn change_password(
    s: &Services,
    user: &UserRecord,
    new_password: &str,
    address: Option<&str>,
) -> Result<UserRecord> {
    set_password(s, user, new_password, address, Actor::Itself).await
}

/// [`change_password`] by `actor`: the same transaction, session ends,
/// gate and cache updates; an operator's (`warden users set-password`)
/// is audited with `by: cli`. The caller has checked the new password's
/// rules ([`crate::domain::profile::check_new_password`]) and, for the
/// user themself, their current password.
pub async fn set_password(
    s: &Services,
    user: &UserRecord,
    new_password: &str,
    address: Option<&str>,
    actor: Actor,
) -> Result<UserRecord> {
    let hash = s.hasher.hash(Password::new(new_password)).await?;
    let now = tokens::now();
    let mut event = Event::new("password_changed").user(user.id).ip(address);
    if let Some(by) = actor.name() {
        event = event.detail("by", by);
    }
    let event = event.into_record();
    let changed = match s
        .store
        .set_password(
            user.id,
            &hash,
            user.security_version,
            tokens::next_valid_after(now),
            now,
            &event,
        )
        .await?
    {
        PasswordSet::Changed(changed) => changed,
        PasswordSet::Stale => return Err(Error::StateConflict(CHANGED_MEANWHILE.to_owned())),
        PasswordSet::Missing => return Err(AuthError::Invalid.into()),
    };
    audit::log(&event);
    sessions::sessions_ended(s, &changed.ended_sessions, now);
    let user = changed.user;
    s.gate.set(&user);
    s.users.put(&user);
    Ok(user)
}

/// `roles` without repeats, in their order.
fn dedup(roles: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in roles {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}
