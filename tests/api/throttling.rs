//! Login and registration throttling, answered before any password work.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp};

async fn assert_throttled(r: reqwest::Response) -> u64 {
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("try again in {wait} seconds")),
        "{detail}"
    );
    wait
}

#[tokio::test]
async fn after_five_failures_the_pair_gets_429_with_retry_after_before_any_hashing() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    for _ in 0..5 {
        assert_eq!(
            app.login("alice", "wrong password").await.status(),
            StatusCode::BAD_REQUEST
        );
    }
    let hashed = app.state.hasher.verifications();
    let wait = assert_throttled(app.login("alice", "wrong password").await).await;
    assert!(wait > 800 && wait <= 900, "{wait}");
    // Even the right password waits, and no password was hashed for either.
    assert_throttled(app.login("alice", PASSWORD).await).await;
    assert_eq!(app.state.hasher.verifications(), hashed);
    // The same account by email is the same account.
    assert_throttled(app.login("alice@example.com", PASSWORD).await).await;
}

#[tokio::test]
async fn a_success_clears_the_pair_counter() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    for _ in 0..4 {
        app.login("alice", "wrong password").await;
    }
    assert_eq!(app.login("alice", PASSWORD).await.status(), StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(
            app.login("alice", "wrong password").await.status(),
            StatusCode::BAD_REQUEST
        );
    }
    assert_throttled(app.login("alice", PASSWORD).await).await;
}

#[tokio::test]
async fn limits_are_configurable_and_other_accounts_are_unaffected() {
    let app = TestApp::spawn_with(&[
        ("WARDEN_THROTTLE_PER_PAIR", "2"),
        ("WARDEN_THROTTLE_WINDOW", "60"),
    ])
    .await;
    app.register_ok("alice").await;
    app.register_ok("bob").await;
    for _ in 0..2 {
        app.login("alice", "wrong password").await;
    }
    let wait = assert_throttled(app.login("alice", "wrong password").await).await;
    assert!(wait <= 60);
    assert_eq!(app.login("bob", PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_per_address_limit_stops_password_spraying() {
    let app = TestApp::spawn_with(&[("WARDEN_THROTTLE_PER_ADDRESS", "3")]).await;
    for user in ["u1", "u2", "u3"] {
        assert_eq!(
            app.login(user, "guess").await.status(),
            StatusCode::BAD_REQUEST
        );
    }
    assert_throttled(app.login("u4", "guess").await).await;
}

#[tokio::test]
async fn unknown_accounts_are_throttled_like_known_ones() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        app.login("nobody", "guess").await;
    }
    assert_throttled(app.login("nobody", "guess").await).await;
}

#[tokio::test]
async fn registrations_are_throttled_per_address() {
    let app = TestApp::spawn_with(&[("WARDEN_THROTTLE_PER_ADDRESS", "2")]).await;
    for name in ["reg1", "reg2"] {
        app.register_ok(name).await;
    }
    let r = app
        .register(json!({"username": "reg3", "email": "reg3@example.com", "password": PASSWORD}))
        .await;
    assert_throttled(r).await;
}

#[tokio::test]
async fn throttled_logins_are_counted_in_metrics() {
    let app = TestApp::spawn_with(&[("WARDEN_THROTTLE_PER_PAIR", "1")]).await;
    app.login("x", "y").await;
    app.login("x", "y").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(r#"warden_logins_total{result="throttled"}"#),
        "{text}"
    );
}
