//! [`Remote`]: a [`Verifier`] that keeps itself current with a warden
//! server — its keys (JWKS, fetched at start, refreshed periodically and on
//! an unknown `kid`) and, when asked, its revocations (the revocation feed).

mod feed;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use tokio::sync::{Notify, watch};

use crate::verifier::{KeyWait, UnknownKid, WeakVerifier};
use crate::{KeySet, TokenCheck, Verifier};

pub use feed::Credentials;

/// How often the keys are fetched again by default: JWKS answers may be
/// cached for 5 minutes anyway (`max-age=300`).
pub const DEFAULT_KEY_REFRESH: Duration = Duration::from_secs(300);

/// The shortest time between two key fetches caused by unknown `kid`s, by
/// default.
pub const DEFAULT_UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(10);

/// How long a request with an unknown `kid` waits for the key fetch it
/// caused, by default.
pub const DEFAULT_UNKNOWN_KID_WAIT: Duration = Duration::from_secs(2);

/// How long one poll of the revocation feed waits for a change, by default
/// (warden allows up to 55 s; 30 s stays below common proxy idle timeouts).
pub const DEFAULT_POLL_WAIT: Duration = Duration::from_secs(30);

/// Deadline of one metadata, JWKS or token request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why [`RemoteBuilder::start`] failed. Its `Display` is one line that
/// names the URL involved.
#[derive(Debug)]
pub enum RemoteError {
    /// The issuer is not an `http(s)` URL.
    Issuer(String),
    /// A request to `url` failed, or answered something unusable.
    Fetch { url: String, reason: String },
    /// The metadata's `issuer` is not the configured one (RFC 8414 §3.3).
    IssuerMismatch { expected: String, found: String },
    /// The JWKS has no key for the pinned algorithm.
    NoKeys { url: String, algorithm: Algorithm },
    /// The revocation feed refused the credentials.
    Credentials { url: String, reason: String },
    /// The metadata names no revocation feed (not a warden, or an old one).
    NoFeed { url: String },
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Issuer(issuer) => write!(
                f,
                "issuer {issuer:?} is not an http:// or https:// URL (warden's WARDEN_ISSUER)"
            ),
            Self::Fetch { url, reason } => write!(f, "cannot fetch {url}: {reason}"),
            Self::IssuerMismatch { expected, found } => write!(
                f,
                "the metadata of {expected} names issuer {found:?}; it must be {expected:?} (RFC 8414 §3.3): configure the issuer exactly as warden's WARDEN_ISSUER"
            ),
            Self::NoKeys { url, algorithm } => write!(
                f,
                "{url} has no key for {algorithm:?}; is warden configured with WARDEN_JWT_ALGORITHM={algorithm:?}? (HS256 keys are never published)"
            ),
            Self::Credentials { url, reason } => {
                write!(
                    f,
                    "the revocation feed at {url} refused the credentials: {reason}"
                )
            }
            Self::NoFeed { url } => write!(
                f,
                "the metadata at {url} names no warden_revocation_feed_endpoint; revocations cannot be followed"
            ),
        }
    }
}

impl std::error::Error for RemoteError {}

/// An error and its causes on one line: reqwest's "error sending request"
/// alone does not say that the connection was refused.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The fields of warden's RFC 8414 metadata that [`Remote`] uses.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Metadata {
    issuer: String,
    jwks_uri: String,
    pub(crate) token_endpoint: String,
    #[serde(default)]
    pub(crate) warden_revocation_feed_endpoint: Option<String>,
}

/// Sets up a [`Remote`]. From [`Remote::builder`].
pub struct RemoteBuilder {
    issuer: String,
    algorithm: Algorithm,
    audience: Option<String>,
    check: Option<Arc<dyn TokenCheck>>,
    credentials: Option<Credentials>,
    key_refresh: Duration,
    unknown_kid_interval: Duration,
    unknown_kid_wait: Duration,
    poll_wait: Duration,
    cache_capacity: usize,
    client: Option<reqwest::Client>,
}

impl fmt::Debug for RemoteBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteBuilder")
            .field("issuer", &self.issuer)
            .field("algorithm", &self.algorithm)
            .field("audience", &self.audience)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl RemoteBuilder {
    /// Require this `aud` claim (warden's `WARDEN_AUDIENCE`).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Follow warden's revocation feed, authenticating with `credentials`
    /// (an account with scope `tokens:introspect`). Tokens of ended
    /// sessions and of disabled, deleted or changed users are then refused
    /// within about a second. Without this, a token is good until it
    /// expires.
    pub fn revocations(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Also run `check` on every token (after the revocation check, if
    /// any).
    pub fn check(mut self, check: Arc<dyn TokenCheck>) -> Self {
        self.check = Some(check);
        self
    }

    /// Fetch the keys again this often (default 5 minutes).
    pub fn key_refresh(mut self, every: Duration) -> Self {
        self.key_refresh = every;
        self
    }

    /// Fetch the keys because of an unknown `kid` at most once per
    /// `interval` (default 10 s): tokens with made-up `kid`s cannot make
    /// the guard hammer warden.
    pub fn unknown_kid_interval(mut self, interval: Duration) -> Self {
        self.unknown_kid_interval = interval;
        self
    }

    /// How long a request with an unknown `kid` waits for the key fetch
    /// (default 2 s) before it is refused.
    pub fn unknown_kid_wait(mut self, wait: Duration) -> Self {
        self.unknown_kid_wait = wait;
        self
    }

    /// How long one poll of the revocation feed waits for a change (default
    /// 30 s, at most 55 s).
    pub fn poll_wait(mut self, wait: Duration) -> Self {
        self.poll_wait = wait.min(Duration::from_secs(55));
        self
    }

    /// The verifier's token cache size (see
    /// [`VerifierBuilder::cache_capacity`](crate::VerifierBuilder::cache_capacity)).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Use this HTTP client (proxies, custom roots). Timeouts are set per
    /// request.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Fetches the metadata and the keys (and, with
    /// [`revocations`](Self::revocations), signs in and reads the
    /// revocation state), then starts the background tasks that keep them
    /// current. Fails if any of it cannot be done now: a service should not
    /// start with no keys.
    pub async fn start(self) -> Result<Remote, RemoteError> {
        let issuer = self.issuer.trim_end_matches('/').to_owned();
        if !(issuer.starts_with("http://") || issuer.starts_with("https://")) {
            return Err(RemoteError::Issuer(issuer));
        }
        let client = match self.client {
            Some(c) => c,
            None => reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .user_agent(concat!("warden-guard/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| RemoteError::Fetch {
                    url: issuer.clone(),
                    reason: chain(&e),
                })?,
        };
        let metadata_url = format!("{issuer}/.well-known/oauth-authorization-server");
        let metadata: Metadata = get_json(&client, &metadata_url).await?;
        if metadata.issuer != issuer {
            return Err(RemoteError::IssuerMismatch {
                expected: issuer,
                found: metadata.issuer,
            });
        }
        let keys = fetch_keys(&client, &metadata.jwks_uri, self.algorithm).await?;
        let follower = match self.credentials {
            Some(credentials) => {
                Some(feed::Follower::start(&client, &metadata, credentials).await?)
            }
            None => None,
        };

        let (stop, _) = watch::channel(());
        let stop = Arc::new(Stop(stop));
        let refresh = Arc::new(KeyRefresh {
            born: Instant::now(),
            last_requested_ms: AtomicU64::new(0),
            requested_once: AtomicBool::new(false),
            interval: self.unknown_kid_interval,
            wait: self.unknown_kid_wait,
            wake: Notify::new(),
            fetching: AtomicBool::new(false),
            fetched: watch::Sender::new(0),
            fetches: AtomicU64::new(1),
        });
        let check: Option<Arc<dyn TokenCheck>> =
            match (follower.as_ref().map(|f| f.check()), self.check) {
                (Some(revoked), Some(user)) => Some(Arc::new(Both(revoked, user))),
                (Some(revoked), None) => Some(revoked),
                (None, user) => user,
            };
        let mut builder = Verifier::builder(self.algorithm, keys, issuer.clone())
            .cache_capacity(self.cache_capacity)
            .on_unknown_kid(refresh.clone())
            .attach(stop.clone());
        if let Some(aud) = self.audience {
            builder = builder.audience(aud);
        }
        if let Some(check) = check {
            builder = builder.check(check);
        }
        let verifier = builder.build();

        tokio::spawn(refresh_keys(
            client.clone(),
            metadata.jwks_uri.clone(),
            self.algorithm,
            verifier.downgrade(),
            refresh.clone(),
            self.key_refresh,
            stop.0.subscribe(),
        ));
        if let Some(follower) = follower {
            tokio::spawn(follower.run(self.poll_wait, stop.0.subscribe()));
        }
        Ok(Remote {
            verifier,
            refresh,
            _stop: stop,
        })
    }
}

/// Ends the background tasks when dropped (with the last [`Remote`] and
/// the last clone of its verifier).
struct Stop(watch::Sender<()>);

/// Both checks must pass.
struct Both(Arc<dyn TokenCheck>, Arc<dyn TokenCheck>);

impl TokenCheck for Both {
    fn is_live(&self, claims: &crate::Claims) -> bool {
        self.0.is_live(claims) && self.1.is_live(claims)
    }
}

/// A [`Verifier`] kept current with a warden server: its keys, and (with
/// [`RemoteBuilder::revocations`]) its revocations.
///
/// ```no_run
/// use warden_guard::{Algorithm, Credentials, Remote};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let guard = Remote::builder("https://auth.example.com", Algorithm::EdDSA)
///     .revocations(Credentials::password("notes-service", "its password"))
///     .start()
///     .await?;
/// let verifier = guard.verifier();
/// # let _ = verifier;
/// # Ok(())
/// # }
/// ```
///
/// - **Keys.** The metadata (`/.well-known/oauth-authorization-server`,
///   whose `issuer` must be exactly the configured one, RFC 8414 §3.3)
///   names the JWKS, fetched at start, again every
///   [`key_refresh`](RemoteBuilder::key_refresh), and when a token names a
///   `kid` the set lacks (right after a `warden keys rotate`). That last
///   fetch is rate-limited (one per
///   [`unknown_kid_interval`](RemoteBuilder::unknown_kid_interval)); the
///   request that caused it waits for it (at most
///   [`unknown_kid_wait`](RemoteBuilder::unknown_kid_wait)) and is then
///   verified against the new keys, so the first user of a new key sees no
///   401; other unknown-`kid` tokens in the meantime join that wait, and
///   after it they are refused at once. When a fetch fails the last good
///   keys stay, and a warning is logged.
/// - **Algorithm.** Pinned by you. The JWKS only supplies keys of that
///   algorithm's family; a token's header never chooses.
/// - **Revocations.** See [`RemoteBuilder::revocations`] and
///   [`Credentials`].
///
/// Cheap to clone. The background tasks end when the last `Remote` and the
/// last clone of its verifier are dropped. Must be started inside a Tokio
/// runtime.
#[derive(Clone)]
pub struct Remote {
    verifier: Verifier,
    refresh: Arc<KeyRefresh>,
    _stop: Arc<Stop>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// Starts setting up a guard for the warden at `issuer` (its
    /// `WARDEN_ISSUER`, e.g. `https://auth.example.com`), accepting only
    /// tokens signed with `algorithm`.
    pub fn builder(issuer: impl Into<String>, algorithm: Algorithm) -> RemoteBuilder {
        RemoteBuilder {
            issuer: issuer.into(),
            algorithm,
            audience: None,
            check: None,
            credentials: None,
            key_refresh: DEFAULT_KEY_REFRESH,
            unknown_kid_interval: DEFAULT_UNKNOWN_KID_INTERVAL,
            unknown_kid_wait: DEFAULT_UNKNOWN_KID_WAIT,
            poll_wait: DEFAULT_POLL_WAIT,
            cache_capacity: crate::DEFAULT_CACHE_CAPACITY,
            client: None,
        }
    }

    /// The verifier: put it in your axum state (the extractors find it
    /// through `FromRef`). It keeps the background tasks running too.
    pub fn verifier(&self) -> Verifier {
        self.verifier.clone()
    }

    /// How many times the keys have been fetched (the one at start
    /// included): for tests and metrics.
    pub fn key_fetches(&self) -> u64 {
        self.refresh.fetches.load(Ordering::Relaxed)
    }
}

/// The unknown-`kid` hook and the state of the key fetcher.
struct KeyRefresh {
    born: Instant,
    /// When (ms since `born`) an unknown `kid` last asked for a fetch.
    last_requested_ms: AtomicU64,
    requested_once: AtomicBool,
    interval: Duration,
    wait: Duration,
    wake: Notify,
    fetching: AtomicBool,
    /// Bumped after every fetch, successful or not.
    fetched: watch::Sender<u64>,
    fetches: AtomicU64,
}

impl KeyRefresh {
    fn waiter(&self) -> KeyWait {
        let mut done = self.fetched.subscribe();
        let wait = self.wait;
        Box::pin(async move {
            let _ = tokio::time::timeout(wait, done.changed()).await;
        })
    }
}

impl UnknownKid for KeyRefresh {
    fn unknown_kid(&self) -> Option<KeyWait> {
        let now = self.born.elapsed().as_millis() as u64;
        let last = self.last_requested_ms.load(Ordering::Acquire);
        let interval = self.interval.as_millis() as u64;
        let allowed = !self.requested_once.load(Ordering::Acquire) || now >= last + interval;
        if allowed
            && self
                .last_requested_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.requested_once.store(true, Ordering::Release);
            // Subscribed before the wake-up, so the fetch cannot finish
            // unseen.
            let wait = self.waiter();
            self.fetching.store(true, Ordering::Release);
            self.wake.notify_one();
            return Some(wait);
        }
        // A fetch asked for (by us or another request) and not yet done:
        // wait for it too. Otherwise refuse at once.
        self.fetching.load(Ordering::Acquire).then(|| self.waiter())
    }
}

pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, RemoteError> {
    let fail = |reason: String| RemoteError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let response = client
        .get(url)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| fail(chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("HTTP {status}")));
    }
    response
        .json::<T>()
        .await
        .map_err(|e| fail(format!("unexpected answer: {}", chain(&e))))
}

async fn fetch_keys(
    client: &reqwest::Client,
    url: &str,
    algorithm: Algorithm,
) -> Result<KeySet, RemoteError> {
    let jwks: JwkSet = get_json(client, url).await?;
    let keys = KeySet::from_jwks(&jwks, algorithm);
    if keys.is_empty() {
        return Err(RemoteError::NoKeys {
            url: url.to_owned(),
            algorithm,
        });
    }
    Ok(keys)
}

/// Fetches the keys every `every`, and when an unknown `kid` asks for it;
/// installs them when they changed. Ends when the guard is dropped.
async fn refresh_keys(
    client: reqwest::Client,
    url: String,
    algorithm: Algorithm,
    verifier: WeakVerifier,
    refresh: Arc<KeyRefresh>,
    every: Duration,
    mut stop: watch::Receiver<()>,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            // `Err`: the guard is gone.
            _ = stop.changed() => return,
            () = tokio::time::sleep(every) => {}
            () = refresh.wake.notified() => {}
        }
        let fetched = fetch_keys(&client, &url, algorithm).await;
        refresh.fetches.fetch_add(1, Ordering::Relaxed);
        let Some(verifier) = verifier.upgrade() else {
            return;
        };
        match fetched {
            Ok(keys) => {
                if failing {
                    tracing::info!(url = %url, "warden-guard: fetched the keys again");
                }
                failing = false;
                if !keys.same_kids(&verifier.keys()) {
                    tracing::info!(url = %url, keys = keys.len(), "warden-guard: new keys");
                    verifier.replace_keys(keys);
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("warden-guard: keeping the last keys: {e}");
                }
                failing = true;
            }
        }
        drop(verifier);
        refresh.fetching.store(false, Ordering::Release);
        refresh.fetched.send_modify(|n| *n += 1);
    }
}
