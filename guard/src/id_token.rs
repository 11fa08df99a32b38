//! [`IdTokenVerifier`]: for an application that signs its users in through
//! warden (warden is its OpenID Provider): verifies the ID tokens of the
//! code flow (OpenID Connect Core 1.0 §3.1.3.7) and the logout tokens of
//! Back-Channel Logout 1.0 (§2.6).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Digest;

use crate::{Clock, KeySet, VerifierError};

/// ID and logout tokens longer than this are refused before any parsing:
/// warden's are about 1 KiB.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The clock skew allowed on `exp`, `iat` and `nbf` by default.
pub const DEFAULT_ID_TOKEN_LEEWAY: Duration = Duration::from_secs(60);

/// How old a logout token without `exp` may be (by its `iat`).
const LOGOUT_TOKEN_MAX_AGE: i64 = 600;

/// The member of a logout token's `events` claim (Back-Channel Logout 1.0
/// §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Why an ID token or logout token was refused. Its `Display` is one line
/// for a log; show the user something vaguer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdTokenError {
    /// Not a JWT (three base64url parts of JSON), a JOSE header we cannot
    /// read (`alg: none` included), or over 16 KiB.
    Malformed,
    /// The header's `alg` is not on the allow-list, or the key named by
    /// `kid` is not of that algorithm.
    Algorithm,
    /// The `kid` names no key we hold (after one key refresh, for a
    /// discovered verifier); or there is no `kid` and not exactly one key
    /// for the algorithm.
    UnknownKid,
    /// The signature does not verify.
    Signature,
    /// The token is of another kind: an access token (`typ` `at+jwt`) or a
    /// logout token (`typ` `logout+jwt`, or an `events` claim) offered as
    /// an ID token, or anything but a `logout+jwt` offered as a logout token.
    WrongType,
    /// `iss` is not exactly the configured issuer.
    Issuer,
    /// `aud` does not contain the client id.
    Audience,
    /// `azp` is not the client id (or is missing while `aud` names several
    /// parties).
    AuthorizedParty,
    /// `exp` has passed (beyond the leeway), or a logout token without
    /// `exp` is too old.
    Expired,
    /// `iat` or `nbf` lies in the future (beyond the leeway).
    NotYetValid,
    /// A required claim is missing or of the wrong JSON type.
    MissingClaim(&'static str),
    /// The `nonce` is missing or not the one the sign-in sent (a replayed
    /// or injected ID token).
    Nonce,
    /// `at_hash` is missing or does not match the access token that came
    /// with the ID token.
    AtHash,
    /// A logout token with a `nonce` (Back-Channel Logout 1.0 §2.4 forbids
    /// it: it is then an ID token in disguise).
    NonceInLogoutToken,
}

impl fmt::Display for IdTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("not a readable JWT"),
            Self::Algorithm => f.write_str("algorithm not allowed, or not the key's"),
            Self::UnknownKid => f.write_str("signed by a key we do not know"),
            Self::Signature => f.write_str("the signature does not verify"),
            Self::WrongType => f.write_str("a token of another kind (typ or events)"),
            Self::Issuer => f.write_str("iss is not the configured issuer"),
            Self::Audience => f.write_str("aud does not contain our client_id"),
            Self::AuthorizedParty => f.write_str("azp is not our client_id"),
            Self::Expired => f.write_str("the token has expired"),
            Self::NotYetValid => f.write_str("iat or nbf is in the future"),
            Self::MissingClaim(claim) => write!(f, "claim {claim} is missing or malformed"),
            Self::Nonce => f.write_str("nonce is missing or not the expected one"),
            Self::AtHash => f.write_str("at_hash is missing or does not match the access token"),
            Self::NonceInLogoutToken => f.write_str("a logout token must not carry a nonce"),
        }
    }
}

impl std::error::Error for IdTokenError {}

/// The claims of a verified ID token. Everything else the token carries is
/// in [`raw`](Self::raw).
#[derive(Debug, Clone, PartialEq)]
pub struct IdTokenClaims {
    /// The user's id at warden (the same `sub` as in access tokens).
    pub sub: String,
    /// The issuer (the configured one).
    pub iss: String,
    /// The audiences (the client id among them).
    pub aud: Vec<String>,
    /// The OpenID session (warden's browser session). Back-channel logout
    /// tokens name the same `sid`.
    pub sid: Option<String>,
    /// When the user last authenticated (seconds since the epoch).
    pub auth_time: Option<i64>,
    /// How they authenticated (RFC 8176: `pwd`, `otp`, `mfa`, `hwk`, ...).
    pub amr: Vec<String>,
    pub nonce: Option<String>,
    pub preferred_username: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub exp: i64,
    pub iat: i64,
    /// The whole payload.
    pub raw: Map<String, Value>,
}

/// The claims of a verified back-channel logout token: end the user's
/// sessions here that match [`sid`](Self::sid) (or every session of
/// [`sub`](Self::sub) when there is no `sid`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogoutClaims {
    /// The user, when the token names one.
    pub sub: Option<String>,
    /// The OpenID session that ended, when the token names one (at least
    /// one of `sub` and `sid` is always there).
    pub sid: Option<String>,
    pub iss: String,
    /// The token's id: remember it until [`exp`](Self::exp) to refuse a
    /// replay, if a replayed logout matters to you (it ends a session that
    /// already ended).
    pub jti: String,
    pub iat: i64,
    pub exp: Option<i64>,
    /// The whole payload.
    pub raw: Map<String, Value>,
}

/// Which kind of token a call expects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Id,
    Logout,
}

struct Inner {
    issuer: String,
    client_id: String,
    algorithms: Vec<Algorithm>,
    keys: ArcSwap<KeySet>,
    leeway: i64,
    clock: Option<Clock>,
    #[cfg(feature = "remote")]
    source: Option<remote::JwksSource>,
}

/// Verifies warden's ID tokens (and back-channel logout tokens) for one
/// client of one issuer. Cheap to clone.
///
/// - The algorithm comes from an allow-list you give (default `RS256`), and
///   must be the key's; HMAC algorithms are never accepted.
/// - The `kid` only selects among keys the verifier already holds; a
///   token's `jwk`, `jku` or `x5u` header is ignored.
/// - `iss` must be exactly the issuer, `aud` must contain the client id
///   (and `azp` must be the client id when present, and must be present
///   when `aud` names several parties), `exp` must not have passed and
///   `iat` must be present (both with [`DEFAULT_ID_TOKEN_LEEWAY`]).
/// - [`verify`](Self::verify) also checks the `nonce` the sign-in sent
///   (compared in constant time) and the `at_hash` of the access token the
///   same response carried, and refuses access tokens (`typ` `at+jwt`)
///   and logout tokens.
/// - [`verify_logout_token`](Self::verify_logout_token) checks a
///   back-channel logout token instead.
///
/// ```
/// use warden_guard::{Algorithm, IdTokenVerifier, KeySet};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // warden's `GET /.well-known/jwks.json` (fetched by you; or use
/// // `IdTokenVerifier::discover`, feature `remote`).
/// let jwks = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
///     "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
/// let algorithms = [Algorithm::RS256, Algorithm::EdDSA];
/// let keys = KeySet::from_jwks_for(&serde_json::from_str(jwks)?, &algorithms);
/// let verifier = IdTokenVerifier::builder("https://auth.example.com", "my-client-id", keys)
///     .algorithms(&algorithms)
///     .build();
///
/// // In the callback, after the code exchange: the nonce this browser's
/// // sign-in sent, and the access token of the same token response.
/// # let (id_token, nonce, access_token) = ("x.y.z", "n-0S6_WzA2Mj", "at");
/// match verifier.verify(id_token, Some(nonce), Some(access_token)) {
///     Ok(claims) => println!("signed in: {} (session {:?})", claims.sub, claims.sid),
///     Err(e) => eprintln!("refused the ID token: {e}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct IdTokenVerifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for IdTokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTokenVerifier")
            .field("issuer", &self.inner.issuer)
            .field("client_id", &self.inner.client_id)
            .field("algorithms", &self.inner.algorithms)
            .field("keys", &**self.inner.keys.load())
            .finish()
    }
}

/// Builds an [`IdTokenVerifier`]. From [`IdTokenVerifier::builder`].
pub struct IdTokenVerifierBuilder {
    issuer: String,
    client_id: String,
    keys: KeySet,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    clock: Option<Clock>,
}

impl IdTokenVerifierBuilder {
    /// Accept exactly these algorithms (default `[RS256]`): those your
    /// client may be registered with (`id_token_signed_response_alg`).
    /// HMAC algorithms (`HS256`, ...) are dropped: an ID token signed with
    /// a shared secret is not something this verifier accepts.
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = allowed(algorithms);
        self
    }

    /// The clock skew allowed on `exp`, `iat` and `nbf` (default
    /// [`DEFAULT_ID_TOKEN_LEEWAY`]).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Use `clock` instead of the system clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The verifier.
    pub fn build(self) -> IdTokenVerifier {
        IdTokenVerifier {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                client_id: self.client_id,
                algorithms: self.algorithms,
                keys: ArcSwap::from_pointee(self.keys),
                leeway: self.leeway.as_secs() as i64,
                clock: self.clock,
                #[cfg(feature = "remote")]
                source: None,
            }),
        }
    }
}

/// The allow-list without HMAC algorithms.
fn allowed(algorithms: &[Algorithm]) -> Vec<Algorithm> {
    algorithms
        .iter()
        .copied()
        .filter(|a| a.family() != jsonwebtoken::AlgorithmFamily::Hmac)
        .collect()
}

/// The payload fields every check reads.
#[derive(Deserialize)]
struct Registered {
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    azp: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl IdTokenVerifier {
    /// Starts a verifier for the ID tokens that `issuer` (warden's
    /// `WARDEN_ISSUER`, exactly as its tokens' `iss`) issues to `client_id`,
    /// verified with `keys` (see [`KeySet::from_jwks_for`]).
    pub fn builder(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        keys: KeySet,
    ) -> IdTokenVerifierBuilder {
        IdTokenVerifierBuilder {
            issuer: issuer.into(),
            client_id: client_id.into(),
            keys,
            algorithms: vec![Algorithm::RS256],
            leeway: DEFAULT_ID_TOKEN_LEEWAY,
            clock: None,
        }
    }

    /// A verifier accepting `algorithms` with the keys of a JWKS document's
    /// JSON text.
    pub fn from_jwks_json(
        jwks: &str,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        algorithms: &[Algorithm],
    ) -> Result<Self, VerifierError> {
        let set: JwkSet = serde_json::from_str(jwks).map_err(VerifierError::Jwks)?;
        let algorithms = allowed(algorithms);
        let keys = KeySet::from_jwks_for(&set, &algorithms);
        if keys.is_empty() {
            return Err(VerifierError::NoKeys);
        }
        Ok(Self::builder(issuer, client_id, keys)
            .algorithms(&algorithms)
            .build())
    }

    /// The allowed algorithms.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.inner.algorithms
    }

    /// Swaps in a new key set (after warden rotated its keys).
    pub fn replace_keys(&self, keys: KeySet) {
        self.inner.keys.store(Arc::new(keys));
    }

    /// The current key set.
    pub fn keys(&self) -> Arc<KeySet> {
        self.inner.keys.load_full()
    }

    /// Verifies an ID token from a token response (the code exchange or a
    /// refresh): signature, algorithm, `typ`, `iss`, `aud`/`azp`, `exp`,
    /// `iat`; the `nonce` when `expected_nonce` is given (the one this
    /// browser's sign-in sent: pass it for the code exchange; a refreshed
    /// ID token may carry the original one or none); the `at_hash` when
    /// `access_token` (of the same response) is given.
    ///
    /// A token signed by a key this verifier does not hold is refused
    /// ([`IdTokenError::UnknownKid`]); a discovered verifier's
    /// [`verify_async`](Self::verify_async) fetches the keys once more
    /// first.
    pub fn verify(
        &self,
        id_token: &str,
        expected_nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<IdTokenClaims, IdTokenError> {
        let (algorithm, payload) = self.decode(id_token, Kind::Id)?;
        id_claims(algorithm, payload, expected_nonce, access_token)
    }

    /// Verifies a back-channel logout token (the `logout_token` form field
    /// warden POSTs to the client's `backchannel_logout_uri`): signature,
    /// algorithm, `typ` `logout+jwt`, `iss`, `aud`/`azp`, `iat`, `exp` (or,
    /// without one, an `iat` at most 10 minutes old), `jti`, the
    /// back-channel logout member of `events`, no `nonce`, and `sid` or
    /// `sub`. Answer 200 after ending the sessions it names; 400 when this
    /// fails.
    pub fn verify_logout_token(&self, logout_token: &str) -> Result<LogoutClaims, IdTokenError> {
        let (_, payload) = self.decode(logout_token, Kind::Logout)?;
        logout_claims(payload)
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

    /// The header and signature checks, and the claims both kinds share.
    fn decode(
        &self,
        token: &str,
        kind: Kind,
    ) -> Result<(Algorithm, Map<String, Value>), IdTokenError> {
        let inner = &*self.inner;
        if token.len() > MAX_TOKEN_LEN {
            return Err(IdTokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| IdTokenError::Malformed)?;
        let typ = header.typ.as_deref().map(|t| {
            let t = t.to_ascii_lowercase();
            t.strip_prefix("application/")
                .map(str::to_owned)
                .unwrap_or(t)
        });
        match (kind, typ.as_deref()) {
            // An access token (RFC 9068) or a logout token is never an ID
            // token, though the same key may sign them.
            (Kind::Id, Some("at+jwt" | "logout+jwt")) => return Err(IdTokenError::WrongType),
            (Kind::Id, _) => {}
            (Kind::Logout, Some("logout+jwt")) => {}
            (Kind::Logout, _) => return Err(IdTokenError::WrongType),
        }
        let algorithm = header.alg;
        if !inner.algorithms.contains(&algorithm) {
            return Err(IdTokenError::Algorithm);
        }
        let keys = inner.keys.load();
        let key = match header.kid.as_deref() {
            Some(kid) => match keys.get_for(kid, algorithm) {
                Some(key) => key,
                None if keys.contains(kid) => return Err(IdTokenError::Algorithm),
                None => return Err(IdTokenError::UnknownKid),
            },
            None => keys.only_for(algorithm).ok_or(IdTokenError::UnknownKid)?,
        };
        let mut validation = Validation::new(algorithm);
        // Every claim is checked below, with our clock and leeway.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        validation.leeway = 0;
        let payload = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => IdTokenError::Signature,
                ErrorKind::InvalidAlgorithm => IdTokenError::Algorithm,
                _ => IdTokenError::Malformed,
            })?;
        let registered: Registered = serde_json::from_value(Value::Object(payload.clone()))
            .map_err(|_| IdTokenError::Malformed)?;
        if registered.iss.as_deref() != Some(inner.issuer.as_str()) {
            return Err(IdTokenError::Issuer);
        }
        let audience = match registered.aud {
            Some(Audience::One(aud)) => vec![aud],
            Some(Audience::Many(aud)) => aud,
            None => return Err(IdTokenError::Audience),
        };
        if !audience.contains(&inner.client_id) {
            return Err(IdTokenError::Audience);
        }
        match registered.azp.as_deref() {
            Some(azp) if azp != inner.client_id => return Err(IdTokenError::AuthorizedParty),
            None if audience.len() > 1 => return Err(IdTokenError::AuthorizedParty),
            _ => {}
        }
        let now = self.now();
        let leeway = inner.leeway;
        let iat = registered.iat.ok_or(IdTokenError::MissingClaim("iat"))?;
        if iat > now + leeway || registered.nbf.is_some_and(|nbf| nbf > now + leeway) {
            return Err(IdTokenError::NotYetValid);
        }
        match (kind, registered.exp) {
            (_, Some(exp)) if now >= exp + leeway => return Err(IdTokenError::Expired),
            (_, Some(_)) => {}
            (Kind::Id, None) => return Err(IdTokenError::MissingClaim("exp")),
            (Kind::Logout, None) if now - iat > LOGOUT_TOKEN_MAX_AGE + leeway => {
                return Err(IdTokenError::Expired);
            }
            (Kind::Logout, None) => {}
        }
        Ok((algorithm, payload))
    }
}

fn string(payload: &Map<String, Value>, claim: &str) -> Option<String> {
    payload
        .get(claim)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn id_claims(
    algorithm: Algorithm,
    payload: Map<String, Value>,
    expected_nonce: Option<&str>,
    access_token: Option<&str>,
) -> Result<IdTokenClaims, IdTokenError> {
    if payload.contains_key("events") {
        // A logout token (whatever its `typ`) is not a sign-in.
        return Err(IdTokenError::WrongType);
    }
    let sub = string(&payload, "sub")
        .filter(|s| !s.is_empty())
        .ok_or(IdTokenError::MissingClaim("sub"))?;
    let nonce = string(&payload, "nonce");
    if let Some(expected) = expected_nonce {
        match nonce.as_deref() {
            Some(n) if constant_time_eq(n.as_bytes(), expected.as_bytes()) => {}
            _ => return Err(IdTokenError::Nonce),
        }
    }
    if let Some(access_token) = access_token {
        let expected = at_hash(algorithm, access_token);
        match payload.get("at_hash").and_then(Value::as_str) {
            Some(h) if constant_time_eq(h.as_bytes(), expected.as_bytes()) => {}
            _ => return Err(IdTokenError::AtHash),
        }
    }
    let number = |claim| payload.get(claim).and_then(Value::as_i64);
    Ok(IdTokenClaims {
        sub,
        iss: string(&payload, "iss").unwrap_or_default(),
        aud: match payload.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        },
        sid: string(&payload, "sid"),
        auth_time: number("auth_time"),
        amr: payload
            .get("amr")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        nonce,
        preferred_username: string(&payload, "preferred_username"),
        name: string(&payload, "name"),
        email: string(&payload, "email"),
        email_verified: payload.get("email_verified").and_then(Value::as_bool),
        exp: number("exp").unwrap_or_default(),
        iat: number("iat").unwrap_or_default(),
        raw: payload,
    })
}

fn logout_claims(payload: Map<String, Value>) -> Result<LogoutClaims, IdTokenError> {
    let events = payload
        .get("events")
        .and_then(Value::as_object)
        .ok_or(IdTokenError::WrongType)?;
    if !events
        .get(BACKCHANNEL_LOGOUT_EVENT)
        .is_some_and(Value::is_object)
    {
        return Err(IdTokenError::WrongType);
    }
    if payload.contains_key("nonce") {
        return Err(IdTokenError::NonceInLogoutToken);
    }
    let sub = string(&payload, "sub").filter(|s| !s.is_empty());
    let sid = string(&payload, "sid").filter(|s| !s.is_empty());
    if sub.is_none() && sid.is_none() {
        return Err(IdTokenError::MissingClaim("sid"));
    }
    let jti = string(&payload, "jti")
        .filter(|s| !s.is_empty())
        .ok_or(IdTokenError::MissingClaim("jti"))?;
    Ok(LogoutClaims {
        sub,
        sid,
        iss: string(&payload, "iss").unwrap_or_default(),
        jti,
        iat: payload
            .get("iat")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
        exp: payload.get("exp").and_then(Value::as_i64),
        raw: payload,
    })
}

/// The `at_hash` of `access_token` for an ID token signed with `algorithm`
/// (OpenID Connect Core 1.0 §3.1.3.6): the left half of the hash of its
/// ASCII bytes, base64url. The hash is the one of the algorithm: SHA-256
/// for `RS256`/`ES256`/`PS256`, SHA-384 for the `*384` ones, SHA-512 for
/// the `*512` ones and for `EdDSA` (Ed25519 signs with SHA-512; OpenID
/// Connect Core errata).
pub fn at_hash(algorithm: Algorithm, access_token: &str) -> String {
    let bytes = access_token.as_bytes();
    let digest: Vec<u8> = match algorithm {
        Algorithm::RS384 | Algorithm::ES384 | Algorithm::PS384 | Algorithm::HS384 => {
            sha2::Sha384::digest(bytes).to_vec()
        }
        Algorithm::RS512 | Algorithm::PS512 | Algorithm::HS512 | Algorithm::EdDSA => {
            sha2::Sha512::digest(bytes).to_vec()
        }
        _ => sha2::Sha256::digest(bytes).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// Equal bytes, in a time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(feature = "remote")]
mod remote;
#[cfg(feature = "remote")]
pub use remote::IdTokenDiscovery;

#[cfg(test)]
mod tests;
