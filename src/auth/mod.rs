//! The auth services: the business rules of accounts, sessions and tokens,
//! called alike by the HTTP handlers and the CLI. Nothing here imports axum
//! or returns the HTTP error type (`tests/architecture.rs` checks it).

pub mod accounts;
pub mod audit;
pub mod authorize;
pub mod backchannel;
pub mod browser;
pub mod cache;
pub mod clients;
pub mod code_grant;
pub mod devices;
pub mod end_session;
pub mod error;
pub mod grants;
pub mod id_tokens;
pub mod keys;
pub mod outbox;
pub mod password_check;
pub mod passwords;
pub mod refresh_tokens;
pub mod revocations;
pub mod sessions;
pub mod throttle;
pub mod tokens;
pub mod userinfo;

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
    /// The CSRF key of the hosted pages (`/login`, the consent page).
    pub browser: browser::BrowserKeys,
    /// The public clients' browser origins, for CORS on the token
    /// endpoints (kept current by `clients`; loaded by the server).
    pub client_origins: Arc<clients::ClientOrigins>,
}

impl Services {
    /// Opens the database (migrating it), loads or creates the signing key
    /// and the refresh and device keys, and starts a hashing pool of
    /// `hash_workers` threads with a queue of `hash_queue` jobs. The token
    /// gate starts empty: a server loads it from the database (`app`).
    pub async fn open(
        config: Config,
        hash_workers: usize,
        hash_queue: usize,
    ) -> anyhow::Result<Self> {
        let store =
            crate::storage::connect_with(&config.database.url, &config.database.pool).await?;
        store.migrate().await?;
        Self::open_on(config, store, hash_workers, hash_queue).await
    }

    /// [`open`](Services::open) on a store already connected and migrated
    /// (the CLI checks first that the database exists and was migrated
    /// before, then migrates it).
    pub async fn open_on(
        config: Config,
        store: Arc<dyn Store>,
        hash_workers: usize,
        hash_queue: usize,
    ) -> anyhow::Result<Self> {
        let now = tokens::now();
        let keys = keys::load_or_create(&config, store.as_ref(), now).await?;
        let hasher =
            passwords::PasswordHasher::start(config.passwords.argon2, hash_workers, hash_queue)?;
        let tokens = Arc::new(tokens::TokenIssuer::new(
            keys,
            config.tokens.issuer.clone(),
            config.tokens.audience.clone(),
            config.tokens.access_token_ttl,
        ));
        let refresh = refresh_tokens::RefreshTokens::load(store.as_ref(), now).await?;
        let devices = devices::DeviceCookies::load(
            store.as_ref(),
            devices::needs_secure(&config.tokens.issuer, config.http.bind.ip()),
            now,
        )
        .await?;
        let browser = browser::BrowserKeys::load(store.as_ref(), now).await?;
        let throttle = Arc::new(throttle::Throttle::new(throttle::Limits {
            window: config.throttle.window as i64,
            per_pair: config.throttle.per_pair,
            per_address: config.throttle.per_address,
            per_account: config.throttle.per_account,
        }));
        Ok(Self {
            config: Arc::new(config),
            store,
            hasher,
            tokens,
            gate: Arc::new(tokens::UserGate::default()),
            throttle,
            users: Arc::new(cache::UserCache::default()),
            refresh,
            devices,
            browser,
            client_origins: Arc::default(),
        })
    }
}
