//! The browser cookie mode of `POST /token`, `POST /logout` and
//! `PUT /users/me/password`; CORS; the `/account` page's headers.

use reqwest::header::{HeaderMap, HeaderName};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_unauthorized};

const COOKIE: &str = "warden_refresh";
const OTHER_APP: &str = "http://app.example.test:5173";

/// Every `Set-Cookie` of a response.
fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        // The known-device cookie (lock-out resistance) is tested in
        // throttling.rs; these tests are about the refresh cookie.
        .filter(|c| !c.starts_with("warden_device=") && !c.starts_with("__Host-warden_device="))
        .collect()
}

/// The one `Set-Cookie` of a response, split into its value and attributes.
fn the_cookie(headers: &HeaderMap) -> (String, Vec<String>) {
    let all = set_cookies(headers);
    assert_eq!(all.len(), 1, "{all:?}");
    let mut parts = all[0].split("; ");
    let (name, value) = parts.next().unwrap().split_once('=').unwrap();
    assert_eq!(name, COOKIE);
    (value.to_owned(), parts.map(str::to_owned).collect())
}

/// `POST /token?cookie=true` for `username`: the access token, and the
/// refresh token the cookie carries.
async fn cookie_login(app: &TestApp, username: &str) -> (String, String) {
    let r = app
        .client
        .post(app.at("/token?cookie=true"))
        .form(&[("username", username), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (value, _) = the_cookie(r.headers());
    let body: Value = r.json().await.unwrap();
    (body["access_token"].as_str().unwrap().to_owned(), value)
}

/// A refresh with only the cookie, from `origin` (if any).
async fn cookie_refresh(app: &TestApp, cookie: &str, origin: Option<&str>) -> Response {
    let mut req = app
        .client
        .post(app.at("/token"))
        .header("cookie", format!("theme=dark; {COOKIE}={cookie}"))
        .form(&[("grant_type", "refresh_token")]);
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    req.send().await.unwrap()
}

async fn assert_grant_error(r: Response, error: &str) -> Value {
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    body
}

#[tokio::test]
async fn cookie_login_puts_the_refresh_token_in_an_httponly_strict_cookie_for_token_only() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let r = app
        .client
        .post(app.at("/token?cookie=true"))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let (value, attributes) = the_cookie(r.headers());
    // `<session id>.<generation>.<256-bit secret + 128-bit tag, base64url>`.
    assert_eq!(
        value.rsplit('.').next().map(str::len),
        Some(64),
        "a refresh token: {value}"
    );
    // Plain HTTP on loopback: no Secure (the browser could not store it).
    assert_eq!(
        attributes,
        [
            "Path=/token",
            "Max-Age=2592000",
            "HttpOnly",
            "SameSite=Strict"
        ]
    );
    let body: Value = r.json().await.unwrap();
    assert!(
        body.get("refresh_token").is_none(),
        "cookie mode never puts the refresh token in the body: {body}"
    );
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(
        app.me(body["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn cookies_are_secure_unless_warden_serves_plain_http_on_loopback() {
    let app = TestApp::spawn_with(&[("WARDEN_ISSUER", "https://auth.example.test")]).await;
    app.register_ok("alice").await;
    let r = app
        .client
        .post(app.at("/token?cookie=1"))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let (_, attributes) = the_cookie(r.headers());
    assert_eq!(attributes.last().map(String::as_str), Some("Secure"));
    assert!(attributes.contains(&"HttpOnly".to_owned()));
    // Logout's clearing cookie carries the same flags, or the browser
    // would not replace the stored one.
    let token = app.token("alice").await;
    let r = app
        .client
        .post(app.at("/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (value, attributes) = the_cookie(r.headers());
    assert_eq!(value, "");
    assert!(attributes.contains(&"Secure".to_owned()), "{attributes:?}");
}

#[tokio::test]
async fn without_cookie_mode_no_cookie_is_set() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    for query in ["", "?cookie=false"] {
        let r = app
            .client
            .post(app.at(&format!("/token{query}")))
            .form(&[("username", "alice"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert!(set_cookies(r.headers()).is_empty(), "{query}");
        let body: Value = r.json().await.unwrap();
        assert!(body["refresh_token"].is_string(), "{query}");
    }
}

#[tokio::test]
async fn the_cookie_refreshes_from_warden_s_own_origin_and_rotates() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (_, first) = cookie_login(&app, "alice").await;
    let r = cookie_refresh(&app, &first, Some(&app.url)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (second, attributes) = the_cookie(r.headers());
    assert_ne!(second, first, "the cookie rotates with the token");
    assert!(attributes.contains(&"HttpOnly".to_owned()));
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(app.me(access).await.status(), StatusCode::OK);
    // The rotated cookie works; then the first one is a spent token, and
    // presenting it ends the session (reuse detection), clearing the cookie.
    let r = cookie_refresh(&app, &second, Some(&app.url)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = cookie_refresh(&app, &first, Some(&app.url)).await;
    let (value, attributes) = the_cookie(r.headers());
    assert_eq!(value, "");
    assert!(attributes.contains(&"Max-Age=0".to_owned()));
    assert_grant_error(r, "invalid_grant").await;
}

#[tokio::test]
async fn a_cookie_refresh_from_another_origin_or_none_is_refused() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (_, cookie) = cookie_login(&app, "alice").await;
    let port = app.url.rsplit(':').next().unwrap();
    for origin in [
        Some("http://evil.example.test"),
        Some("https://127.0.0.1"),
        Some(&*format!("http://localhost:{port}")),
        Some("null"),
        None,
    ] {
        let r = cookie_refresh(&app, &cookie, origin).await;
        assert!(set_cookies(r.headers()).is_empty(), "{origin:?}");
        let body = assert_grant_error(r, "invalid_grant").await;
        assert!(
            body["detail"].as_str().unwrap().contains("origin"),
            "{body}"
        );
    }
    // Refused before it was spent: it still works from warden's origin.
    let r = cookie_refresh(&app, &cookie, Some(&app.url)).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_configured_cors_origin_may_refresh_with_the_cookie() {
    let app = TestApp::spawn_with(&[("WARDEN_CORS_ORIGINS", OTHER_APP)]).await;
    app.register_ok("alice").await;
    let (_, cookie) = cookie_login(&app, "alice").await;
    let r = cookie_refresh(&app, &cookie, Some(OTHER_APP)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], OTHER_APP);
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    the_cookie(r.headers());
}

#[tokio::test]
async fn a_refresh_with_neither_field_nor_cookie_is_an_invalid_request() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .post(app.at("/token"))
        .header("origin", &app.url)
        .header("cookie", "warden_refresh=not a token")
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .unwrap();
    let body = assert_grant_error(r, "invalid_request").await;
    assert_eq!(body["detail"], "Missing required parameter: refresh_token");
}

#[tokio::test]
async fn a_refresh_token_field_wins_over_the_cookie_and_cookie_mode_moves_it() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let body: Value = app.login("alice", PASSWORD).await.json().await.unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    let r = app
        .client
        .post(app.at("/token?cookie=true"))
        .header("cookie", format!("{COOKIE}=AAAA"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (value, _) = the_cookie(r.headers());
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    let r = cookie_refresh(&app, &value, Some(&app.url)).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_clears_the_cookie_and_its_session_is_over() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    for query in ["", "?all=true"] {
        let (access, cookie) = cookie_login(&app, "alice").await;
        let r = app
            .client
            .post(app.at(&format!("/logout{query}")))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let (value, attributes) = the_cookie(r.headers());
        assert_eq!(value, "");
        assert_eq!(
            attributes,
            ["Path=/token", "Max-Age=0", "HttpOnly", "SameSite=Strict"]
        );
        // A browser that kept it anyway holds a dead token.
        let r = cookie_refresh(&app, &cookie, Some(&app.url)).await;
        assert_grant_error(r, "invalid_grant").await;
        assert_unauthorized(app.me(&access).await, "Invalid token").await;
    }
}

#[tokio::test]
async fn a_password_change_in_cookie_mode_replaces_the_cookie() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (access, old_cookie) = cookie_login(&app, "alice").await;
    let r = app
        .client
        .put(app.at("/users/me/password?cookie=true"))
        .bearer_auth(&access)
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (new_cookie, _) = the_cookie(r.headers());
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(
        app.me(body["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        cookie_refresh(&app, &new_cookie, Some(&app.url))
            .await
            .status(),
        StatusCode::OK
    );
    let r = cookie_refresh(&app, &old_cookie, Some(&app.url)).await;
    assert_grant_error(r, "invalid_grant").await;
}

async fn preflight(app: &TestApp, origin: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.at("/users/me"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap()
}

fn cors_headers(headers: &HeaderMap) -> Vec<&HeaderName> {
    headers
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .collect()
}

#[tokio::test]
async fn cors_answers_configured_origins_with_credentials_and_nobody_else() {
    let app = TestApp::spawn_with(&[(
        "WARDEN_CORS_ORIGINS",
        &format!("https://other.example.test, {OTHER_APP}"),
    )])
    .await;
    let r = preflight(&app, OTHER_APP).await;
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], OTHER_APP);
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );

    let (_, token) = app.user_with_token("alice").await;
    let r = app
        .client
        .get(app.at("/users/me"))
        .header("origin", OTHER_APP)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], OTHER_APP);
    let vary = r.headers()["vary"].to_str().unwrap().to_ascii_lowercase();
    assert!(vary.contains("origin"), "{vary}");

    let r = preflight(&app, "https://evil.example.test").await;
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        r.headers()
    );
}

#[tokio::test]
async fn without_configured_origins_there_are_no_cors_headers() {
    let app = TestApp::spawn().await;
    let r = preflight(&app, OTHER_APP).await;
    assert!(cors_headers(r.headers()).is_empty(), "{:?}", r.headers());
    let r = app
        .client
        .get(app.at("/healthz"))
        .header("origin", OTHER_APP)
        .send()
        .await
        .unwrap();
    assert!(cors_headers(r.headers()).is_empty(), "{:?}", r.headers());
}

#[tokio::test]
async fn the_account_page_is_served_with_a_strict_content_security_policy() {
    let app = TestApp::spawn().await;
    let r = app.get("/account").await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    let html = r.text().await.unwrap();
    // Every script is a file of this origin: inline code would be blocked.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(r#"<script src="/account/app.js" defer></script>"#));
    assert!(!html.contains("style="), "inline styles are blocked too");
    assert!(!html.contains("://"), "no other origin");

    // A page, not an API route: not in the OpenAPI document.
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["paths"].get("/account").is_none());

    for (path, content_type) in [
        ("/account/app.js", "text/javascript; charset=utf-8"),
        ("/account/style.css", "text/css; charset=utf-8"),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], content_type);
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert!(!r.text().await.unwrap().contains("://"), "{path}");
    }
}

const EVIL: &str = "https://evil.example";

/// `POST /token?cookie=true` (a password login) with `origin`, if any.
async fn cookie_login_from(app: &TestApp, origin: Option<&str>, password: &str) -> Response {
    let mut req = app
        .client
        .post(app.at("/token?cookie=true"))
        .form(&[("username", "alice"), ("password", password)]);
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn cookie_login_from_a_foreign_origin_is_refused_login_csrf() {
    let app = TestApp::spawn_with(&[("WARDEN_CORS_ORIGINS", OTHER_APP)]).await;
    app.register_ok("alice").await;
    for origin in [EVIL, "null", "http://127.0.0.1:1"] {
        let r = cookie_login_from(&app, Some(origin), PASSWORD).await;
        assert!(set_cookies(r.headers()).is_empty(), "{origin}");
        let body = assert_grant_error(r, "invalid_request").await;
        assert!(
            body["detail"].as_str().unwrap().contains("own origin"),
            "{body}"
        );
    }
    // Refused before the password is looked at: wrong guesses from a
    // foreign page neither count nor tell anything.
    for _ in 0..8 {
        let r = cookie_login_from(&app, Some(EVIL), "wrong password").await;
        assert_grant_error(r, "invalid_request").await;
    }
    // warden's own origin, a configured one, and no Origin at all (not a
    // browser: browsers send Origin with every cross-site POST) may.
    let own = app.url.clone();
    for origin in [Some(own.as_str()), Some(OTHER_APP), None] {
        let r = cookie_login_from(&app, origin, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK, "{origin:?}");
        the_cookie(r.headers());
    }
}

#[tokio::test]
async fn a_cookie_mode_refresh_from_a_foreign_origin_is_refused_and_spends_nothing() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let body: Value = app.login("alice", PASSWORD).await.json().await.unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    // The attacker's own refresh token, planted as the victim's cookie.
    let r = app
        .client
        .post(app.at("/token?cookie=true"))
        .header("origin", EVIL)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap();
    assert!(set_cookies(r.headers()).is_empty());
    assert_grant_error(r, "invalid_request").await;
    let r = app
        .login_form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .await;
    assert_eq!(r.status(), StatusCode::OK, "the token was not spent");
}

#[tokio::test]
async fn a_cookie_mode_password_change_from_a_foreign_origin_is_refused() {
    let app = TestApp::spawn().await;
    let (_, access) = app.user_with_token("alice").await;
    let r = app
        .client
        .put(app.at("/users/me/password?cookie=true"))
        .header("origin", EVIL)
        .bearer_auth(&access)
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookies(r.headers()).is_empty());
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("own origin"),
        "{body}"
    );
    // Nothing changed.
    assert_eq!(app.login("alice", PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(app.me(&access).await.status(), StatusCode::OK);
}
