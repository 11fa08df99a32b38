//! `GET /account`: a small page, served from the binary, where a person
//! registers, signs in, sees their sessions, signs out and changes their
//! password. Plain HTML, CSS and JavaScript (no build step, no other
//! origin), using the API like any single-page app would: the access token
//! in page memory only, the refresh token in the `HttpOnly` cookie of the
//! cookie mode (see [`crate::http::cookies`]).
//!
//! Not part of the OpenAPI document: these are pages, not API routes.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::http::state::AppState;

const INDEX_HTML: &str = include_str!("account/index.html");
const APP_JS: &str = include_str!("account/app.js");
const STYLE_CSS: &str = include_str!("account/style.css");

/// Only this origin's own script and stylesheet, no inline code, no
/// framing: an injected `<script>` would not run.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account", get(index))
        .route("/account/app.js", get(app_js))
        .route("/account/style.css", get(style_css))
        .route("/account/session", post(browser_session))
}

/// `POST /account/session`: the account page signed in through the hosted
/// login page. For a request from warden's own origin (or a configured
/// CORS origin) that carries a live `warden_session`, an access token of
/// that browser session (no refresh token; ask again). So one sign-in on
/// `/login` serves `/authorize` and this page, and signing out here
/// (`POST /logout` with that token) ends the browser session.
async fn browser_session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    use crate::http::error::Error;
    // A page of another site could otherwise turn the visitor's cookie
    // into a token it reads (it cannot read the answer without CORS, but
    // refuse it before any work all the same).
    if !state.cookies.origin_allowed(&headers) {
        return Error::from(crate::auth::Error::Forbidden(
            "The browser session is accepted only from warden's own origin".to_owned(),
        ))
        .into_response();
    }
    let session = match crate::http::routes::authorize::session_of(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Error::from(crate::auth::Error::Unauthenticated(
                warden_guard::AuthError::Missing,
            ))
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    match crate::auth::browser::access_token(&state, &session).await {
        Ok(tokens) => tokens.into_response(),
        Err(e) => Error::from(e).into_response(),
    }
}

/// A page or file of the binary with the pages' headers.
pub(crate) fn page(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 6] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        // Small, and changes with the binary: always revalidate.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

/// The page; at a loopback alias of the issuer (`localhost` for
/// `127.0.0.1`), a redirect to the issuer's address, where the refresh
/// cookie works (see [`crate::http::routes::pages::issuer_redirect`]).
async fn index(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(to) =
        crate::http::routes::pages::issuer_redirect(state.tokens.issuer(), &uri, &headers)
    {
        return to;
    }
    page("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    page("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    page("text/css; charset=utf-8", STYLE_CSS)
}
