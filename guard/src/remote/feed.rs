//! Following warden's revocation feed (`GET /token/revocations`): the
//! credentials it polls with, the long-poll loop, and the revocation state
//! every token is checked against — an immutable snapshot swapped whole
//! (arc-swap), so a token check takes no lock.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Deserialize;
use tokio::sync::watch;

use super::{Metadata, RemoteError, chain};
use crate::{Claims, TokenCheck};

/// Slack (seconds) past an access-token lifetime before an entry is
/// forgotten: the clocks of warden and this service differ a little.
const SLACK: i64 = 60;

/// The first wait after a failed poll; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How the guard authenticates to the revocation feed: an account, an
/// OAuth client (or a token) with scope `tokens:introspect`.
#[derive(Clone)]
pub struct Credentials(Kind);

#[derive(Clone)]
enum Kind {
    Bearer(String),
    Password { username: String, password: String },
    Client { id: String, secret: String },
}

impl Credentials {
    /// A fixed bearer token. When it expires or is revoked the feed answers
    /// 401 and nothing can renew it: prefer [`Credentials::password`].
    pub fn bearer(token: impl Into<String>) -> Self {
        Self(Kind::Bearer(token.into()))
    }

    /// warden's password grant for `username` (asking only for
    /// `tokens:introspect`), then refresh-token rotation before the access
    /// token expires, and a new login when a refresh fails.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self(Kind::Password {
            username: username.into(),
            password: password.into(),
        })
    }

    /// warden's `client_credentials` grant for a confidential client
    /// registered with that grant and scope `tokens:introspect` (asking
    /// only for that scope, with `client_secret_post`), and a new token
    /// before each one expires. The way for a resource server that is a
    /// registered client.
    pub fn client(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self(Kind::Client {
            id: client_id.into(),
            secret: client_secret.into(),
        })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token or the password.
        match &self.0 {
            Kind::Bearer(_) => f.write_str("Credentials::bearer(..)"),
            Kind::Password { username, .. } => {
                write!(f, "Credentials::password({username:?}, ..)")
            }
            Kind::Client { id, .. } => write!(f, "Credentials::client({id:?}, ..)"),
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Why a poll failed.
#[derive(Debug)]
enum Problem {
    /// No answer, or one we could not read.
    Unreachable(String),
    /// The credentials were refused (bad password, a token without
    /// `tokens:introspect`, an expired fixed token).
    Refused(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(m) | Self::Refused(m) => f.write_str(m),
        }
    }
}

/// An access token for the feed, renewed as needed.
struct Tokens {
    client: reqwest::Client,
    endpoint: String,
    credentials: Credentials,
    session: Option<Session>,
}

struct Session {
    access: String,
    refresh: Option<String>,
    renew_at: Instant,
}

/// warden's token response (the fields used).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
    refresh_token: Option<String>,
}

impl Tokens {
    /// The current access token, logging in or refreshing first if needed.
    async fn access(&mut self) -> Result<String, Problem> {
        if let Kind::Bearer(token) = &self.credentials.0 {
            return Ok(token.clone());
        }
        if let Some(s) = &self.session
            && Instant::now() < s.renew_at
        {
            return Ok(s.access.clone());
        }
        let (username, password) = match &self.credentials.0 {
            Kind::Bearer(token) => return Ok(token.clone()),
            Kind::Password { username, password } => (username.clone(), password.clone()),
            Kind::Client { id, secret } => {
                let (id, secret) = (id.clone(), secret.clone());
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", id.as_str()),
                    ("client_secret", secret.as_str()),
                    ("scope", "tokens:introspect"),
                ];
                return self.grant(&form).await;
            }
        };
        if let Some(refresh) = self.session.take().and_then(|s| s.refresh) {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
            ];
            // A failed refresh (the session ended, the token was spent)
            // falls back to a new login.
            if let Ok(fresh) = self.grant(&form).await {
                return Ok(fresh);
            }
        }
        let form = [
            ("grant_type", "password"),
            ("username", username.as_str()),
            ("password", password.as_str()),
            ("scope", "tokens:introspect"),
        ];
        self.grant(&form).await
    }

    async fn grant(&mut self, form: &[(&str, &str)]) -> Result<String, Problem> {
        let response = self
            .client
            .post(&self.endpoint)
            .form(form)
            .timeout(super::REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| Problem::Unreachable(format!("{}: {}", self.endpoint, chain(&e))))?;
        let status = response.status();
        if status.is_client_error() {
            // warden's error body names the reason (`invalid_grant`, ...);
            // it never echoes the password.
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let reason = body["error_description"]
                .as_str()
                .or(body["detail"].as_str())
                .unwrap_or("refused");
            return Err(Problem::Refused(format!(
                "{} answered {status}: {reason}",
                self.endpoint
            )));
        }
        if !status.is_success() {
            return Err(Problem::Unreachable(format!(
                "{} answered {status}",
                self.endpoint
            )));
        }
        let token: TokenResponse = response.json().await.map_err(|e| {
            Problem::Unreachable(format!(
                "{}: unexpected answer: {}",
                self.endpoint,
                chain(&e)
            ))
        })?;
        // Renewed at three quarters of its lifetime.
        let lifetime = Duration::from_secs(token.expires_in.max(4) * 3 / 4);
        self.session = Some(Session {
            access: token.access_token.clone(),
            refresh: token.refresh_token,
            renew_at: Instant::now() + lifetime,
        });
        Ok(token.access_token)
    }

    /// The feed refused the token: get a new one next time.
    fn forget(&mut self) {
        if let Some(s) = &mut self.session {
            s.renew_at = Instant::now();
        }
    }
}

/// One answer of the feed.
#[derive(Debug, Deserialize)]
struct Page {
    cursor: String,
    full: bool,
    access_token_ttl: i64,
    sessions: Vec<SessionEntry>,
    users: Vec<UserEntry>,
}

#[derive(Debug, Deserialize)]
struct SessionEntry {
    sid: String,
    ended_at: i64,
}

#[derive(Debug, Deserialize)]
struct UserEntry {
    sub: String,
    tokens_before: i64,
    disabled: bool,
    deleted: bool,
}

/// What a user's entry means for their tokens.
#[derive(Debug, Clone, Copy)]
struct UserState {
    tokens_before: i64,
    disabled: bool,
    deleted: bool,
}

type Map<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;

/// The revocation state, as of one answer. Never changed once shared: an
/// answer builds a new one.
#[derive(Debug, Clone, Default)]
struct State {
    sessions: Map<i64>,
    users: Map<UserState>,
    access_token_ttl: i64,
}

impl State {
    /// Drops what can no longer affect an unexpired token.
    fn prune(&mut self, now: i64) {
        let horizon = now - self.access_token_ttl - SLACK;
        self.sessions.retain(|_, ended_at| *ended_at >= horizon);
        self.users
            .retain(|_, u| u.disabled || u.tokens_before >= horizon);
    }
}

/// The revocation check installed in the verifier.
#[derive(Default)]
pub(crate) struct Revoked {
    state: ArcSwap<State>,
}

impl Revoked {
    fn apply(&self, page: &Page, now: i64) {
        let mut next = if page.full {
            State::default()
        } else {
            State::clone(&self.state.load())
        };
        next.access_token_ttl = page.access_token_ttl;
        for s in &page.sessions {
            next.sessions.insert(s.sid.as_str().into(), s.ended_at);
        }
        for u in &page.users {
            next.users.insert(
                u.sub.as_str().into(),
                UserState {
                    tokens_before: u.tokens_before,
                    disabled: u.disabled,
                    deleted: u.deleted,
                },
            );
        }
        next.prune(now);
        self.state.store(Arc::new(next));
    }
}

impl TokenCheck for Revoked {
    fn is_live(&self, claims: &Claims) -> bool {
        let state = self.state.load();
        if state.sessions.contains_key(claims.sid.as_str()) {
            return false;
        }
        match state.users.get(claims.sub.as_str()) {
            None => true,
            Some(u) => !u.disabled && !u.deleted && claims.iat >= u.tokens_before,
        }
    }
}

/// The long-poll loop's state.
pub(crate) struct Follower {
    client: reqwest::Client,
    url: String,
    tokens: Tokens,
    cursor: Option<String>,
    revoked: Arc<Revoked>,
}

impl Follower {
    /// Signs in and reads the whole revocation state once, so a service
    /// starts knowing every revocation (and learns at once of bad
    /// credentials).
    pub(crate) async fn start(
        client: &reqwest::Client,
        metadata: &Metadata,
        credentials: Credentials,
    ) -> Result<Self, RemoteError> {
        let Some(url) = metadata.warden_revocation_feed_endpoint.clone() else {
            return Err(RemoteError::NoFeed {
                url: metadata.token_endpoint.clone(),
            });
        };
        let mut follower = Self {
            client: client.clone(),
            tokens: Tokens {
                client: client.clone(),
                endpoint: metadata.token_endpoint.clone(),
                credentials,
                session: None,
            },
            url,
            cursor: None,
            revoked: Arc::default(),
        };
        match follower.poll(Duration::ZERO).await {
            Ok(()) => Ok(follower),
            Err(Problem::Refused(reason)) => Err(RemoteError::Credentials {
                url: follower.url,
                reason,
            }),
            Err(Problem::Unreachable(reason)) => Err(RemoteError::Fetch {
                url: follower.url,
                reason,
            }),
        }
    }

    pub(crate) fn check(&self) -> Arc<dyn TokenCheck> {
        self.revoked.clone()
    }

    /// Polls until `stop` says the guard is gone. A failure is logged once
    /// (and its end), then retried with a doubling backoff from where the
    /// cursor left off; meanwhile the last state stays in force.
    pub(crate) async fn run(mut self, wait: Duration, mut stop: watch::Receiver<()>) {
        let mut backoff = FIRST_BACKOFF;
        let mut failing = false;
        loop {
            let polled = tokio::select! {
                _ = stop.changed() => return,
                polled = self.poll(wait) => polled,
            };
            match polled {
                Ok(()) => {
                    if failing {
                        tracing::info!(url = %self.url, "warden-guard: following revocations again");
                    }
                    failing = false;
                    backoff = FIRST_BACKOFF;
                }
                Err(problem) => {
                    if !failing {
                        tracing::warn!(
                            "warden-guard: cannot follow revocations (keeping the last state, retrying): {problem}"
                        );
                    }
                    failing = true;
                    tokio::select! {
                        _ = stop.changed() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn poll(&mut self, wait: Duration) -> Result<(), Problem> {
        let token = self.tokens.access().await?;
        let mut query = vec![("wait", wait.as_secs().to_string())];
        if let Some(cursor) = &self.cursor {
            query.push(("cursor", cursor.clone()));
        }
        let response = self
            .client
            .get(&self.url)
            .query(&query)
            .bearer_auth(token)
            .timeout(wait + super::REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| Problem::Unreachable(format!("{}: {}", self.url, chain(&e))))?;
        let status = response.status();
        match status.as_u16() {
            200 => {}
            401 => {
                self.tokens.forget();
                return Err(Problem::Refused(format!(
                    "{} answered 401: the token was refused",
                    self.url
                )));
            }
            403 => {
                return Err(Problem::Refused(format!(
                    "{} answered 403: the account needs scope tokens:introspect",
                    self.url
                )));
            }
            _ => {
                return Err(Problem::Unreachable(format!(
                    "{} answered {status}",
                    self.url
                )));
            }
        }
        let page: Page = response.json().await.map_err(|e| {
            Problem::Unreachable(format!("{}: unexpected answer: {}", self.url, chain(&e)))
        })?;
        self.revoked.apply(&page, now());
        self.cursor = Some(page.cursor);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, sid: &str, iat: i64) -> Claims {
        Claims {
            iss: String::new(),
            sub: sub.into(),
            aud: None,
            exp: iat + 900,
            iat,
            nbf: iat,
            jti: String::new(),
            sid: sid.into(),
            scope: String::new(),
            roles: vec![],
            username: String::new(),
            client_id: None,
        }
    }

    fn page(full: bool, sessions: &[(&str, i64)], users: &[(&str, i64, bool, bool)]) -> Page {
        Page {
            cursor: String::new(),
            full,
            access_token_ttl: 900,
            sessions: sessions
                .iter()
                .map(|&(sid, ended_at)| SessionEntry {
                    sid: sid.into(),
                    ended_at,
                })
                .collect(),
            users: users
                .iter()
                .map(|&(sub, tokens_before, disabled, deleted)| UserEntry {
                    sub: sub.into(),
                    tokens_before,
                    disabled,
                    deleted,
                })
                .collect(),
        }
    }

    #[test]
    fn a_full_answer_replaces_and_a_delta_merges() {
        let r = Revoked::default();
        let t = 10_000;
        assert!(r.is_live(&claims("u1", "s1", t)));
        r.apply(&page(true, &[("s1", t)], &[("u2", t + 5, false, false)]), t);
        assert!(!r.is_live(&claims("u1", "s1", t)), "ended session");
        assert!(!r.is_live(&claims("u2", "s9", t + 4)), "issued before");
        assert!(r.is_live(&claims("u2", "s9", t + 5)), "issued after");

        r.apply(&page(false, &[("s2", t)], &[("u3", t, true, false)]), t);
        assert!(!r.is_live(&claims("u1", "s1", t)), "a delta keeps s1");
        assert!(!r.is_live(&claims("u1", "s2", t)));
        assert!(!r.is_live(&claims("u3", "s3", t + 100)), "disabled");
        // The user's latest state replaces the earlier entry.
        r.apply(&page(false, &[], &[("u3", t + 50, false, false)]), t);
        assert!(r.is_live(&claims("u3", "s3", t + 100)), "re-enabled");
        assert!(!r.is_live(&claims("u3", "s3", t + 10)));

        r.apply(&page(true, &[], &[("u4", t, false, true)]), t);
        assert!(
            r.is_live(&claims("u1", "s1", t)),
            "replaced by a full answer"
        );
        assert!(!r.is_live(&claims("u4", "s4", t + 100)), "deleted");
    }

    #[test]
    fn entries_are_forgotten_once_no_unexpired_token_can_depend_on_them() {
        let r = Revoked::default();
        let t = 10_000;
        r.apply(
            &page(
                true,
                &[("s1", t)],
                &[("u1", t, false, false), ("u2", t, true, false)],
            ),
            t,
        );
        r.apply(&page(false, &[], &[]), t + 900 + 60);
        assert!(!r.is_live(&claims("u1", "s1", t - 1)), "still kept");
        r.apply(&page(false, &[], &[]), t + 900 + 61);
        let state = r.state.load();
        assert!(state.sessions.is_empty());
        assert_eq!(state.users.len(), 1, "a disabled user stays");
    }

    #[test]
    fn credentials_never_show_their_secret() {
        let shown = format!(
            "{:?} {:?} {:?}",
            Credentials::password("svc", "hunter2-long-secret"),
            Credentials::bearer("eyJsecret"),
            Credentials::client("c1", "wdn_cs_secret")
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("eyJ") && !shown.contains("wdn_cs"),
            "{shown}"
        );
    }
}
