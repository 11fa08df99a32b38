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

#[tokio::test]
async fn login_returns_an_opaque_256_bit_refresh_token_stored_only_as_a_hash() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (_, refresh_token) = login_pair(&app, "alice").await;
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&refresh_token)
        .unwrap();
    assert_eq!(raw.len(), 32);
    let hashes = app.sql_bytes("select hash from refresh_tokens").await;
    use sha2::Digest;
    assert_eq!(
        hashes,
        vec![sha2::Sha256::digest(refresh_token.as_bytes()).to_vec()]
    );
    // Nowhere in the table is the token itself.
    let rows = app.sql_bytes("select hash from refresh_tokens union all select successor_hash from refresh_tokens where successor_hash is not null").await;
    assert!(
        rows.iter()
            .all(|r| !r.windows(32).any(|w| w == raw.as_slice()))
    );
    assert_eq!(app.sql_i64("select count(*) from refresh_tokens").await, 1);
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
    sql(&app, "update refresh_tokens set expires_at = 1").await;
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
        json!(["password", "refresh_token"])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
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
        let published = jwks["keys"].as_array().unwrap().len();
        assert_eq!(published, if alg == "HS256" { 0 } else { 2 }, "{alg}");

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
        assert_eq!(
            jwks["keys"].as_array().unwrap().len(),
            usize::from(alg != "HS256"),
            "{alg}"
        );
        assert_eq!(app.me(&new_token).await.status(), StatusCode::OK, "{alg}");
    }
}

#[tokio::test]
async fn keys_list_shows_active_and_retired_keys() {
    let app = TestApp::spawn().await;
    assert!(cli(&app, &["keys", "rotate"], &[]).await.status.success());
    let out = cli(&app, &["keys", "list"], &[]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(text.matches("active").count(), 1, "{text}");
    assert!(text.contains("retired, in JWKS until"), "{text}");
}

#[tokio::test]
async fn rotating_a_configured_hs256_secret_is_refused_with_a_clear_message() {
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
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARDEN_JWT_SECRET"));
}

#[tokio::test]
async fn purge_deletes_expired_refresh_tokens_and_ended_sessions() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (a1, r1) = login_pair(&app, "alice").await;
    refresh_ok(&app, &r1).await;
    post(&app, "/logout", Some(&a1), &[]).await;
    let (_, live) = login_pair(&app, "alice").await;
    let store = app.store().await;
    let now = warden::tokens::now();
    let count = |table: &'static str| {
        let app = &app;
        async move { app.sql_i64(&format!("select count(*) from {table}")).await }
    };
    // Nothing has expired yet, and the logout is recent: nothing goes.
    assert_eq!(store.purge(now, now - 3600).await.unwrap(), 0);
    assert_eq!(
        (count("sessions").await, count("refresh_tokens").await),
        (2, 3)
    );
    // Once the ended session is older than the horizon it goes, with its
    // tokens (cascade); the live session stays.
    assert_eq!(store.purge(now, now + 1).await.unwrap(), 1);
    assert_eq!(
        (count("sessions").await, count("refresh_tokens").await),
        (1, 1)
    );
    // A used refresh token goes once it has expired.
    refresh_ok(&app, &live).await;
    assert_eq!(count("refresh_tokens").await, 2);
    sql(
        &app,
        "update refresh_tokens set expires_at = 1 where used_at is not null",
    )
    .await;
    assert_eq!(store.purge(now, now - 3600).await.unwrap(), 1);
    assert_eq!(
        (count("sessions").await, count("refresh_tokens").await),
        (1, 1)
    );
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
    let now = warden::tokens::now();
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
