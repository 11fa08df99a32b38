//! Sessions, refresh rotation and reuse detection, logout, revocation,
//! introspection, metadata and key rotation.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_unauthorized};

async fn login_pair(app: &TestApp, username: &str) -> (String, String) {
    let body: Value = app.login(username, PASSWORD).await.json().await.unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.login_form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .await
}

async fn refresh_ok(app: &TestApp, token: &str) -> (String, String) {
    let r = refresh(app, token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn assert_invalid_grant(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}

async fn post(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = app.client.request(Method::POST, app.at(path)).form(form);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn sql(app: &TestApp, statement: &str) {
    app.sql(statement).await;
}

/// The claims of an access token (not verified: the server did that).
fn claims(access_token: &str) -> Value {
    use base64::Engine;
    let payload = access_token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn login_returns_an_opaque_256_bit_refresh_token_stored_only_as_a_hash() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (access, refresh_token) = login_pair(&app, "alice").await;
    // `<session id>.<generation>.<256 random bits + a 128-bit tag>`.
    use base64::Engine;
    let parts: Vec<&str> = refresh_token.split('.').collect();
    assert_eq!(parts.len(), 3, "{refresh_token}");
    assert_eq!(parts[0], claims(&access)["sid"]);
    assert_eq!(parts[1], "0");
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap();
    assert_eq!(secret.len(), 48);
    let raw = &secret[..32];
    let hashes = app.sql_bytes("select refresh_hash from sessions").await;
    use sha2::Digest;
    assert_eq!(
        hashes,
        vec![sha2::Sha256::digest(refresh_token.as_bytes()).to_vec()]
    );
    // Nowhere in the table is the token itself.
    let rows = app
        .sql_bytes(
            "select refresh_hash from sessions union all \
             select previous_refresh_hash from sessions where previous_refresh_hash is not null",
        )
        .await;
    assert!(rows.iter().all(|r| !r.windows(32).any(|w| w == raw)));
    assert_eq!(
        app.sql_i64("select count(*) from sessions where refresh_hash is not null")
            .await,
        1
    );
}

#[tokio::test]
async fn refresh_rotates_and_the_new_pair_works() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (_, r1) = login_pair(&app, "alice").await;
    let (a2, r2) = refresh_ok(&app, &r1).await;
    assert_ne!(r1, r2);
    assert_eq!(app.me(&a2).await.status(), StatusCode::OK);
    let (a3, _) = refresh_ok(&app, &r2).await;
    assert_eq!(app.me(&a3).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_retry_within_the_grace_period_gets_the_same_successor() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (_, r1) = login_pair(&app, "alice").await;
    let (_, r2) = refresh_ok(&app, &r1).await;
    let (a2b, r2b) = refresh_ok(&app, &r1).await;
    assert_eq!(r2, r2b);
    assert_eq!(app.me(&a2b).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn reuse_after_the_successor_was_used_revokes_the_session() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (_, r1) = login_pair(&app, "alice").await;
    let (_, r2) = refresh_ok(&app, &r1).await;
    let (a3, r3) = refresh_ok(&app, &r2).await;
    // The thief (or a stale client) presents r1 again.
    assert_invalid_grant(refresh(&app, &r1).await).await;
    // The whole session is gone: its newest tokens too.
    assert_unauthorized(app.me(&a3).await, "Invalid token").await;
    assert_invalid_grant(refresh(&app, &r3).await).await;
}

#[tokio::test]
async fn reuse_outside_the_grace_period_revokes_the_session() {
    let app = TestApp::spawn_with(&[("WARDEN_REFRESH_REUSE_GRACE", "0")]).await;
    app.register_ok("alice").await;
    let (_, r1) = login_pair(&app, "alice").await;
    let (a2, r2) = refresh_ok(&app, &r1).await;
    assert_invalid_grant(refresh(&app, &r1).await).await;
    assert_unauthorized(app.me(&a2).await, "Invalid token").await;
    assert_invalid_grant(refresh(&app, &r2).await).await;
}

#[tokio::test]
async fn twenty_concurrent_refreshes_all_get_one_successor_and_the_session_survives() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (_, r1) = login_pair(&app, "alice").await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (client, url, token) = (app.client.clone(), app.at("/token"), r1.clone());
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", token.as_str()),
                    ])
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut successors = std::collections::HashSet::new();
    let mut last_access = String::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        successors.insert(body["refresh_token"].as_str().unwrap().to_owned());
        last_access = body["access_token"].as_str().unwrap().to_owned();
    }
    assert_eq!(successors.len(), 1, "all got the same successor");
    assert_eq!(
        app.me(&last_access).await.status(),
        StatusCode::OK,
        "the session survives"
    );
    let successor = successors.into_iter().next().unwrap();
    let (a3, _) = refresh_ok(&app, &successor).await;
    assert_eq!(app.me(&a3).await.status(), StatusCode::OK);
    // Once the successor is used, the old token is dead (and a replay ends
    // the session).
    assert_invalid_grant(refresh(&app, &r1).await).await;
}

#[tokio::test]
async fn an_expired_refresh_token_is_invalid_grant() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (_, r1) = login_pair(&app, "alice").await;
    sql(&app, "update sessions set expires_at = 1").await;
    assert_invalid_grant(refresh(&app, &r1).await).await;
}

#[tokio::test]
async fn refresh_token_ttl_is_configurable() {
    let app = TestApp::spawn_with(&[("WARDEN_REFRESH_TOKEN_TTL", "3600")]).await;
    let (_, token) = app.user_with_token("alice").await;
    let sessions: Value = app
        .client
        .get(app.at("/users/me/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let s = &sessions[0];
    let parse = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(
        (parse(&s["expires_at"]) - parse(&s["created_at"])).whole_seconds(),
        3600
    );
}

#[tokio::test]
async fn a_refresh_may_narrow_scope_but_never_widen_it() {
    let app = TestApp::spawn().await;
    app.admin_token("root").await;
    let body: Value = app.login("root", PASSWORD).await.json().await.unwrap();
    let r1 = body["refresh_token"].as_str().unwrap();
    let r = app
        .login_form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", r1),
            ("scope", "users:read"),
        ])
        .await;
    let narrowed: Value = r.json().await.unwrap();
    assert_eq!(narrowed["scope"], "users:read");
    // A session that began narrow cannot widen.
    let body: Value = app
        .login_form(&[
            ("username", "root"),
            ("password", PASSWORD),
            ("scope", "me"),
        ])
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .login_form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().unwrap()),
            ("scope", "me users:read"),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"], "invalid_scope");
}

#[tokio::test]
async fn a_refresh_refused_for_its_scope_leaves_the_token_usable() {
    // Without a grace period, so a rotation committed behind the refusal
    // would make the client's retry a reuse.
    let app = TestApp::spawn_with(&[("WARDEN_REFRESH_REUSE_GRACE", "0")]).await;
    app.register_ok("alice").await;
    let (access, r1) = login_pair(&app, "alice").await;
    let r = app
        .login_form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("scope", "me users:read"),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"], "invalid_scope");
    // The same token, without the scope: rotated as if nothing happened.
    let (a2, r2) = refresh_ok(&app, &r1).await;
    assert_eq!(app.me(&access).await.status(), StatusCode::OK);
    assert_eq!(app.me(&a2).await.status(), StatusCode::OK);
    refresh_ok(&app, &r2).await;
    assert_eq!(
        app.sql_i64("select count(*) from audit_events where type = 'refresh_reuse_detected'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_missing_refresh_token_is_invalid_request_and_garbage_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let r = app.login_form(&[("grant_type", "refresh_token")]).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert_invalid_grant(refresh(&app, "not-a-refresh-token").await).await;
}

#[tokio::test]
async fn logout_ends_the_current_session_only() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (a1, r1) = login_pair(&app, "alice").await;
    let (a2, _) = login_pair(&app, "alice").await;
    let r = post(&app, "/logout", Some(&a1), &[]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_unauthorized(app.me(&a1).await, "Invalid token").await;
    assert_invalid_grant(refresh(&app, &r1).await).await;
    assert_eq!(
        app.me(&a2).await.status(),
        StatusCode::OK,
        "the other device stays signed in"
    );
}

#[tokio::test]
async fn logout_all_ends_every_session() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (a1, _) = login_pair(&app, "alice").await;
    let (a2, r2) = login_pair(&app, "alice").await;
    let r = post(&app, "/logout?all=true", Some(&a1), &[]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_unauthorized(app.me(&a1).await, "Invalid token").await;
    assert_unauthorized(app.me(&a2).await, "Invalid token").await;
    assert_invalid_grant(refresh(&app, &r2).await).await;
    // Signing in again works.
    let (a3, _) = login_pair(&app, "alice").await;
    assert_eq!(app.me(&a3).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_without_a_token_is_401() {
    let app = TestApp::spawn().await;
    assert_unauthorized(post(&app, "/logout", None, &[]).await, "Not authenticated").await;
}

#[tokio::test]
async fn sessions_are_listed_with_the_current_one_marked() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let r = app
        .client
        .post(app.at("/token"))
        .header("user-agent", "phone/1.0")
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (laptop, _) = login_pair(&app, "alice").await;
    let list: Value = app
        .client
        .get(app.at("/users/me/sessions"))
        .bearer_auth(&laptop)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    let other = list.iter().find(|s| s["current"] == false).unwrap();
    assert_eq!(other["user_agent"], "phone/1.0");
    assert_eq!(other["ip"], "127.0.0.1");
    for field in ["id", "created_at", "last_used_at", "expires_at"] {
        assert!(other[field].is_string(), "{field}");
    }
}

#[tokio::test]
async fn ending_one_of_your_sessions_kills_its_tokens() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (phone, phone_refresh) = login_pair(&app, "alice").await;
    let (laptop, _) = login_pair(&app, "alice").await;
    let list: Value = app
        .client
        .get(app.at("/users/me/sessions"))
        .bearer_auth(&laptop)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let phone_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .client
        .delete(app.at(&format!("/users/me/sessions/{phone_id}")))
        .bearer_auth(&laptop)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_unauthorized(app.me(&phone).await, "Invalid token").await;
    assert_invalid_grant(refresh(&app, &phone_refresh).await).await;
    assert_eq!(app.me(&laptop).await.status(), StatusCode::OK);
    // Gone from the list.
    let list: Value = app
        .client
        .get(app.at("/users/me/sessions"))
        .bearer_auth(&laptop)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn another_users_session_id_is_404() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.user_with_token("alice").await;
    let (_, bob) = app.user_with_token("bob").await;
    let list: Value = app
        .client
        .get(app.at("/users/me/sessions"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bob_session = list[0]["id"].as_str().unwrap();
    let r = app
        .client
        .delete(app.at(&format!("/users/me/sessions/{bob_session}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.me(&bob).await.status(), StatusCode::OK);
    let r = app
        .client
        .delete(app.at(&format!("/users/me/sessions/{}", uuid::Uuid::now_v7())))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn password_change_ends_every_session_and_returns_a_working_pair() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (a1, r1) = login_pair(&app, "alice").await;
    let (_, r_other) = login_pair(&app, "alice").await;
    let body: Value = app
        .client
        .put(app.at("/users/me/password"))
        .bearer_auth(&a1)
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new secret"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_invalid_grant(refresh(&app, &r1).await).await;
    assert_invalid_grant(refresh(&app, &r_other).await).await;
    let (a2, _) = refresh_ok(&app, body["refresh_token"].as_str().unwrap()).await;
    assert_eq!(app.me(&a2).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_role_change_ends_every_session() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let bob = app.register_ok("bob").await;
    let (_, r1) = login_pair(&app, "bob").await;
    let r = app
        .client
        .patch(app.at(&format!("/users/{}", bob["id"].as_str().unwrap())))
        .bearer_auth(&admin)
        .json(&json!({"roles": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_invalid_grant(refresh(&app, &r1).await).await;
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_session() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (a1, r1) = login_pair(&app, "alice").await;
    let r = post(
        &app,
        "/token/revoke",
        None,
        &[("token", &r1), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_invalid_grant(refresh(&app, &r1).await).await;
    assert_unauthorized(app.me(&a1).await, "Invalid token").await;
}

#[tokio::test]
async fn revoking_an_access_token_ends_its_session() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (a1, r1) = login_pair(&app, "alice").await;
    // A wrong hint is only a hint.
    let r = post(
        &app,
        "/token/revoke",
        None,
        &[("token", &a1), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_unauthorized(app.me(&a1).await, "Invalid token").await;
    assert_invalid_grant(refresh(&app, &r1).await).await;
}

#[tokio::test]
async fn revoke_always_answers_200_except_without_a_token() {
    let app = TestApp::spawn().await;
    let r = post(&app, "/token/revoke", None, &[("token", "garbage")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let r = post(
        &app,
        "/token/revoke",
        None,
        &[("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn introspection_needs_the_tokens_introspect_scope() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("alice").await;
    let r = post(
        &app,
        "/token/introspect",
        Some(&token),
        &[("token", &token)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer error="insufficient_scope", scope="tokens:introspect""#
    );
    assert_unauthorized(
        post(&app, "/token/introspect", None, &[("token", &token)]).await,
        "Not authenticated",
    )
    .await;
}

#[tokio::test]
async fn introspection_describes_live_access_and_refresh_tokens() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let alice = app.register_ok("alice").await;
    let (a1, r1) = login_pair(&app, "alice").await;
    let body: Value = post(&app, "/token/introspect", Some(&admin), &[("token", &a1)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], alice["id"]);
    assert_eq!(body["username"], "alice");
    assert_eq!(body["scope"], "me");
    assert_eq!(body["token_type"], "Bearer");
    for f in ["exp", "iat"] {
        assert!(body[f].is_i64(), "{f}");
    }
    for f in ["jti", "sid"] {
        assert!(body[f].is_string(), "{f}");
    }
    let body: Value = post(&app, "/token/introspect", Some(&admin), &[("token", &r1)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "refresh_token");
    assert_eq!(body["sub"], alice["id"]);
}

#[tokio::test]
async fn introspection_of_revoked_used_foreign_or_garbage_tokens_is_inactive() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    app.register_ok("alice").await;
    let (a1, r1) = login_pair(&app, "alice").await;
    refresh_ok(&app, &r1).await; // r1 is now used
    let other = TestApp::spawn_with(&[("WARDEN_ISSUER", app.url.as_str())]).await;
    let (_, foreign) = other.user_with_token("alice").await;
    post(&app, "/logout", Some(&a1), &[]).await;
    for token in [a1.as_str(), r1.as_str(), foreign.as_str(), "garbage"] {
        let r = post(&app, "/token/introspect", Some(&admin), &[("token", token)]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({"active": false}));
    }
}

#[tokio::test]
async fn the_metadata_document_matches_the_routes() {
    let app = TestApp::spawn().await;
    let meta: Value = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], app.url.as_str());
    assert_eq!(meta["token_endpoint"], app.at("/token"));
    assert_eq!(meta["jwks_uri"], app.at("/.well-known/jwks.json"));
    assert_eq!(meta["revocation_endpoint"], app.at("/token/revoke"));
    assert_eq!(meta["introspection_endpoint"], app.at("/token/introspect"));
    assert_eq!(
        meta["grant_types_supported"],
        json!([
            "authorization_code",
            "client_credentials",
            "refresh_token",
            "password"
        ])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    // The code flow (issue 17): /authorize, PKCE S256 only, RFC 9207.
    assert_eq!(meta["authorization_endpoint"], app.at("/authorize"));
    assert_eq!(meta["response_types_supported"], json!(["code"]));
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        meta["revocation_endpoint_auth_methods_supported"],
        json!(["none"])
    );
    let scopes = meta["scopes_supported"].as_array().unwrap();
    for s in ["me", "users:read", "users:write", "tokens:introspect"] {
        assert!(scopes.contains(&json!(s)), "{s}");
    }
    // Every advertised endpoint exists.
    assert_eq!(
        app.client
            .get(meta["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    for key in [
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
    ] {
        let r = app
            .client
            .post(meta[key].as_str().unwrap())
            .form(&[("x", "y")])
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), StatusCode::NOT_FOUND, "{key}");
    }
}

async fn cli(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .env("WARDEN_DATABASE_URL", app.database_url())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn kid(token: &str) -> String {
    use base64::Engine;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn key_rotation_takes_over_and_old_tokens_verify_until_their_key_expires() {
    for alg in ["EdDSA", "ES256", "RS256", "HS256"] {
        let env = [("WARDEN_JWT_ALGORITHM", alg)];
        let app = TestApp::spawn_with(&env).await;
        let (_, old_token) = app.user_with_token("alice").await;
        let old_kid = kid(&old_token);
        let out = cli(&app, &["keys", "rotate"], &env).await;
        assert!(
            out.status.success(),
            "{alg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The running server picks the rotation up without a restart.
        let mut new_token = String::new();
        for _ in 0..40 {
            new_token = app.token("alice").await;
            if kid(&new_token) != old_kid {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_ne!(kid(&new_token), old_kid, "{alg}: the new key does not sign");
        assert_eq!(app.me(&new_token).await.status(), StatusCode::OK, "{alg}");
        assert_eq!(
            app.me(&old_token).await.status(),
            StatusCode::OK,
            "{alg}: old token must verify until it expires"
        );
        let jwks: Value = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            keys_of(&jwks, alg),
            if alg == "HS256" { 0 } else { 2 },
            "{alg}"
        );

        // Once the old key's last token has expired (here: its retirement is
        // moved an access-token lifetime into the past), it drops out.
        sql(
            &app,
            &format!(
                "update signing_keys set retired_at = retired_at - 1000 where kid = '{old_kid}'"
            ),
        )
        .await;
        let mut status = StatusCode::OK;
        for _ in 0..40 {
            status = app.me(&old_token).await.status();
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{alg}: the expired key still verifies"
        );
        let jwks: Value = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(keys_of(&jwks, alg), usize::from(alg != "HS256"), "{alg}");
        assert_eq!(app.me(&new_token).await.status(), StatusCode::OK, "{alg}");
    }
}

/// How many keys of `alg` a JWKS document publishes (the id-token keys of
/// other algorithms sit beside the access-token ones).
fn keys_of(jwks: &Value, alg: &str) -> usize {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["alg"] == alg)
        .count()
}

#[tokio::test]
async fn keys_list_shows_active_and_retired_keys() {
    let app = TestApp::spawn().await;
    assert!(cli(&app, &["keys", "rotate"], &[]).await.status.success());
    let out = cli(&app, &["keys", "list"], &[]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    // One active key per algorithm in use: EdDSA (access tokens) and RS256
    // (id tokens).
    assert_eq!(text.matches("active").count(), 2, "{text}");
    assert!(text.contains("retired, in JWKS until"), "{text}");
}

#[tokio::test]
async fn rotating_with_a_configured_hs256_secret_rotates_the_id_token_key_and_says_how_to_rotate_the_secret()
 {
    let app = TestApp::spawn().await;
    let out = cli(
        &app,
        &["keys", "rotate"],
        &[
            ("WARDEN_JWT_ALGORITHM", "HS256"),
            ("WARDEN_JWT_SECRET", "a configured secret of 32+ bytes!!"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("new RS256 signing key"), "{text}");
    assert!(!text.contains("new HS256"), "{text}");
    assert!(text.contains("WARDEN_JWT_SECRET"), "{text}");
}

#[tokio::test]
async fn purge_deletes_ended_sessions_and_rotations_leave_nothing_to_purge() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (a1, r1) = login_pair(&app, "alice").await;
    refresh_ok(&app, &r1).await;
    post(&app, "/logout", Some(&a1), &[]).await;
    let (_, live) = login_pair(&app, "alice").await;
    let store = app.store().await;
    let now = warden::auth::tokens::now();
    let sessions = || app.sql_i64("select count(*) from sessions");
    // Nothing has expired yet, and the logout is recent: nothing goes.
    assert_eq!(store.purge(now, now - 3600, None).await.unwrap(), 0);
    assert_eq!(sessions().await, 2);
    // Once the ended session is older than the horizon it goes; the live
    // session stays.
    assert_eq!(store.purge(now, now + 1, None).await.unwrap(), 1);
    assert_eq!(sessions().await, 1);
    // A rotation rewrites the session's row: no used token is left behind.
    refresh_ok(&app, &live).await;
    assert_eq!(store.purge(now, now - 3600, None).await.unwrap(), 0);
    assert_eq!(sessions().await, 1);
}

#[tokio::test]
async fn introspection_of_an_expired_access_token_is_inactive() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    const SECRET: &str = "an introspection test secret, 32+ bytes";
    let app = TestApp::spawn_with(&[
        ("WARDEN_JWT_ALGORITHM", "HS256"),
        ("WARDEN_JWT_SECRET", SECRET),
    ])
    .await;
    let (_, admin) = app.admin_token("root").await;
    let (_, token) = app.user_with_token("alice").await;
    // The same token, re-signed with `exp` in the past.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value =
        serde_json::from_slice(&b64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let now = warden::auth::tokens::now();
    claims["exp"] = json!(now - 1);
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid(&token));
    let expired = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    let body: Value = post(
        &app,
        "/token/introspect",
        Some(&admin),
        &[("token", &expired)],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body, json!({"active": false}));
    // The live original is active, so the forgery differs only in `exp`.
    let body: Value = post(
        &app,
        "/token/introspect",
        Some(&admin),
        &[("token", &token)],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["active"], true);
}

async fn session_ip_after_login_with_forwarded_for(app: &TestApp) -> Value {
    app.register_ok("alice").await;
    let r = app
        .client
        .post(app.at("/token"))
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.5")
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
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
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let app = TestApp::spawn().await;
    assert_eq!(
        session_ip_after_login_with_forwarded_for(&app).await,
        "127.0.0.1"
    );
}

#[tokio::test]
async fn a_trusted_proxy_forwards_the_client_address() {
    let app = TestApp::spawn_with(&[("WARDEN_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    // The rightmost hop the proxy added wins over what the client wrote.
    assert_eq!(
        session_ip_after_login_with_forwarded_for(&app).await,
        "203.0.113.5"
    );
}

/// Rows in every table of the server's database (migrations' own aside).
async fn total_rows(app: &TestApp) -> i64 {
    use crate::helpers::Backend;
    let list = match crate::BACKEND {
        Backend::Sqlite => {
            "select name from sqlite_master where type = 'table' \
             and name not like 'sqlite_%' and name != '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "select tablename::text from pg_tables where schemaname = 'public' \
             and tablename != '_sqlx_migrations'"
        }
    };
    let tables: Vec<String> = match crate::BACKEND {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url())
                .await
                .unwrap();
            let t = sqlx::query_scalar(list).fetch_all(&pool).await.unwrap();
            pool.close().await;
            t
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url()).await.unwrap();
            let t = sqlx::query_scalar(list).fetch_all(&pool).await.unwrap();
            pool.close().await;
            t
        }
    };
    assert!(tables.iter().any(|t| t == "sessions"), "{tables:?}");
    let sum = tables
        .iter()
        .map(|t| format!("(select count(*) from {t})"))
        .collect::<Vec<_>>()
        .join(" + ");
    app.sql_i64(&format!("select {sum}")).await
}

#[tokio::test]
async fn fifty_rotations_add_no_rows_to_the_database() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (_, mut token) = login_pair(&app, "alice").await;
    let before = total_rows(&app).await;
    let mut access = String::new();
    for _ in 0..50 {
        (access, token) = refresh_ok(&app, &token).await;
    }
    assert_eq!(total_rows(&app).await, before, "rows after 50 rotations");
    assert_eq!(app.me(&access).await.status(), StatusCode::OK);
    assert_eq!(
        app.sql_i64("select max(refresh_generation) from sessions")
            .await,
        50
    );
}

#[tokio::test]
async fn a_genuine_token_many_generations_old_revokes_the_session() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (_, r0) = login_pair(&app, "alice").await;
    let mut chain = vec![r0];
    let mut access = String::new();
    for _ in 0..10 {
        let (a, next) = refresh_ok(&app, chain.last().unwrap()).await;
        access = a;
        chain.push(next);
    }
    // The newest but one is still a grace retry (same successor).
    let (_, again) = refresh_ok(&app, &chain[9]).await;
    assert_eq!(again, chain[10]);
    // Generation 3 of 10, presented by whoever kept it: a replay.
    assert_invalid_grant(refresh(&app, &chain[3]).await).await;
    assert_unauthorized(app.me(&access).await, "Invalid token").await;
    assert_invalid_grant(refresh(&app, &chain[10]).await).await;
    let reuses = app
        .sql_i64("select count(*) from audit_events where type = 'refresh_reuse_detected'")
        .await;
    assert_eq!(reuses, 1);
}

#[tokio::test]
async fn a_forged_old_generation_for_a_known_session_id_revokes_nothing() {
    use base64::Engine;
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (_, r0) = login_pair(&app, "alice").await;
    let (_, r1) = refresh_ok(&app, &r0).await;
    let (access, mut current) = refresh_ok(&app, &r1).await;
    // The session id is public: every access token carries it as `sid`.
    let sid = claims(&access)["sid"].as_str().unwrap().to_owned();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for generation in ["0", "1", "2", "3"] {
        let mut random = [0u8; 48];
        getrandom::fill(&mut random).unwrap();
        let forged = format!("{sid}.{generation}.{}", b64.encode(random));
        assert_invalid_grant(refresh(&app, &forged).await).await;
        // A genuine secret under a forged generation is no better.
        let real_secret = r1.rsplit('.').next().unwrap();
        let relabelled = format!("{sid}.{generation}.{real_secret}");
        if relabelled != r1 {
            assert_invalid_grant(refresh(&app, &relabelled).await).await;
        }
        let r = post(&app, "/token/revoke", None, &[("token", &forged)]).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    // The real holder is still signed in and keeps refreshing.
    assert_eq!(app.me(&access).await.status(), StatusCode::OK);
    for _ in 0..3 {
        let (a, next) = refresh_ok(&app, &current).await;
        assert_eq!(app.me(&a).await.status(), StatusCode::OK);
        current = next;
    }
    let reuses = app
        .sql_i64("select count(*) from audit_events where type = 'refresh_reuse_detected'")
        .await;
    assert_eq!(reuses, 0);
}

#[tokio::test]
async fn refresh_tokens_issued_before_the_upgrade_keep_working() {
    use sha2::Digest;
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (_, r0) = login_pair(&app, "alice").await;
    // What migration 0009/0006 leaves of a session that rotated before it:
    // its unused token as generation 0, and a used one, both in
    // `legacy_refresh_tokens`.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (legacy, used) = (b64.encode([1u8; 32]), b64.encode([2u8; 32]));
    let hex = |t: &str| {
        sha2::Sha256::digest(t.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let blob = |t: &str| match crate::BACKEND {
        crate::helpers::Backend::Sqlite => format!("x'{}'", hex(t)),
        crate::helpers::Backend::Postgres => format!("'\\x{}'::bytea", hex(t)),
    };
    assert_eq!(app.sql_i64("select count(*) from sessions").await, 1);
    app.sql(&format!(
        "update sessions set refresh_hash = {}, refresh_generation = 0",
        blob(&legacy)
    ))
    .await;
    for (token, used_at) in [(&legacy, "null"), (&used, "1")] {
        app.sql(&format!(
            "insert into legacy_refresh_tokens (hash, session_id, created_at, expires_at, used_at) \
             select {}, id, created_at, expires_at, {used_at} from sessions",
            blob(token)
        ))
        .await;
    }
    // The generation-0 token is gone from the session now.
    assert_invalid_grant(refresh(&app, &r0).await).await;
    // The pre-upgrade token rotates into the new format, with a grace retry.
    let (a1, r1) = refresh_ok(&app, &legacy).await;
    assert!(r1.contains(".1."), "{r1}");
    assert_eq!(refresh_ok(&app, &legacy).await.1, r1);
    let (_, r2) = refresh_ok(&app, &r1).await;
    assert_eq!(app.me(&a1).await.status(), StatusCode::OK);
    // A token that had been used before the upgrade is a replay.
    assert_invalid_grant(refresh(&app, &used).await).await;
    assert_invalid_grant(refresh(&app, &r2).await).await;
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_often_it_is_refreshed() {
    let app = TestApp::spawn_with(&[("WARDEN_SESSION_MAX_LIFETIME", "3")]).await;
    app.register_ok("alice").await;
    let (a0, mut token) = login_pair(&app, "alice").await;
    let lifetime = |app: &TestApp, access: String| {
        let (client, url) = (app.client.clone(), app.at("/users/me/sessions"));
        async move {
            let list: Value = client
                .get(url)
                .bearer_auth(&access)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let parse = |v: &Value| {
                time::OffsetDateTime::parse(
                    v.as_str().unwrap(),
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap()
            };
            (parse(&list[0]["expires_at"]) - parse(&list[0]["created_at"])).whole_seconds()
        }
    };
    // The first refresh token already ends with the session.
    assert_eq!(lifetime(&app, a0).await, 3);
    let started = std::time::Instant::now();
    let mut refreshed = 0;
    while started.elapsed() < std::time::Duration::from_millis(1500) {
        let (access, next) = refresh_ok(&app, &token).await;
        assert!(lifetime(&app, access).await <= 3);
        token = next;
        refreshed += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refreshed > 5);
    tokio::time::sleep(std::time::Duration::from_millis(3100) - started.elapsed()).await;
    assert_invalid_grant(refresh(&app, &token).await).await;
}

#[tokio::test]
async fn a_session_older_than_the_lifetime_cannot_refresh_even_with_a_later_expiry() {
    // A session refreshed before the lifetime was lowered (or existed).
    let app = TestApp::spawn_with(&[("WARDEN_SESSION_MAX_LIFETIME", "3600")]).await;
    app.register_ok("alice").await;
    let (_, token) = login_pair(&app, "alice").await;
    sql(
        &app,
        "update sessions set created_at = created_at - 3600, expires_at = expires_at + 86400",
    )
    .await;
    assert_invalid_grant(refresh(&app, &token).await).await;
}

async fn session_page(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.client
        .get(app.at(&format!("/users/me/sessions{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// The `rel="next"` URL of a response's `Link` header, if any.
fn next_link(r: &reqwest::Response) -> Option<String> {
    let link = r.headers().get("link")?.to_str().unwrap();
    let (url, rel) = link.split_once(';').unwrap();
    assert_eq!(rel.trim(), r#"rel="next""#);
    Some(
        url.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned(),
    )
}

#[tokio::test]
async fn the_session_list_comes_in_pages_that_cover_every_session_once() {
    // Above the default cap of 100 live sessions per account, which would
    // end the oldest ones and leave a single page.
    let app = TestApp::spawn_with(&[("WARDEN_MAX_SESSIONS_PER_USER", "1000")]).await;
    app.register_ok("alice").await;
    let mut access = String::new();
    for _ in 0..230 {
        access = login_pair(&app, "alice").await.0;
    }
    // Without a limit: the first 50, newest first, and a link onwards.
    let r = session_page(&app, &access, "").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(next_link(&r).is_some());
    let first: Vec<Value> = r.json().await.unwrap();
    assert_eq!(first.len(), 50);
    assert_eq!(first[0]["current"], true, "the newest is this one");

    let mut url = app.at("/users/me/sessions?limit=100");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = app
            .client
            .get(&url)
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let next = next_link(&r);
        let page: Vec<Value> = r.json().await.unwrap();
        assert!(page.len() <= 100);
        pages += 1;
        seen.extend(page.iter().map(|s| s["id"].as_str().unwrap().to_owned()));
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 230);
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(sorted, seen, "newest first, each session once");
    assert_eq!(
        first
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        seen[..50].iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_bad_session_page_limit_or_cursor_is_422() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("alice").await;
    for (query, loc) in [
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?limit=ten", "limit"),
        ("?cursor=nonsense", "cursor"),
        ("?cursor=", "cursor"),
    ] {
        let r = session_page(&app, &token, query).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(
            crate::helpers::error_locs(r).await,
            vec![vec!["query".to_owned(), loc.to_owned()]],
            "{query}"
        );
    }
    let r = session_page(&app, &token, "?limit=1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(next_link(&r).is_none(), "one session, one page");
}

#[tokio::test]
async fn audit_events_older_than_the_retention_are_purged_in_batches() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let now = warden::auth::tokens::now();
    let day = 86_400;
    for (prefix, age, n) in [("old", 31 * day, 2500), ("new", 29 * day, 10)] {
        sql(
            &app,
            &format!(
                "insert into audit_events (id, type, created_at) \
                 with recursive n(i) as (select 1 union all select i + 1 from n where i < {n}) \
                 select '{prefix}-' || i, 'test_{prefix}', {} from n",
                now - age
            ),
        )
        .await;
    }
    let count = |kind: &'static str| {
        let app = &app;
        async move {
            app.sql_i64(&format!(
                "select count(*) from audit_events where type = '{kind}'"
            ))
            .await
        }
    };
    assert_eq!(count("test_old").await, 2500);
    // A server with a 30-day retention purges as it starts.
    let env = app.stop().await;
    let app = TestApp::spawn_in(env, &[("WARDEN_AUDIT_RETENTION_DAYS", "30")]).await;
    let count = |kind: &'static str| {
        let app = &app;
        async move {
            app.sql_i64(&format!(
                "select count(*) from audit_events where type = '{kind}'"
            ))
            .await
        }
    };
    let mut left = count("test_old").await;
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        left = count("test_old").await;
    }
    assert_eq!(left, 0, "events past the retention");
    assert_eq!(count("test_new").await, 10, "events within the retention");
    // Retention 0 keeps everything.
    let store = app.store().await;
    assert_eq!(store.purge(now, now - 3600, None).await.unwrap(), 0);
    assert_eq!(count("test_new").await, 10);
}
