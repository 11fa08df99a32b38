//! The auth services: the business rules of accounts, sessions and tokens,
//! called alike by the HTTP handlers and the CLI. Nothing here imports axum
//! or returns the HTTP error type (`tests/architecture.rs` checks it).

pub mod audit;
pub mod cache;
pub mod devices;
pub mod error;
pub mod keys;
pub mod password_check;
pub mod passwords;
pub mod refresh_tokens;
pub mod sessions;
pub mod throttle;
pub mod tokens;

use std::sync::Arc;

pub use error::{Error, Result};

use crate::config::Config;
use crate::storage::Store;

/// Everything a service function needs: the store and the in-memory parts
/// kept beside it. The HTTP state holds one (and derefs to it); the CLI
/// builds its own, so both run the same rules.
pub struct Services {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub hasher: passwords::PasswordHasher,
    pub tokens: Arc<tokens::TokenIssuer>,
    pub gate: Arc<tokens::UserGate>,
    /// Failed-login and registration throttling (per process).
    pub throttle: Arc<throttle::Throttle>,
    /// Users by id, kept current on writes.
    pub users: Arc<cache::UserCache>,
    /// The key refresh-token successors are derived with.
    pub refresh: refresh_tokens::RefreshTokens,
    /// Signs and checks the known-device cookie (lock-out resistance).
    pub devices: devices::DeviceCookies,
}
