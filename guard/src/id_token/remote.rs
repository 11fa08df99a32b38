//! An [`IdTokenVerifier`] set up from warden's OpenID discovery document,
//! whose keys follow warden's key rotation: a token with an unknown `kid`
//! makes it fetch the JWKS once more (rate-limited) before it is refused.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use super::{
    DEFAULT_ID_TOKEN_LEEWAY, IdTokenClaims, IdTokenError, IdTokenVerifier, Inner, LogoutClaims,
    allowed,
};
use crate::remote::{chain, get_json};
use crate::{Clock, DEFAULT_UNKNOWN_KID_INTERVAL, KeySet, RemoteError};

/// Deadline of the connection to warden.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The fields of OpenID Connect Discovery 1.0 metadata used here.
#[derive(Deserialize)]
struct OpenIdMetadata {
    issuer: String,
    jwks_uri: String,
}

/// Where a discovered verifier gets its keys again.
pub(super) struct JwksSource {
    client: reqwest::Client,
    jwks_uri: String,
    interval: Duration,
    /// When an unknown `kid` last made us fetch the keys (`None`: never,
    /// so the first one may at once, even right after the start).
    last: Mutex<Option<Instant>>,
    /// One fetch at a time; who waited for it uses its keys.
    fetching: tokio::sync::Mutex<()>,
    /// Fetches so far (the one at start included).
    fetches: AtomicU64,
}

/// Sets up an [`IdTokenVerifier`] from warden's discovery document. From
/// [`IdTokenVerifier::discover`].
pub struct IdTokenDiscovery {
    issuer: String,
    client_id: String,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    clock: Option<Clock>,
    unknown_kid_interval: Duration,
    client: Option<reqwest::Client>,
}

impl fmt::Debug for IdTokenDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTokenDiscovery")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl IdTokenDiscovery {
    /// Accept exactly these algorithms (default `[RS256]`); see
    /// [`IdTokenVerifierBuilder::algorithms`](super::IdTokenVerifierBuilder::algorithms).
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = allowed(algorithms);
        self
    }

    /// The clock skew allowed on `exp`, `iat` and `nbf` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Use `clock` instead of the system clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Fetch the keys because of an unknown `kid` at most once per
    /// `interval` (default 10 s): tokens with made-up `kid`s cannot make
    /// the verifier hammer warden.
    pub fn unknown_kid_interval(mut self, interval: Duration) -> Self {
        self.unknown_kid_interval = interval;
        self
    }

    /// Use this HTTP client (proxies, custom roots).
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Fetches `{issuer}/.well-known/openid-configuration` (whose `issuer`
    /// must be exactly the configured one, OpenID Connect Discovery 1.0
    /// §4.3) and its `jwks_uri`, keeping the keys of the allowed
    /// algorithms. Fails when warden cannot be reached or publishes no
    /// such key.
    pub async fn start(self) -> Result<IdTokenVerifier, RemoteError> {
        let base = self.issuer.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(RemoteError::Issuer(self.issuer));
        }
        let client = match self.client {
            Some(c) => c,
            None => reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("warden-guard/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| RemoteError::Fetch {
                    url: self.issuer.clone(),
                    reason: chain(&e),
                })?,
        };
        let metadata_url = format!("{base}/.well-known/openid-configuration");
        let metadata: OpenIdMetadata = get_json(&client, &metadata_url).await?;
        if metadata.issuer != self.issuer {
            return Err(RemoteError::IssuerMismatch {
                expected: self.issuer,
                found: metadata.issuer,
            });
        }
        let keys = fetch(&client, &metadata.jwks_uri, &self.algorithms).await?;
        Ok(IdTokenVerifier {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                client_id: self.client_id,
                algorithms: self.algorithms,
                keys: ArcSwap::from_pointee(keys),
                leeway: self.leeway.as_secs() as i64,
                clock: self.clock,
                source: Some(JwksSource {
                    client,
                    jwks_uri: metadata.jwks_uri,
                    interval: self.unknown_kid_interval,
                    last: Mutex::new(None),
                    fetching: tokio::sync::Mutex::new(()),
                    fetches: AtomicU64::new(1),
                }),
            }),
        })
    }
}

/// The keys for `algorithms` at `url`; none is an error.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    algorithms: &[Algorithm],
) -> Result<KeySet, RemoteError> {
    let jwks: JwkSet = get_json(client, url).await?;
    let keys = KeySet::from_jwks_for(&jwks, algorithms);
    if keys.is_empty() {
        return Err(RemoteError::NoKeys {
            url: url.to_owned(),
            algorithm: algorithms.first().copied().unwrap_or(Algorithm::RS256),
        });
    }
    Ok(keys)
}

impl IdTokenVerifier {
    /// Starts setting up a verifier for the ID tokens that the warden at
    /// `issuer` (its `WARDEN_ISSUER`, exactly) issues to `client_id`, with
    /// keys from its discovery document's `jwks_uri`.
    ///
    /// ```no_run
    /// use warden_guard::{Algorithm, IdTokenVerifier};
    ///
    /// # async fn run(id_token: &str, nonce: &str, access_token: &str)
    /// #     -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = IdTokenVerifier::discover("https://auth.example.com", "my-client-id")
    ///     .algorithms(&[Algorithm::RS256])
    ///     .start()
    ///     .await?;
    /// let claims = verifier
    ///     .verify_async(id_token, Some(nonce), Some(access_token))
    ///     .await?;
    /// println!("signed in: {}", claims.sub);
    /// # Ok(())
    /// # }
    /// ```
    pub fn discover(issuer: impl Into<String>, client_id: impl Into<String>) -> IdTokenDiscovery {
        IdTokenDiscovery {
            issuer: issuer.into(),
            client_id: client_id.into(),
            algorithms: vec![Algorithm::RS256],
            leeway: DEFAULT_ID_TOKEN_LEEWAY,
            clock: None,
            unknown_kid_interval: DEFAULT_UNKNOWN_KID_INTERVAL,
            client: None,
        }
    }

    /// [`verify`](Self::verify), except that a token signed by a key the
    /// verifier does not hold makes a discovered verifier fetch warden's
    /// JWKS once more (at most once per
    /// [`unknown_kid_interval`](IdTokenDiscovery::unknown_kid_interval))
    /// and try again; then an unknown `kid` is refused.
    pub async fn verify_async(
        &self,
        id_token: &str,
        expected_nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<IdTokenClaims, IdTokenError> {
        match self.verify(id_token, expected_nonce, access_token) {
            Err(IdTokenError::UnknownKid) if self.refresh_keys().await => {
                self.verify(id_token, expected_nonce, access_token)
            }
            result => result,
        }
    }

    /// [`verify_logout_token`](Self::verify_logout_token) with the key
    /// refresh of [`verify_async`](Self::verify_async).
    pub async fn verify_logout_token_async(
        &self,
        logout_token: &str,
    ) -> Result<LogoutClaims, IdTokenError> {
        match self.verify_logout_token(logout_token) {
            Err(IdTokenError::UnknownKid) if self.refresh_keys().await => {
                self.verify_logout_token(logout_token)
            }
            result => result,
        }
    }

    /// How many times the keys were fetched (the one at start included); 0
    /// for a verifier that was not discovered.
    pub fn key_fetches(&self) -> u64 {
        self.inner
            .source
            .as_ref()
            .map_or(0, |s| s.fetches.load(Ordering::Relaxed))
    }

    /// Fetches the keys again unless that happened less than the interval
    /// ago; `true` when there are newer keys to try (ours, or those of a
    /// fetch we waited for).
    async fn refresh_keys(&self) -> bool {
        let Some(source) = &self.inner.source else {
            return false;
        };
        let seen = source.fetches.load(Ordering::Acquire);
        let _one_at_a_time = source.fetching.lock().await;
        if source.fetches.load(Ordering::Acquire) != seen {
            return true;
        }
        {
            let mut last = source.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < source.interval) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let fetched = fetch(&source.client, &source.jwks_uri, &self.inner.algorithms).await;
        source.fetches.fetch_add(1, Ordering::AcqRel);
        match fetched {
            Ok(keys) => {
                self.replace_keys(keys);
                true
            }
            Err(e) => {
                tracing::warn!("warden-guard: keeping the last ID token keys: {e}");
                false
            }
        }
    }
}
