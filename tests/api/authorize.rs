//! `/authorize`, the hosted login and consent pages and the browser
//! session, driven like a browser would: a cookie-keeping client that
//! follows no redirect on its own, reading the forms' hidden fields from
//! the HTML. (Redeeming the codes at `POST /token` is tested with the
//! token endpoint.)

use std::collections::BTreeMap;

use reqwest::{StatusCode, header};
use serde_json::Value;
use sha2::Digest;
use warden::auth::clients::NewClient;

use crate::helpers::{
    APP_CB, Browser, CHALLENGE, PASSWORD, Seen, TestApp, VERIFIER, at_client, authorize_path, decide,
    hidden, session_id, sign_in_from,
};

async fn client(app: &TestApp, new: NewClient) -> warden::domain::ClientRecord {
    let (client, _secret) =
        warden::auth::clients::create(&app.state, new, None, None, warden::auth::tokens::now())
            .await
            .unwrap();
    client
}

/// A confidential client at `https://app.example.com/cb`.
async fn confidential(app: &TestApp, name: &str) -> warden::domain::ClientRecord {
    client(
        app,
        NewClient {
            name: name.to_owned(),
            redirect_uris: vec![APP_CB.to_owned()],
            ..Default::default()
        },
    )
    .await
}

/// Registers `username`, signs in through the client's authorization
/// request, allows, and returns the code's redirect parameters.
async fn code_flow(
    browser: &mut Browser,
    client: &warden::domain::ClientRecord,
    username: &str,
) -> BTreeMap<String, String> {
    let start = browser
        .get(&authorize_path(&client.id.to_string(), Some(APP_CB), &[("scope", "openid me")]))
        .await;
    let consent = sign_in_from(browser, &start, username).await;
    let done = decide(browser, &consent, "allow").await;
    at_client(&done, APP_CB)
}

fn sha256(s: &str) -> Vec<u8> {
    sha2::Sha256::digest(s.as_bytes()).to_vec()
}

#[tokio::test]
async fn sign_in_and_consent_redirect_with_a_code_state_and_iss() {
    let app = TestApp::spawn().await;
    let user = app.register_ok("alice").await;
    let c = confidential(&app, "Gradebook").await;
    let mut browser = Browser::new(&app);
    let start = browser
        .get(&authorize_path(
            &c.id.to_string(),
            Some(APP_CB),
            &[("scope", "openid me"), ("nonce", "n-1")],
        ))
        .await;
    let consent = sign_in_from(&mut browser, &start, "alice").await;
    assert!(consent.body.contains("Gradebook"), "{}", consent.body);
    assert!(consent.body.contains("Know who you are"));
    assert!(consent.body.contains(r#"name="decision" value="allow""#));
    assert!(consent.body.contains(r#"name="decision" value="deny""#));
    let done = decide(&mut browser, &consent, "allow").await;
    let params = at_client(&done, APP_CB);
    assert_eq!(params["state"], "xyz");
    assert_eq!(params["iss"], app.url);
    let code = &params["code"];
    assert!(code.len() >= 43, "{code}");

    // Stored only as its hash, with every binding.
    let hashes = app.sql_bytes("select hash from authorization_codes").await;
    assert_eq!(hashes, vec![sha256(code)]);
    let user_id = user["id"].as_str().unwrap();
    let bound = app
        .sql_i64(&format!(
            "select count(*) from authorization_codes where client_id = '{}' and user_id = '{user_id}' \
             and redirect_uri = '{APP_CB}' and code_challenge = '{CHALLENGE}' and scope = 'me openid' \
             and nonce = 'n-1' and used_at is null and session_id is null and expires_at - created_at = 60 \
             and browser_session in (select id from sessions where browser = true and user_id = '{user_id}')",
            c.id
        ))
        .await;
    assert_eq!(bound, 1);
}

#[tokio::test]
async fn a_second_client_gets_a_code_without_a_password_prompt() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let first = confidential(&app, "First").await;
    let second = client(
        &app,
        NewClient {
            name: "Second".into(),
            first_party: true,
            redirect_uris: vec!["https://second.example.com/cb".into()],
            ..Default::default()
        },
    )
    .await;
    let mut browser = Browser::new(&app);
    code_flow(&mut browser, &first, "alice").await;
    // Omitted redirect_uri: the client's only one.
    let r = browser
        .get(&authorize_path(&second.id.to_string(), None, &[("scope", "openid")]))
        .await;
    let params = at_client(&r, "https://second.example.com/cb");
    assert!(params.contains_key("code"));
    assert_eq!(app.sql_i64("select count(*) from authorization_codes where redirect_uri is null").await, 1);
}

#[tokio::test]
async fn prompt_none_answers_login_required_then_consent_required() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let c = confidential(&app, "App").await;
    let id = c.id.to_string();
    let mut browser = Browser::new(&app);
    let r = browser
        .get(&authorize_path(&id, Some(APP_CB), &[("prompt", "none")]))
        .await;
    let p = at_client(&r, APP_CB);
    assert_eq!(p["error"], "login_required");
    assert_eq!((p["state"].as_str(), p["iss"].as_str()), ("xyz", app.url.as_str()));

    // Signed in, no consent yet.
    let start = browser.get(&authorize_path(&id, Some(APP_CB), &[])).await;
    let consent = sign_in_from(&mut browser, &start, "alice").await;
    assert_eq!(consent.status, StatusCode::OK);
    let r = browser
        .get(&authorize_path(&id, Some(APP_CB), &[("prompt", "none")]))
        .await;
    assert_eq!(at_client(&r, APP_CB)["error"], "consent_required");

    // Consent given: prompt=none gets a code; prompt=consent asks again.
    decide(&mut browser, &consent, "allow").await;
    let r = browser
        .get(&authorize_path(&id, Some(APP_CB), &[("prompt", "none")]))
        .await;
    assert!(at_client(&r, APP_CB).contains_key("code"));
    let r = browser
        .get(&authorize_path(&id, Some(APP_CB), &[("prompt", "consent")]))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains(r#"value="allow""#));
}

#[tokio::test]
async fn prompt_login_and_an_exceeded_max_age_ask_for_a_new_sign_in() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let c = client(
        &app,
        NewClient {
            name: "Own".into(),
            first_party: true,
            redirect_uris: vec![APP_CB.into()],
            ..Default::default()
        },
    )
    .await;
    let id = c.id.to_string();
    let mut browser = Browser::new(&app);
    let start = browser.get(&authorize_path(&id, Some(APP_CB), &[])).await;
    let first = sign_in_from(&mut browser, &start, "alice").await;
    assert!(at_client(&first, APP_CB).contains_key("code"));
    let first_auth = app.sql_i64("select max(auth_time) from authorization_codes").await;

    // Signed in, but prompt=login: the login page, and after it a code.
    let r = browser
        .get(&authorize_path(&id, Some(APP_CB), &[("prompt", "login")]))
        .await;
    assert!(r.location.as_deref().unwrap().starts_with("/login?"));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again = sign_in_from(&mut browser, &r, "alice").await;
    assert!(at_client(&again, APP_CB).contains_key("code"));
    let second_auth = app.sql_i64("select max(auth_time) from authorization_codes").await;
    assert!(second_auth > first_auth, "a new auth_time");
    assert_eq!(
        app.sql_i64("select count(*) from sessions where browser = true and revoked_at is null").await,
        1,
        "the new sign-in replaced the browser's earlier session"
    );

    // max_age: within it a code; past it the login page.
    let r = browser
        .get(&authorize_path(&id, Some(APP_CB), &[("max_age", "3600")]))
        .await;
    assert!(at_client(&r, APP_CB).contains_key("code"));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = browser
        .get(&authorize_path(&id, Some(APP_CB), &[("max_age", "0")]))
        .await;
    assert!(r.location.as_deref().unwrap().starts_with("/login?"), "{:?}", r.location);
    let back = sign_in_from(&mut browser, &r, "alice").await;
    assert!(at_client(&back, APP_CB).contains_key("code"), "no loop back to the login page");
}

#[tokio::test]
async fn login_hint_prefills_the_username() {
    let app = TestApp::spawn().await;
    let c = confidential(&app, "App").await;
    let mut browser = Browser::new(&app);
    let r = browser
        .get(&authorize_path(&c.id.to_string(), Some(APP_CB), &[("login_hint", "bob\"<x>")]))
        .await;
    let page = browser.get(r.location.as_deref().unwrap()).await;
    assert!(
        page.body.contains(r#"name="username" value="bob&quot;&lt;x&gt;""#),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn manipulated_redirect_uris_get_a_400_page_and_no_redirect() {
    let app = TestApp::spawn().await;
    let c = confidential(&app, "App").await;
    let two = client(
        &app,
        NewClient {
            name: "Two".into(),
            redirect_uris: vec![APP_CB.into(), "https://app.example.com/other".into()],
            ..Default::default()
        },
    )
    .await;
    let id = c.id.to_string();
    let mut browser = Browser::new(&app);
    let mut cases: Vec<String> = [
        "https://app.example.com/c",                // prefix
        "https://app.example.com/cb/evil",          // suffix
        "https://app.example.com/cbx",              // suffix
        "https://app.example.com/cb?x=1",           // extra query
        "https://app.example.com/cb/../cb",         // traversal
        "https://app.example.com/x/../cb",          // traversal
        "https://evil@app.example.com/cb",          // userinfo
        "https://app.example.com:8443/cb",          // other port
        "https://app.example.com/cb#frag",          // fragment
        "https://app.example.com.evil.example/cb",  // other host
        "http://app.example.com/cb",                // other scheme
        "HTTPS://APP.EXAMPLE.COM/cb",               // not the same text
        "https://evil.example/cb",
    ]
    .iter()
    .map(|uri| authorize_path(&id, Some(uri), &[]))
    .collect();
    cases.push(authorize_path("00000000-0000-7000-8000-000000000000", Some(APP_CB), &[]));
    cases.push(authorize_path("not-a-uuid", Some(APP_CB), &[]));
    cases.push(authorize_path(&two.id.to_string(), None, &[]));
    cases.push(format!(
        "{}&redirect_uri={}",
        authorize_path(&id, Some(APP_CB), &[]),
        "https%3A%2F%2Fevil.example%2Fcb"
    ));
    for path in cases {
        let r = browser.get(&path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(r.location.is_none(), "{path} redirected");
        assert!(
            r.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"),
            "{path}"
        );
        assert!(!r.body.contains("evil.example"), "{path}: the page links nowhere");
    }
}

#[tokio::test]
async fn a_loopback_redirect_uri_matches_on_any_port() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let native = client(
        &app,
        NewClient {
            name: "CLI".into(),
            public: true,
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
            ..Default::default()
        },
    )
    .await;
    let mut browser = Browser::new(&app);
    let uri = "http://127.0.0.1:51234/callback";
    let start = browser
        .get(&authorize_path(&native.id.to_string(), Some(uri), &[]))
        .await;
    let consent = sign_in_from(&mut browser, &start, "alice").await;
    let csp = consent.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("form-action 'self' http://127.0.0.1:51234;"), "{csp}");
    let done = decide(&mut browser, &consent, "allow").await;
    assert!(at_client(&done, uri).contains_key("code"));
    // Another path on the loopback host is not the registered URI.
    let r = browser
        .get(&authorize_path(&native.id.to_string(), Some("http://127.0.0.1:51234/other"), &[]))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pkce_downgrades_and_other_request_errors_redirect_with_state_and_iss() {
    let app = TestApp::spawn().await;
    let c = confidential(&app, "App").await;
    let service = client(
        &app,
        NewClient {
            name: "Service".into(),
            redirect_uris: vec![APP_CB.into()],
            grant_types: Some(vec!["client_credentials".into()]),
            ..Default::default()
        },
    )
    .await;
    let id = c.id.to_string();
    let base = |pairs: &[(&str, &str)]| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("client_id", &id);
        q.append_pair("redirect_uri", APP_CB);
        q.append_pair("state", "s1");
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        format!("/authorize?{}", q.finish())
    };
    let cases = [
        (base(&[("response_type", "code")]), "invalid_request"),
        (
            base(&[("response_type", "code"), ("code_challenge", CHALLENGE), ("code_challenge_method", "plain")]),
            "invalid_request",
        ),
        (base(&[("response_type", "code"), ("code_challenge", CHALLENGE)]), "invalid_request"),
        (
            base(&[("response_type", "code"), ("code_challenge", "short"), ("code_challenge_method", "S256")]),
            "invalid_request",
        ),
        (
            base(&[("response_type", "token"), ("code_challenge", CHALLENGE), ("code_challenge_method", "S256")]),
            "unsupported_response_type",
        ),
        (base(&[("code_challenge", CHALLENGE), ("code_challenge_method", "S256")]), "invalid_request"),
        (
            base(&[
                ("response_type", "code"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("scope", "users:write"),
            ]),
            "invalid_scope",
        ),
        (
            base(&[
                ("response_type", "code"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("scope", "me"),
                ("scope", "openid"),
            ]),
            "invalid_request",
        ),
        (
            base(&[
                ("response_type", "code"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("prompt", "none login"),
            ]),
            "invalid_request",
        ),
        (
            base(&[
                ("response_type", "code"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("max_age", "soon"),
            ]),
            "invalid_request",
        ),
    ];
    let mut browser = Browser::new(&app);
    for (path, error) in cases {
        let r = browser.get(&path).await;
        let p = at_client(&r, APP_CB);
        assert_eq!(p["error"], error, "{path}");
        assert!(!p["error_description"].is_empty());
        assert_eq!(p["state"], "s1", "{path}");
        assert_eq!(p["iss"], app.url, "{path}");
        assert!(!p.contains_key("code"));
    }
    let r = browser
        .get(&authorize_path(&service.id.to_string(), Some(APP_CB), &[]))
        .await;
    assert_eq!(at_client(&r, APP_CB)["error"], "unauthorized_client");
    assert_eq!(app.sql_i64("select count(*) from authorization_codes").await, 0);
}

#[tokio::test]
async fn state_comes_back_exactly_as_sent_and_the_uris_query_stays() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let c = client(
        &app,
        NewClient {
            name: "Own".into(),
            first_party: true,
            redirect_uris: vec!["https://app.example.com/cb?tenant=a%20b".into()],
            ..Default::default()
        },
    )
    .await;
    let uri = "https://app.example.com/cb?tenant=a%20b";
    let state = "a b&c=d/é%+#?x=1;'\"<>";
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", &c.id.to_string()),
        ("redirect_uri", uri),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", state),
    ] {
        q.append_pair(k, v);
    }
    let path = format!("/authorize?{}", q.finish());
    let mut browser = Browser::new(&app);
    let start = browser.get(&path).await;
    let done = sign_in_from(&mut browser, &start, "alice").await;
    let location = done.location.clone().unwrap();
    assert!(location.starts_with("https://app.example.com/cb?tenant=a%20b&code="), "{location}");
    let p = at_client(&done, "https://app.example.com/cb");
    assert_eq!(p["state"], state);
    assert_eq!(p["tenant"], "a b");
    assert!(!location.contains('#'), "{location}");
}

#[tokio::test]
async fn login_and_consent_forms_refuse_missing_wrong_and_foreign_csrf_tokens() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let c = confidential(&app, "App").await;
    let path = authorize_path(&c.id.to_string(), Some(APP_CB), &[]);

    // Another browser's token (its own pre-session).
    let mut other = Browser::new(&app);
    let page = other.get("/login").await;
    let foreign = hidden(&page.body, "csrf_token");

    let mut browser = Browser::new(&app);
    let start = browser.get(&path).await;
    let page = browser.get(start.location.as_deref().unwrap()).await;
    let return_to = hidden(&page.body, "return_to");
    for token in [None, Some("wrong"), Some(foreign.as_str()), Some("")] {
        let mut form = vec![
            ("return_to", return_to.as_str()),
            ("username", "alice"),
            ("password", PASSWORD),
        ];
        if let Some(t) = token {
            form.push(("csrf_token", t));
        }
        let r = browser.post("/login", &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{token:?}");
        assert!(r.body.contains("Nothing was changed"), "{}", r.body);
        assert!(r.set_cookies.is_empty(), "{token:?}: {:?}", r.set_cookies);
    }
    // A right token without its cookie.
    let own = hidden(&page.body, "csrf_token");
    let mut cookieless = Browser::new(&app);
    let r = cookieless
        .post("/login", &[("csrf_token", &own), ("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(app.sql_i64("select count(*) from sessions where browser = true").await, 0);

    // The consent form, likewise.
    let consent = sign_in_from(&mut browser, &start, "alice").await;
    let request = hidden(&consent.body, "request");
    for token in [None, Some("wrong"), Some(foreign.as_str())] {
        let mut form = vec![("request", request.as_str()), ("decision", "allow")];
        if let Some(t) = token {
            form.push(("csrf_token", t));
        }
        let r = browser.post("/authorize/consent", &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{token:?}");
        assert!(r.location.is_none());
    }
    assert_eq!(app.sql_i64("select count(*) from consents").await, 0);
    assert_eq!(app.sql_i64("select count(*) from authorization_codes").await, 0);
    // And the real answer works.
    let done = decide(&mut browser, &consent, "allow").await;
    assert!(at_client(&done, APP_CB).contains_key("code"));
}

#[tokio::test]
async fn return_parameters_cannot_lead_anywhere_but_authorize_or_the_account_page() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    for evil in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "/authorizex?client_id=1",
        "javascript:alert(1)",
        "/account/../evil",
    ] {
        let mut browser = Browser::new(&app);
        let page = browser
            .get(&format!("/login?return_to={}", urlencode(evil)))
            .await;
        assert!(!page.body.contains("evil"), "{evil}: {}", page.body);
        let csrf = hidden(&page.body, "csrf_token");
        for (name, value) in [("return_to", evil), ("next", evil), ("post_login", evil)] {
            let r = browser
                .post(
                    "/login",
                    &[
                        ("csrf_token", &csrf),
                        (name, value),
                        ("username", "alice"),
                        ("password", PASSWORD),
                    ],
                )
                .await;
            assert_eq!(r.status, StatusCode::SEE_OTHER);
            assert_eq!(r.location.as_deref(), Some("/account"), "{name}={evil}");
        }
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn a_wrong_password_shows_the_message_and_the_throttle_is_tokens() {
    let app = TestApp::spawn_with(&[("WARDEN_THROTTLE_PER_PAIR", "3")]).await;
    app.register_ok("alice").await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/login").await;
    let csrf = hidden(&page.body, "csrf_token");
    let r = wrong_password(&mut browser, &csrf).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("Incorrect username or password"), "{}", r.body);
    assert!(r.body.contains(r#"name="username" value="alice""#));
    assert!(!r.set_cookies.iter().any(|c| c.starts_with("warden_session=")));
    // Two failures at /token: the same counter is full.
    for _ in 0..2 {
        assert_eq!(app.login("alice", "wrong password").await.status(), StatusCode::BAD_REQUEST);
    }
    let r = wrong_password(&mut browser, &csrf).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    assert!(r.body.contains("Too many failed sign-in attempts"), "{}", r.body);
    assert!(r.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    assert_eq!(app.login("alice", PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

async fn wrong_password(browser: &mut Browser, csrf: &str) -> Seen {
    browser
        .post(
            "/login",
            &[("csrf_token", csrf), ("username", "alice"), ("password", "wrong password")],
        )
        .await
}

#[tokio::test]
async fn deny_redirects_with_access_denied() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let c = confidential(&app, "App").await;
    let mut browser = Browser::new(&app);
    let start = browser.get(&authorize_path(&c.id.to_string(), Some(APP_CB), &[])).await;
    let consent = sign_in_from(&mut browser, &start, "alice").await;
    let done = decide(&mut browser, &consent, "deny").await;
    let p = at_client(&done, APP_CB);
    assert_eq!(p["error"], "access_denied");
    assert_eq!((p["state"].as_str(), p["iss"].as_str()), ("xyz", app.url.as_str()));
    assert_eq!(app.sql_i64("select count(*) from consents").await, 0);
    assert_eq!(app.sql_i64("select count(*) from authorization_codes").await, 0);
}

#[tokio::test]
async fn remembered_consent_skips_the_page_for_a_confidential_client_but_not_a_loopback_one() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let c = confidential(&app, "Web").await;
    let native = client(
        &app,
        NewClient {
            name: "Native".into(),
            public: true,
            first_party: true,
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            ..Default::default()
        },
    )
    .await;
    let mut browser = Browser::new(&app);
    code_flow(&mut browser, &c, "alice").await;
    assert_eq!(app.sql_i64("select count(*) from consents").await, 1);
    // Again, the same scopes: no page.
    let r = browser
        .get(&authorize_path(&c.id.to_string(), Some(APP_CB), &[("scope", "me openid")]))
        .await;
    assert!(at_client(&r, APP_CB).contains_key("code"));
    // More scopes than remembered: the page again.
    let r = browser
        .get(&authorize_path(&c.id.to_string(), Some(APP_CB), &[("scope", "me openid email")]))
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // The public loopback client (even first-party): always the page.
    let uri = "http://127.0.0.1:4000/cb";
    for _ in 0..2 {
        let r = browser
            .get(&authorize_path(&native.id.to_string(), Some(uri), &[]))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.location);
        let done = decide(&mut browser, &r, "allow").await;
        assert!(at_client(&done, uri).contains_key("code"));
    }
    let r = browser
        .get(&authorize_path(&native.id.to_string(), Some(uri), &[("prompt", "none")]))
        .await;
    assert_eq!(at_client(&r, uri)["error"], "consent_required");
}

/// The browser session's id (the cookie's first part).
#[tokio::test]
async fn the_browser_session_is_listed_and_ended_by_logout_and_password_change() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let c = client(
        &app,
        NewClient {
            name: "Own".into(),
            first_party: true,
            redirect_uris: vec![APP_CB.into()],
            ..Default::default()
        },
    )
    .await;
    let path = authorize_path(&c.id.to_string(), Some(APP_CB), &[]);
    let mut browser = Browser::new(&app);
    let start = browser.get(&path).await;
    sign_in_from(&mut browser, &start, "alice").await;
    let sid = session_id(&browser);

    let token = app.token("alice").await;
    let list: Value = app
        .client
        .get(app.at("/users/me/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list.as_array().unwrap().iter().any(|s| s["id"] == sid.as_str()),
        "{list}"
    );
    // Ended from the session list: /authorize asks to sign in again.
    let r = app
        .client
        .delete(app.at(&format!("/users/me/sessions/{sid}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = browser.get(&path).await;
    assert!(r.location.as_deref().unwrap().starts_with("/login?"));

    // Signed in again; `POST /logout?all=true` ends it.
    sign_in_from(&mut browser, &r, "alice").await;
    let r = app
        .client
        .post(app.at("/logout?all=true"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = browser.get(&path).await;
    assert!(r.location.as_deref().unwrap().starts_with("/login?"));

    // Signed in again; a password change ends it.
    sign_in_from(&mut browser, &r, "alice").await;
    assert!(at_client(&browser.get(&path).await, APP_CB).contains_key("code"));
    let token = app.token("alice").await;
    let r = app
        .client
        .put(app.at("/users/me/password"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"current_password": PASSWORD, "new_password": "another fine passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = browser.get(&path).await;
    assert!(r.location.as_deref().unwrap().starts_with("/login?"));
    let r = browser.get(&authorize_path(&c.id.to_string(), Some(APP_CB), &[("prompt", "none")])).await;
    assert_eq!(at_client(&r, APP_CB)["error"], "login_required");
}

#[tokio::test]
async fn signing_out_on_the_pages_ends_the_session_and_clears_the_cookie() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/login").await;
    let csrf = hidden(&page.body, "csrf_token");
    let r = browser
        .post("/login", &[("csrf_token", &csrf), ("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.location.as_deref(), Some("/account"));
    let sid = session_id(&browser);
    let page = browser.get("/login").await;
    assert!(page.body.contains("Signed in as <strong>alice</strong>"), "{}", page.body);
    assert!(page.body.contains(r#"action="/signout""#));
    let csrf = hidden(&page.body, "csrf_token");
    // Without the token: nothing ends.
    let r = browser.post("/signout", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(browser.jar.contains_key("warden_session"));
    let r = browser.post("/signout", &[("csrf_token", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.set_cookies.iter().any(|c| c.starts_with("warden_session=;") && c.contains("Max-Age=0")),
        "{:?}",
        r.set_cookies
    );
    assert!(!browser.jar.contains_key("warden_session"));
    let ended = app
        .sql_i64(&format!("select count(*) from sessions where id = '{sid}' and revoked_at is not null"))
        .await;
    assert_eq!(ended, 1);
}

#[tokio::test]
async fn the_cookies_and_the_pages_headers_are_strict() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/login").await;
    let csrf_cookie = page
        .set_cookies
        .iter()
        .find(|c| c.starts_with("warden_csrf="))
        .expect("a pre-session cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(csrf_cookie.contains(attr), "{csrf_cookie}");
    }
    let csp = page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    for directive in ["default-src 'none'", "form-action 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("script-src"), "no script at all: {csp}");
    assert!(!page.body.contains("<script"), "works with JavaScript off");
    assert!(!page.body.contains("http://") && !page.body.contains("https://"), "no outside requests");
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(page.body.contains(r#"name="username""#) && page.body.contains(r#"name="password""#));
    assert_eq!(page.body.matches("<button").count(), 1, "one submit button");

    let csrf = hidden(&page.body, "csrf_token");
    let r = browser
        .post("/login", &[("csrf_token", &csrf), ("username", "alice"), ("password", PASSWORD)])
        .await;
    let session = r
        .set_cookies
        .iter()
        .find(|c| c.starts_with("warden_session="))
        .expect("the session cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=1209600"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP on loopback: {session}");
    assert!(!session.contains("Domain"), "{session}");
    // The cookie's value is a secret the database keeps only hashed.
    let value = &browser.jar["warden_session"];
    let stored = app.sql_bytes("select refresh_hash from sessions where browser = true").await;
    assert_eq!(stored, vec![sha256(value)]);

    // A configured lifetime is the cookie's Max-Age.
    let app = TestApp::spawn_with(&[("WARDEN_BROWSER_SESSION_TTL", "600")]).await;
    app.register_ok("alice").await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/login").await;
    let csrf = hidden(&page.body, "csrf_token");
    let r = browser
        .post("/login", &[("csrf_token", &csrf), ("username", "alice"), ("password", PASSWORD)])
        .await;
    assert!(r.set_cookies.iter().any(|c| c.starts_with("warden_session=") && c.contains("Max-Age=600")));
    // And the session's expiry in the session list.
    assert_eq!(
        app.sql_i64("select count(*) from sessions where browser = true and expires_at - created_at = 600").await,
        1
    );
}

#[tokio::test]
async fn a_cross_site_post_without_the_session_cookie_comes_back_as_a_get() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let c = confidential(&app, "App").await;
    let form = [
        ("response_type", "code"),
        ("client_id", &c.id.to_string()),
        ("redirect_uri", APP_CB),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "a b"),
    ];
    let mut browser = Browser::new(&app);
    let r = browser.post("/authorize", &form).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let to = r.location.clone().unwrap();
    assert!(to.starts_with("/authorize?"), "{to}");
    let get = browser.get(&to).await;
    let consent = sign_in_from(&mut browser, &get, "alice").await;
    assert_eq!(consent.status, StatusCode::OK);
    // With the session, the POST itself is answered.
    let r = browser.post("/authorize", &form).await;
    assert_eq!(r.status, StatusCode::OK, "the consent page");
    let done = decide(&mut browser, &r, "allow").await;
    assert_eq!(at_client(&done, APP_CB)["state"], "a b");
}

#[tokio::test]
async fn the_code_lifetime_is_configurable() {
    let app = TestApp::spawn_with(&[("WARDEN_AUTHORIZATION_CODE_TTL", "30")]).await;
    app.register_ok("alice").await;
    let c = confidential(&app, "App").await;
    let mut browser = Browser::new(&app);
    code_flow(&mut browser, &c, "alice").await;
    assert_eq!(
        app.sql_i64("select count(*) from authorization_codes where expires_at - created_at = 30").await,
        1
    );
}

#[tokio::test]
async fn the_account_page_is_signed_in_by_the_browser_session() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let mut browser = Browser::new(&app);
    let exchange = |browser: &Browser, origin: Option<&str>| {
        let mut r = browser
            .http
            .post(browser.url("/account/session"))
            .header(header::COOKIE, browser.cookie_header());
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        r.send()
    };
    // Not signed in: 401.
    let r = exchange(&browser, Some(&app.url)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let page = browser.get("/login").await;
    let csrf = hidden(&page.body, "csrf_token");
    browser
        .post("/login", &[("csrf_token", &csrf), ("username", "alice"), ("password", PASSWORD)])
        .await;
    let sid = session_id(&browser);
    // From another site, or with no Origin: refused.
    for origin in [Some("https://evil.example"), None] {
        let r = exchange(&browser, origin).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin:?}");
    }
    let r = exchange(&browser, Some(&app.url)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    let token = body["access_token"].as_str().unwrap();
    let me = app.me(token).await;
    assert_eq!(me.status(), StatusCode::OK);
    let sessions: Value = app
        .client
        .get(app.at("/users/me/sessions"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let current: Vec<&Value> = sessions.as_array().unwrap().iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], sid.as_str(), "the token is the browser session's");

    // Signing out on the account page ends the browser session.
    let r = app.client.post(app.at("/logout")).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = exchange(&browser, Some(&app.url)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = confidential(&app, "App").await;
    let r = browser.get(&authorize_path(&c.id.to_string(), Some(APP_CB), &[])).await;
    assert!(r.location.as_deref().unwrap().starts_with("/login?"));
}

#[tokio::test]
async fn disabling_or_deleting_the_user_ends_the_browser_session() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let alice = app.register_ok("alice").await;
    app.register_ok("bob").await;
    let c = client(
        &app,
        NewClient {
            name: "Own".into(),
            first_party: true,
            redirect_uris: vec![APP_CB.into()],
            ..Default::default()
        },
    )
    .await;
    let quiet = authorize_path(&c.id.to_string(), Some(APP_CB), &[("prompt", "none")]);
    let signed_in = |name: &'static str| {
        let app = &app;
        let quiet = quiet.clone();
        async move {
            let mut browser = Browser::new(app);
            let start = browser.get(&quiet.replace("prompt=none", "prompt=login")).await;
            sign_in_from(&mut browser, &start, name).await;
            assert!(at_client(&browser.get(&quiet).await, APP_CB).contains_key("code"));
            browser
        }
    };
    let mut a = signed_in("alice").await;
    let r = app
        .client
        .patch(app.at(&format!("/users/{}", alice["id"].as_str().unwrap())))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(at_client(&a.get(&quiet).await, APP_CB)["error"], "login_required");

    let mut b = signed_in("bob").await;
    let token = app.token("bob").await;
    let r = app
        .client
        .delete(app.at("/users/me"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(at_client(&b.get(&quiet).await, APP_CB)["error"], "login_required");
}

/// RFC 7636 appendix B: the verifier whose S256 challenge is [`CHALLENGE`].

#[tokio::test]
async fn a_code_from_the_pages_is_redeemed_at_the_token_endpoint() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (c, secret) = warden::auth::clients::create(
        &app.state,
        NewClient {
            name: "Web".into(),
            redirect_uris: vec![APP_CB.into()],
            ..Default::default()
        },
        None,
        None,
        warden::auth::tokens::now(),
    )
    .await
    .unwrap();
    let mut browser = Browser::new(&app);
    let params = code_flow(&mut browser, &c, "alice").await;
    let id = c.id.to_string();
    let secret = secret.unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", APP_CB),
        ("code_verifier", VERIFIER),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
    ];
    let r = app.login_form(&form).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "me openid");
    let me = app.me(body["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), StatusCode::OK);
    // Single use.
    let r = app.login_form(&form).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_browser_session_cookie_is_no_refresh_token_at_the_token_endpoint() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/login").await;
    let csrf = hidden(&page.body, "csrf_token");
    let r = browser
        .post("/login", &[("csrf_token", &csrf), ("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.location.as_deref(), Some("/account"));
    let cookie = browser.jar["warden_session"].clone();
    let r = app
        .login_form(&[("grant_type", "refresh_token"), ("refresh_token", &cookie)])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    // Nothing was spent: the cookie still signs the pages in.
    let page = browser.get("/login").await;
    assert!(page.body.contains("Signed in as <strong>alice</strong>"), "{}", page.body);
}
