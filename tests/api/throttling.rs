//! Login and registration throttling, answered before any password work;
//! every password check goes through it (issue 14: the password change and
//! the account deletion were unthrottled oracles), the per-account limit
//! slows down rather than locks out, and refusals are audited once per key
//! and window.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

const BEHIND_PROXY: (&str, &str) = ("WARDEN_TRUSTED_PROXIES", "127.0.0.1");

/// `POST /token` as if from `address` (through the trusted proxy), with an
/// optional `Cookie` header.
async fn login_from(
    app: &TestApp,
    address: &str,
    username: &str,
    password: &str,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.at("/token"))
        .header("x-forwarded-for", address);
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    req.form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap()
}

async fn audit_count(app: &TestApp, kind: &str) -> i64 {
    app.sql_i64(&format!(
        "select count(*) from audit_events where type = '{kind}'"
    ))
    .await
}

#[tokio::test]
async fn the_password_change_and_the_account_deletion_are_throttled_and_audited() {
    // Finding 4: 40 wrong current passwords in a row were all 400, never
    // 429, and left no audit row.
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("alice").await;
    let mut statuses = Vec::new();
    for i in 0..40 {
        let r = app
            .client
            .put(app.at("/users/me/password"))
            .bearer_auth(&token)
            .json(&json!({"current_password": format!("guess {i}"), "new_password": "a new passphrase 1"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[..5], [400; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|&s| s == 429), "{statuses:?}");
    // The account deletion counts in the same (account, address) window,
    // and so does the login.
    let r = app
        .client
        .delete(app.at("/users/me"))
        .bearer_auth(&token)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_throttled(r).await;
    assert_throttled(app.login("alice", PASSWORD).await).await;
    assert_eq!(audit_count(&app, "password_check_failed").await, 5);
    // 37 refusals of one (account, address) key, one row: the first of
    // the window.
    assert_eq!(audit_count(&app, "password_check_throttled").await, 1);
    assert_eq!(audit_count(&app, "login_throttled").await, 0);
    let detail = app
        .sql_i64(
            "select count(*) from audit_events where type = 'password_check_failed' \
             and detail like '%\"purpose\":\"password_change\"%'",
        )
        .await;
    assert_eq!(detail, 5);
    // The account is intact.
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_password_for_the_deletion_is_audited_and_counted() {
    let app = TestApp::spawn_with(&[("WARDEN_THROTTLE_PER_PAIR", "2")]).await;
    let (_, token) = app.user_with_token("alice").await;
    for _ in 0..2 {
        let r = app
            .client
            .delete(app.at("/users/me"))
            .bearer_auth(&token)
            .json(&json!({"password": "wrong"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
    let r = app
        .client
        .delete(app.at("/users/me"))
        .bearer_auth(&token)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_throttled(r).await;
    assert_eq!(
        app.sql_i64(
            "select count(*) from audit_events where type = 'password_check_failed' \
             and detail like '%account_deletion%'"
        )
        .await,
        2
    );
    assert_eq!(app.me(&token).await.status(), StatusCode::OK, "not deleted");
}

#[tokio::test]
async fn one_account_flooding_password_checks_does_not_starve_other_logins() {
    // Finding 5: one account flooding PUT /users/me/password with wrong
    // passwords (from ever new addresses, so no pair limit applies) filled
    // the hashing queue: 29 of 30 other users' logins got 503.
    let app = TestApp::spawn_with(&[
        BEHIND_PROXY,
        ("WARDEN_HASH_WORKERS", "1"),
        ("WARDEN_HASH_QUEUE", "8"),
        ("WARDEN_ARGON2_MEMORY_KIB", "8192"),
        ("WARDEN_ARGON2_ITERATIONS", "2"),
    ])
    .await;
    let (_, flooder) = app.user_with_token("mallory").await;
    for i in 0..10 {
        app.register_ok(&format!("user{i}")).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let floods: Vec<_> = (0..32)
        .map(|lane| {
            let client = app.client.clone();
            let url = app.at("/users/me/password");
            let token = flooder.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let _ = client
                        .put(&url)
                        .bearer_auth(&token)
                        .header("x-forwarded-for", format!("10.{lane}.{}.{}", n / 256 % 256, n % 256))
                        .json(&json!({"current_password": "guess", "new_password": "a new passphrase 1"}))
                        .send()
                        .await;
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let r = login_from(
            &app,
            &format!("192.0.2.{i}"),
            &format!("user{i}"),
            PASSWORD,
            None,
        )
        .await;
        statuses.push(r.status().as_u16());
    }
    stop.store(true, Ordering::Relaxed);
    for f in floods {
        f.await.unwrap();
    }
    assert!(
        statuses.iter().all(|&s| s == 200),
        "other users' logins: {statuses:?}"
    );
}

#[tokio::test]
async fn an_attacked_account_slows_down_but_its_owner_gets_in() {
    // Finding 7: 100 failures from 20 addresses blocked the owner's
    // correct password from a fresh address for 15 minutes. Over the
    // per-account limit, Retry-After is now short (the window over the
    // limit: 200 s / 100 = one attempt every 2 s), and the owner's browser,
    // known by its device cookie, is not held up at all.
    let app = TestApp::spawn_with(&[BEHIND_PROXY, ("WARDEN_THROTTLE_WINDOW", "200")]).await;
    app.register_ok("alice").await;
    // The owner signed in on their browser before: it got a device cookie.
    let r = login_from(&app, "192.0.2.10", "alice", PASSWORD, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let device = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("warden_device="))
        .expect("a device cookie");
    assert!(
        device.contains("HttpOnly")
            && device.contains("SameSite=Strict")
            && device.contains("Path=/;"),
        "{device}"
    );
    let device = device.split(';').next().unwrap().to_owned();

    // 100 failures from 20 addresses, 5 each (one after the other: one
    // account may have only two password checks in flight).
    for a in 0..20 {
        for g in 0..5 {
            let r = login_from(
                &app,
                &format!("203.0.113.{a}"),
                "alice",
                &format!("guess {g}"),
                None,
            )
            .await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        }
    }
    // The owner from a fresh address: not exempt, but the wait is short.
    let r = login_from(&app, "198.51.100.7", "alice", PASSWORD, None).await;
    let wait = assert_throttled(r).await;
    assert!(wait <= 2, "Retry-After {wait}");
    // The owner's known browser, from yet another address: straight in,
    // while the guesser from a fresh address still waits.
    let r = login_from(&app, "198.51.100.8", "alice", PASSWORD, Some(&device)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_throttled(login_from(&app, "203.0.113.99", "alice", "guess", None).await).await;
    // A cookie of another account, or a forged one, is no device.
    let forged = device.replace("warden_device=v1.", "warden_device=v1.0");
    assert_throttled(login_from(&app, "198.51.100.9", "alice", PASSWORD, Some(&forged)).await)
        .await;
    // After the short wait the owner gets in from the fresh address too.
    tokio::time::sleep(std::time::Duration::from_secs(wait + 1)).await;
    let r = login_from(&app, "198.51.100.7", "alice", PASSWORD, None).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_throttle_does_not_tell_which_email_belongs_to_which_username() {
    // Finding 14: username and email shared one counter, so five failures
    // on "alice" made "alice@example.com" answer 429 — and an unrelated
    // email 400: the difference linked the two.
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    app.register_ok("bob").await;
    for _ in 0..5 {
        app.login("alice", "wrong password").await;
    }
    assert_throttled(app.login("alice", "wrong password").await).await;
    let own = app.login("alice@example.com", "wrong password").await;
    let other = app.login("bob@example.com", "wrong password").await;
    assert_eq!(own.status(), other.status());
    assert_eq!(own.status(), StatusCode::BAD_REQUEST);
    assert_eq!(own.text().await.unwrap(), other.text().await.unwrap());
}

#[tokio::test]
async fn a_flood_of_throttled_logins_writes_one_audit_row_per_key_and_window() {
    // Finding 9: every throttled login wrote an audit row (~1,000 rows/s
    // under a flood).
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    for _ in 0..5 {
        app.login("alice", "wrong password").await;
    }
    for _ in 0..200 {
        assert_eq!(
            app.login("alice", "wrong password").await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(audit_count(&app, "login_failed").await, 5);
    assert_eq!(audit_count(&app, "login_throttled").await, 1);
}

#[tokio::test]
async fn a_throttled_login_is_refused_without_reading_the_database() {
    // The throttle used to run after the account lookup: every refused
    // attempt of a flood still cost a database read.
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    for _ in 0..5 {
        app.login("alice", "wrong password").await;
    }
    // The first refusal of the window writes its audit event.
    assert_throttled(app.login("Alice", "wrong password").await).await;
    assert_eq!(audit_count(&app, "login_throttled").await, 1);
    // With the users table out of reach, a login that needs the account
    // fails (5xx); a throttled one never gets that far.
    app.sql("alter table users rename to users_out_of_reach").await;
    let throttled = app.login("ALICE", PASSWORD).await;
    let needs_lookup = app.login("bob", "wrong password").await.status();
    app.sql("alter table users_out_of_reach rename to users").await;
    assert_throttled(throttled).await;
    assert!(needs_lookup.is_server_error(), "{needs_lookup}");
    // The refusals since were counted, not written.
    assert_eq!(audit_count(&app, "login_throttled").await, 1);
    assert_eq!(
        app.login("bob", "wrong password").await.status(),
        StatusCode::BAD_REQUEST
    );
}
