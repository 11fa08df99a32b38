//! In-process tests of the verifier and the extractors (`oneshot`, no
//! network): the server's integration tests cover the same code over HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::FromRef;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use tower::ServiceExt;

use crate::{
    Algorithm, AuthError, Caller, Claims, ClientClaims, DecodingKey, KeySet, RequireScope,
    TokenCheck, Verifier,
};

crate::scope!(NotesRead = "notes:read");
crate::scope!(NotesWrite = "notes:write");

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const ISSUER: &str = "http://issuer.test";
const NOW: i64 = 1_800_000_000;

fn claims(exp: i64) -> serde_json::Value {
    json!({"iss": ISSUER, "sub": "u1", "exp": exp, "iat": NOW - 10, "nbf": NOW - 10,
           "jti": "j1", "sid": "s1", "scope": "me notes:read", "roles": ["user"], "username": "alice"})
}

fn sign(claims: &serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.typ = Some("at+jwt".into());
    h.kid = Some("k1".into());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(SECRET).unwrap()).unwrap()
}

fn verifier(clock: Arc<AtomicI64>, check: Option<Arc<dyn TokenCheck>>) -> Verifier {
    let mut keys = KeySet::new();
    keys.insert("k1", DecodingKey::from_secret(SECRET).unwrap());
    let mut b = Verifier::builder(Algorithm::HS256, keys, ISSUER)
        .clock(Arc::new(move || clock.load(Ordering::Relaxed)));
    if let Some(c) = check {
        b = b.check(c);
    }
    b.build()
}

#[test]
fn exp_is_checked_against_the_injected_clock_without_leeway() {
    let clock = Arc::new(AtomicI64::new(NOW));
    let v = verifier(clock.clone(), None);
    let token = sign(&claims(NOW + 60));
    assert_eq!(v.verify(&token).unwrap().username, "alice");
    clock.store(NOW + 59, Ordering::Relaxed);
    assert!(v.verify(&token).is_ok());
    clock.store(NOW + 60, Ordering::Relaxed);
    assert_eq!(v.verify(&token), Err(AuthError::Expired));
}

#[test]
fn nbf_in_the_future_is_invalid() {
    let clock = Arc::new(AtomicI64::new(NOW));
    let v = verifier(clock, None);
    let mut c = claims(NOW + 60);
    c["nbf"] = json!(NOW + 1);
    assert_eq!(v.verify(&sign(&c)), Err(AuthError::Invalid));
}

#[test]
fn the_check_hook_can_revoke() {
    struct Nobody;
    impl TokenCheck for Nobody {
        fn is_live(&self, _: &Claims) -> bool {
            false
        }
    }
    let v = verifier(Arc::new(AtomicI64::new(NOW)), Some(Arc::new(Nobody)));
    assert_eq!(v.verify(&sign(&claims(NOW + 60))), Err(AuthError::Invalid));
}

#[test]
fn replaced_keys_take_effect_at_once() {
    let v = verifier(Arc::new(AtomicI64::new(NOW)), None);
    let token = sign(&claims(NOW + 60));
    assert!(v.verify(&token).is_ok());
    v.replace_keys(KeySet::new());
    assert_eq!(v.verify(&token), Err(AuthError::Invalid));
}

#[test]
fn scopes_are_whole_words() {
    let c: Claims = serde_json::from_value(claims(NOW)).unwrap();
    assert!(c.has_scope("me") && c.has_scope("notes:read"));
    assert!(!c.has_scope("notes") && !c.has_scope("m"));
    let e = c.require_scope("notes:write").unwrap_err();
    assert_eq!(e.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        e.challenge().to_str().unwrap(),
        r#"Bearer error="insufficient_scope", scope="notes:write""#
    );
}

#[derive(Clone, FromRef)]
struct TestState {
    verifier: Verifier,
}

fn app() -> Router {
    async fn required(c: Claims) -> String {
        c.username
    }
    async fn optional(c: Option<Claims>) -> String {
        c.map_or_else(|| "anonymous".to_owned(), |c| c.username)
    }
    async fn read(c: RequireScope<NotesRead>) -> String {
        c.username.clone()
    }
    async fn write(c: RequireScope<(NotesRead, NotesWrite)>) -> String {
        c.into_claims().username
    }
    async fn client_only(c: ClientClaims) -> String {
        format!("client {}", c.client_id)
    }
    async fn optional_client(c: Option<ClientClaims>) -> String {
        c.map_or_else(|| "anonymous".to_owned(), |c| c.client_id)
    }
    async fn either(c: Caller) -> String {
        match &c {
            Caller::User(u) => format!("user {} via {:?}", u.username, c.client_id()),
            Caller::Client(k) => format!("client {}", k.client_id),
        }
    }
    async fn client_read(c: RequireScope<NotesRead, ClientClaims>) -> String {
        c.into_inner().client_id
    }
    async fn either_read(c: RequireScope<NotesRead, Caller>) -> String {
        c.sub().to_owned()
    }
    Router::<TestState>::new()
        .route("/client", get(client_only))
        .route("/optional-client", get(optional_client))
        .route("/either", get(either))
        .route("/client-read", get(client_read))
        .route("/either-read", get(either_read))
        .route("/read", get(read))
        .route("/write", get(write))
        .route("/required", get(required))
        .route("/optional", get(optional))
        .with_state(TestState {
            verifier: verifier(Arc::new(AtomicI64::new(NOW)), None),
        })
}

async fn call(path: &str, auth: Option<&str>) -> (StatusCode, String, Option<String>) {
    let mut req = Request::get(path);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let res = app()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap(), challenge)
}

#[tokio::test]
async fn required_claims_reject_a_missing_token_with_401() {
    let (status, body, challenge) = call("/required", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, r#"{"detail":"Not authenticated"}"#);
    assert_eq!(challenge.as_deref(), Some("Bearer"));
}

#[tokio::test]
async fn required_claims_accept_a_valid_token() {
    let token = sign(&claims(NOW + 60));
    let (status, body, _) = call("/required", Some(&format!("Bearer {token}"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));
}

#[tokio::test]
async fn optional_claims_are_none_without_a_header() {
    let (status, body, _) = call("/optional", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
}

#[tokio::test]
async fn optional_claims_still_reject_a_bad_token() {
    let (status, body, challenge) = call("/optional", Some("Bearer not.a.token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, r#"{"detail":"Invalid token"}"#);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer error="invalid_token""#)
    );
}

#[tokio::test]
async fn optional_claims_accept_a_valid_token() {
    let token = sign(&claims(NOW + 60));
    let (_, body, _) = call("/optional", Some(&format!("Bearer {token}"))).await;
    assert_eq!(body, "alice");
}

#[tokio::test]
async fn require_scope_lets_a_token_with_the_scope_through() {
    let token = sign(&claims(NOW + 60));
    let (status, body, _) = call("/read", Some(&format!("Bearer {token}"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));
}

#[tokio::test]
async fn require_scope_answers_403_naming_every_needed_scope() {
    let token = sign(&claims(NOW + 60));
    let (status, body, challenge) = call("/write", Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, r#"{"detail":"Not enough permissions"}"#);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer error="insufficient_scope", scope="notes:read notes:write""#)
    );
}

#[tokio::test]
async fn require_scope_still_answers_401_without_a_token() {
    let (status, _, challenge) = call("/write", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Bearer"));
}

fn verifier_with_cache(capacity: usize, check: Option<Arc<dyn TokenCheck>>) -> Verifier {
    let mut keys = KeySet::new();
    keys.insert("k1", DecodingKey::from_secret(SECRET).unwrap());
    let mut b = Verifier::builder(Algorithm::HS256, keys, ISSUER)
        .clock(Arc::new(|| NOW))
        .cache_capacity(capacity);
    if let Some(c) = check {
        b = b.check(c);
    }
    b.build()
}

#[test]
fn a_verified_token_is_served_from_the_cache() {
    let v = verifier_with_cache(100, None);
    let token = sign(&claims(NOW + 60));
    let first = v.verify_shared(&token).unwrap();
    let second = v.verify_shared(&token).unwrap();
    assert!(
        Arc::ptr_eq(&first, &second),
        "second use was verified again"
    );

    let uncached = verifier_with_cache(0, None);
    let first = uncached.verify_shared(&token).unwrap();
    let second = uncached.verify_shared(&token).unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(first, second);
}

#[test]
fn a_cached_token_still_goes_through_the_check_hook_every_time() {
    struct Switch(std::sync::atomic::AtomicBool);
    impl TokenCheck for Switch {
        fn is_live(&self, _: &Claims) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }
    let switch = Arc::new(Switch(true.into()));
    let v = verifier_with_cache(100, Some(switch.clone()));
    let token = sign(&claims(NOW + 60));
    assert!(v.verify(&token).is_ok());
    switch.0.store(false, Ordering::Relaxed);
    assert_eq!(v.verify(&token), Err(AuthError::Invalid));
    switch.0.store(true, Ordering::Relaxed);
    assert!(v.verify(&token).is_ok());
}

#[test]
fn only_the_exact_token_bytes_hit_the_cache() {
    let v = verifier_with_cache(100, None);
    let token = sign(&claims(NOW + 60));
    assert!(v.verify(&token).is_ok());
    // Same header and payload, one signature character changed.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(v.verify(&tampered), Err(AuthError::Invalid));
    // Same claims, re-encoded with the payload's whitespace changed.
    let (head, rest) = token.split_once('.').unwrap();
    let (_, sig) = rest.rsplit_once('.').unwrap();
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let spaced = engine.encode(format!(" {}", claims(NOW + 60)));
    assert_eq!(
        v.verify(&format!("{head}.{spaced}.{sig}")),
        Err(AuthError::Invalid)
    );
}

#[test]
fn replacing_the_keys_forgets_cached_tokens() {
    let v = verifier_with_cache(100, None);
    let token = sign(&claims(NOW + 60));
    assert!(v.verify(&token).is_ok());
    let mut other = KeySet::new();
    other.insert(
        "k2",
        DecodingKey::from_secret(b"another secret, another secret!!").unwrap(),
    );
    v.replace_keys(other);
    assert_eq!(v.verify(&token), Err(AuthError::Invalid));
}

#[test]
fn the_cache_stays_within_its_capacity() {
    let v = verifier_with_cache(64, None);
    for i in 0..2_000 {
        let mut c = claims(NOW + 60);
        c["jti"] = json!(format!("j{i}"));
        assert!(v.verify(&sign(&c)).is_ok());
    }
    let cached = v.cached_tokens();
    assert!(cached > 0 && cached <= 64, "{cached} tokens cached");
}

/// A client's own token (`client_credentials`): no sid, roles or username.
fn client_claims(scope: &str) -> serde_json::Value {
    json!({"iss": ISSUER, "sub": "c1", "client_id": "c1", "exp": NOW + 60, "iat": NOW - 10,
           "nbf": NOW - 10, "jti": "j2", "scope": scope})
}

fn bearer(claims: &serde_json::Value) -> String {
    format!("Bearer {}", sign(claims))
}

#[tokio::test]
async fn a_client_token_is_not_a_user() {
    let client = bearer(&client_claims("notes:read"));
    for path in ["/required", "/optional", "/read"] {
        let (status, body, challenge) = call(path, Some(&client)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body, r#"{"detail":"Invalid token"}"#);
        assert_eq!(
            challenge.as_deref(),
            Some(r#"Bearer error="invalid_token""#)
        );
    }
}

#[tokio::test]
async fn a_user_token_is_not_a_client() {
    let user = bearer(&claims(NOW + 60));
    for path in ["/client", "/optional-client", "/client-read"] {
        let (status, body, _) = call(path, Some(&user)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body, r#"{"detail":"Invalid token"}"#);
    }
    let (status, body, _) = call("/optional-client", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
    let (status, _, challenge) = call("/client", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Bearer"));
}

#[tokio::test]
async fn client_extractors_take_a_client_token_and_check_its_scopes() {
    let client = bearer(&client_claims("notes:read"));
    let (status, body, _) = call("/client", Some(&client)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "client c1"));
    let (status, body, _) = call("/client-read", Some(&client)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "c1"));
    let (status, body, _) = call("/either-read", Some(&client)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "c1"));

    let other = bearer(&client_claims("notes:write"));
    for path in ["/client-read", "/either-read"] {
        let (status, _, challenge) = call(path, Some(&other)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(
            challenge.as_deref(),
            Some(r#"Bearer error="insufficient_scope", scope="notes:read""#)
        );
    }
}

#[tokio::test]
async fn caller_takes_either_kind_and_names_the_client() {
    let (_, body, _) = call("/either", Some(&bearer(&client_claims("x")))).await;
    assert_eq!(body, "client c1");
    let (_, body, _) = call("/either", Some(&bearer(&claims(NOW + 60)))).await;
    assert_eq!(body, "user alice via None");
    let mut through = claims(NOW + 60);
    through["client_id"] = json!("app7");
    let (_, body, _) = call("/either", Some(&bearer(&through))).await;
    assert_eq!(body, r#"user alice via Some("app7")"#);
    // A user's token through a client is still a user's token.
    let (status, body, _) = call("/required", Some(&bearer(&through))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));
    let (status, body, _) = call("/either-read", Some(&bearer(&through))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "u1"));
}

#[test]
fn a_token_that_is_neither_kind_is_invalid() {
    let v = verifier(Arc::new(AtomicI64::new(NOW)), None);
    // A client token whose sub is not its client.
    let mut c = client_claims("x");
    c["sub"] = json!("u1");
    assert_eq!(v.verify_caller(&sign(&c)), Err(AuthError::Invalid));
    // No client_id at all.
    let mut c = client_claims("x");
    c.as_object_mut().unwrap().remove("client_id");
    assert_eq!(v.verify_caller(&sign(&c)), Err(AuthError::Invalid));
    // Half a user token: a session but no username.
    let mut c = client_claims("x");
    c["sid"] = json!("s1");
    assert_eq!(v.verify_caller(&sign(&c)), Err(AuthError::Invalid));
    let mut u = claims(NOW + 60);
    u.as_object_mut().unwrap().remove("username");
    assert_eq!(v.verify_caller(&sign(&u)), Err(AuthError::Invalid));
    // An expired client token is expired.
    let mut c = client_claims("x");
    c["exp"] = json!(NOW);
    assert_eq!(v.verify_caller(&sign(&c)), Err(AuthError::Expired));
}

#[test]
fn the_check_hook_sees_client_tokens_through_its_own_method() {
    struct NoClients;
    impl TokenCheck for NoClients {
        fn is_live(&self, _: &Claims) -> bool {
            true
        }
        fn is_client_live(&self, _: &ClientClaims) -> bool {
            false
        }
    }
    struct UsersOnly;
    impl TokenCheck for UsersOnly {
        fn is_live(&self, _: &Claims) -> bool {
            true
        }
    }
    let client = sign(&client_claims("x"));
    let user = sign(&claims(NOW + 60));
    let v = verifier(Arc::new(AtomicI64::new(NOW)), Some(Arc::new(NoClients)));
    assert_eq!(v.verify_caller(&client), Err(AuthError::Invalid));
    assert!(v.verify_caller(&user).is_ok());
    // A cached client token still goes through the hook.
    let v = verifier_with_cache(100, Some(Arc::new(UsersOnly)));
    let Ok(Caller::Client(c)) = v.verify_caller(&client) else {
        panic!("a client token verifies");
    };
    assert_eq!(
        (c.sub.as_str(), c.client_id.as_str(), c.scope.as_str()),
        ("c1", "c1", "x")
    );
    assert!(v.verify_caller(&client).is_ok());
    assert_eq!(v.verify(&client), Err(AuthError::Invalid));
}
