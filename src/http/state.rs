//! The state every handler shares: cheap handles only.

use std::sync::Arc;

use axum::extract::FromRef;
use metrics_exporter_prometheus::PrometheusHandle;
use warden_guard::Verifier;

use crate::auth::passwords::PasswordHasher;
use crate::auth::tokens::{TokenIssuer, UserGate};
use crate::config::Config;
use crate::storage::Store;

/// Cloned for every request (axum hands each handler and extractor its own
/// copy), so it is one `Arc`: a clone is one atomic increment, not one per
/// field. Fields are reached through `Deref`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The protected-route extractors of `warden_guard` find the verifier here.
impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub hasher: PasswordHasher,
    pub tokens: Arc<TokenIssuer>,
    pub gate: Arc<UserGate>,
    /// Failed-login and registration throttling (per process).
    pub throttle: Arc<crate::auth::throttle::Throttle>,
    /// Users by id, kept current on writes.
    pub users: Arc<crate::auth::cache::UserCache>,
    /// Verifies bearer tokens on protected routes — the same
    /// `warden_guard` extractor other services use.
    pub verifier: Verifier,
    pub metrics: Option<PrometheusHandle>,
    /// The key refresh-token successors are derived with.
    pub refresh: crate::auth::refresh_tokens::RefreshTokens,
    /// Signs and checks the known-device cookie (lock-out resistance).
    pub devices: crate::auth::devices::DeviceCookies,
    /// How the browser cookie mode writes and accepts refresh cookies.
    pub cookies: Arc<crate::http::cookies::CookiePolicy>,
}
