//! The browser cookie mode: the refresh token in an `HttpOnly` cookie that
//! page scripts cannot read.
//!
//! - `POST /token?cookie=true` (and `PUT /users/me/password?cookie=true`)
//!   answers with the access token in the body and the refresh token in a
//!   `warden_refresh` cookie (`HttpOnly; SameSite=Strict; Path=/token`,
//!   plus `Secure` unless warden serves plain HTTP on loopback); the body
//!   carries no `refresh_token`.
//! - `grant_type=refresh_token` without a `refresh_token` field uses the
//!   cookie, but only when the request's `Origin` is warden's own (from the
//!   issuer) or one of `WARDEN_CORS_ORIGINS`; otherwise 400 `invalid_grant`.
//!   The rotated token goes back into the cookie, never into the body.
//! - `POST /logout` expires the cookie.
//! - Cookie mode itself (`?cookie=true`, any grant, and the password
//!   change) is refused when the request carries an `Origin` that may not
//!   spend the cookie: otherwise a page of any site could sign a victim's
//!   browser in to the attacker's account (login CSRF). Browsers send
//!   `Origin` with every cross-site POST, so a request without one is not
//!   a cross-site browser request; non-browser clients send none and keep
//!   working (see docs/hardening.md).
//!
//! `Path=/token` keeps the cookie off every other route: the browser sends
//! it only to `/token` and the paths under it (`/token/revoke`,
//! `/token/introspect`, which ignore it).

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::config::AllowedOrigins;
use crate::config::Config;
use crate::http::cors::origin_of;
use crate::http::routes::TokenResponse;

/// The cookie's name.
pub const REFRESH_COOKIE: &str = "warden_refresh";

/// The only path the browser sends the cookie to (and its sub-paths).
pub const COOKIE_PATH: &str = "/token";

/// How refresh-token cookies are written and who may spend them; fixed at
/// start-up from the configuration.
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    secure: bool,
    own_origin: Option<String>,
    allowed: AllowedOrigins,
    max_age: u64,
}

impl CookiePolicy {
    pub fn new(config: &Config) -> Self {
        Self {
            secure: crate::auth::devices::needs_secure(
                &config.tokens.issuer,
                config.http.bind.ip(),
            ),
            own_origin: origin_of(&config.tokens.issuer),
            allowed: config.http.cors_origins.clone(),
            max_age: config.sessions.refresh_token_ttl,
        }
    }

    /// Whether cookies carry `Secure`.
    pub fn secure(&self) -> bool {
        self.secure
    }

    fn cookie(&self, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{REFRESH_COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
        );
        // Refresh tokens are base64url, so the value is always a valid
        // header; an empty cookie is the fallback, never a panic.
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| self.clear())
    }

    /// `Set-Cookie` that stores `refresh_token`.
    pub fn set(&self, refresh_token: &str) -> HeaderValue {
        self.cookie(refresh_token, self.max_age)
    }

    /// `Set-Cookie` that removes the cookie (same name, path and flags).
    pub fn clear(&self) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{REFRESH_COOKIE}=; Path={COOKIE_PATH}; Max-Age=0; HttpOnly; SameSite=Strict{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Whether the request's `Origin` may spend the cookie: warden's own
    /// origin or a configured CORS origin. No `Origin`, or several, is no.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(header::ORIGIN).iter();
        let (Some(origin), None) = (values.next(), values.next()) else {
            return false;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        self.own_origin.as_deref() == Some(origin) || self.allowed.contains(origin)
    }

    /// Whether this request may be answered in cookie mode, i.e. have a
    /// refresh cookie set: no `Origin` at all, or one that may spend the
    /// cookie ([`Self::origin_allowed`]). `Origin: null` and several
    /// `Origin`s are refused.
    pub fn may_set_cookie(&self, headers: &HeaderMap) -> bool {
        !headers.contains_key(header::ORIGIN) || self.origin_allowed(headers)
    }

    /// The token response: as JSON, or in cookie mode with the refresh
    /// token moved from the body into the cookie.
    pub fn respond(&self, mut body: TokenResponse, cookie_mode: bool) -> Response {
        if !cookie_mode {
            return body.into_response();
        }
        let refresh = body.refresh_token.take();
        let mut response = body.into_response();
        if let Some(token) = refresh {
            response
                .headers_mut()
                .append(header::SET_COOKIE, self.set(&token));
        }
        response
    }

    /// `response` with the cookie cleared.
    pub fn cleared(&self, mut response: Response) -> Response {
        response
            .headers_mut()
            .append(header::SET_COOKIE, self.clear());
        response
    }
}

/// Why cookie mode was refused for the request's `Origin`.
pub const COOKIE_MODE_ORIGIN_REFUSED: &str = "Cookie mode (cookie=true) is accepted only from warden's own origin or a configured CORS origin";

/// Whether the query string asks for cookie mode (`cookie=true` or `1`).
pub fn wants_cookie(query: Option<&str>) -> bool {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "cookie" && matches!(v.as_ref(), "true" | "1"))
}

/// Whether the request carries a valid known-device cookie of `user`
/// (lock-out resistance, see `auth::devices`).
pub fn known_device(
    devices: &crate::auth::devices::DeviceCookies,
    headers: &HeaderMap,
    user: uuid::Uuid,
    now: i64,
) -> bool {
    devices.known(values(headers, devices.name()), user, now)
}

/// The `Set-Cookie` header marking this browser as a known device of `user`.
pub fn device_cookie(
    devices: &crate::auth::devices::DeviceCookies,
    user: uuid::Uuid,
    now: i64,
) -> HeaderValue {
    HeaderValue::from_str(&devices.set_cookie(user, now))
        .expect("the device cookie is ASCII without controls")
}

/// The values of every cookie named `name` the request carries (quotes
/// stripped), across all its `Cookie` headers.
pub fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// The refresh token from the request's cookies, if it has one that looks
/// like a refresh token (base64url and dots; anything else is ignored).
pub fn read(headers: &HeaderMap) -> Option<String> {
    values(headers, REFRESH_COOKIE)
        .next()
        .filter(|value| {
            !value.is_empty()
                && value.len() <= 128
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::devices::needs_secure;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn plain_http_on_loopback_is_the_only_insecure_case() {
        assert!(!needs_secure("http://127.0.0.1:8000", ip("127.0.0.1")));
        assert!(!needs_secure("http://localhost:8000", ip("::1")));
        assert!(needs_secure("https://127.0.0.1:8000", ip("127.0.0.1")));
        assert!(needs_secure("https://auth.example.com", ip("127.0.0.1")));
        assert!(needs_secure("http://auth.example.com", ip("127.0.0.1")));
        assert!(
            needs_secure("http://127.0.0.1:8000", ip("0.0.0.0")),
            "reachable from other hosts over plain HTTP"
        );
    }

    #[test]
    fn cookie_query_parameter() {
        assert!(wants_cookie(Some("cookie=true")));
        assert!(wants_cookie(Some("a=b&cookie=1")));
        assert!(!wants_cookie(Some("cookie=false")));
        assert!(!wants_cookie(None));
    }

    #[test]
    fn the_refresh_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; warden_refresh=abc-_9; b=2"),
        );
        assert_eq!(read(&h).as_deref(), Some("abc-_9"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("warden_refresh=a b"),
        );
        assert_eq!(read(&h), None);
        h.insert(header::COOKIE, HeaderValue::from_static("warden_refresh="));
        assert_eq!(read(&h), None);
    }
}
