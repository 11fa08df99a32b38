//! HTTP routes, one module per resource, each owning its router.

pub mod account;
pub mod audit;
pub mod authorize;
pub mod clients;
pub mod consents;
pub mod end_session;
pub mod meta;
pub mod pages;
pub mod revocations;
pub mod sessions;
pub mod token;
pub mod userinfo;
pub mod users;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub use crate::auth::sessions::{ClientMeta, TokenResponse};

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        // RFC 6749 §5.1: token responses must not be cached.
        (
            [
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (header::PRAGMA, HeaderValue::from_static("no-cache")),
            ],
            axum::Json(self),
        )
            .into_response()
    }
}

impl axum::extract::FromRequestParts<crate::http::state::AppState> for ClientMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &crate::http::state::AppState,
    ) -> Result<Self, Self::Rejection> {
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect());
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| {
                let http = &state.config.http;
                let lines = parts.headers.get_all(http.forwarded_header.name());
                crate::http::proxy::client_ip(
                    &http.trusted_proxies,
                    c.0.ip(),
                    http.forwarded_header,
                    lines.iter().map(|v| v.as_bytes()),
                )
                .to_string()
            });
        Ok(Self { user_agent, ip })
    }
}

/// `{"detail": "..."}`, as documented in the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Detail {
    pub detail: String,
}

/// RFC 6749 §5.2 error with FastAPI's `detail`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    pub error: String,
    pub error_description: String,
    pub detail: String,
}

/// A 422 body: `{"detail": [{"loc", "msg", "type"}]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationErrorBody {
    pub detail: Vec<crate::http::error::FieldError>,
}
