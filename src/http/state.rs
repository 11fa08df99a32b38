//! The state every handler shares: cheap handles only.

use std::sync::Arc;

use axum::extract::FromRef;
use metrics_exporter_prometheus::PrometheusHandle;
use warden_guard::Verifier;

use crate::auth::Services;

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

/// The services (derefs to them) and what only HTTP needs beside them.
pub struct Shared {
    pub services: Services,
    /// Verifies bearer tokens on protected routes — the same
    /// `warden_guard` extractor other services use.
    pub verifier: Verifier,
    pub metrics: Option<PrometheusHandle>,
    /// How the browser cookie mode writes and accepts refresh cookies.
    pub cookies: Arc<crate::http::cookies::CookiePolicy>,
    /// The revocation feed (`GET /token/revocations`): this process's boot
    /// id, and the signal that ends waiting polls at shutdown.
    pub feed: Arc<crate::auth::revocations::RevocationFeed>,
}

impl std::ops::Deref for Shared {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}
