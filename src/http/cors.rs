//! Browser origins: the CORS layer for the ones allowed to call warden
//! from other origins (`WARDEN_CORS_ORIGINS`, parsed into
//! [`AllowedOrigins`] by the configuration), and warden's own, derived
//! from the issuer.
//!
//! CORS is answered with an explicit list of exact origins and
//! credentials allowed; never `*` (a browser refuses `*` with credentials,
//! and a wildcard would let any site read responses). With no origins
//! configured there is no CORS layer at all: other origins' scripts cannot
//! read any response.
//!
//! Public OAuth clients (single-page apps) call the token and revocation
//! endpoints from their own origin: [`public_clients`] answers the origins
//! of their registered redirect URIs on those two paths only, without
//! credentials (a public client sends no cookie and has no secret), from
//! the in-memory set `auth::clients::ClientOrigins`. `/userinfo` is one
//! of those paths too (OpenID Connect).
//!
//! The discovery documents and JWKS are public: [`public_clients`]
//! answers them for any origin with `Access-Control-Allow-Origin: *` and
//! no credentials (a relying party's script may read them from anywhere).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::AllowedOrigins;
use crate::http::state::AppState;

/// The paths a public client's script calls: the token endpoint (code
/// redemption, refresh), revocation (sign-out) and UserInfo.
pub const PUBLIC_CLIENT_PATHS: [&str; 3] = ["/token", "/token/revoke", "/userinfo"];

/// The public documents every origin may read.
pub const PUBLIC_DOCUMENT_PATHS: [&str; 3] = [
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/.well-known/jwks.json",
];

/// The methods a preflight for `path` allows.
fn allowed_methods(path: &str) -> &'static str {
    if path == "/userinfo" {
        "GET, POST"
    } else {
        "POST"
    }
}

/// The headers of a preflight answer; `origin` is the allowed origin
/// (`*` for a public document).
fn preflight(origin: HeaderValue, methods: &'static str, vary: HeaderValue) -> Response {
    (
        StatusCode::OK,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(methods),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization,content-type"),
            ),
            (
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            ),
            (header::VARY, vary),
        ],
    )
        .into_response()
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// `*` for any origin on [`PUBLIC_DOCUMENT_PATHS`], without credentials
/// (replacing what the configured layer would send).
async fn public_document(request: Request, next: Next) -> Response {
    let any = HeaderValue::from_static("*");
    if is_preflight(&request) {
        return (
            StatusCode::OK,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, any),
                (
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET"),
                ),
                (
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("600"),
                ),
            ],
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, any);
    response
}

/// CORS for public clients' origins on [`PUBLIC_CLIENT_PATHS`]: a preflight
/// is answered here (`POST`, the `Authorization` and `Content-Type`
/// headers, no credentials), an actual request gets
/// `Access-Control-Allow-Origin` with its own origin. Any other request —
/// no `Origin`, another path, an origin of `WARDEN_CORS_ORIGINS` (which
/// keeps its credentials through [`layer`]) or one no public client
/// registered — passes through untouched. Outermost, so it sees a
/// preflight before the configured layer answers it.
pub async fn public_clients(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.headers().contains_key(header::ORIGIN)
        && PUBLIC_DOCUMENT_PATHS.contains(&request.uri().path())
    {
        return public_document(request, next).await;
    }
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .filter(|_| PUBLIC_CLIENT_PATHS.contains(&request.uri().path()))
        .and_then(|v| v.to_str().ok())
        .filter(|o| !state.config.http.cors_origins.contains(o) && state.client_origins.allows(o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let Some(origin) = origin else {
        return next.run(request).await;
    };
    let vary = HeaderValue::from_static(
        "origin, access-control-request-method, access-control-request-headers",
    );
    if is_preflight(&request) {
        return preflight(origin, allowed_methods(request.uri().path()), vary);
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // The configured layer sends this on every actual response; a public
    // client's origin gets no credentials.
    headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("www-authenticate,retry-after"),
    );
    headers.append(header::VARY, vary);
    response
}

/// The origin (scheme, host, port) of `url`, as a browser writes it in
/// `Origin`; `None` for a URL that has none.
pub fn origin_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// The CORS layer for `origins`, or `None` when none are configured.
pub fn layer(origins: &AllowedOrigins) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let values: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(values))
            .allow_credentials(true)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            // Scripts may read why a call failed and when to retry.
            .expose_headers([header::WWW_AUTHENTICATE, header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_of_an_issuer_drops_its_path() {
        assert_eq!(
            origin_of("https://auth.example.com/warden").as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8000").as_deref(),
            Some("http://127.0.0.1:8000")
        );
    }
}
