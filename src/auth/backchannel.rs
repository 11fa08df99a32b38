//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): the
//! logout token (§2.4) and its delivery to a client's
//! `backchannel_logout_uri` (§2.5). The rows come from the outbox, queued
//! by the store with the session end; [`crate::auth::outbox`] runs them.

use std::sync::Once;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::{Services, keys};
use crate::domain::BackchannelLogout;

/// The `events` member that makes a JWT a logout token.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The JWT `typ` of a logout token (§2.4, as recommended).
pub const LOGOUT_TOKEN_TYPE: &str = "logout+jwt";

/// How long a logout token is valid (§2.4 says "short": two minutes).
pub const LOGOUT_TOKEN_TTL: i64 = 120;

/// How long one delivery may take, connecting included.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Serialize)]
struct LogoutClaims<'a> {
    iss: &'a str,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    events: serde_json::Value,
}

/// Why a delivery did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The row's algorithm is not one warden signs with.
    #[error("unsupported signing algorithm {0:?}")]
    Algorithm(String),
    /// No key of the algorithm is loaded (yet).
    #[error("no signing key for {0}")]
    NoKey(&'static str),
    #[error("signing failed: {0}")]
    Signing(String),
    /// The client could not be reached, or answered too slowly.
    #[error("request failed: {0}")]
    Request(String),
    /// The client answered, but not with a 2xx.
    #[error("answered {0}")]
    Status(u16),
}

/// The HTTP client of the deliveries: no redirects (the contract: warden
/// does not follow them), a short timeout, TLS by rustls on ring.
pub fn http_client() -> reqwest::Client {
    static PROVIDER: Once = Once::new();
    // Another part of the process may have installed one first: either
    // serves.
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(DELIVERY_TIMEOUT)
        .connect_timeout(DELIVERY_TIMEOUT)
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client without custom TLS settings builds")
}

fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "EdDSA" => Some(Algorithm::EdDSA),
        "ES256" => Some(Algorithm::ES256),
        "RS256" => Some(Algorithm::RS256),
        "HS256" => Some(Algorithm::HS256),
        _ => None,
    }
}

/// The signed logout token for `logout`, issued at `now`, with a fresh
/// `jti`. Signed with the client's id-token algorithm, as its id tokens
/// are; never a `nonce` (§2.4 forbids it).
pub fn logout_token(
    state: &Services,
    logout: &BackchannelLogout,
    now: i64,
) -> Result<String, DeliveryError> {
    let alg =
        parse_algorithm(&logout.alg).ok_or_else(|| DeliveryError::Algorithm(logout.alg.clone()))?;
    let ring = state.tokens.keys();
    let key = ring
        .signing_key(alg)
        .ok_or(DeliveryError::NoKey(keys::algorithm_name(alg)))?;
    let mut header = Header::new(alg);
    header.typ = Some(LOGOUT_TOKEN_TYPE.to_owned());
    header.kid = Some(key.kid.clone());
    let claims = LogoutClaims {
        iss: state.tokens.issuer(),
        aud: logout.client_id.to_string(),
        iat: now,
        exp: now + LOGOUT_TOKEN_TTL,
        jti: Uuid::new_v4().to_string(),
        sub: logout.sub.to_string(),
        sid: logout.sid.map(|sid| sid.to_string()),
        events: serde_json::json!({ LOGOUT_EVENT: {} }),
    };
    key.sign(&header, &claims)
        .map_err(|e| DeliveryError::Signing(e.to_string()))
}

/// POSTs a fresh logout token to the client (§2.5): any 2xx is delivered.
pub async fn deliver(
    state: &Services,
    client: &reqwest::Client,
    logout: &BackchannelLogout,
    now: i64,
) -> Result<(), DeliveryError> {
    let token = logout_token(state, logout, now)?;
    let response = client
        .post(&logout.uri)
        .header(reqwest::header::CACHE_CONTROL, "no-store")
        .form(&[("logout_token", token.as_str())])
        .send()
        .await
        // Without the URL: it is the client's own, but errors are logged.
        .map_err(|e| DeliveryError::Request(e.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Status(status.as_u16()))
    }
}
