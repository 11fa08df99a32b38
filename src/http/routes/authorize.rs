//! The authorization endpoint and the hosted pages: `GET`/`POST
//! /authorize`, the login page (`GET`/`POST /login`), the consent form's
//! answer (`POST /authorize/consent`) and signing out of the browser
//! session (`POST /signout`). The rules are in [`crate::auth::authorize`]
//! and [`crate::auth::browser`]; this module reads requests and writes
//! pages and redirects.
//!
//! The pages are plain HTML forms rendered here, with `/account`'s
//! stylesheet: no script at all, so they work with JavaScript off, and a
//! CSP that allows nothing but that stylesheet and the icon. Their forms
//! may post only to warden (`form-action 'self'`) — and to the one
//! verified redirect URI the answer will 303 to, because browsers apply
//! `form-action` to the redirects a form submission leads to.
//!
//! Not in the OpenAPI document: these are pages, not API operations.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::auth::authorize::{AuthorizationRequest, ConsentPrompt, Decision, Step};
use crate::auth::browser::{self, BrowserSession};
use crate::auth::tokens;
use crate::http::cookies;
use crate::http::error::Error;
use crate::http::routes::ClientMeta;
use crate::http::state::AppState;

/// The browser session's cookie.
pub const SESSION_COOKIE: &str = "warden_session";
/// The pre-session cookie the pages' CSRF tokens are bound to.
pub const CSRF_COOKIE: &str = "warden_csrf";

/// Where a sign-in without an authorization request to return to leads.
const HOME: &str = "/account";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/authorize", get(authorize_get).post(authorize_post))
        .route("/authorize/consent", post(consent))
        .route("/login", get(login_page).post(login))
        .route("/signout", post(sign_out))
}

// ------------------------------------------------------------ requests

pub(crate) fn pairs(raw: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw).into_owned().collect()
}

pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn request_of(pairs: &[(String, String)]) -> AuthorizationRequest {
    AuthorizationRequest::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    cookies::values(headers, name).find(|v| {
        !v.is_empty()
            && v.len() <= 128
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    })
}

pub(crate) async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<BrowserSession>, Error> {
    // Several cookies of the name (one tossed in by a sibling host): the
    // first live one.
    for value in cookies::values(headers, SESSION_COOKIE) {
        if let Some(s) = browser::current(state, Some(value)).await? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// Whether the form's `csrf_token` belongs to this browser's pre-session
/// cookie.
pub(crate) fn csrf_ok(state: &AppState, headers: &HeaderMap, form: &[(String, String)]) -> bool {
    let token = field(form, "csrf_token");
    cookies::values(headers, CSRF_COOKIE).any(|pre| state.browser.csrf_ok(Some(pre), token))
}

/// The login's way back: the authorization request it interrupted (as
/// `/authorize?…`, rebuilt from its parameters, so nothing but
/// `/authorize` on warden can come out), or `/account`. Anything else — an
/// absolute URL, `//host`, `/\host`, another path — is ignored.
pub fn return_target(return_to: Option<&str>) -> String {
    match return_to {
        Some(r) => match r.strip_prefix("/authorize?") {
            Some(q) => format!("/authorize?{}", request_in(q).after_sign_in().to_query()),
            None => HOME.to_owned(),
        },
        None => HOME.to_owned(),
    }
}

/// The authorization request of a query string.
fn request_in(query: &str) -> AuthorizationRequest {
    request_of(&pairs(query.as_bytes()))
}

// ------------------------------------------------------------ responses

/// The pages' CSP: the stylesheet and the icon, nothing else; forms post
/// to warden and, when given, to the origin they will be redirected to.
fn content_security_policy(form_target: Option<&str>) -> String {
    let extra = form_target.and_then(form_source).unwrap_or_default();
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'{extra}; \
         base-uri 'none'; frame-ancestors 'none'"
    )
}

/// A CSP source for a redirect URI: its origin, or `scheme:` for a custom
/// scheme; only characters a source may hold.
fn form_source(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    let source = match url.scheme() {
        "http" | "https" => url.origin().ascii_serialization(),
        scheme => format!("{scheme}:"),
    };
    source
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".:/-[]".contains(&b))
        .then(|| format!(" {source}"))
}

fn no_store_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// 303 to `location`.
pub(crate) fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Request refused",
                &message_body("The address to go to is not valid."),
                None,
            );
        }
    }
    no_store_headers(&mut r);
    r
}

/// An HTML page with the pages' headers.
pub(crate) fn page(
    status: StatusCode,
    title: &str,
    body: &str,
    form_target: Option<&str>,
) -> Response {
    let html = layout(title, body);
    let mut r = (status, html).into_response();
    let csp = content_security_policy(form_target);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    no_store_headers(&mut r);
    r
}

pub(crate) fn with_cookie(mut r: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

fn cookie_header(state: &AppState, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let secure = if state.cookies.secure() {
        "; Secure"
    } else {
        ""
    };
    let max_age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/{max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn session_cookie(state: &AppState, value: &str) -> HeaderValue {
    cookie_header(
        state,
        SESSION_COOKIE,
        value,
        Some(state.config.clients.browser_session_ttl),
    )
}

pub(crate) fn cleared_session_cookie(state: &AppState) -> HeaderValue {
    cookie_header(state, SESSION_COOKIE, "", Some(0))
}

/// This browser's pre-session cookie and its form token; a `Set-Cookie`
/// when it had none.
pub(crate) fn csrf_for(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(String, Option<HeaderValue>), Error> {
    if let Some(pre) = cookie(headers, CSRF_COOKIE).filter(|p| p.len() >= 43) {
        return Ok((state.browser.csrf_token(pre), None));
    }
    let pre = state
        .browser
        .new_pre_session()
        .map_err(crate::auth::Error::from)?;
    let set = cookie_header(state, CSRF_COOKIE, &pre, None);
    Ok((state.browser.csrf_token(&pre), Some(set)))
}

/// A failed request of a page, as a page: the throttle's 429 and the full
/// hashing queue's 503 with `Retry-After`; anything else as the API's error.
pub(crate) fn error_page(e: Error) -> Response {
    let (status, text, retry) = match &e {
        Error::Throttled(seconds, _) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many failed sign-in attempts. Try again in {seconds} seconds."),
            *seconds,
        ),
        Error::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is busy. Try again in a moment.".to_owned(),
            1,
        ),
        _ => return e.into_response(),
    };
    let mut r = page(status, "Try again later", &message_body(&text), None);
    if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

pub(crate) fn csrf_refused() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Form expired",
        &message_body(
            "This form was not sent from warden's page in this browser, or it has expired. Nothing was changed. Go back, reload the page and try again.",
        ),
        None,
    )
}

// ------------------------------------------------------------ handlers

/// `GET /authorize`: the authorization request (RFC 6749 §4.1.1).
async fn authorize_get(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let pairs = pairs(query.unwrap_or_default().as_bytes());
    run(&state, &headers, &pairs).await
}

/// `POST /authorize`: the same request as a form. From another site it
/// arrives without `warden_session` (`SameSite=Lax`): 303 to the same
/// request as a `GET`, which the browser sends with its cookies.
async fn authorize_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = pairs(&body);
    if cookies::values(&headers, SESSION_COOKIE).next().is_none() {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            query.append_pair(k, v);
        }
        return see_other(&format!("/authorize?{}", query.finish()));
    }
    run(&state, &headers, &pairs).await
}

async fn run(state: &AppState, headers: &HeaderMap, pairs: &[(String, String)]) -> Response {
    let request = request_of(pairs);
    let session = match session_of(state, headers).await {
        Ok(s) => s,
        Err(e) => return error_page(e),
    };
    match crate::auth::authorize::authorize(state, &request, session.as_ref(), None).await {
        Ok(step) => respond(state, headers, &request, step),
        Err(e) => error_page(e.into()),
    }
}

fn respond(
    state: &AppState,
    headers: &HeaderMap,
    request: &AuthorizationRequest,
    step: Step,
) -> Response {
    match step {
        Step::BadRequest(message) => page(
            StatusCode::BAD_REQUEST,
            "Sign-in request refused",
            &message_body(&format!(
                "{message} If you followed a link from an application, tell its developers."
            )),
            None,
        ),
        Step::Redirect(to) => see_other(&to),
        Step::Login { .. } => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("return_to", &format!("/authorize?{}", request.to_query()));
            see_other(&format!("/login?{}", q.finish()))
        }
        Step::Consent(prompt) => match csrf_for(state, headers) {
            Ok((token, set)) => with_cookie(
                page(
                    StatusCode::OK,
                    "Allow access?",
                    &consent_body(&prompt, &token, &request.to_query()),
                    Some(&prompt.redirect_uri),
                ),
                set,
            ),
            Err(e) => error_page(e),
        },
    }
}

/// `POST /authorize/consent`: the consent page's answer.
async fn consent(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = pairs(&body);
    if !csrf_ok(&state, &headers, &form) {
        return csrf_refused();
    }
    let decision = match field(&form, "decision") {
        Some("allow") => Decision::Allow,
        Some("deny") => Decision::Deny,
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                "Request refused",
                &message_body("Choose Allow or Deny."),
                None,
            );
        }
    };
    let inner = pairs(field(&form, "request").unwrap_or_default().as_bytes());
    let request = request_of(&inner);
    let session = match session_of(&state, &headers).await {
        Ok(s) => s,
        Err(e) => return error_page(e),
    };
    match crate::auth::authorize::authorize(&state, &request, session.as_ref(), Some(decision))
        .await
    {
        Ok(step) => respond(&state, &headers, &request, step),
        Err(e) => error_page(e.into()),
    }
}

/// `GET /login`: the sign-in form. `return_to` is the authorization
/// request to go back to (see [`return_target`]); its `login_hint`
/// pre-fills the username.
async fn login_page(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = pairs(query.unwrap_or_default().as_bytes());
    let return_to = return_target(field(&query, "return_to"));
    let hint = return_to
        .strip_prefix("/authorize?")
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "login_hint")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let signed_in = match session_of(&state, &headers).await {
        Ok(s) => s.map(|s| s.user.username),
        Err(e) => return error_page(e),
    };
    login_form(
        &state,
        &headers,
        StatusCode::OK,
        &return_to,
        &hint,
        None,
        signed_in.as_deref(),
    )
    .await
}

async fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    return_to: &str,
    username: &str,
    error: Option<&str>,
    signed_in: Option<&str>,
) -> Response {
    let (token, set) = match csrf_for(state, headers) {
        Ok(t) => t,
        Err(e) => return error_page(e),
    };
    let target = match return_to.strip_prefix("/authorize?") {
        Some(q) => crate::auth::authorize::verified_redirect_uri(state, &request_in(q))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    with_cookie(
        page(
            status,
            "Sign in",
            &login_body(&token, return_to, username, error, signed_in),
            target.as_deref(),
        ),
        set,
    )
}

/// `POST /login`: signs in (the password grant's throttle and check) and
/// goes back to the authorization request, or to `/account`.
async fn login(
    State(state): State<AppState>,
    client: ClientMeta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = pairs(&body);
    if !csrf_ok(&state, &headers, &form) {
        return csrf_refused();
    }
    let return_to = return_target(field(&form, "return_to"));
    let username = field(&form, "username").unwrap_or_default();
    let password = field(&form, "password").unwrap_or_default();
    if username.is_empty() || password.is_empty() {
        return login_form(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            &return_to,
            username,
            Some("Enter your username (or email) and your password."),
            None,
        )
        .await;
    }
    let device_cookies: Vec<&str> = cookies::values(&headers, state.devices.name()).collect();
    match browser::sign_in(&state, username, password, &client, &device_cookies).await {
        Ok((value, user)) => {
            // The browser's earlier session (another user, or a sign-in
            // that prompt=login or max_age asked to repeat) is replaced:
            // end it rather than leave it live without its cookie.
            for old in cookies::values(&headers, SESSION_COOKIE) {
                if let Err(e) = browser::sign_out(&state, Some(old)).await {
                    tracing::warn!(error = %e, "ending the replaced browser session failed");
                }
            }
            let mut r = see_other(&return_to);
            let h = r.headers_mut();
            h.append(header::SET_COOKIE, session_cookie(&state, &value));
            h.append(
                header::SET_COOKIE,
                cookies::device_cookie(&state.devices, user, tokens::now()),
            );
            r
        }
        Err(crate::auth::Error::Grant(_, message)) => {
            login_form(
                &state,
                &headers,
                StatusCode::BAD_REQUEST,
                &return_to,
                username,
                Some(&message),
                None,
            )
            .await
        }
        Err(e) => error_page(e.into()),
    }
}

/// `POST /signout`: ends the browser session and clears its cookie.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = pairs(&body);
    if !csrf_ok(&state, &headers, &form) {
        return csrf_refused();
    }
    for value in cookies::values(&headers, SESSION_COOKIE) {
        if let Err(e) = browser::sign_out(&state, Some(value)).await {
            return error_page(e.into());
        }
    }
    let mut r = see_other("/login?signed_out=1");
    r.headers_mut()
        .append(header::SET_COOKIE, cleared_session_cookie(&state));
    r
}

// ------------------------------------------------------------ HTML

/// Text or an attribute value, escaped for HTML.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn layout(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · warden</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/account/style.css">
</head>
<body>
<header>
  <span class="brand">warden</span>
  <span class="title">{title}</span>
  <a href="/account">Your account</a>
</header>
<main class="hosted">
{body}
</main>
</body>
</html>
"#,
        title = esc(title),
    )
}

pub(crate) fn message_body(text: &str) -> String {
    format!(
        r#"<p id="message" class="error" role="alert">{}</p>"#,
        esc(text)
    )
}

fn login_body(
    token: &str,
    return_to: &str,
    username: &str,
    error: Option<&str>,
    signed_in: Option<&str>,
) -> String {
    let error = error
        .map(|e| {
            format!(
                r#"<p id="message" class="error" role="alert">{}</p>"#,
                esc(e)
            )
        })
        .unwrap_or_default();
    let signed_in = signed_in
        .map(|name| {
            format!(
                r#"<form class="card" method="post" action="/signout">
  <p class="whoami">Signed in as <strong>{name}</strong></p>
  <input type="hidden" name="csrf_token" value="{token}">
  <div class="actions"><a href="{home}">Continue</a> <button type="submit" class="secondary">Sign out</button></div>
</form>
"#,
                name = esc(name),
                token = esc(token),
                home = HOME,
            )
        })
        .unwrap_or_default();
    format!(
        r#"{error}{signed_in}<form class="card" method="post" action="/login">
  <h2>Sign in</h2>
  <input type="hidden" name="csrf_token" value="{token}">
  <input type="hidden" name="return_to" value="{return_to}">
  <label>Username or email
    <input name="username" value="{username}" autocomplete="username" required autofocus></label>
  <label>Password
    <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Sign in</button>
</form>
"#,
        token = esc(token),
        return_to = esc(return_to),
        username = esc(username),
    )
}

/// A scope, in words.
pub fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are (your warden user id)".to_owned(),
        "profile" => "See your username and full name".to_owned(),
        "email" => "See your email address".to_owned(),
        "offline_access" => "Stay connected while you are not using it".to_owned(),
        "me" => "See and change your warden account".to_owned(),
        "users:read" => "See every user's account".to_owned(),
        "users:write" => "Change, disable and delete users' accounts".to_owned(),
        "tokens:introspect" => "Check whether access tokens are valid".to_owned(),
        "clients:read" => "See the applications registered with warden".to_owned(),
        "clients:write" => "Register, change and delete applications".to_owned(),
        other => format!("Use the permission “{other}”"),
    }
}

fn consent_body(prompt: &ConsentPrompt, token: &str, request: &str) -> String {
    let scopes: String = prompt
        .scopes
        .iter()
        .map(|s| {
            format!(
                r#"    <li>{} <span class="scope">({})</span></li>
"#,
                esc(&describe_scope(s)),
                esc(s)
            )
        })
        .collect();
    format!(
        r#"<form class="card" method="post" action="/authorize/consent">
  <h2><strong class="client">{client}</strong> wants to access your account</h2>
  <p class="whoami">Signed in as <strong>{user}</strong></p>
  <p>If you allow it, {client} will be able to:</p>
  <ul class="scopes">
{scopes}  </ul>
  <input type="hidden" name="csrf_token" value="{token}">
  <input type="hidden" name="request" value="{request}">
  <div class="actions">
    <button type="submit" name="decision" value="allow">Allow</button>
    <button type="submit" name="decision" value="deny" class="secondary">Deny</button>
  </div>
  <p class="hint">You will be sent back to the application at {origin}.</p>
</form>
"#,
        client = esc(&prompt.client_name),
        user = esc(&prompt.username),
        token = esc(token),
        request = esc(request),
        origin = esc(&form_source(&prompt.redirect_uri)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_authorization_requests_and_the_account_page_are_return_targets() {
        for evil in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "/authorizex?a=b",
            "/authorize",
            "javascript:alert(1)",
            "/account/../../evil",
            "",
        ] {
            assert_eq!(return_target(Some(evil)), "/account", "{evil}");
        }
        assert_eq!(return_target(None), "/account");
        assert_eq!(
            return_target(Some("/authorize?client_id=a&prompt=login&evil=//x")),
            "/authorize?client_id=a"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn form_sources_are_origins_or_schemes() {
        assert_eq!(
            form_source("https://app.example.com:8443/cb?x=1").as_deref(),
            Some(" https://app.example.com:8443")
        );
        assert_eq!(
            form_source("http://127.0.0.1:5000/cb").as_deref(),
            Some(" http://127.0.0.1:5000")
        );
        assert_eq!(
            form_source("com.example.app:/cb").as_deref(),
            Some(" com.example.app:")
        );
    }
}
