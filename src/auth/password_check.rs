//! The one path every password check takes — the password grant, the
//! password change and the account deletion alike: the login throttle
//! (account + address, see `throttle.rs`), the per-account cap on hashing
//! jobs (`passwords.rs`), one argon2 verification (against a dummy hash for
//! an unknown user), and the audit log.
//!
//! A route that checked a password any other way would be an unthrottled
//! password oracle: with a stolen token, `PUT /users/me/password` took 40
//! wrong guesses in a row without a 429 before this path existed.

use crate::auth::audit::{self, Event};
use crate::auth::passwords::Password;
use crate::auth::throttle::Refusal;
use crate::auth::tokens;
use crate::auth::{Error, Result, Services};
use crate::domain::UserRecord;

/// What the password is checked for; it names the audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `POST /token` with the password grant.
    Login,
    /// `PUT /users/me/password`.
    PasswordChange,
    /// `DELETE /users/me`.
    AccountDeletion,
}

impl Purpose {
    fn failed_event(self) -> &'static str {
        match self {
            Purpose::Login => "login_failed",
            Purpose::PasswordChange | Purpose::AccountDeletion => "password_check_failed",
        }
    }

    fn throttled_event(self) -> &'static str {
        match self {
            Purpose::Login => "login_throttled",
            Purpose::PasswordChange | Purpose::AccountDeletion => "password_check_throttled",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Purpose::Login => "login",
            Purpose::PasswordChange => "password_change",
            Purpose::AccountDeletion => "account_deletion",
        }
    }
}

/// One password check.
pub struct PasswordCheck<'a> {
    /// The login as the client typed it (username or email); for a check
    /// on behalf of a signed-in user, their username. The throttle counts
    /// per folded login.
    pub login: &'a str,
    /// The account the login names, if any.
    pub user: Option<&'a UserRecord>,
    pub password: &'a str,
    /// The client's address (`unknown` when there is none).
    pub address: &'a str,
    /// The request carries a valid device cookie of `user`.
    pub known_device: bool,
    pub purpose: Purpose,
}

/// Checks a password: `Ok(true)` when `user` exists, is not disabled and
/// the password is theirs. `Err` for a throttled check (429, nothing
/// verified) and a full hashing queue (503, not counted as a failure).
pub async fn check(state: &Services, c: PasswordCheck<'_>) -> Result<bool> {
    let account = crate::domain::profile::fold_login(c.login);
    let attempt =
        match state
            .throttle
            .begin_login(&account, c.address, c.known_device, tokens::now())
        {
            Ok(attempt) => attempt,
            Err(refusal) => {
                let user = c.user.map(|u| u.id);
                return Err(refused(state, c.purpose, user, c.address, refusal).await);
            }
        };
    let phc = c.user.map(|u| u.password_hash.clone());
    // A known device has its own places, so a flood of guesses against
    // the account cannot keep its owner's browser out.
    let slot = if c.known_device {
        format!("device:{account}")
    } else {
        account
    };
    let ok = match state
        .hasher
        .verify_for(&slot, Password::new(c.password), phc)
        .await
    {
        Ok(ok) => ok,
        Err(e) => {
            // Not judged (the account's places or the queue are full): no
            // failure either.
            state.throttle.succeeded(attempt);
            return Err(e.into());
        }
    };
    if ok && c.user.is_some_and(|u| !u.disabled) {
        state.throttle.succeeded(attempt);
        return Ok(true);
    }
    state.throttle.failed(attempt);
    if c.purpose == Purpose::Login {
        metrics::counter!("warden_logins_total", "result" => "failed").increment(1);
    }
    let mut event = Event::new(c.purpose.failed_event())
        .user(c.user.map(|u| u.id))
        .ip(Some(c.address));
    if c.purpose != Purpose::Login {
        event = event.detail("purpose", c.purpose.name());
    }
    audit::record(state.store.as_ref(), event).await;
    Ok(false)
}

/// The throttle, asked before the login's account is looked up: an
/// attempt it refuses costs no database read (the audit event of a
/// refusal, written once per key and window, looks the account up then).
/// `maybe_known_device`: the request carries a valid device cookie of some
/// account, so it is judged by the limits a known device is held to; the
/// full check in [`check`] follows once the account is known.
pub async fn check_before_lookup(
    state: &Services,
    login: &str,
    address: &str,
    maybe_known_device: bool,
    purpose: Purpose,
) -> Result<()> {
    let account = crate::domain::profile::fold_login(login);
    let Err(refusal) =
        state
            .throttle
            .check_login(&account, address, maybe_known_device, tokens::now())
    else {
        return Ok(());
    };
    let user = match refusal.report {
        Some(_) => state
            .store
            .user_by_login(login)
            .await
            .ok()
            .flatten()
            .map(|u| u.id),
        None => None,
    };
    Err(refused(state, purpose, user, address, refusal).await)
}

/// The 429 of a throttled check; its audit event is written once per
/// blocking key and window (with how many refusals it stands for).
async fn refused(
    state: &Services,
    purpose: Purpose,
    user: Option<uuid::Uuid>,
    address: &str,
    refusal: Refusal,
) -> Error {
    if purpose == Purpose::Login {
        metrics::counter!("warden_logins_total", "result" => "throttled").increment(1);
    }
    if let Some(unreported) = refusal.report {
        let mut event = Event::new(purpose.throttled_event())
            .user(user)
            .ip(Some(address))
            .detail("retry_after", refusal.wait)
            .detail("limit", refusal.blocked.limit());
        if unreported > 0 {
            event = event.detail("refusals_since_last_event", unreported);
        }
        if purpose != Purpose::Login {
            event = event.detail("purpose", purpose.name());
        }
        audit::record(state.store.as_ref(), event).await;
    }
    Error::Throttled(refusal.wait, "failed login attempts")
}
