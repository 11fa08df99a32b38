//! Login sessions and the refresh-token rotation state machine.

use uuid::Uuid;

/// A login session: `id` is the `sid` claim of its access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub scope: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// The OAuth client it was issued through (`None`: the password grant,
    /// or a browser session).
    pub client_id: Option<Uuid>,
    /// The browser session of the hosted pages (`warden_session`), which
    /// issues no tokens of its own.
    pub browser: bool,
    /// The browser session a client's session was opened from (the code
    /// flow): the OpenID `sid` of its id tokens and logout tokens. Ending
    /// that browser session ends this one.
    pub parent_session: Option<Uuid>,
    /// When the user authenticated (OpenID `auth_time`); `None` for
    /// sessions from before it was recorded.
    pub auth_time: Option<i64>,
    /// How the user authenticated: RFC 8176 `amr` values, space-separated
    /// (`pwd`).
    pub amr: Option<String>,
}

impl SessionRecord {
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// A presented refresh token, once the refresh-token service knows it to
/// be genuine: which session and generation it stands for, and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedRefresh {
    pub session: Uuid,
    /// `-1` for a token that had been used before the upgrade to
    /// per-session generations (older than every stored generation).
    pub generation: i64,
    pub hash: [u8; 32],
}

/// A session's refresh-token state: one row per session however often it
/// rotates, which is all that rotation, grace retries and reuse detection
/// need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    /// Generation of the current token: 0 at login, +1 per rotation.
    pub generation: i64,
    /// SHA-256 of the current token; `None` for a session that had no
    /// usable token when it was upgraded.
    pub hash: Option<Vec<u8>>,
    /// When the current token was issued, which is when the previous one
    /// was used.
    pub issued_at: i64,
    /// SHA-256 of the previous token (generation - 1), for the grace retry.
    pub previous_hash: Option<Vec<u8>>,
}

/// A session with its refresh-token state.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub session: SessionRecord,
    pub refresh: RefreshState,
}

impl RefreshRecord {
    /// Whether the session is live and younger than `max_lifetime` (a
    /// session refreshed before the absolute lifetime existed may have an
    /// expiry beyond it).
    pub fn is_live(&self, now: i64, max_lifetime: i64) -> bool {
        self.session.is_live(now) && self.session.created_at.saturating_add(max_lifetime) > now
    }

    /// Whether `presented` is this session's current, usable token.
    pub fn is_current(&self, presented: &PresentedRefresh, now: i64, max_lifetime: i64) -> bool {
        self.is_live(now, max_lifetime)
            && presented.generation == self.refresh.generation
            && same_hash(self.refresh.hash.as_deref(), &presented.hash)
    }
}

fn same_hash(stored: Option<&[u8]>, presented: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    stored.is_some_and(|s| bool::from(s.ct_eq(presented)))
}

/// What presenting a refresh token to a session does; decided by
/// [`refresh_step`] under the session row's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshStep {
    /// The current token: rotate into its successor.
    Rotate,
    /// The previous token, within the grace period (so its successor has
    /// not been used): answer with the same successor again.
    Retry,
    /// A genuine older token: a replay. Revoke the session.
    Reuse,
    /// Not usable, and no evidence of theft.
    Invalid,
}

/// The refresh state machine: pure, so storage runs it inside the
/// transaction that holds the session row.
pub fn refresh_step(
    record: &RefreshRecord,
    presented: &PresentedRefresh,
    successor_hash: &[u8],
    now: i64,
    lifetimes: RefreshLifetimes,
) -> RefreshStep {
    let state = &record.refresh;
    if !record.is_live(now, lifetimes.max_lifetime) {
        return RefreshStep::Invalid;
    }
    if record.is_current(presented, now, lifetimes.max_lifetime) {
        return RefreshStep::Rotate;
    }
    let newest = state.generation;
    if presented.generation == newest - 1
        && same_hash(state.previous_hash.as_deref(), &presented.hash)
        && now - state.issued_at < lifetimes.grace
        && same_hash(state.hash.as_deref(), successor_hash)
    {
        return RefreshStep::Retry;
    }
    if presented.generation < newest {
        // Genuine (the caller checked its tag or found its legacy row) and
        // superseded: someone else may hold the session (RFC 9700 §4.14.2).
        return RefreshStep::Reuse;
    }
    // The current generation with the wrong secret, or one from the future
    // (a database restored from a backup): no proof of theft.
    RefreshStep::Invalid
}

/// When a session rotated at `now` ends: a refresh-token lifetime from
/// now, but never past its absolute lifetime.
pub fn refreshed_expiry(created_at: i64, now: i64, ttl: i64, max_lifetime: i64) -> i64 {
    now.saturating_add(ttl)
        .min(created_at.saturating_add(max_lifetime))
}

/// How long refresh tokens and sessions live, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshLifetimes {
    /// Of each refresh token from its issue.
    pub ttl: i64,
    /// Of a session from its creation, however often it is refreshed.
    pub max_lifetime: i64,
    /// In which the previous token may be retried for the same successor.
    pub grace: i64,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// First use: rotated into the successor, whose hash was stored.
    Rotated(SessionRecord),
    /// Already rotated, within the grace period, and its successor not yet
    /// used: answer with the same successor.
    Retry(SessionRecord),
    /// Already rotated and outside the grace period (or its successor was
    /// used): a replay. The whole session has been revoked.
    Reused { session: Uuid, user: Uuid },
    /// Unknown, expired, or its session ended.
    Invalid,
}

/// What `Store::create_session` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOpened {
    /// Stored; `ended` are the user's oldest live sessions it ended to keep
    /// within the per-user cap.
    Opened { ended: Vec<Uuid> },
    /// The user was changed (password, roles, disabled), disabled or
    /// deleted after the caller read them: nothing was stored, so no
    /// session outlives a security change that its login preceded.
    Stale,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(generation: i64, issued_at: i64) -> RefreshRecord {
        RefreshRecord {
            session: SessionRecord {
                id: Uuid::now_v7(),
                user_id: Uuid::now_v7(),
                scope: "me".to_owned(),
                user_agent: None,
                ip: None,
                created_at: 0,
                last_used_at: issued_at,
                expires_at: 1000,
                revoked_at: None,
                client_id: None,
                browser: false,
                parent_session: None,
                auth_time: None,
                amr: None,
            },
            refresh: RefreshState {
                generation,
                hash: Some(vec![generation as u8; 32]),
                issued_at,
                previous_hash: Some(vec![generation as u8 - 1; 32]),
            },
        }
    }

    fn token(r: &RefreshRecord, generation: i64) -> PresentedRefresh {
        PresentedRefresh {
            session: r.session.id,
            generation,
            hash: [generation as u8; 32],
        }
    }

    #[test]
    fn the_refresh_state_machine() {
        let r = record(5, 100);
        let current = [5u8; 32];
        let lifetimes = RefreshLifetimes {
            ttl: 100,
            max_lifetime: 900,
            grace: 10,
        };
        let step = |p: &PresentedRefresh, now: i64| refresh_step(&r, p, &current, now, lifetimes);
        assert_eq!(step(&token(&r, 5), 101), RefreshStep::Rotate);
        // The previous token: retried within the grace, reused after it.
        assert_eq!(step(&token(&r, 4), 109), RefreshStep::Retry);
        assert_eq!(step(&token(&r, 4), 110), RefreshStep::Reuse);
        // Older generations are always a reuse.
        assert_eq!(step(&token(&r, 1), 101), RefreshStep::Reuse);
        assert_eq!(step(&token(&r, -1), 101), RefreshStep::Reuse);
        // The current generation with the wrong secret, or a future one.
        let mut wrong = token(&r, 5);
        wrong.hash = [9; 32];
        assert_eq!(step(&wrong, 101), RefreshStep::Invalid);
        assert_eq!(step(&token(&r, 6), 101), RefreshStep::Invalid);
        // An ended session answers nothing else.
        assert_eq!(step(&token(&r, 5), 1000), RefreshStep::Invalid);
        assert_eq!(step(&token(&r, 1), 1000), RefreshStep::Invalid);
        // So does one past its absolute lifetime, whatever its expiry says.
        assert_eq!(step(&token(&r, 5), 900), RefreshStep::Invalid);
        assert_eq!(step(&token(&r, 4), 900), RefreshStep::Invalid);
    }

    #[test]
    fn a_refresh_never_extends_a_session_past_its_lifetime() {
        assert_eq!(refreshed_expiry(0, 10, 100, 1000), 110);
        assert_eq!(refreshed_expiry(0, 950, 100, 1000), 1000);
        assert_eq!(refreshed_expiry(0, 1, i64::MAX, i64::MAX), i64::MAX);
    }
}
