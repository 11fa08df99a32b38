//! Issue 14's input and proxy hardening, end to end: the client address
//! behind trusted proxies (all `X-Forwarded-For` lines, ports, RFC 7239
//! `Forwarded`), control characters refused with 422 before any database,
//! a bounded `q`, and the response headers (`Cache-Control: no-store` on
//! personal answers; the `/docs` CSP and framing rules).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, error_locs};

const BEHIND_PROXY: &[(&str, &str)] = &[("WARDEN_TRUSTED_PROXIES", "127.0.0.1")];

/// A login of `username` through the proxy, with `X-Forwarded-For` sent
/// as the given header lines.
async fn login_via_proxy(
    app: &TestApp,
    username: &str,
    password: &str,
    lines: &[&str],
) -> reqwest::Response {
    let mut req = app.client.post(app.at("/token"));
    for line in lines {
        // `header` appends: every line goes out as its own header field.
        req = req.header("x-forwarded-for", *line);
    }
    req.form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap()
}

async fn session_ip(app: &TestApp, r: reqwest::Response) -> Value {
    assert_eq!(r.status(), StatusCode::OK);
    let token: Value = r.json().await.unwrap();
    let list: Value = app
        .client
        .get(app.at("/users/me/sessions"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list[0]["ip"].clone()
}

#[tokio::test]
async fn a_forwarded_for_split_over_two_lines_is_read_whole_and_guesses_hit_429() {
    // HAProxy's `option forwardfor` appends its own line below the one the
    // client wrote. A guesser writing a new fake address each time must
    // still be counted as the one address the proxy saw.
    let app = TestApp::spawn_with(BEHIND_PROXY).await;
    app.register_ok("alice").await;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let fake = format!("6.6.6.{i}");
        let r = login_via_proxy(&app, "alice", "wrong password", &[&fake, "203.0.113.5"]).await;
        statuses.push(r.status().as_u16());
    }
    // Five failures per (account, address) are allowed; the sixth is 429.
    assert_eq!(&statuses[..5], &[400; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|&s| s == 429), "{statuses:?}");
}

#[tokio::test]
async fn forwarded_for_hops_with_ports_keep_clients_apart() {
    let app = TestApp::spawn_with(BEHIND_PROXY).await;
    app.register_ok("alice").await;
    // One client guesses until its pair is throttled...
    for _ in 0..5 {
        let r = login_via_proxy(&app, "alice", "wrong password", &["203.0.113.5:4711"]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
    let r = login_via_proxy(&app, "alice", PASSWORD, &["203.0.113.5:4711"]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // ...and the owner at another address, behind the same proxy, is not
    // in its bucket (nor in the proxy's).
    let r = login_via_proxy(&app, "alice", PASSWORD, &["[2001:db8::7]:443"]).await;
    assert_eq!(session_ip(&app, r).await, "2001:db8::7");
    let r = login_via_proxy(&app, "alice", PASSWORD, &["198.51.100.7:1234"]).await;
    assert_eq!(session_ip(&app, r).await, "198.51.100.7");
}

#[tokio::test]
async fn an_unknown_hop_ends_the_walk_at_the_proxy_that_wrote_it() {
    let app = TestApp::spawn_with(BEHIND_PROXY).await;
    app.register_ok("alice").await;
    let r = login_via_proxy(&app, "alice", PASSWORD, &["6.6.6.6, unknown"]).await;
    assert_eq!(session_ip(&app, r).await, "127.0.0.1");
    // A client writing `unknown` itself does not hide behind it.
    let r = login_via_proxy(&app, "alice", PASSWORD, &["unknown", "203.0.113.5"]).await;
    assert_eq!(session_ip(&app, r).await, "203.0.113.5");
}

#[tokio::test]
async fn with_forwarded_configured_only_the_rfc_7239_header_is_read() {
    let app = TestApp::spawn_with(&[
        ("WARDEN_TRUSTED_PROXIES", "127.0.0.1"),
        ("WARDEN_FORWARDED_HEADER", "forwarded"),
    ])
    .await;
    app.register_ok("alice").await;
    let r = app
        .client
        .post(app.at("/token"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("forwarded", "for=6.6.6.7")
        .header("forwarded", r#"for="[2001:db8:cafe::17]:4711";proto=https"#)
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(session_ip(&app, r).await, "2001:db8:cafe::17");
    // And with the default setting, `Forwarded` is ignored.
    let app = TestApp::spawn_with(BEHIND_PROXY).await;
    app.register_ok("alice").await;
    let r = app
        .client
        .post(app.at("/token"))
        .header("forwarded", "for=6.6.6.7")
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(session_ip(&app, r).await, "127.0.0.1");
}

#[tokio::test]
async fn the_forwarded_header_setting_is_validated() {
    let err = warden::config::Config::load_from(
        None,
        vec![("WARDEN_FORWARDED_HEADER".into(), "x-real-ip".into())],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("WARDEN_FORWARDED_HEADER"), "{err}");
}

/// Strings with a control character: NUL, another C0, DEL, a C1.
const CONTROLS: &[&str] = &["al\u{0}ice", "al\u{1b}ice", "al\u{7f}ice", "al\u{85}ice"];

#[tokio::test]
async fn control_characters_in_the_token_form_and_its_json_are_422_not_500() {
    // PostgreSQL refuses NUL in text: this was a 500, unauthenticated.
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    for bad in CONTROLS {
        let r = app.login(bad, PASSWORD).await;
        assert_eq!(error_locs(r).await, [["body", "username"]], "{bad:?}");
        let r = app
            .client
            .post(app.at("/token"))
            .json(&json!({"username": bad, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_locs(r).await, [["body", "username"]], "{bad:?}");
        let r = app
            .client
            .post(app.at("/token/revoke"))
            .form(&[("token", "x"), ("token_type_hint", bad)])
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_locs(r).await,
            [["body", "token_type_hint"]],
            "{bad:?}"
        );
    }
    // A form field name with NUL, too.
    let r = app
        .client
        .post(app.at("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=alice&password=x&sc%00ope=me")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Secrets are only hashed or compared, never stored: a password with a
    // control character is simply wrong, as before.
    let r = app.login("alice", "pass\u{0}word").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn control_characters_in_json_bodies_are_422_at_their_location() {
    let app = TestApp::spawn().await;
    let r = app
        .register(json!({"username": "a\u{0}b", "email": "b@example.com", "password": PASSWORD}))
        .await;
    assert_eq!(error_locs(r).await, [["body", "username"]]);
    let (_, token) = app.user_with_token("alice").await;
    let r = app
        .client
        .patch(app.at("/users/me"))
        .bearer_auth(&token)
        .json(&json!({"full_name": "x", "roles": ["user", "ad\u{0}min"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_locs(r).await, [["body", "roles", "1"]]);
    let r = app
        .client
        .put(app.at("/users/me/password"))
        .bearer_auth(&token)
        .json(&json!({"current_password": PASSWORD, "new_password": "new\u{0}passphrase here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_locs(r).await, [["body", "new_password"]]);
}

#[tokio::test]
async fn control_characters_in_list_queries_are_422_not_500() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    for (path, param) in [
        ("/users?q=ro%00ot", "q"),
        ("/users?q=%1B", "q"),
        ("/audit?type=login%00failed", "type"),
        ("/audit?type=%C2%85", "type"),
        ("/users?cursor=%00", "cursor"),
        ("/audit?cursor=%00", "cursor"),
        ("/users/me/sessions?cursor=%00", "cursor"),
        ("/users/me/sessions?limit=1%0A", "limit"),
    ] {
        let r = app
            .client
            .get(app.at(path))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(error_locs(r).await, [["query", param]], "{path}");
    }
}

/// Fields a body, form or query does not define are ignored (FastAPI's
/// default), but their strings are still checked for control characters.
#[tokio::test]
async fn unknown_fields_are_ignored_but_not_their_control_characters() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("alice").await;
    let patch = |body: Value| {
        app.client
            .patch(app.at("/users/me"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = patch(json!({"full_name": "Alice", "nickname": "al", "id": 7}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["full_name"], "Alice");
    assert!(user.get("nickname").is_none(), "{user}");
    let r = patch(json!({"nickname": "a\u{0}l"})).await.unwrap();
    assert_eq!(error_locs(r).await, [["body", "nickname"]]);

    let r = app
        .login_form(&[
            ("username", "alice"),
            ("password", PASSWORD),
            ("client_id", "unknown"),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .login_form(&[
            ("username", "alice"),
            ("password", PASSWORD),
            ("client_id", "un\u{7f}known"),
        ])
        .await;
    assert_eq!(error_locs(r).await, [["body", "client_id"]]);

    let r = app
        .client
        .get(app.at("/users/me/sessions?page=2"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn q_is_at_most_254_characters() {
    // 30 k underscores were "LIKE or GLOB pattern too complex" on SQLite:
    // a 500.
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    for q in ["_".repeat(30_000), "a".repeat(255)] {
        let r = app
            .client
            .get(app.at(&format!("/users?q={q}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(error_locs(r).await, [["query", "q"]]);
    }
    let r = app
        .client
        .get(app.at(&format!("/users?q={}", "r".repeat(254))))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_personal_answer_is_no_store() {
    let app = TestApp::spawn().await;
    let (alice, token) = app.user_with_token("alice").await;
    let (_, admin) = app.admin_token("root").await;
    let id = alice["id"].as_str().unwrap();
    let get = |path: String, token: String| {
        let req = app.client.get(app.at(&path)).bearer_auth(token);
        async move { req.send().await.unwrap() }
    };
    let mut answers = vec![
        (
            "GET /users/me",
            get("/users/me".into(), token.clone()).await,
        ),
        (
            "GET /users/me/sessions",
            get("/users/me/sessions".into(), token.clone()).await,
        ),
        (
            "GET /users/{id}",
            get(format!("/users/{id}"), admin.clone()).await,
        ),
        ("GET /users", get("/users".into(), admin.clone()).await),
        ("GET /audit", get("/audit".into(), admin.clone()).await),
    ];
    answers.push((
        "PATCH /users/me",
        app.client
            .patch(app.at("/users/me"))
            .bearer_auth(&token)
            .json(&json!({"full_name": "Alice"}))
            .send()
            .await
            .unwrap(),
    ));
    answers.push((
        "PATCH /users/{id}",
        app.client
            .patch(app.at(&format!("/users/{id}")))
            .bearer_auth(&admin)
            .json(&json!({"full_name": "Alice A."}))
            .send()
            .await
            .unwrap(),
    ));
    answers.push((
        "POST /users",
        app.register(json!({
            "username": "bob", "email": "bob@example.com", "password": PASSWORD
        }))
        .await,
    ));
    answers.push(("401", get("/users/me".into(), "nope".into()).await));
    for (what, r) in answers {
        assert!(r.status().as_u16() < 500, "{what}: {}", r.status());
        assert_eq!(
            r.headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{what}"
        );
    }
    // Public documents keep their own caching.
    let r = app.get("/.well-known/jwks.json").await;
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
}

#[tokio::test]
async fn docs_have_a_content_security_policy_and_may_not_be_framed() {
    let app = TestApp::spawn().await;
    for path in [
        "/docs/",
        "/docs/swagger-initializer.js",
        "/docs/swagger-ui.css",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self';",
            "frame-ancestors 'none'",
            "img-src 'self' data:",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["cache-control"], "no-cache", "{path}");
    }
}
