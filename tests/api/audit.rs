//! The security event log: what is recorded, who may read it, and that it
//! never holds secrets.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_unauthorized};

async fn audit(app: &TestApp, token: &str, query: &str) -> Value {
    let r = app
        .client
        .get(app.at(&format!("/audit{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

fn types(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn security_events_are_recorded_and_listed_newest_first() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let bob = app.register_ok("bob").await;
    let bob_id = bob["id"].as_str().unwrap();
    app.login("bob", "wrong password").await;
    let body: Value = app.login("bob", PASSWORD).await.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    app.client
        .put(app.at("/users/me/password"))
        .bearer_auth(token)
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new secret"}))
        .send()
        .await
        .unwrap();
    app.client
        .patch(app.at(&format!("/users/{bob_id}")))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    let page = audit(&app, &admin, &format!("?user_id={bob_id}")).await;
    assert_eq!(
        types(&page),
        [
            "user_security_changed",
            "password_changed",
            "login_succeeded",
            "login_failed",
            "user_registered"
        ]
    );
    let events = page["items"].as_array().unwrap();
    assert_eq!(events[0]["detail"], json!({"disabled": true}));
    assert!(
        events[2]["session_id"].is_string(),
        "a login names its session"
    );
    assert_eq!(events[3]["ip"], "127.0.0.1");
    for e in events {
        assert_eq!(e["user_id"], bob["id"]);
        assert!(e["created_at"].as_str().unwrap().ends_with('Z'));
    }
    // Nothing secret anywhere in the log.
    let all = audit(&app, &admin, "?limit=200").await.to_string();
    for secret in [
        PASSWORD,
        "wrong password",
        "a brand new secret",
        token,
        "argon2",
    ] {
        assert!(!all.contains(secret), "the audit log contains a secret");
    }
}

#[tokio::test]
async fn logout_throttling_and_refresh_reuse_are_recorded() {
    let app = TestApp::spawn_with(&[("WARDEN_THROTTLE_PER_PAIR", "1")]).await;
    let (_, admin) = app.admin_token("root").await;
    app.register_ok("carol").await;
    let body: Value = app.login("carol", PASSWORD).await.json().await.unwrap();
    let r1 = body["refresh_token"].as_str().unwrap();
    let r2: Value = app
        .login_form(&[("grant_type", "refresh_token"), ("refresh_token", r1)])
        .await
        .json()
        .await
        .unwrap();
    let r2 = r2["refresh_token"].as_str().unwrap();
    app.login_form(&[("grant_type", "refresh_token"), ("refresh_token", r2)])
        .await;
    app.login_form(&[("grant_type", "refresh_token"), ("refresh_token", r1)])
        .await; // reuse
    app.login("carol", "wrong").await;
    app.login("carol", "wrong").await; // throttled
    let page = audit(&app, &admin, "?type=refresh_reuse_detected").await;
    assert_eq!(types(&page), ["refresh_reuse_detected"]);
    let page = audit(&app, &admin, "?type=login_throttled").await;
    assert_eq!(types(&page), ["login_throttled"]);
    assert!(page["items"][0]["detail"]["retry_after"].is_i64());
    let fresh = app.token("root").await;
    app.client
        .post(app.at("/logout"))
        .bearer_auth(&fresh)
        .send()
        .await
        .unwrap();
    let page = audit(&app, &admin, "?type=logout").await;
    assert_eq!(page["items"][0]["detail"], json!({"all": false}));
}

#[tokio::test]
async fn the_audit_log_needs_users_read() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("alice").await;
    let r = app
        .client
        .get(app.at("/audit"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_unauthorized(app.get("/audit").await, "Not authenticated").await;
}

#[tokio::test]
async fn the_audit_log_pages_with_a_cursor() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    for i in 0..5 {
        app.register_ok(&format!("user{i}")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("?type=user_registered&limit=2&cursor={c}"),
            None => "?type=user_registered&limit=2".to_owned(),
        };
        let page = audit(&app, &admin, &q).await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "root and five users");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no repeats");
    let r = app
        .client
        .get(app.at("/audit?limit=0"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
