use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_unauthorized, error_locs};

#[tokio::test]
async fn me_returns_the_current_user() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_with_token("alice").await;
    let r = app.me(&token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me, user);
}

#[tokio::test]
async fn patch_me_changes_own_profile_fields() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("alice").await;
    let r = app
        .client
        .patch(app.at("/users/me"))
        .bearer_auth(&token)
        .json(&json!({"full_name": "Alice Liddell", "email": "liddell@example.com", "username": "alice_l"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["full_name"], "Alice Liddell");
    assert_eq!(me["email"], "liddell@example.com");
    assert_eq!(me["username"], "alice_l");
    // The new username logs in; the old one no longer does.
    assert_eq!(
        app.login("alice_l", PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login("liddell@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login("alice", PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn patch_me_with_null_full_name_clears_it_and_absent_fields_stay() {
    let app = TestApp::spawn().await;
    app.register(json!({"username": "bob", "email": "bob@example.com", "password": PASSWORD, "full_name": "Bob"}))
        .await;
    let token = app.token("bob").await;
    let r = app
        .client
        .patch(app.at("/users/me"))
        .bearer_auth(&token)
        .json(&json!({"full_name": null}))
        .send()
        .await
        .unwrap();
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["full_name"], Value::Null);
    assert_eq!(me["email"], "bob@example.com");
}

#[tokio::test]
async fn patch_me_cannot_change_own_roles_or_disabled() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("carol").await;
    for body in [json!({"roles": ["admin"]}), json!({"disabled": true})] {
        let r = app
            .client
            .patch(app.at("/users/me"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{body}");
    }
    let me: Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(me["roles"], json!(["user"]));
}

#[tokio::test]
async fn patch_me_to_a_taken_username_returns_409() {
    let app = TestApp::spawn().await;
    app.register_ok("dave").await;
    let (_, token) = app.user_with_token("erin").await;
    let r = app
        .client
        .patch(app.at("/users/me"))
        .bearer_auth(&token)
        .json(&json!({"username": "DAVE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn patch_me_with_invalid_email_returns_422() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("fred").await;
    let r = app
        .client
        .patch(app.at("/users/me"))
        .bearer_auth(&token)
        .json(&json!({"email": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_locs(r).await, [["body", "email"]]);
}

#[tokio::test]
async fn patch_me_without_token_returns_401() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .patch(app.at("/users/me"))
        .json(&json!({"full_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_unauthorized(r, "Not authenticated").await;
}

#[tokio::test]
async fn change_password_returns_a_fresh_token_and_old_tokens_fail() {
    let app = TestApp::spawn().await;
    let (_, old) = app.user_with_token("gina").await;
    let r = app
        .client
        .put(app.at("/users/me/password"))
        .bearer_auth(&old)
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    let fresh = body["access_token"].as_str().unwrap();
    // The fresh token works at once, the earlier one fails at once.
    assert_eq!(app.me(fresh).await.status(), StatusCode::OK);
    assert_unauthorized(app.me(&old).await, "Invalid token").await;
    // The new password logs in; the old one does not.
    assert_eq!(
        app.login("gina", "a brand new secret").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login("gina", PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn change_password_with_wrong_current_password_returns_400() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("hank").await;
    let r = app
        .client
        .put(app.at("/users/me/password"))
        .bearer_auth(&token)
        .json(&json!({"current_password": "not my password", "new_password": "a brand new secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"detail": "Incorrect password"}));
    // Nothing changed: the token still works.
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn change_password_to_a_common_one_returns_422() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("ivan").await;
    let r = app
        .client
        .put(app.at("/users/me/password"))
        .bearer_auth(&token)
        .json(&json!({"current_password": PASSWORD, "new_password": "password1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_locs(r).await, [["body", "new_password"]]);
}

#[tokio::test]
async fn delete_me_with_password_returns_204_and_tokens_fail() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("jack").await;
    let r = app
        .client
        .delete(app.at("/users/me"))
        .bearer_auth(&token)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_unauthorized(app.me(&token).await, "Invalid token").await;
    assert_eq!(
        app.login("jack", PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
    // The username is free again.
    app.register_ok("jack").await;
}

#[tokio::test]
async fn delete_me_with_wrong_password_returns_400_and_keeps_the_account() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("kate").await;
    let r = app
        .client
        .delete(app.at("/users/me"))
        .bearer_auth(&token)
        .json(&json!({"password": "wrong password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn delete_me_without_password_returns_422() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("liam").await;
    let r = app
        .client
        .delete(app.at("/users/me"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_locs(r).await, [["body", "password"]]);
}

#[tokio::test]
async fn patch_me_refuses_smuggled_emails_and_invisible_characters_in_full_name() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("alice").await;
    for (field, value) in [
        ("email", "\"admin@example.com\"@evil.com"),
        ("email", "alice\u{200b}@example.com"),
        ("email", "alice\u{0}@example.com"),
        ("full_name", "Alice\u{202e}"),
        ("full_name", "Al\u{200d}ice"),
        ("full_name", "Alice\u{0}"),
        ("username", "ali\u{0}ce"),
    ] {
        let r = app
            .client
            .patch(app.at("/users/me"))
            .bearer_auth(&token)
            .json(&json!({ field: value }))
            .send()
            .await
            .unwrap();
        assert_eq!(error_locs(r).await, [["body", field]], "{value:?}");
    }
    let me: Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["full_name"], Value::Null);
}
