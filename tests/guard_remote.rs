//! `warden_guard::Remote` against a real warden: keys fetched from its
//! metadata and JWKS, a rotation picked up without a restart, unknown-`kid`
//! fetches rate-limited (counted by a small proxy in front of warden),
//! warden down (the last keys and revocations stay), and the revocation
//! feed followed with each kind of credentials.

#[path = "support/warden.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use reqwest::Client;
use support::{FEED_ROLE_TOML, PASSWORD, Warden, decode_segment, with_kid};
use tokio::net::TcpListener;
use warden_guard::{Algorithm, AuthError, Claims, Credentials, Remote, TokenCheck, Verifier};

/// A proxy in front of warden that counts the JWKS requests through it,
/// and can be pointed at another warden (a restart on another port).
struct CountingProxy {
    url: String,
    jwks: Arc<AtomicU64>,
    target: Arc<std::sync::Mutex<String>>,
}

#[derive(Clone)]
struct ProxyState {
    target: Arc<std::sync::Mutex<String>>,
    http: Client,
    jwks: Arc<AtomicU64>,
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    if request.uri().path() == "/.well-known/jwks.json" {
        state.jwks.fetch_add(1, Ordering::SeqCst);
    }
    let target = state.target.lock().unwrap().clone();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let mut outgoing = state
        .http
        .request(parts.method, format!("{target}{path}"))
        .body(body);
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST {
            outgoing = outgoing.header(name, value);
        }
    }
    match outgoing.send().await {
        Ok(r) => {
            let status = r.status();
            let content_type = r.headers().get(axum::http::header::CONTENT_TYPE).cloned();
            let mut response = (status, r.bytes().await.unwrap_or_default()).into_response();
            if let Some(ct) = content_type {
                response
                    .headers_mut()
                    .insert(axum::http::header::CONTENT_TYPE, ct);
            }
            response
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

impl CountingProxy {
    /// A proxy whose URL is to be warden's issuer; [`CountingProxy::point_at`]
    /// sets where it forwards to.
    async fn start() -> (Self, Arc<std::sync::Mutex<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = Arc::new(std::sync::Mutex::new(String::new()));
        let jwks = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(ProxyState {
                target: target.clone(),
                http: Client::new(),
                jwks: jwks.clone(),
            });
        tokio::spawn(async move { axum::serve(listener, app).await });
        (
            Self {
                url,
                jwks,
                target: target.clone(),
            },
            target,
        )
    }

    fn point_at(&self, url: &str) {
        *self.target.lock().unwrap() = url.to_owned();
    }

    fn jwks_fetches(&self) -> u64 {
        self.jwks.load(Ordering::SeqCst)
    }
}

/// warden behind a counting proxy whose URL is warden's issuer, so the
/// metadata (and its `jwks_uri`) sends the guard through the proxy.
async fn warden_behind_proxy() -> (Warden, CountingProxy) {
    let (proxy, _) = CountingProxy::start().await;
    let warden = Warden::start(Some(&proxy.url), Some(FEED_ROLE_TOML)).await;
    proxy.point_at(&warden.url);
    (warden, proxy)
}

fn kid_of(token: &str) -> String {
    decode_segment(token.split('.').next().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until `verifier` refuses `token` (as it does once a revocation
/// has arrived); how long that took.
async fn until_refused(verifier: &Verifier, token: &str, within: Duration) -> Duration {
    let start = Instant::now();
    while verifier.verify(token).is_ok() {
        assert!(
            start.elapsed() < within,
            "still accepted after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_a_restart() {
    let warden = Warden::spawn().await;
    let http = Client::new();
    let alice = warden.sign_up(&http, "alice").await;
    // No periodic refresh during the test: only the unknown kid can fetch.
    let guard = Remote::builder(&warden.url, Algorithm::EdDSA)
        .key_refresh(Duration::from_secs(3600))
        .start()
        .await
        .expect("guard");
    let verifier = guard.verifier();
    assert_eq!(verifier.verify(&alice.token).unwrap().sub, alice.id);
    assert_eq!(guard.key_fetches(), 1);

    let new_kid = warden.rotate_keys().await;
    let fresh = warden.login(&http, "alice").await;
    assert_eq!(kid_of(&fresh), new_kid, "warden signs with the new key");
    assert_ne!(kid_of(&fresh), kid_of(&alice.token));

    // The first request with the new kid waits for the fetch it causes and
    // is then verified against the new keys.
    let claims = verifier.verify_request(&fresh).await.expect("new key");
    assert_eq!(claims.sub, alice.id);
    assert_eq!(guard.key_fetches(), 2);
    assert_eq!(verifier.keys().len(), 2, "the retired key stays published");
    assert!(
        verifier.verify(&alice.token).is_ok(),
        "old tokens still verify"
    );
}

#[tokio::test]
async fn the_periodic_refresh_picks_up_a_new_key_before_a_token_asks() {
    let warden = Warden::spawn().await;
    let http = Client::new();
    warden.register(&http, "alice").await;
    let guard = Remote::builder(&warden.url, Algorithm::EdDSA)
        .key_refresh(Duration::from_millis(100))
        .start()
        .await
        .expect("guard");
    let verifier = guard.verifier();
    warden.rotate_keys().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while verifier.keys().len() < 2 {
        assert!(Instant::now() < deadline, "the refresh never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // `verify` does not wait for any fetch: the key is simply there.
    let fresh = warden.login(&http, "alice").await;
    assert!(verifier.verify(&fresh).is_ok());
}

#[tokio::test]
async fn forged_kids_cannot_make_the_guard_hammer_warden() {
    let (warden, proxy) = warden_behind_proxy().await;
    let http = Client::new();
    let alice = warden.sign_up(&http, "alice").await;
    let interval = Duration::from_secs(1);
    let guard = Remote::builder(&proxy.url, Algorithm::EdDSA)
        .key_refresh(Duration::from_secs(3600))
        .unknown_kid_interval(interval)
        .start()
        .await
        .expect("guard");
    let verifier = guard.verifier();
    assert_eq!(proxy.jwks_fetches(), 1, "one fetch at start");

    // 2.5 s of tokens with made-up kids, 20 at a time.
    let start = Instant::now();
    let mut sent = 0u64;
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(2500) {
        let batch: Vec<_> = (0..20)
            .map(|_| {
                n += 1;
                let forged = with_kid(&alice.token, &format!("forged-{n}"));
                let verifier = verifier.clone();
                tokio::spawn(async move { verifier.verify_request(&forged).await })
            })
            .collect();
        for result in batch {
            assert_eq!(result.await.unwrap().unwrap_err(), AuthError::Invalid);
            sent += 1;
        }
    }
    let elapsed = start.elapsed();
    let fetches = proxy.jwks_fetches();
    println!(
        "{sent} tokens with forged kids in {elapsed:?} caused {} JWKS fetches (interval {interval:?})",
        fetches - 1
    );
    // One at t = 0, then at most one per interval.
    let allowed = 1 + 1 + (elapsed.as_secs_f64() / interval.as_secs_f64()).floor() as u64;
    assert!(fetches >= 2, "an unknown kid does cause a fetch");
    assert!(
        fetches <= allowed,
        "{fetches} fetches, at most {allowed} allowed"
    );
    assert_eq!(guard.key_fetches(), fetches);
    // The real token never waited for any of it.
    assert!(verifier.verify(&alice.token).is_ok());
}

#[tokio::test]
async fn with_warden_down_the_last_keys_and_revocations_stay() {
    let mut warden = Warden::start(None, Some(FEED_ROLE_TOML)).await;
    let http = Client::new();
    warden.register(&http, "svc").await;
    warden.set_roles("svc", &["resource_server"]).await;
    let alice = warden.sign_up(&http, "alice").await;
    let bob = warden.sign_up(&http, "bob").await;
    let guard = Remote::builder(&warden.url, Algorithm::EdDSA)
        .key_refresh(Duration::from_millis(50))
        .unknown_kid_interval(Duration::from_millis(50))
        .poll_wait(Duration::from_secs(1))
        .revocations(Credentials::password("svc", PASSWORD))
        .start()
        .await
        .expect("guard");
    let verifier = guard.verifier();
    warden.logout(&http, &bob.token).await;
    until_refused(&verifier, &bob.token, Duration::from_secs(3)).await;

    warden.stop().await;
    let fetches = guard.key_fetches();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        guard.key_fetches() >= fetches + 3,
        "the refresh went on trying: {} fetches",
        guard.key_fetches() - fetches
    );
    assert_eq!(verifier.verify(&alice.token).unwrap().sub, alice.id);
    assert_eq!(verifier.verify(&bob.token), Err(AuthError::Invalid));
    let forged = with_kid(&alice.token, "forged");
    let began = Instant::now();
    assert_eq!(
        verifier.verify_request(&forged).await,
        Err(AuthError::Invalid)
    );
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "the wait is bounded"
    );
    assert_eq!(verifier.verify(&alice.token).unwrap().sub, alice.id);
}

#[tokio::test]
async fn start_fails_with_one_line_that_names_the_url() {
    // Nothing listens here.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let down = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let e = Remote::builder(&down, Algorithm::EdDSA)
        .start()
        .await
        .unwrap_err()
        .to_string();
    println!("{e}");
    assert!(
        e.contains(&format!("{down}/.well-known/oauth-authorization-server")),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");

    let warden = Warden::start(Some("http://auth.example.test"), Some(FEED_ROLE_TOML)).await;
    let e = Remote::builder(&warden.url, Algorithm::EdDSA)
        .start()
        .await
        .unwrap_err()
        .to_string();
    println!("{e}");
    assert!(
        e.contains("http://auth.example.test") && e.contains("RFC 8414"),
        "{e}"
    );

    let warden = Warden::start(None, Some(FEED_ROLE_TOML)).await;
    let e = Remote::builder(&warden.url, Algorithm::ES256)
        .start()
        .await
        .unwrap_err()
        .to_string();
    println!("{e}");
    assert!(
        e.contains("/.well-known/jwks.json") && e.contains("ES256"),
        "{e}"
    );

    let http = Client::new();
    warden.register(&http, "svc").await;
    let e = Remote::builder(&warden.url, Algorithm::EdDSA)
        .revocations(Credentials::password("svc", "not the password"))
        .start()
        .await
        .unwrap_err()
        .to_string();
    println!("{e}");
    assert!(
        e.contains("/token") && !e.contains("not the password"),
        "{e}"
    );
    // An account without tokens:introspect cannot log in for it (the
    // scope is not granted) or, with a token, is refused by the feed.
    let user_token = warden.login(&http, "svc").await;
    let e = Remote::builder(&warden.url, Algorithm::EdDSA)
        .revocations(Credentials::bearer(user_token))
        .start()
        .await
        .unwrap_err()
        .to_string();
    println!("{e}");
    assert!(
        e.contains("tokens:introspect") && e.contains("/token/revocations"),
        "{e}"
    );
}

#[tokio::test]
async fn the_background_tasks_end_with_the_guard() {
    let (_warden, proxy) = warden_behind_proxy().await;
    let guard = Remote::builder(&proxy.url, Algorithm::EdDSA)
        .key_refresh(Duration::from_millis(20))
        .start()
        .await
        .expect("guard");
    let verifier = guard.verifier();
    drop(guard);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        proxy.jwks_fetches() > 3,
        "the verifier alone keeps the refresh running"
    );
    drop(verifier);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = proxy.jwks_fetches();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(proxy.jwks_fetches(), after, "no fetch once both are gone");
}

/// Refuses the tokens of one username: a service's own rule.
struct NoMallory;

impl TokenCheck for NoMallory {
    fn is_live(&self, claims: &Claims) -> bool {
        claims.username != "mallory"
    }
}

#[tokio::test]
async fn revocations_arrive_with_a_bearer_token_and_compose_with_a_check_of_your_own() {
    let warden = Warden::start(None, Some(FEED_ROLE_TOML)).await;
    let http = Client::new();
    warden.register(&http, "svc").await;
    warden.set_roles("svc", &["resource_server"]).await;
    let feed_token = warden.login(&http, "svc").await;
    let alice = warden.sign_up(&http, "alice").await;
    let mallory = warden.sign_up(&http, "mallory").await;
    let guard = Remote::builder(&warden.url, Algorithm::EdDSA)
        .revocations(Credentials::bearer(feed_token))
        .check(Arc::new(NoMallory))
        .start()
        .await
        .expect("guard");
    let verifier = guard.verifier();
    assert!(verifier.verify(&alice.token).is_ok());
    assert_eq!(verifier.verify(&mallory.token), Err(AuthError::Invalid));
    warden.logout(&http, &alice.token).await;
    let delay = until_refused(&verifier, &alice.token, Duration::from_secs(3)).await;
    println!("logout refused by the guard after {delay:?}");
    let again = warden.login(&http, "alice").await;
    assert!(verifier.verify(&again).is_ok(), "a new session is fine");
}

#[tokio::test]
async fn the_feed_account_renews_its_token_by_refresh_and_keeps_following() {
    // Access tokens of 4 s: the guard renews its own at 3 s.
    let toml = format!("access_token_ttl = 4\n{FEED_ROLE_TOML}");
    let warden = Warden::start(None, Some(&toml)).await;
    let http = Client::new();
    let svc = warden.register(&http, "svc").await;
    warden.set_roles("svc", &["resource_server"]).await;
    let guard = Remote::builder(&warden.url, Algorithm::EdDSA)
        .poll_wait(Duration::from_secs(1))
        .revocations(Credentials::password("svc", PASSWORD))
        .start()
        .await
        .expect("guard");
    let verifier = guard.verifier();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let bob = warden.sign_up(&http, "bob").await;
    warden.logout(&http, &bob.token).await;
    let delay = until_refused(&verifier, &bob.token, Duration::from_secs(3)).await;
    println!("after two renewals, a logout was refused after {delay:?}");
    // Renewed by refresh-token rotation: still the one session of its
    // first login, not a new login each time.
    let sessions = warden
        .state()
        .store
        .user_sessions(svc.parse().unwrap(), warden::auth::tokens::now(), None, 10)
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
}

#[tokio::test]
async fn the_guard_follows_warden_across_a_restart() {
    let (mut first, proxy) = warden_behind_proxy().await;
    let http = Client::new();
    first.register(&http, "svc").await;
    first.set_roles("svc", &["resource_server"]).await;
    let bob = first.sign_up(&http, "bob").await;
    let carol = first.sign_up(&http, "carol").await;
    let guard = Remote::builder(&proxy.url, Algorithm::EdDSA)
        .poll_wait(Duration::from_secs(1))
        .revocations(Credentials::password("svc", PASSWORD))
        .start()
        .await
        .expect("guard");
    let verifier = guard.verifier();
    first.logout(&http, &bob.token).await;
    until_refused(&verifier, &bob.token, Duration::from_secs(3)).await;

    // Down for a while, then back (a new process: another boot id, so the
    // guard's cursor is foreign to it) on the same database.
    first.stop().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = Warden::start_in(first.dir.clone(), Some(&proxy.url), Some(FEED_ROLE_TOML)).await;
    proxy.point_at(&second.url);
    assert_eq!(verifier.verify(&bob.token), Err(AuthError::Invalid), "kept");
    assert!(verifier.verify(&carol.token).is_ok());

    let logged_out = Instant::now();
    second.logout(&http, &carol.token).await;
    until_refused(&verifier, &carol.token, Duration::from_secs(10)).await;
    println!(
        "after a restart, a logout was refused {:?} after it (reconnect backoff included)",
        logged_out.elapsed()
    );
    assert_eq!(
        verifier.verify(&bob.token),
        Err(AuthError::Invalid),
        "still"
    );
}
