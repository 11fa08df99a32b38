//! # warden-guard
//!
//! Verify warden's access tokens inside your own axum service.
//!
//! A resource server only needs warden's public keys (its JWKS) and the
//! issuer; it never talks to warden's database. This crate gives it:
//!
//! - [`Remote`] (feature `remote`, on by default): set up from warden's
//!   issuer URL in a few lines. It fetches warden's metadata and keys, keeps
//!   them current across `warden keys rotate` (a periodic refresh, and a
//!   rate-limited one when a token names an unknown `kid`), keeps the last
//!   good keys while warden is unreachable, and — given an account with
//!   scope `tokens:introspect` — follows warden's revocation feed, so
//!   tokens of a logged-out session or a disabled user are refused within
//!   about a second.
//! - [`Verifier`]: a pinned algorithm, a key set selected by `kid`, issuer and
//!   audience checks, and an optional [`TokenCheck`] hook for revocation.
//!   [`Remote::verifier`] hands you one; you can also build one yourself
//!   from a JWKS document.
//! - [`Claims`]: an axum extractor. `Claims` rejects a request without a
//!   valid bearer token with warden's 401 (`WWW-Authenticate: Bearer ...` and
//!   `{"detail": ...}`); `Option<Claims>` is `None` only when the request
//!   carries no `Authorization` header, and still rejects a bad token.
//! - [`RequireScope`]: an extractor that also demands scopes, named by
//!   types declared with [`scope!`]; it answers the contract's 403
//!   `insufficient_scope`. [`Claims::require_scope`] does the same check
//!   inside a handler.
//! - [`ClientClaims`] and [`Caller`]: a client's own token (warden's
//!   `client_credentials` grant: `sub` = `client_id`, no user), and either
//!   kind. `Claims` is a user and refuses client tokens; use
//!   `RequireScope<S, ClientClaims>` or `RequireScope<S, Caller>` on routes
//!   services call. A user's token through a client carries
//!   [`Claims::client_id`].
//! - [`IdTokenVerifier`]: for an application that signs its users in
//!   through warden (warden as its OpenID Provider). It verifies the
//!   `id_token` of the code exchange — algorithm allow-list, known `kid`,
//!   signature, `iss`, `aud`/`azp`, `exp`, `iat`, `nonce`, `at_hash`, and
//!   not an access or logout token — into [`IdTokenClaims`], and warden's
//!   back-channel logout tokens into [`LogoutClaims`].
//!   [`IdTokenVerifier::discover`] (feature `remote`) sets it up from
//!   warden's OpenID discovery document and refetches the keys once for an
//!   unknown `kid`.
//!
//! The extractor is generic over your state: it works wherever
//! `Verifier: FromRef<S>`.
//!
//! ## Dependencies
//!
//! The crate is not on crates.io yet; depend on it by path (or by the git
//! URL of wherever you host warden's repository):
//!
//! ```toml
//! [dependencies]
//! warden-guard = { path = "../warden/guard" }
//! axum = { version = "0.8", features = ["macros"] }   # `macros`: #[derive(FromRef)]
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! Features: `remote` ([`Remote`]; pulls reqwest, tokio and tracing) and
//! `rustls` (HTTPS for it), both on by default. With
//! `default-features = false` the crate is the bare [`Verifier`] and
//! extractors, with no HTTP client — what warden's own server uses.
//!
//! ## Example
//!
//! ```no_run
//! use axum::{Router, extract::FromRef, routing::get};
//! use warden_guard::{Algorithm, AuthError, Claims, Credentials, Remote, Verifier};
//!
//! #[derive(Clone, FromRef)]
//! struct AppState {
//!     verifier: Verifier,
//! }
//!
//! // 401 for a missing, tampered, expired, foreign or revoked token,
//! // before this runs.
//! async fn whoami(claims: Claims) -> Result<String, AuthError> {
//!     claims.require_scope("me")?; // 403 insufficient_scope otherwise
//!     Ok(format!("hello {}", claims.username))
//! }
//!
//! // `None` only without an `Authorization` header; a bad token is 401.
//! async fn greeting(claims: Option<Claims>) -> String {
//!     match claims {
//!         Some(c) => format!("welcome back, {}", c.username),
//!         None => "hello, stranger".to_owned(),
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // warden's WARDEN_ISSUER, and its WARDEN_JWT_ALGORITHM (pinned here,
//!     // never taken from a token or the JWKS).
//!     let guard = Remote::builder("https://auth.example.com", Algorithm::EdDSA)
//!         // Optional: follow revocations with an account that has scope
//!         // `tokens:introspect`.
//!         .revocations(Credentials::password("notes-service", "its password"))
//!         .start()
//!         .await?; // one line naming the URL if warden cannot be reached
//!
//!     let app = Router::new()
//!         .route("/whoami", get(whoami))
//!         .route("/", get(greeting))
//!         .with_state(AppState { verifier: guard.verifier() });
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8001").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! The background tasks (key refresh, revocation feed) run as long as the
//! `Remote` or a clone of its verifier is alive.
//!
//! ## Without `Remote`
//!
//! A verifier from a JWKS document you fetched yourself; call
//! [`Verifier::replace_keys`] after a rotation, and install a
//! [`TokenCheck`] for revocations.
//!
//! ```
//! use warden_guard::{Algorithm, Verifier};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // warden's `GET /.well-known/jwks.json`.
//! let jwks = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
//!     "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
//! let verifier = Verifier::from_jwks_json(jwks, Algorithm::EdDSA, "http://127.0.0.1:8000")?;
//! assert!(verifier.verify("not a token").is_err());
//! # Ok(())
//! # }
//! ```

mod cache;
mod claims;
mod error;
mod extract;
mod id_token;
#[cfg(feature = "remote")]
mod remote;
mod scope;
mod verifier;

pub use claims::{Caller, Claims, ClientClaims};
pub use error::AuthError;
pub use extract::Principal;
#[cfg(feature = "remote")]
pub use id_token::IdTokenDiscovery;
pub use id_token::{
    BACKCHANNEL_LOGOUT_EVENT, DEFAULT_ID_TOKEN_LEEWAY, IdTokenClaims, IdTokenError,
    IdTokenVerifier, IdTokenVerifierBuilder, LogoutClaims, at_hash,
};
pub use jsonwebtoken::{Algorithm, DecodingKey, jwk::JwkSet};
#[cfg(feature = "remote")]
pub use remote::{
    Credentials, DEFAULT_KEY_REFRESH, DEFAULT_POLL_WAIT, DEFAULT_UNKNOWN_KID_INTERVAL,
    DEFAULT_UNKNOWN_KID_WAIT, Remote, RemoteBuilder, RemoteError,
};
pub use scope::{RequireScope, Scope, Scopes};
pub use verifier::{
    Clock, DEFAULT_CACHE_CAPACITY, KeySet, KeyWait, TokenCheck, UnknownKid, Verifier,
    VerifierBuilder, VerifierError,
};

#[cfg(test)]
mod tests;
