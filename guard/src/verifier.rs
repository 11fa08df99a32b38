use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::cache::TokenCache;

use crate::claims::{RawClaims, Verified};
use crate::{AuthError, Caller, Claims, ClientClaims};

/// Tokens longer than this are rejected before any parsing or crypto: a
/// warden access token is well under 1 KiB, and an attacker should not be
/// able to make us base64-decode and hash megabytes per request.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A revocation hook, run on every token that passed signature and claim
/// checks. warden's server uses it to reject tokens of ended sessions and of
/// users whose password or roles changed after the token was issued.
///
/// It runs on the request path: it must answer from memory, quickly.
pub trait TokenCheck: Send + Sync + 'static {
    /// `false` rejects the token with 401 `"Invalid token"`.
    fn is_live(&self, claims: &Claims) -> bool;

    /// The same for a client's own token (`client_credentials`). The
    /// default lets every one through: a check written before client
    /// tokens existed knows nothing to revoke them by. warden's own gate
    /// refuses the tokens of a client deleted on that instance.
    fn is_client_live(&self, claims: &ClientClaims) -> bool {
        let _ = claims;
        true
    }
}

/// What [`UnknownKid::unknown_kid`] may return: a wait that ends when a
/// key refresh it started (or joined) has finished.
pub type KeyWait = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A hook for tokens whose `kid` the key set does not hold: a key fetcher
/// (such as [`Remote`](crate::Remote)) refetches the keys, since the token
/// may be signed by a key published after the last fetch.
///
/// It is called only on that failure, never for a token with a known key,
/// and must be cheap and rate-limited itself: the `kid` comes from an
/// unverified token, so anyone can send a thousand made-up ones.
pub trait UnknownKid: Send + Sync + 'static {
    /// A token named a `kid` we do not have. Start a refresh if one is
    /// allowed now; return a wait for it (or for one already running) if
    /// the request should wait and try the token again, or `None` to
    /// refuse it at once.
    fn unknown_kid(&self) -> Option<KeyWait>;
}

/// The current time in seconds since the Unix epoch. Injectable so tests can
/// move time instead of sleeping.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Verification keys by `kid`.
///
/// The `kid` of a token only *selects* among keys this set already holds; a
/// token can never bring its own key (`jwk`, `jku`, `x5u` headers are
/// ignored) or choose the algorithm.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
    /// The `alg` a JWK declared, by `kid`: such a key verifies only that
    /// algorithm (RFC 7517 §4.4).
    algorithms: HashMap<String, Algorithm>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the key with id `kid`.
    pub fn insert(&mut self, kid: impl Into<String>, key: DecodingKey) {
        let kid = kid.into();
        self.algorithms.remove(&kid);
        self.keys.insert(kid, key);
    }

    /// Adds (or replaces) the key with id `kid` that may verify only
    /// `algorithm` (a JWK's `alg`).
    pub fn insert_for(&mut self, kid: impl Into<String>, key: DecodingKey, algorithm: Algorithm) {
        let kid = kid.into();
        self.algorithms.insert(kid.clone(), algorithm);
        self.keys.insert(kid, key);
    }

    /// Every key of a JWKS document that has a `kid` and can verify one of
    /// `algorithms` (when the JWK declares an `alg`, that one must be in
    /// the list, and the key then verifies only it); other keys are skipped.
    /// What an ID token verifier uses: a warden that signs ID tokens with
    /// several algorithms publishes one key for each.
    pub fn from_jwks_for(jwks: &JwkSet, algorithms: &[Algorithm]) -> Self {
        let mut set = Self::new();
        for jwk in &jwks.keys {
            let Some(kid) = jwk.common.key_id.as_deref() else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let declared = match jwk.common.key_algorithm {
                Some(alg) => match Algorithm::try_from(alg) {
                    Ok(alg) => Some(alg),
                    // An encryption key (`RSA-OAEP`, ...): not for us.
                    Err(_) => continue,
                },
                None => None,
            };
            match declared {
                Some(alg) if algorithms.contains(&alg) && key.family() == alg.family() => {
                    set.insert_for(kid, key, alg);
                }
                Some(_) => {}
                None if algorithms.iter().any(|a| a.family() == key.family()) => {
                    set.insert(kid, key);
                }
                None => {}
            }
        }
        set
    }

    /// Every key of a JWKS document that has a `kid` and can verify
    /// `algorithm`; other keys are skipped.
    pub fn from_jwks(jwks: &JwkSet, algorithm: Algorithm) -> Self {
        let mut set = Self::new();
        for jwk in &jwks.keys {
            let Some(kid) = jwk.common.key_id.as_deref() else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            if key.family() == algorithm.family() {
                set.insert(kid, key);
            }
        }
        set
    }

    /// Whether both sets hold the same key ids. (A warden `kid` is the
    /// key's RFC 7638 thumbprint, so the same id is the same key.)
    pub fn same_kids(&self, other: &KeySet) -> bool {
        self.keys.len() == other.keys.len() && self.keys.keys().all(|k| other.keys.contains_key(k))
    }

    /// The keys of a JWKS document's JSON text that can verify `algorithm`.
    pub fn from_jwks_json(jwks: &str, algorithm: Algorithm) -> Result<Self, VerifierError> {
        let set: JwkSet = serde_json::from_str(jwks).map_err(VerifierError::Jwks)?;
        let keys = Self::from_jwks(&set, algorithm);
        if keys.is_empty() {
            return Err(VerifierError::NoKeys);
        }
        Ok(keys)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid)
    }

    /// The key `kid` if it can verify `algorithm`: of its family, and that
    /// very algorithm when the key declared one.
    pub(crate) fn get_for(&self, kid: &str, algorithm: Algorithm) -> Option<&DecodingKey> {
        let key = self.keys.get(kid)?;
        if key.family() != algorithm.family() {
            return None;
        }
        match self.algorithms.get(kid) {
            Some(declared) if *declared != algorithm => None,
            _ => Some(key),
        }
    }

    /// The one key that can verify `algorithm`, if there is exactly one
    /// (for a token without `kid`).
    pub(crate) fn only_for(&self, algorithm: Algorithm) -> Option<&DecodingKey> {
        let mut fitting = self
            .keys
            .keys()
            .filter_map(|kid| self.get_for(kid, algorithm));
        let key = fitting.next()?;
        fitting.next().is_none().then_some(key)
    }

    /// Whether the set holds a key by this id (of any algorithm).
    pub(crate) fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key material (an HMAC secret, for HS256) is never printed.
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a [`Verifier`] could not be built.
#[derive(Debug)]
pub enum VerifierError {
    /// The JWKS document is not valid JSON of the JWKS shape.
    Jwks(serde_json::Error),
    /// The JWKS document holds no usable key for the algorithm.
    NoKeys,
}

impl fmt::Display for VerifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jwks(e) => write!(f, "invalid JWKS document: {e}"),
            Self::NoKeys => {
                f.write_str("the JWKS document has no key for the configured algorithm")
            }
        }
    }
}

impl std::error::Error for VerifierError {}

struct Inner {
    algorithm: Algorithm,
    keys: ArcSwap<KeySet>,
    validation: Validation,
    check: Option<Arc<dyn TokenCheck>>,
    clock: Option<Clock>,
    cache: TokenCache,
    unknown_kid: Option<Arc<dyn UnknownKid>>,
    /// Whatever must live as long as the verifier (a [`Remote`]'s
    /// background tasks end when it is dropped).
    ///
    /// [`Remote`]: crate::Remote
    _attached: Option<Arc<dyn Send + Sync>>,
}

/// Why a token failed, inside the verifier: an unknown `kid` may be worth
/// a key refresh.
enum Failure {
    UnknownKid,
    Auth(AuthError),
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

/// Verifies warden access tokens: one pinned algorithm, a key set chosen by
/// the verifier's owner, issuer (and audience, when set) checks, `typ`
/// `at+jwt`, and an optional revocation hook. Cheap to clone.
///
/// Tokens that verified are cached (keyed by their exact bytes, bounded, see
/// [`VerifierBuilder::cache_capacity`]); a cached token still has `exp`,
/// `nbf` and the revocation hook checked on every use.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.inner.algorithm)
            .field("keys", &**self.inner.keys.load())
            .finish()
    }
}

/// Builds a [`Verifier`].
pub struct VerifierBuilder {
    algorithm: Algorithm,
    keys: KeySet,
    issuer: String,
    audience: Option<String>,
    check: Option<Arc<dyn TokenCheck>>,
    clock: Option<Clock>,
    cache_capacity: usize,
    unknown_kid: Option<Arc<dyn UnknownKid>>,
    attached: Option<Arc<dyn Send + Sync>>,
}

/// How many verified tokens a [`Verifier`] remembers by default: a few MiB.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

impl VerifierBuilder {
    /// Remember up to about `capacity` verified tokens (default
    /// [`DEFAULT_CACHE_CAPACITY`]); 0 verifies every token from scratch.
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Require this `aud` claim.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Run `check` on every otherwise valid token.
    pub fn check(mut self, check: Arc<dyn TokenCheck>) -> Self {
        self.check = Some(check);
        self
    }

    /// Call `hook` when a token names a `kid` the key set lacks (see
    /// [`UnknownKid`]); the extractors then wait for the wait it returns
    /// and verify the token once more.
    pub fn on_unknown_kid(mut self, hook: Arc<dyn UnknownKid>) -> Self {
        self.unknown_kid = Some(hook);
        self
    }

    /// Keeps `value` alive as long as the verifier (or a clone) is.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn attach(mut self, value: Arc<dyn Send + Sync>) -> Self {
        self.attached = Some(value);
        self
    }

    /// Use `clock` instead of the system clock for `exp` and `nbf`.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The verifier.
    pub fn build(self) -> Verifier {
        let mut validation = Validation::new(self.algorithm);
        // Time is checked by us, with the injectable clock and no leeway, so
        // "expired" and "not yet valid" are told apart exactly.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_issuer(&[self.issuer.as_str()]);
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud.as_str()]);
                validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub", "aud"]);
            }
            None => {
                validation.validate_aud = false;
                validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
            }
        }
        Verifier {
            inner: Arc::new(Inner {
                algorithm: self.algorithm,
                keys: ArcSwap::from_pointee(self.keys),
                validation,
                check: self.check,
                clock: self.clock,
                cache: TokenCache::new(self.cache_capacity),
                unknown_kid: self.unknown_kid,
                _attached: self.attached,
            }),
        }
    }
}

impl Verifier {
    /// Starts a verifier that accepts only `algorithm`, only keys of
    /// `keys`, and only tokens issued by `issuer`.
    pub fn builder(
        algorithm: Algorithm,
        keys: KeySet,
        issuer: impl Into<String>,
    ) -> VerifierBuilder {
        VerifierBuilder {
            algorithm,
            keys,
            issuer: issuer.into(),
            audience: None,
            check: None,
            clock: None,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            unknown_kid: None,
            attached: None,
        }
    }

    /// A verifier for the keys of warden's JWKS document
    /// (`GET /.well-known/jwks.json`). It checks no audience: when warden is
    /// configured with `WARDEN_AUDIENCE`, use [`Verifier::builder`] with
    /// [`KeySet::from_jwks_json`] and [`VerifierBuilder::audience`].
    pub fn from_jwks_json(
        jwks: &str,
        algorithm: Algorithm,
        issuer: impl Into<String>,
    ) -> Result<Self, VerifierError> {
        let keys = KeySet::from_jwks_json(jwks, algorithm)?;
        Ok(Self::builder(algorithm, keys, issuer).build())
    }

    /// The pinned algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.algorithm
    }

    /// Swaps in a new key set (after a key rotation). Requests in flight
    /// finish with the set they started with.
    pub fn replace_keys(&self, keys: KeySet) {
        self.inner.keys.store(Arc::new(keys));
        // A token verified under the old set may be signed by a key that is
        // gone now: forget them all (they re-verify on next use).
        self.inner.cache.invalidate();
    }

    /// The current key set.
    pub fn keys(&self) -> Arc<KeySet> {
        self.inner.keys.load_full()
    }

    /// A handle that does not keep the verifier alive.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn downgrade(&self) -> WeakVerifier {
        WeakVerifier(Arc::downgrade(&self.inner))
    }

    #[cfg(test)]
    pub(crate) fn cached_tokens(&self) -> usize {
        self.inner.cache.len()
    }

    fn now(&self) -> i64 {
        match &self.inner.clock {
            Some(clock) => clock(),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        }
    }

    /// Verifies a user's `token` (the part after `Bearer `) and returns its
    /// claims. A client's own token (`client_credentials`) is refused as
    /// `Invalid`: it is not a user; see [`Verifier::verify_caller`].
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify_shared(token).map(Arc::unwrap_or_clone)
    }

    /// [`Verifier::verify`] without copying the claims. A token with an
    /// unknown `kid` is refused at once (the [`UnknownKid`] hook, if any, is
    /// told, so a refresh may start).
    pub fn verify_shared(&self, token: &str) -> Result<Arc<Claims>, AuthError> {
        match self.verify_any(token)? {
            Verified::User(claims) => Ok(claims),
            Verified::Client(_) => Err(AuthError::Invalid),
        }
    }

    /// Verifies a token of either kind: a user's ([`Caller::User`]) or a
    /// client's own ([`Caller::Client`]).
    pub fn verify_caller(&self, token: &str) -> Result<Caller, AuthError> {
        self.verify_any(token).map(Verified::into_caller)
    }

    pub(crate) fn verify_any(&self, token: &str) -> Result<Verified, AuthError> {
        match self.check(token) {
            Ok(claims) => Ok(claims),
            Err(Failure::Auth(e)) => Err(e),
            Err(Failure::UnknownKid) => {
                if let Some(hook) = &self.inner.unknown_kid {
                    // Not waited for: this call does not block.
                    drop(hook.unknown_kid());
                }
                Err(AuthError::Invalid)
            }
        }
    }

    /// What the extractors use: [`Verifier::verify_shared`], except that a
    /// token with an unknown `kid` waits for the key refresh the
    /// [`UnknownKid`] hook starts (or joins), and is then verified once
    /// more. A cache hit allocates nothing.
    pub async fn verify_request(&self, token: &str) -> Result<Arc<Claims>, AuthError> {
        match self.verify_any_request(token).await? {
            Verified::User(claims) => Ok(claims),
            Verified::Client(_) => Err(AuthError::Invalid),
        }
    }

    /// [`Verifier::verify_request`] for a token of either kind.
    pub async fn verify_caller_request(&self, token: &str) -> Result<Caller, AuthError> {
        self.verify_any_request(token)
            .await
            .map(Verified::into_caller)
    }

    pub(crate) async fn verify_any_request(&self, token: &str) -> Result<Verified, AuthError> {
        match self.check(token) {
            Ok(claims) => Ok(claims),
            Err(Failure::Auth(e)) => Err(e),
            Err(Failure::UnknownKid) => {
                let wait = self
                    .inner
                    .unknown_kid
                    .as_ref()
                    .and_then(|h| h.unknown_kid());
                let Some(wait) = wait else {
                    return Err(AuthError::Invalid);
                };
                wait.await;
                match self.check(token) {
                    Ok(claims) => Ok(claims),
                    Err(Failure::Auth(e)) => Err(e),
                    Err(Failure::UnknownKid) => Err(AuthError::Invalid),
                }
            }
        }
    }

    fn check(&self, token: &str) -> Result<Verified, Failure> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid.into());
        }
        let inner = &*self.inner;
        let now = self.now();
        let (claims, generation) = match inner.cache.get(token) {
            Some(claims) => (claims, None),
            None => {
                let generation = inner.cache.generation();
                (self.decode(token)?, Some(generation))
            }
        };
        // RFC 7519 §4.1.4: the current time must be *before* `exp`.
        if now >= claims.exp() {
            return Err(AuthError::Expired.into());
        }
        if claims.nbf() > now {
            return Err(AuthError::Invalid.into());
        }
        if let Some(check) = &inner.check {
            let live = match &claims {
                Verified::User(c) => check.is_live(c),
                Verified::Client(c) => check.is_client_live(c),
            };
            if !live {
                return Err(AuthError::Invalid.into());
            }
        }
        if let Some(generation) = generation {
            inner.cache.insert(token, claims.clone(), generation, now);
        }
        Ok(claims)
    }

    /// Everything about a token that depends only on its bytes and on our
    /// keys: the JOSE header, the signature, and the claims' shape, issuer
    /// and audience. (Time and revocation are checked on every use.)
    fn decode(&self, token: &str) -> Result<Verified, Failure> {
        let inner = &*self.inner;
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        // RFC 9068 §4: the `typ` must be `at+jwt` (or its full media type);
        // this stops an ID token or any other JWT signed by the same key from
        // being replayed as an access token.
        match header.typ.as_deref() {
            Some(t)
                if t.eq_ignore_ascii_case("at+jwt")
                    || t.eq_ignore_ascii_case("application/at+jwt") => {}
            _ => return Err(AuthError::Invalid.into()),
        }
        if header.alg != inner.algorithm {
            return Err(AuthError::Invalid.into());
        }
        let kid = header.kid.as_deref().ok_or(AuthError::Invalid)?;
        let keys = inner.keys.load();
        let key = keys.get(kid).ok_or(Failure::UnknownKid)?;
        let raw = jsonwebtoken::decode::<RawClaims>(token, key, &inner.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Failure::Auth(AuthError::Expired),
                _ => Failure::Auth(AuthError::Invalid),
            })?;
        raw.classify().ok_or(Failure::Auth(AuthError::Invalid))
    }
}

/// A [`Verifier`] that does not keep it alive: what a background task
/// holds, so the task can end when the application drops the verifier.
#[derive(Clone)]
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub(crate) struct WeakVerifier(Weak<Inner>);

#[cfg_attr(not(feature = "remote"), allow(dead_code))]
impl WeakVerifier {
    pub(crate) fn upgrade(&self) -> Option<Verifier> {
        self.0.upgrade().map(|inner| Verifier { inner })
    }
}
