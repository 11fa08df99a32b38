//! Security changes are atomic and final: a password, role or disabled
//! change, the end of every session it implies and its audit event commit
//! together, and no login that was checked before the change outlives it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp};

const NEW_PASSWORD: &str = "a different horse battery";

/// Realistic argon2 costs, so a login spends as long hashing as it would in
/// production (the default test server hashes in well under a millisecond,
/// which would hide the window these tests aim at).
const REAL_HASHING: &[(&str, &str)] = &[
    ("WARDEN_ARGON2_MEMORY_KIB", "19456"),
    ("WARDEN_ARGON2_ITERATIONS", "2"),
    ("WARDEN_THROTTLE_PER_PAIR", "100000"),
    ("WARDEN_THROTTLE_PER_ADDRESS", "100000"),
    ("WARDEN_THROTTLE_PER_ACCOUNT", "100000"),
];

/// Logs in with `password` in a loop on `workers` tasks until `stop`, and
/// returns every token pair obtained.
fn login_storm(
    app: &Arc<TestApp>,
    username: &str,
    password: &str,
    scope: Option<&str>,
    workers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Value>>> {
    (0..workers)
        .map(|_| {
            let (app, stop) = (app.clone(), stop.clone());
            let (username, password) = (username.to_owned(), password.to_owned());
            let scope = scope.map(str::to_owned);
            tokio::spawn(async move {
                let mut pairs = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let mut form = vec![("username", username.as_str()), ("password", &password)];
                    if let Some(scope) = &scope {
                        form.push(("scope", scope));
                    }
                    let r = app.login_form(&form).await;
                    match r.status() {
                        StatusCode::OK => pairs.push(r.json::<Value>().await.unwrap()),
                        // Over the per-account cap of checks in flight: back
                        // off a little, as a client told `Retry-After` would.
                        // Retrying at once only burns the CPU that the
                        // (lowest-priority) hashing threads need, so on a
                        // loaded machine no login finished at all.
                        StatusCode::TOO_MANY_REQUESTS => {
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                        _ => {}
                    }
                }
                pairs
            })
        })
        .collect()
}

async fn refresh_status(app: &TestApp, refresh_token: &str) -> StatusCode {
    app.login_form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ])
    .await
    .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_login_with_the_old_password_survives_a_password_change_it_raced() {
    let app = Arc::new(TestApp::spawn_with(REAL_HASHING).await);
    let (_, token) = app.user_with_token("racer").await;
    let mut survivors = 0;
    let mut obtained = 0;
    for trial in 0..3 {
        let (old, new) = if trial % 2 == 0 {
            (PASSWORD, NEW_PASSWORD)
        } else {
            (NEW_PASSWORD, PASSWORD)
        };
        let token = if trial == 0 {
            token.clone()
        } else {
            app.login("racer", old).await.json::<Value>().await.unwrap()["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let storm = login_storm(&app, "racer", old, None, 6, &stop);
        // Let the logins get going, so several are hashing when the change
        // commits.
        tokio::time::sleep(Duration::from_millis(150)).await;
        // The storm holds the account's two password-check places most of
        // the time: a 429 here means "retry in a second".
        let r = loop {
            let r = app
                .client
                .put(app.at("/users/me/password"))
                .bearer_auth(&token)
                .json(&json!({"current_password": old, "new_password": new}))
                .send()
                .await
                .unwrap();
            if r.status() != StatusCode::TOO_MANY_REQUESTS {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(r.status(), StatusCode::OK, "trial {trial}");
        stop.store(true, Ordering::Release);
        let mut pairs = Vec::new();
        for task in storm {
            pairs.extend(task.await.unwrap());
        }
        // Every login made with the old password, whenever it finished,
        // is over: its refresh token and its access token.
        for pair in &pairs {
            obtained += 1;
            let refresh = pair["refresh_token"].as_str().unwrap();
            let access = pair["access_token"].as_str().unwrap();
            if refresh_status(&app, refresh).await == StatusCode::OK
                || app.me(access).await.status() == StatusCode::OK
            {
                survivors += 1;
            }
        }
    }
    println!("{survivors} of {obtained} old-password logins survived the password changes");
    assert!(obtained > 0, "the storm obtained no tokens at all");
    assert_eq!(survivors, 0, "of {obtained} logins");
}

/// Waits until the wall clock is `ms` milliseconds into a second: a
/// security change then lands near the end of its second, and the logins
/// it races finish in the next one.
async fn until_millisecond(ms: u32) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let into = now.subsec_millis();
        if into >= ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(u64::from(ms - into))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_in_flight_during_a_demotion_never_yields_a_token_with_the_old_scopes() {
    let app = Arc::new(TestApp::spawn_with(REAL_HASHING).await);
    let (_, boss) = app.admin_token("boss").await;
    let mut leaked = 0;
    let mut old_scoped = 0;
    for trial in 0..4 {
        let name = format!("demoted{trial}");
        let (user, _) = app.admin_token(&name).await;
        let id = user["id"].as_str().unwrap().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let storm = login_storm(&app, &name, PASSWORD, None, 6, &stop);
        tokio::time::sleep(Duration::from_millis(100)).await;
        until_millisecond(940).await;
        let r = app
            .client
            .patch(app.at(&format!("/users/{id}")))
            .bearer_auth(&boss)
            .json(&json!({"roles": ["user"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "trial {trial}");
        // Logins that started before the demotion answered are in flight
        // still; let them finish.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Release);
        for task in storm {
            for pair in task.await.unwrap() {
                if !pair["scope"].as_str().unwrap().contains("users:read") {
                    continue; // issued under the new roles
                }
                old_scoped += 1;
                let access = pair["access_token"].as_str().unwrap();
                let listed = app
                    .client
                    .get(app.at("/users"))
                    .bearer_auth(access)
                    .send()
                    .await
                    .unwrap()
                    .status();
                let refresh = pair["refresh_token"].as_str().unwrap();
                if listed == StatusCode::OK || refresh_status(&app, refresh).await == StatusCode::OK
                {
                    leaked += 1;
                }
            }
        }
    }
    println!("{leaked} of {old_scoped} admin-scoped tokens outlived the demotions");
    assert!(old_scoped > 0, "no login finished before the demotions");
    assert_eq!(leaked, 0, "of {old_scoped} admin-scoped tokens");
}

#[tokio::test]
async fn logins_after_a_role_change_get_the_new_scopes() {
    let app = TestApp::spawn().await;
    let (user, _) = app.admin_token("soon_plain").await;
    let (_, boss) = app.admin_token("boss").await;
    let r = app
        .client
        .patch(app.at(&format!("/users/{}", user["id"].as_str().unwrap())))
        .bearer_auth(&boss)
        .json(&json!({"roles": ["user"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = app
        .login("soon_plain", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["scope"], "me");
}

/// Makes the database refuse to end sessions, as a disk failure or a crash
/// between two statements would: the change must then leave nothing
/// behind.
async fn break_session_revocation(app: &TestApp) {
    match crate::BACKEND {
        crate::helpers::Backend::Sqlite => {
            app.sql(
                "create trigger fail_revocation before update of revoked_at on sessions \
                 when new.revoked_at is not null \
                 begin select raise(abort, 'injected failure'); end",
            )
            .await
        }
        crate::helpers::Backend::Postgres => {
            app.sql(
                "create function fail_revocation() returns trigger language plpgsql as \
                 $$ begin if new.revoked_at is not null then \
                 raise exception 'injected failure'; end if; return new; end $$",
            )
            .await;
            app.sql(
                "create trigger fail_revocation before update of revoked_at on sessions \
                 for each row execute function fail_revocation()",
            )
            .await
        }
    }
}

#[tokio::test]
async fn a_password_change_that_fails_half_way_changes_nothing() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("halfway").await;
    let old: Value = app.login("halfway", PASSWORD).await.json().await.unwrap();
    break_session_revocation(&app).await;
    let r = app
        .client
        .put(app.at("/users/me/password"))
        .bearer_auth(&token)
        .json(&json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    // Nothing of the change stayed: the old password works, the new one
    // does not, no event claims it happened — and, the point of it all, the
    // old session was not left alive beside a new password.
    assert_eq!(
        app.login("halfway", NEW_PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.login("halfway", PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.sql_i64("select count(*) from audit_events where type = 'password_changed'")
            .await,
        0
    );
    assert_eq!(
        refresh_status(&app, old["refresh_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_demotion_that_fails_half_way_changes_nothing() {
    let app = TestApp::spawn().await;
    let (user, _) = app.admin_token("keeps_admin").await;
    let (_, boss) = app.admin_token("boss").await;
    break_session_revocation(&app).await;
    let r = app
        .client
        .patch(app.at(&format!("/users/{}", user["id"].as_str().unwrap())))
        .bearer_auth(&boss)
        .json(&json!({"roles": ["user"]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    let body: Value = app
        .login("keeps_admin", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["scope"].as_str().unwrap().contains("users:write"),
        "the demotion was half applied: {body}"
    );
    assert_eq!(
        app.sql_i64("select count(*) from audit_events where type = 'user_security_changed'")
            .await,
        0
    );
}

/// The claims of an access token, decoded without verifying it.
fn unverified_claims(access_token: &str) -> Value {
    use base64::Engine;
    let payload = access_token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn the_token_of_a_password_change_is_not_issued_in_the_future() {
    let app = TestApp::spawn().await;
    let (_, old) = app.user_with_token("alice").await;
    // At the start of a second, so the change and its answer share it: a
    // token stamped with the next second would then be ahead of the clock.
    let ms_into_second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1000 - ms_into_second))).await;
    let r = app
        .client
        .put(app.at("/users/me/password"))
        .bearer_auth(&old)
        .json(&json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let answered_at = unix_now();
    let body: Value = r.json().await.unwrap();
    let new = body["access_token"].as_str().unwrap();
    let claims = unverified_claims(new);
    let (iat, nbf) = (claims["iat"].as_i64().unwrap(), claims["nbf"].as_i64().unwrap());
    assert!(iat <= answered_at, "iat {iat} is after the answer at {answered_at}");
    assert!(nbf <= iat, "nbf {nbf}, iat {iat}");
    // And the gate still tells the two apart: the new token works at once,
    // the one from before the change does not.
    assert_eq!(app.me(new).await.status(), StatusCode::OK);
    assert_eq!(app.me(&old).await.status(), StatusCode::UNAUTHORIZED);
    // A login in the same second as the change, likewise.
    let login: Value = app.login("alice", NEW_PASSWORD).await.json().await.unwrap();
    let fresh = login["access_token"].as_str().unwrap();
    assert!(unverified_claims(fresh)["iat"].as_i64().unwrap() <= unix_now());
    assert_eq!(app.me(fresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_password_change_and_its_audit_event_are_one() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("audited").await;
    let r = app
        .client
        .put(app.at("/users/me/password"))
        .bearer_auth(&token)
        .json(&json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.sql_i64("select count(*) from audit_events where type = 'password_changed'")
            .await,
        1
    );
}

async fn delete(app: &TestApp, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = app.client.delete(app.at(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn assert_last_admin_refused(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("last admin"),
        "{body}"
    );
}

#[tokio::test]
async fn the_last_admin_cannot_delete_themselves_after_demoting_the_other() {
    let app = TestApp::spawn().await;
    let (_, first) = app.admin_token("first").await;
    let (second, _) = app.admin_token("second").await;
    let r = app
        .client
        .patch(app.at(&format!("/users/{}", second["id"].as_str().unwrap())))
        .bearer_auth(&first)
        .json(&json!({"roles": ["user"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = delete(
        &app,
        "/users/me",
        &first,
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_last_admin_refused(r).await;
    // Still there, still an admin.
    assert_eq!(app.me(&first).await.status(), StatusCode::OK);
    let body: Value = app.login("first", PASSWORD).await.json().await.unwrap();
    assert!(body["scope"].as_str().unwrap().contains("users:write"));
}

#[tokio::test]
async fn the_last_admin_cannot_be_deleted_disabled_or_demoted_by_anyone() {
    let app = TestApp::spawn_with_file(
        "[roles.operator]\nscopes = [\"me\", \"users:read\", \"users:write\"]\n",
        &[],
    )
    .await;
    let (admin, admin_token) = app.admin_token("only_admin").await;
    app.register_ok("operator").await;
    app.set_roles("operator", &["operator"]).await;
    let operator = app.token("operator").await;
    let path = format!("/users/{}", admin["id"].as_str().unwrap());
    assert_last_admin_refused(delete(&app, &path, &admin_token, None).await).await;
    assert_last_admin_refused(delete(&app, &path, &operator, None).await).await;
    for change in [json!({"roles": ["user"]}), json!({"disabled": true})] {
        let r = app
            .client
            .patch(app.at(&path))
            .bearer_auth(&operator)
            .json(&change)
            .send()
            .await
            .unwrap();
        assert_last_admin_refused(r).await;
    }
    // With a second admin, the first may go.
    app.set_roles("operator", &["admin"]).await;
    let operator = app.token("operator").await;
    assert_eq!(
        delete(&app, &path, &operator, None).await.status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_admins_removing_each_other_at_once_leave_one() {
    let app = TestApp::spawn().await;
    for trial in 0..5 {
        // Only this trial's two are admins: the survivor of the last trial
        // steps down (as an operator with database access would do it).
        app.sql(r#"update users set roles = '["user"]'"#).await;
        let (a, a_token) = app.admin_token(&format!("adm_a{trial}")).await;
        let (b, b_token) = app.admin_token(&format!("adm_b{trial}")).await;
        let (path_a, path_b) = (
            format!("/users/{}", a["id"].as_str().unwrap()),
            format!("/users/{}", b["id"].as_str().unwrap()),
        );
        let (ra, rb) = tokio::join!(
            delete(&app, &path_b, &a_token, None),
            delete(&app, &path_a, &b_token, None),
        );
        let deleted = [ra.status(), rb.status()]
            .iter()
            .filter(|s| **s == StatusCode::NO_CONTENT)
            .count();
        assert!(
            deleted <= 1,
            "trial {trial}: both admins deleted each other"
        );
        assert_eq!(
            app.sql_i64(
                "select count(*) from users where not disabled and roles like '%\"admin\"%'"
            )
            .await,
            1,
            "trial {trial}"
        );
    }
}

#[tokio::test]
async fn a_login_past_the_session_cap_ends_the_oldest_sessions() {
    let app = TestApp::spawn_with(&[("WARDEN_MAX_SESSIONS_PER_USER", "3")]).await;
    app.register_ok("many").await;
    let mut pairs = Vec::new();
    for _ in 0..5 {
        let pair: Value = app.login("many", PASSWORD).await.json().await.unwrap();
        pairs.push(pair);
    }
    let newest = pairs[4]["access_token"].as_str().unwrap();
    let listed: Vec<Value> = app
        .client
        .get(app.at("/users/me/sessions"))
        .bearer_auth(newest)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for (i, pair) in pairs.iter().enumerate() {
        let expected = if i < 2 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        assert_eq!(
            app.me(pair["access_token"].as_str().unwrap())
                .await
                .status(),
            expected,
            "session {i}"
        );
    }
    assert_eq!(
        refresh_status(&app, pairs[0]["refresh_token"].as_str().unwrap()).await,
        StatusCode::BAD_REQUEST
    );
}
