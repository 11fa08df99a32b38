//! Logout that reaches every app (issue 18): every way a session ends
//! sends each affected client with a `backchannel_logout_uri` exactly one
//! logout token (OpenID Connect Back-Channel Logout 1.0), delivered from
//! the durable outbox to a real HTTP receiver on a loopback port, and
//! verified here against warden's JWKS; and RP-initiated logout at
//! `/session/end`.
//!
//! The code-flow helpers (`signed_in`, `Code`, `redeem`) are minimal copies
//! of those in `client_grants.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode as AxumStatus;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, jwk::JwkSet};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use uuid::Uuid;
use warden::auth::clients::{NewClient, hash_secret};
use warden::auth::tokens::now;
use warden::domain::{AuthorizationCodeRecord, ClientRecord, ConsentRecord, UserRecord};

use crate::helpers::{PASSWORD, TestApp, TestEnv, basic, hidden, signed_in_with_cookie};

const REDIRECT: &str = "https://app.example.com/cb";
const POST_LOGOUT: &str = "https://app.example.com/bye";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

// ---------------------------------------------------------------- the receiver

/// A relying party's back-channel logout endpoint: records every POSTed
/// `logout_token`.
struct Receiver {
    uri: String,
    tokens: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn record(State(tokens): State<Arc<Mutex<Vec<String>>>>, body: String) -> AxumStatus {
    let token = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    match token {
        Some(t) => {
            tokens.lock().unwrap().push(t);
            AxumStatus::OK
        }
        None => AxumStatus::BAD_REQUEST,
    }
}

impl Receiver {
    async fn on(listener: TcpListener) -> Self {
        let uri = format!("http://{}/backchannel", listener.local_addr().unwrap());
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let router = axum::Router::new()
            .route("/backchannel", axum::routing::post(record))
            .with_state(tokens.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { uri, tokens, task }
    }

    async fn start() -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    fn received(&self) -> Vec<String> {
        self.tokens.lock().unwrap().clone()
    }

    /// Waits until `n` tokens arrived (at most `within`), then a little
    /// longer to see that no more come; returns them all.
    async fn expect(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + within;
        while self.received().len() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The worker polls every second: two more rounds.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let got = self.received();
        assert_eq!(got.len(), n, "logout tokens received");
        got
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port that nothing listens on (yet).
async fn closed_port() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------- the code flow

async fn rp(app: &TestApp, backchannel: &str) -> (ClientRecord, String) {
    let new = NewClient {
        name: "Test app".into(),
        public: false,
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: vec![POST_LOGOUT.into()],
        backchannel_logout_uri: Some(backchannel.into()),
        grant_types: Some(vec!["authorization_code".into(), "refresh_token".into()]),
        scopes: Some(vec!["me".into(), "openid".into()]),
        ..Default::default()
    };
    let (record, secret) = warden::auth::clients::create(&app.state, new, None, None, now())
        .await
        .expect("a valid client");
    (record, secret.unwrap())
}

/// A session through `client` opened from `browser` by the code flow:
/// its token response.
async fn code_session(
    app: &TestApp,
    client: &ClientRecord,
    secret: &str,
    user: &UserRecord,
    browser: Uuid,
) -> Value {
    let verifier = format!("v-{}.{}~", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let code = format!("code-{}", Uuid::new_v4().simple());
    let t = now();
    app.state
        .store
        .insert_code(&AuthorizationCodeRecord {
            hash: hash_secret(&code).to_vec(),
            client_id: client.id,
            user_id: user.id,
            browser_session: browser,
            redirect_uri: Some(REDIRECT.into()),
            code_challenge: URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
            scope: "me openid".into(),
            nonce: None,
            auth_time: t,
            created_at: t,
            expires_at: t + 60,
            used_at: None,
            session_id: None,
        })
        .await
        .unwrap();
    let r = app
        .client
        .post(app.at("/token"))
        .header("authorization", basic(&client.id.to_string(), secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn refresh(app: &TestApp, client: &ClientRecord, secret: &str, token: &str) -> reqwest::Response {
    app.client
        .post(app.at("/token"))
        .header("authorization", basic(&client.id.to_string(), secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap()
}

// ---------------------------------------------------------------- the logout token

fn segment(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Verifies `token` as the RP would: against warden's JWKS with the
/// client's algorithm pinned, `typ`, `iss`, `aud`, `events`, no `nonce`;
/// returns its claims.
async fn verified(app: &TestApp, issuer: &str, token: &str, client: &ClientRecord) -> Value {
    let header = segment(token, 0);
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(header["alg"], client.id_token_signed_response_alg.as_str());
    let kid = header["kid"].as_str().expect("a kid");
    let jwks: JwkSet = app.get("/.well-known/jwks.json").await.json().await.unwrap();
    let jwk = jwks.find(kid).expect("the key is published");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[client.id.to_string()]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let claims: Value = jsonwebtoken::decode(token, &key, &validation).unwrap().claims;
    assert_eq!(claims["events"], json!({ EVENT: {} }));
    assert!(claims.get("nonce").is_none(), "never a nonce: {claims}");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert!(exp > iat && exp - iat <= 300, "{claims}");
    claims
}

/// One user signed in in one browser, with one session through `client`.
struct Signed {
    user: UserRecord,
    browser: Uuid,
    cookie: String,
    tokens: Value,
}

async fn signed_through(app: &TestApp, client: &ClientRecord, secret: &str, name: &str) -> Signed {
    let (user, browser, cookie) = signed_in_with_cookie(app, name).await;
    let tokens = code_session(app, client, secret, &user, browser).await;
    Signed { user, browser, cookie, tokens }
}

impl Signed {
    fn access(&self) -> &str {
        self.tokens["access_token"].as_str().unwrap()
    }
}

/// The one token `receiver` got is a logout of `signed` for `client`.
async fn assert_one_logout(app: &TestApp, receiver: &Receiver, client: &ClientRecord, signed: &Signed) {
    let tokens = receiver.expect(1, Duration::from_secs(10)).await;
    let claims = verified(app, &app.url, &tokens[0], client).await;
    assert_eq!(claims["sub"], signed.user.id.to_string());
    assert_eq!(claims["sid"], signed.browser.to_string());
}

async fn session_revoked(app: &TestApp, id: Uuid) -> bool {
    app.sql_i64(&format!("select count(*) from sessions where id = '{id}' and revoked_at is not null"))
        .await
        == 1
}

// ---------------------------------------------------------------- every way a session ends

#[tokio::test]
async fn post_logout_of_the_client_session_sends_one_logout_token() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&app, &receiver.uri).await;
    let s = signed_through(&app, &client, &secret, "alice").await;
    let r = app.client.post(app.at("/logout")).bearer_auth(s.access()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_one_logout(&app, &receiver, &client, &s).await;
    assert!(!session_revoked(&app, s.browser).await, "the browser session stays");
}

#[tokio::test]
async fn logout_all_sends_one_logout_token_per_client() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&app, &receiver.uri).await;
    let s = signed_through(&app, &client, &secret, "alice").await;
    let r = app.client.post(app.at("/logout?all=true")).bearer_auth(s.access()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_one_logout(&app, &receiver, &client, &s).await;
}

#[tokio::test]
async fn ending_the_browser_session_ends_both_apps_and_tells_each_once() {
    let app = TestApp::spawn().await;
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    let (a, a_secret) = rp(&app, &first.uri).await;
    let (b, b_secret) = rp(&app, &second.uri).await;
    let s = signed_through(&app, &a, &a_secret, "alice").await;
    let b_tokens = code_session(&app, &b, &b_secret, &s.user, s.browser).await;
    // A second session of client a from the same browser: still one token.
    code_session(&app, &a, &a_secret, &s.user, s.browser).await;
    let r = app
        .client
        .delete(app.at(&format!("/users/me/sessions/{}", s.browser)))
        .bearer_auth(s.access())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let got_a = first.expect(1, Duration::from_secs(10)).await;
    let got_b = second.expect(1, Duration::from_secs(10)).await;
    assert_eq!(verified(&app, &app.url, &got_a[0], &a).await["sid"], s.browser.to_string());
    assert_eq!(verified(&app, &app.url, &got_b[0], &b).await["sid"], s.browser.to_string());
    // The children ended with it, at once in this process's gate too.
    crate::helpers::assert_unauthorized(app.me(s.access()).await, "Invalid token").await;
    crate::helpers::assert_unauthorized(app.me(b_tokens["access_token"].as_str().unwrap()).await, "Invalid token").await;
}

#[tokio::test]
async fn a_password_change_sends_a_logout_token() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&app, &receiver.uri).await;
    let s = signed_through(&app, &client, &secret, "alice").await;
    let own = app.token("alice").await;
    let r = app
        .client
        .put(app.at("/users/me/password"))
        .bearer_auth(&own)
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_one_logout(&app, &receiver, &client, &s).await;
}

#[tokio::test]
async fn disabling_and_deleting_a_user_send_logout_tokens() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&app, &receiver.uri).await;
    let s = signed_through(&app, &client, &secret, "alice").await;
    let r = app
        .client
        .patch(app.at(&format!("/users/{}", s.user.id)))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_one_logout(&app, &receiver, &client, &s).await;

    let bob = Receiver::start().await;
    let (client, secret) = rp(&app, &bob.uri).await;
    let s = signed_through(&app, &client, &secret, "bob").await;
    let r = app
        .client
        .delete(app.at(&format!("/users/{}", s.user.id)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_one_logout(&app, &bob, &client, &s).await;
}

#[tokio::test]
async fn refresh_token_reuse_sends_a_logout_token() {
    let app = TestApp::spawn_with(&[("WARDEN_REFRESH_REUSE_GRACE", "0")]).await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&app, &receiver.uri).await;
    let s = signed_through(&app, &client, &secret, "alice").await;
    let first = s.tokens["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&app, &client, &secret, first).await.status(), StatusCode::OK);
    assert_eq!(refresh(&app, &client, &secret, first).await.status(), StatusCode::BAD_REQUEST);
    assert_one_logout(&app, &receiver, &client, &s).await;
}

#[tokio::test]
async fn withdrawing_consent_and_deleting_the_client_send_logout_tokens() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&app, &receiver.uri).await;
    let s = signed_through(&app, &client, &secret, "alice").await;
    app.state
        .store
        .put_consent(&ConsentRecord {
            user_id: s.user.id,
            client_id: client.id,
            scopes: vec!["me".into(), "openid".into()],
            granted_at: now(),
        })
        .await
        .unwrap();
    let own = app.token("alice").await;
    let r = app
        .client
        .delete(app.at(&format!("/users/me/consents/{}", client.id)))
        .bearer_auth(&own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_one_logout(&app, &receiver, &client, &s).await;

    // Deleted: the client row goes, its logout is still delivered.
    let other = Receiver::start().await;
    let (client, secret) = rp(&app, &other.uri).await;
    let s = signed_through(&app, &client, &secret, "bob").await;
    let ended = warden::auth::clients::delete(&app.state, client.id, None, None, now()).await.unwrap();
    assert_eq!(ended, 1);
    assert_one_logout(&app, &other, &client, &s).await;
}

#[tokio::test]
async fn signing_out_on_the_hosted_pages_sends_a_logout_token() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&app, &receiver.uri).await;
    let s = signed_through(&app, &client, &secret, "alice").await;
    let browser = manual();
    let page = browser
        .get(app.at("/login"))
        .header("cookie", format!("warden_session={}", s.cookie))
        .send()
        .await
        .unwrap();
    let csrf_cookie = csrf_cookie_of(&page);
    let body = page.text().await.unwrap();
    let csrf = hidden(&body, "csrf_token");
    let r = browser
        .post(app.at("/signout"))
        .header("cookie", format!("warden_session={}; {csrf_cookie}", s.cookie))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_one_logout(&app, &receiver, &client, &s).await;
}

#[tokio::test]
async fn a_client_without_a_backchannel_uri_is_sent_nothing() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&app, &receiver.uri).await;
    let mut quiet = client.clone();
    quiet.backchannel_logout_uri = None;
    let new = NewClient {
        name: "Quiet".into(),
        redirect_uris: vec![REDIRECT.into()],
        ..Default::default()
    };
    let (quiet, quiet_secret) = warden::auth::clients::create(&app.state, new, None, None, now()).await.unwrap();
    let s = signed_through(&app, &client, &secret, "alice").await;
    code_session(&app, &quiet, &quiet_secret.unwrap(), &s.user, s.browser).await;
    warden::auth::sessions::end_session(&app.state, s.browser, now()).await.unwrap();
    assert_one_logout(&app, &receiver, &client, &s).await;
    assert_eq!(app.sql_i64("select count(*) from outbox").await, 1);
}

#[tokio::test]
async fn the_session_cap_ending_a_browser_session_ends_its_apps_and_tells_them() {
    let app = TestApp::spawn_with(&[("WARDEN_MAX_SESSIONS_PER_USER", "2")]).await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&app, &receiver.uri).await;
    // The browser session (oldest) and the client's session from it.
    let s = signed_through(&app, &client, &secret, "alice").await;
    // A third session pushes the browser session out, and its app with it.
    assert_eq!(app.login("alice", PASSWORD).await.status(), StatusCode::OK);
    assert!(session_revoked(&app, s.browser).await);
    assert_one_logout(&app, &receiver, &client, &s).await;
    crate::helpers::assert_unauthorized(app.me(s.access()).await, "Invalid token").await;
}

// ---------------------------------------------------------------- durability

#[tokio::test]
async fn a_receiver_that_is_down_gets_the_token_later_and_a_restart_loses_nothing() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn_in(env.clone(), &[]).await;
    let addr = closed_port().await;
    let (client, secret) = rp(&app, &format!("http://{addr}/backchannel")).await;
    let s = signed_through(&app, &client, &secret, "alice").await;
    let issuer = app.url.clone();
    warden::auth::sessions::end_session(&app.state, s.browser, now()).await.unwrap();
    // Attempts fail (connection refused) and are rescheduled.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let attempts = app.sql_i64("select attempts from outbox").await;
    assert!(attempts >= 1, "tried: {attempts}");
    assert_eq!(app.sql_i64("select count(*) from outbox where done_at is null").await, 1);
    // A restart in between: the row is in the database.
    app.stop().await;
    let receiver = Receiver::on(TcpListener::bind(addr).await.unwrap()).await;
    let again = TestApp::spawn_in(env, &[("WARDEN_ISSUER", &issuer)]).await;
    let tokens = receiver.expect(1, Duration::from_secs(20)).await;
    let claims = verified(&again, &issuer, &tokens[0], &client).await;
    assert_eq!(claims["sid"], s.browser.to_string());
    assert_eq!(again.sql_i64("select count(*) from outbox where done_at is not null and failed = false").await, 1);
}

#[tokio::test]
async fn a_delivery_failing_for_a_day_is_given_up() {
    let app = TestApp::spawn().await;
    let addr = closed_port().await;
    let (client, secret) = rp(&app, &format!("http://{addr}/backchannel")).await;
    let s = signed_through(&app, &client, &secret, "alice").await;
    // Queued a day and a bit ago (as if the client had been down since).
    warden::auth::sessions::end_session(&app.state, s.browser, now()).await.unwrap();
    app.sql("update outbox set created_at = created_at - 90000").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.sql_i64("select count(*) from outbox where done_at is not null").await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "given up in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.sql_i64("select count(*) from outbox where failed = true").await, 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("warden_backchannel_logout_total{result=\"failed\"} 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn two_instances_on_one_database_deliver_each_logout_exactly_once() {
    let env = TestEnv::new().await;
    let one = TestApp::spawn_in(env.clone(), &[]).await;
    let issuer = one.url.clone();
    let two = TestApp::spawn_in(env.clone(), &[("WARDEN_ISSUER", &issuer)]).await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&one, &receiver.uri).await;
    let mut browsers = Vec::new();
    for i in 0..12 {
        let s = signed_through(&one, &client, &secret, &format!("user{i}")).await;
        browsers.push(s.browser);
    }
    // Ended on both instances, each waking its own worker.
    for (i, browser) in browsers.iter().enumerate() {
        let app = if i % 2 == 0 { &one } else { &two };
        warden::auth::sessions::end_session(&app.state, *browser, now()).await.unwrap();
    }
    let tokens = receiver.expect(browsers.len(), Duration::from_secs(15)).await;
    let mut sids: Vec<String> = Vec::new();
    for t in &tokens {
        sids.push(verified(&one, &issuer, t, &client).await["sid"].as_str().unwrap().to_owned());
    }
    sids.sort();
    sids.dedup();
    assert_eq!(sids.len(), browsers.len(), "each browser session's logout once");
}

#[tokio::test]
async fn a_refresh_race_across_two_instances_signs_nobody_out() {
    let env = TestEnv::new().await;
    let one = TestApp::spawn_in(env.clone(), &[]).await;
    let issuer = one.url.clone();
    let two = TestApp::spawn_in(env.clone(), &[("WARDEN_ISSUER", &issuer)]).await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&one, &receiver.uri).await;
    let s = signed_through(&one, &client, &secret, "alice").await;
    let token = s.tokens["refresh_token"].as_str().unwrap().to_owned();
    let apps = [&one, &two];
    let answers = futures_util::future::join_all((0..50).map(|i| {
        let app = apps[i % 2];
        let (client, secret, token) = (&client, &secret, &token);
        async move {
            let r = refresh(app, client, secret, token).await;
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            (status, body)
        }
    }))
    .await;
    let mut successors: Vec<String> = Vec::new();
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        successors.push(body["refresh_token"].as_str().unwrap().to_owned());
    }
    successors.dedup();
    assert_eq!(successors.len(), 1, "the grace window answers with the same successor");
    let session = claims_sid(answers[0].1["access_token"].as_str().unwrap());
    assert!(!session_revoked(&one, session).await, "the session stays live");
    let next = refresh(&two, &client, &secret, &successors[0]).await;
    assert_eq!(next.status(), StatusCode::OK);
    receiver.expect(0, Duration::from_secs(0)).await;
    assert_eq!(one.sql_i64("select count(*) from outbox").await, 0);
}

fn claims_sid(access: &str) -> Uuid {
    Uuid::parse_str(segment(access, 1)["sid"].as_str().unwrap()).unwrap()
}

// ---------------------------------------------------------------- RP-initiated logout

fn manual() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn csrf_cookie_of(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("warden_csrf="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .expect("a pre-session cookie")
}

/// An id token as warden signs them (the RS256 id-token key), for the
/// hint; `exp` in the past when `expired`.
fn id_token(app: &TestApp, client: &ClientRecord, s: &Signed, expired: bool) -> String {
    let ring = app.state.tokens.keys();
    let key = ring.signing_key(Algorithm::RS256).expect("the id-token key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".into());
    let t = now();
    let exp = if expired { t - 3600 } else { t + 300 };
    let claims = json!({
        "iss": app.url, "sub": s.user.id.to_string(), "aud": client.id.to_string(),
        "iat": t - 7200, "exp": exp, "sid": s.browser.to_string(),
    });
    key.sign(&header, &claims).unwrap()
}

fn end_path(pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    format!("/session/end?{}", q.finish())
}

#[tokio::test]
async fn rp_initiated_logout_with_a_hint_ends_the_browser_session_at_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&app, &receiver.uri).await;
    let s = signed_through(&app, &client, &secret, "alice").await;
    // Expired hints are fine (§2).
    let hint = id_token(&app, &client, &s, true);
    let r = manual()
        .get(app.at(&end_path(&[
            ("id_token_hint", &hint),
            ("post_logout_redirect_uri", POST_LOGOUT),
            ("state", "xyz 1"),
        ])))
        .header("cookie", format!("warden_session={}", s.cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "https://app.example.com/bye?state=xyz+1");
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("warden_session=;")));
    assert!(session_revoked(&app, s.browser).await);
    assert_one_logout(&app, &receiver, &client, &s).await;
}

#[tokio::test]
async fn rp_initiated_logout_without_a_hint_asks_first() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&app, &receiver.uri).await;
    let s = signed_through(&app, &client, &secret, "alice").await;
    let browser = manual();
    let id = client.id.to_string();
    let path = end_path(&[("client_id", &id), ("post_logout_redirect_uri", POST_LOGOUT), ("state", "s1")]);
    let page = browser
        .get(app.at(&path))
        .header("cookie", format!("warden_session={}", s.cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    let csrf_cookie = csrf_cookie_of(&page);
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign out of warden?"), "{html}");
    assert!(!html.contains("<script"));
    assert!(!session_revoked(&app, s.browser).await, "nothing ended before the answer");
    let csrf = hidden(&html, "csrf_token");
    let form = [
        ("confirm", "1"),
        ("client_id", id.as_str()),
        ("post_logout_redirect_uri", POST_LOGOUT),
        ("state", "s1"),
    ];
    // Without the CSRF token: refused, nothing ends.
    let r = browser
        .post(app.at("/session/end"))
        .header("cookie", format!("warden_session={}; {csrf_cookie}", s.cookie))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!session_revoked(&app, s.browser).await);
    let mut with_csrf = form.to_vec();
    with_csrf.push(("csrf_token", &csrf));
    let r = browser
        .post(app.at("/session/end"))
        .header("cookie", format!("warden_session={}; {csrf_cookie}", s.cookie))
        .form(&with_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "https://app.example.com/bye?state=s1");
    assert!(session_revoked(&app, s.browser).await);
    assert_one_logout(&app, &receiver, &client, &s).await;
}

#[tokio::test]
async fn rp_initiated_logout_refuses_bad_requests_with_a_page_never_a_redirect() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (client, secret) = rp(&app, &receiver.uri).await;
    let (other, _) = rp(&app, &receiver.uri).await;
    let s = signed_through(&app, &client, &secret, "alice").await;
    let hint = id_token(&app, &client, &s, false);
    let id = client.id.to_string();
    let other_id = other.id.to_string();
    let mut forged = hint.clone();
    forged.pop();
    forged.push(if hint.ends_with('A') { 'B' } else { 'A' });
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("client_id", &id), ("post_logout_redirect_uri", "https://evil.example/")],
        vec![("post_logout_redirect_uri", POST_LOGOUT)],
        vec![("id_token_hint", &hint), ("client_id", &other_id)],
        vec![("id_token_hint", &forged), ("post_logout_redirect_uri", POST_LOGOUT)],
        vec![("id_token_hint", s.access()), ("post_logout_redirect_uri", POST_LOGOUT)],
        vec![("client_id", "not-a-client")],
    ];
    for case in cases {
        let r = manual()
            .get(app.at(&end_path(&case)))
            .header("cookie", format!("warden_session={}", s.cookie))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{case:?}");
        assert!(r.headers().get("location").is_none());
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    }
    assert!(!session_revoked(&app, s.browser).await);
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn rp_initiated_logout_without_a_session_goes_straight_on() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (client, _) = rp(&app, &receiver.uri).await;
    let id = client.id.to_string();
    let r = manual()
        .get(app.at(&end_path(&[("client_id", &id), ("post_logout_redirect_uri", POST_LOGOUT), ("state", "q")])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "https://app.example.com/bye?state=q");
    let r = manual().get(app.at("/session/end")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login?signed_out=1");
}

#[tokio::test]
async fn a_backchannel_uri_must_be_https_or_loopback_http() {
    let app = TestApp::spawn().await;
    for (uri, ok) in [
        ("https://rp.example/bc", true),
        ("http://127.0.0.1:9/bc", true),
        ("http://[::1]:9/bc", true),
        ("http://rp.example/bc", false),
        ("com.example.app:/bc", false),
        ("https://rp.example/bc#frag", false),
    ] {
        let new = NewClient {
            name: "x".into(),
            redirect_uris: vec![REDIRECT.into()],
            backchannel_logout_uri: Some(uri.into()),
            ..Default::default()
        };
        let made = warden::auth::clients::create(&app.state, new, None, None, now()).await;
        assert_eq!(made.is_ok(), ok, "{uri}");
    }
}
