use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp};

async fn assert_grant_error(r: reqwest::Response, error: &str, detail: &str) {
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers().get("www-authenticate").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": error, "error_description": detail, "detail": detail})
    );
}

#[tokio::test]
async fn password_grant_returns_a_fastapi_compatible_token_response() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let r = app
        .login_form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "me");
}

#[tokio::test]
async fn grant_type_may_be_omitted() {
    let app = TestApp::spawn().await;
    app.register_ok("bob").await;
    assert_eq!(app.login("bob", PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn login_accepts_email_and_any_case() {
    let app = TestApp::spawn().await;
    app.register_ok("carol").await;
    assert_eq!(app.login("CAROL", PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(
        app.login("Carol@Example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn json_body_with_the_same_fields_is_accepted() {
    let app = TestApp::spawn().await;
    app.register_ok("dave").await;
    let r = app
        .client
        .post(app.at("/token"))
        .json(&json!({"username": "dave", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn swagger_uis_empty_basic_client_header_is_ignored() {
    let app = TestApp::spawn().await;
    app.register_ok("erin").await;
    let r = app
        .client
        .post(app.at("/token"))
        .header("authorization", "Basic Og==")
        .form(&[
            ("grant_type", "password"),
            ("username", "erin"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_400() {
    let app = TestApp::spawn().await;
    app.register_ok("fred").await;
    let wrong = app.login("fred", "not the password").await;
    let unknown = app.login("nobody", "not the password").await;
    let wrong_headers: Vec<_> = wrong
        .headers()
        .keys()
        .filter(|k| *k != "date")
        .cloned()
        .collect();
    let unknown_headers: Vec<_> = unknown
        .headers()
        .keys()
        .filter(|k| *k != "date")
        .cloned()
        .collect();
    assert_eq!(wrong_headers, unknown_headers);
    let (a, b) = (wrong.text().await.unwrap(), unknown.text().await.unwrap());
    assert_eq!(a, b);
    let body: Value = serde_json::from_str(&a).unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["detail"], "Incorrect username or password");
}

#[tokio::test]
async fn unknown_user_still_costs_one_password_verification() {
    // Counted, not timed: the unknown user's login runs exactly one argon2
    // verification (against a dummy hash), like a wrong password does.
    let app = TestApp::spawn().await;
    app.register_ok("gina").await;
    let before = app.state.hasher.verifications();
    app.login("nobody", "not the password").await;
    assert_eq!(app.state.hasher.verifications(), before + 1);
    app.login("gina", "not the password").await;
    assert_eq!(app.state.hasher.verifications(), before + 2);
}

#[tokio::test]
async fn missing_password_returns_400_invalid_request() {
    let app = TestApp::spawn().await;
    let r = app.login_form(&[("username", "hank")]).await;
    assert_grant_error(r, "invalid_request", "Missing required parameter: password").await;
}

#[tokio::test]
async fn unsupported_grant_type_returns_400() {
    let app = TestApp::spawn().await;
    let r = app
        .login_form(&[("grant_type", "implicit")])
        .await;
    assert_grant_error(
        r,
        "unsupported_grant_type",
        "Unsupported grant_type: implicit",
    )
    .await;
}

#[tokio::test]
async fn a_parameter_sent_twice_returns_400_invalid_request() {
    let app = TestApp::spawn().await;
    let r = app
        .login_form(&[("username", "a"), ("username", "b"), ("password", "x")])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn unknown_scope_returns_400_invalid_scope() {
    let app = TestApp::spawn().await;
    app.register_ok("ivan").await;
    let r = app
        .login_form(&[
            ("username", "ivan"),
            ("password", PASSWORD),
            ("scope", "me launch:missiles"),
        ])
        .await;
    assert_grant_error(r, "invalid_scope", "Unknown scope: launch:missiles").await;
}

#[tokio::test]
async fn requested_scope_is_intersected_with_the_users_scopes() {
    let app = TestApp::spawn().await;
    app.register_ok("jack").await;
    // `users:read` exists (admins have it) but jack is a plain user.
    let r = app
        .login_form(&[
            ("username", "jack"),
            ("password", PASSWORD),
            ("scope", "me users:read"),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["scope"], "me");
}

#[tokio::test]
async fn other_content_types_return_415() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .post(app.at("/token"))
        .header("content-type", "text/plain")
        .body("username=a&password=b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn disabled_user_gets_the_same_400() {
    let app = TestApp::spawn().await;
    let user = app.register_ok("kate").await;
    let id = user["id"].as_str().unwrap();
    app.sql(&format!(
        "update users set disabled = true where id = '{id}'"
    ))
    .await;
    let disabled = app.login("kate", PASSWORD).await;
    let unknown = app.login("nobody", PASSWORD).await;
    assert_eq!(disabled.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        disabled.text().await.unwrap(),
        unknown.text().await.unwrap()
    );
}
