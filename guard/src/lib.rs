//! # warden-guard
//!
//! Verify warden's access tokens inside your own axum service.
//!
//! A resource server only needs warden's public keys (its JWKS) and the
//! issuer; it never talks to warden's database. This crate gives it:
//!
//! - [`Verifier`]: a pinned algorithm, a key set selected by `kid`, issuer and
//!   audience checks, and an optional [`TokenCheck`] hook for revocation.
//! - [`Claims`]: an axum extractor. `Claims` rejects a request without a
//!   valid bearer token with warden's 401 (`WWW-Authenticate: Bearer ...` and
//!   `{"detail": ...}`); `Option<Claims>` is `None` only when the request
//!   carries no `Authorization` header, and still rejects a bad token.
//! - [`RequireScope`]: an extractor that also demands scopes, named by
//!   types declared with [`scope!`]; it answers the contract's 403
//!   `insufficient_scope`. [`Claims::require_scope`] does the same check
//!   inside a handler.
//!
//! The extractor is generic over your state: it works wherever
//! `Verifier: FromRef<S>`.
//!
//! ```
//! use axum::{Router, routing::get, extract::FromRef};
//! use warden_guard::{Algorithm, Claims, Verifier, AuthError};
//!
//! #[derive(Clone, FromRef)]
//! struct AppState {
//!     verifier: Verifier,
//! }
//!
//! async fn whoami(claims: Claims) -> Result<String, AuthError> {
//!     claims.require_scope("me")?;
//!     Ok(format!("hello {}", claims.username))
//! }
//!
//! async fn greeting(claims: Option<Claims>) -> String {
//!     match claims {
//!         Some(c) => format!("welcome back, {}", c.username),
//!         None => "hello, stranger".to_owned(),
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In production, build the verifier from warden's JWKS document
//! // (`GET /.well-known/jwks.json`), fetched however your service likes.
//! let jwks = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
//!     "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
//! let verifier = Verifier::from_jwks_json(jwks, Algorithm::EdDSA, "http://127.0.0.1:8000")?;
//!
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .route("/", get(greeting))
//!     .with_state(AppState { verifier });
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

mod cache;
mod claims;
mod error;
mod extract;
#[cfg(feature = "remote")]
mod remote;
mod scope;
mod verifier;

pub use claims::Claims;
pub use error::AuthError;
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
