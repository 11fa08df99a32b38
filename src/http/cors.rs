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

use std::time::Duration;

use axum::http::{HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::AllowedOrigins;

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
