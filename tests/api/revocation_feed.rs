//! `GET /token/revocations`: the revocation feed resource servers follow.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_locs};

/// A poll of the feed with `token`; `query` is the raw query string.
async fn poll(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.client
        .get(app.at(&format!("/token/revocations{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn poll_ok(app: &TestApp, token: &str, query: &str) -> Value {
    let r = poll(app, token, query).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.json().await.unwrap()
}

fn cursor(page: &Value) -> String {
    page["cursor"].as_str().unwrap().to_owned()
}

/// The `sid` claim of an access token.
fn sid_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

fn sids(page: &Value) -> Vec<&str> {
    page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sid"].as_str().unwrap())
        .collect()
}

async fn logout(app: &TestApp, token: &str) {
    let r = app
        .client
        .post(app.at("/logout"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_feed_needs_a_token_with_tokens_introspect() {
    let app = TestApp::spawn().await;
    let (_, user) = app.user_with_token("bob").await;
    let r = poll(&app, &user, "").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains(r#"scope="tokens:introspect""#),
        "{challenge}"
    );
    let r = app.get("/token/revocations").await;
    crate::helpers::assert_unauthorized(r, "Not authenticated").await;
}

#[tokio::test]
async fn the_metadata_names_the_feed() {
    let app = TestApp::spawn().await;
    let meta: Value = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["warden_revocation_feed_endpoint"],
        format!("{}/token/revocations", app.url)
    );
}

#[tokio::test]
async fn the_first_poll_is_the_whole_state_and_a_logout_then_comes_as_a_delta() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let (_, early) = app.user_with_token("bob").await;
    logout(&app, &early).await;

    let first = poll_ok(&app, &admin, "").await;
    assert_eq!(first["full"], true);
    assert_eq!(first["access_token_ttl"], 900);
    assert!(sids(&first).contains(&sid_of(&early).as_str()), "{first}");
    for s in first["sessions"].as_array().unwrap() {
        assert!(s["ended_at"].as_i64().unwrap() > 1_700_000_000, "{s}");
    }

    let nothing = poll_ok(&app, &admin, &format!("?cursor={}", cursor(&first))).await;
    assert_eq!(nothing["full"], false);
    assert_eq!(nothing["sessions"], json!([]));
    assert_eq!(nothing["users"], json!([]));

    let late = app.token("bob").await;
    logout(&app, &late).await;
    let delta = poll_ok(&app, &admin, &format!("?cursor={}", cursor(&nothing))).await;
    assert_eq!(delta["full"], false);
    assert_eq!(sids(&delta), [sid_of(&late).as_str()], "only what is new");

    // A missing or unreadable cursor gets the whole state again.
    for query in ["", "?cursor=", "?cursor=garbage"] {
        let again = poll_ok(&app, &admin, query).await;
        assert_eq!(again["full"], true, "{query}");
        assert_eq!(sids(&again).len(), 2, "{query}: {again}");
    }
}

#[tokio::test]
async fn a_waiting_poll_answers_well_under_a_second_after_a_logout() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let (_, bob) = app.user_with_token("bob").await;
    let start = poll_ok(&app, &admin, "").await;

    let waiting = {
        let (client, url, admin) = (app.client.clone(), app.url.clone(), admin.clone());
        let query = format!("?cursor={}&wait=20", cursor(&start));
        tokio::spawn(async move {
            let r = client
                .get(format!("{url}/token/revocations{query}"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap();
            let answered = Instant::now();
            (r.json::<Value>().await.unwrap(), answered)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "nothing new: the poll waits");
    let logged_out = Instant::now();
    logout(&app, &bob).await;
    let (page, answered) = waiting.await.unwrap();
    let delay = answered.saturating_duration_since(logged_out);
    println!("long-poll answered {delay:?} after the logout request started");
    assert_eq!(sids(&page), [sid_of(&bob).as_str()]);
    assert!(delay < Duration::from_secs(1), "{delay:?}");

    // With nothing new, `wait` passes and the answer is an empty delta.
    let began = Instant::now();
    let page = poll_ok(&app, &admin, &format!("?cursor={}&wait=1", cursor(&page))).await;
    assert!(began.elapsed() >= Duration::from_millis(900));
    assert_eq!((page["full"].clone(), page["sessions"].clone()), (json!(false), json!([])));
}

#[tokio::test]
async fn a_disabled_or_deleted_user_and_a_password_change_are_listed() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let (bob, _) = app.user_with_token("bob").await;
    let (carol, _) = app.user_with_token("carol").await;
    let (dave, dave_token) = app.user_with_token("dave").await;
    let start = poll_ok(&app, &admin, "").await;

    let r = app
        .client
        .patch(app.at(&format!("/users/{}", bob["id"].as_str().unwrap())))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .client
        .delete(app.at(&format!("/users/{}", carol["id"].as_str().unwrap())))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .client
        .put(app.at("/users/me/password"))
        .bearer_auth(&dave_token)
        .json(&json!({"current_password": crate::helpers::PASSWORD, "new_password": "a brand new secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let delta = poll_ok(&app, &admin, &format!("?cursor={}", cursor(&start))).await;
    let entry = |id: &Value| {
        delta["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["sub"] == *id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} in {delta}"))
    };
    let b = entry(&bob["id"]);
    assert_eq!((b["disabled"].clone(), b["deleted"].clone()), (json!(true), json!(false)));
    let c = entry(&carol["id"]);
    assert_eq!((c["disabled"].clone(), c["deleted"].clone()), (json!(false), json!(true)));
    let d = entry(&dave["id"]);
    assert_eq!((d["disabled"].clone(), d["deleted"].clone()), (json!(false), json!(false)));
    let iat_of = |t: &str| -> i64 {
        let p = t.split('.').nth(1).unwrap();
        let c: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
        c["iat"].as_i64().unwrap()
    };
    assert!(
        d["tokens_before"].as_i64().unwrap() > iat_of(&dave_token),
        "dave's old token is before the change: {d}"
    );
}

#[tokio::test]
async fn wait_out_of_range_or_not_a_number_is_422() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    for query in ["?wait=56", "?wait=-1", "?wait=soon", "?wait=1.5"] {
        let r = poll(&app, &admin, query).await;
        assert_eq!(
            error_locs(r).await,
            [vec!["query".to_owned(), "wait".to_owned()]],
            "{query}"
        );
    }
    assert_eq!(poll(&app, &admin, "?wait=0").await.status(), StatusCode::OK);
    // The body the OpenAPI document shows as its example.
    let body: Value = poll(&app, &admin, "?wait=56").await.json().await.unwrap();
    assert_eq!(
        body,
        json!({"detail": [{"loc": ["query", "wait"], "msg": "Input should be less than or equal to 55", "type": "less_than_equal"}]})
    );
}

/// Two instances on one database, as behind a load balancer: a cursor of
/// one is up to date at the other when both hold the same state, and a
/// cursor from another boot whose state differs gets the whole state.
#[tokio::test]
async fn a_cursor_of_another_instance_is_up_to_date_only_with_the_same_state() {
    let a = TestApp::spawn().await;
    // One issuer, as instances behind one load balancer share it.
    let b = TestApp::spawn_in(a.env.clone(), &[("WARDEN_ISSUER", &a.url)]).await;
    let (_, admin) = a.admin_token("root").await;
    let (_, bob) = a.user_with_token("bob").await;
    logout(&a, &bob).await;
    let from_a = poll_ok(&a, &admin, "").await;
    assert_eq!(sids(&from_a), [sid_of(&bob).as_str()]);

    // b learns of the logout from the database within ~100 ms.
    let deadline = Instant::now() + Duration::from_secs(5);
    let at_b = loop {
        let page = poll_ok(&b, &admin, &format!("?cursor={}", cursor(&from_a))).await;
        if page["full"] == false || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(at_b["full"], false, "{at_b}");
    assert_eq!(at_b["sessions"], json!([]), "nothing the consumer lacks");

    // A cursor from another boot whose fingerprint differs: everything.
    let mut forged = URL_SAFE_NO_PAD.decode(cursor(&from_a)).unwrap();
    forged[0] ^= 1; // another boot id
    forged[23] ^= 1; // another state
    let forged = URL_SAFE_NO_PAD.encode(forged);
    let page = poll_ok(&b, &admin, &format!("?cursor={forged}")).await;
    assert_eq!(page["full"], true);
    assert_eq!(sids(&page), [sid_of(&bob).as_str()]);

    // A logout at a reaches a poll waiting at b.
    let waiting = {
        let (client, url, admin) = (b.client.clone(), b.url.clone(), admin.clone());
        let query = format!("?cursor={}&wait=20", cursor(&at_b));
        tokio::spawn(async move {
            let r = client
                .get(format!("{url}/token/revocations{query}"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap();
            (r.json::<Value>().await.unwrap(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let carol = a.user_with_token("carol").await.1;
    let logged_out = Instant::now();
    logout(&a, &carol).await;
    let (page, answered) = waiting.await.unwrap();
    println!(
        "a logout at one instance reached a poll waiting at another in {:?}",
        answered.saturating_duration_since(logged_out)
    );
    assert_eq!(sids(&page), [sid_of(&carol).as_str()]);
}

#[tokio::test]
async fn a_waiting_poll_does_not_hold_the_shutdown() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let start = poll_ok(&app, &admin, "").await;
    let waiting = {
        let (client, url) = (app.client.clone(), app.url.clone());
        let query = format!("?cursor={}&wait=55", cursor(&start));
        tokio::spawn(async move {
            client
                .get(format!("{url}/token/revocations{query}"))
                .bearer_auth(admin)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let began = Instant::now();
    app.stop().await;
    println!("stopped in {:?} with a poll waiting", began.elapsed());
    assert!(began.elapsed() < Duration::from_secs(10));
    assert_eq!(waiting.await.unwrap().ok(), Some(StatusCode::OK));
}
