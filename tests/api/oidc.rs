//! OpenID Connect (issue 18): discovery, id tokens in the code flow's and
//! the refresh's token responses (verified against JWKS with the
//! algorithm pinned by the test, for each of RS256, ES256 and EdDSA),
//! UserInfo with RFC 6750's errors, CORS on the public documents, and the
//! id-token keys' life (registration, start-up, rotation).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};
use warden::auth::clients::NewClient;
use warden::domain::ClientRecord;

use crate::helpers::{
    APP_CB, Browser, TestApp, VERIFIER, at_client, authorize_path, basic, claims, jwt_header,
    session_id, sign_in_from,
};

/// A first-party confidential client at `APP_CB` (no consent screen),
/// signing id tokens with `alg` (the default when `None`).
async fn web_app(app: &TestApp, alg: Option<&str>) -> (ClientRecord, String) {
    let new = NewClient {
        name: "Gradebook".into(),
        first_party: true,
        redirect_uris: vec![APP_CB.into()],
        id_token_signed_response_alg: alg.map(str::to_owned),
        ..Default::default()
    };
    let (client, secret) =
        warden::auth::clients::create(&app.state, new, None, None, warden::auth::tokens::now())
            .await
            .expect("a valid client");
    (client, secret.unwrap())
}

/// Sends the browser to `/authorize` for `client` with `scope` and
/// `extra`, signing in as `username` when the login page comes; the
/// code's redirect parameters.
async fn authorize(
    browser: &mut Browser,
    client: &ClientRecord,
    username: &str,
    extra: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let seen = browser
        .get(&authorize_path(&client.id.to_string(), Some(APP_CB), extra))
        .await;
    let to_login = seen
        .location
        .as_deref()
        .is_some_and(|l| l.starts_with("/login?"));
    let done = if to_login {
        sign_in_from(browser, &seen, username).await
    } else {
        seen
    };
    at_client(&done, APP_CB)
}

async fn redeem(app: &TestApp, client: &ClientRecord, secret: &str, code: &str) -> Response {
    app.client
        .post(app.at("/token"))
        .header("authorization", basic(&client.id.to_string(), secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", APP_CB),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap()
}

async fn refresh(app: &TestApp, client: &ClientRecord, secret: &str, token: &str) -> Value {
    let r = app
        .client
        .post(app.at("/token"))
        .header("authorization", basic(&client.id.to_string(), secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// The token response of a full code flow (`openid` plus `scope`).
async fn code_tokens(
    app: &TestApp,
    browser: &mut Browser,
    client: &ClientRecord,
    secret: &str,
    extra: &[(&str, &str)],
) -> Value {
    let params = authorize(browser, client, "alice", extra).await;
    let r = redeem(app, client, secret, &params["code"]).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn jwks(app: &TestApp) -> JwkSet {
    app.get("/.well-known/jwks.json").await.json().await.unwrap()
}

/// Verifies `token` as an id token of `client` with `alg` pinned (never
/// the token's own header) and a key found in JWKS by `kid`; its claims.
async fn verify_id_token(app: &TestApp, token: &str, alg: Algorithm, client: &ClientRecord) -> Value {
    let header = jwt_header(token);
    assert_eq!(header["typ"], "JWT", "an id token is not an at+jwt");
    let set = jwks(app).await;
    let jwk = set
        .find(header["kid"].as_str().unwrap())
        .expect("the id token's key is in JWKS");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(alg);
    validation.leeway = 0;
    validation.set_audience(&[client.id.to_string()]);
    validation.set_issuer(&[app.url.as_str()]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("{alg:?}: {e}"))
        .claims
}

/// OIDC Core §3.1.3.6, computed here independently of the server.
fn expected_at_hash(alg: Algorithm, access_token: &str) -> String {
    let digest = match alg {
        Algorithm::EdDSA => Sha512::digest(access_token.as_bytes()).to_vec(),
        _ => Sha256::digest(access_token.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

fn user_id(app_user: &Value) -> String {
    app_user["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn discovery_lists_the_providers_endpoints_and_capabilities() {
    let app = TestApp::spawn().await;
    let r = app.get("/.well-known/openid-configuration").await;
    assert_eq!(r.status(), StatusCode::OK);
    let d: Value = r.json().await.unwrap();
    let issuer = app.url.as_str();
    assert_eq!(d["issuer"], issuer);
    for (field, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/.well-known/jwks.json"),
        ("end_session_endpoint", "/session/end"),
        ("revocation_endpoint", "/token/revoke"),
        ("introspection_endpoint", "/token/introspect"),
    ] {
        assert_eq!(d[field], format!("{issuer}{path}"), "{field}");
    }
    assert_eq!(d["response_types_supported"], json!(["code"]));
    assert_eq!(d["subject_types_supported"], json!(["public"]));
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        json!(["RS256", "ES256", "EdDSA"])
    );
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        d["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    assert_eq!(d["backchannel_logout_supported"], true);
    assert_eq!(d["backchannel_logout_session_supported"], true);
    assert_eq!(d["request_parameter_supported"], false);
    let scopes: Vec<&str> = d["scopes_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for s in ["openid", "profile", "email", "offline_access", "me"] {
        assert!(scopes.contains(&s), "{s} in {scopes:?}");
    }
    let claims: Vec<&str> = d["claims_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for c in ["sub", "iss", "auth_time", "sid", "amr", "preferred_username", "name", "email", "email_verified"] {
        assert!(claims.contains(&c), "{c} in {claims:?}");
    }
    let grants = d["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&json!("authorization_code")) && grants.contains(&json!("refresh_token")));

    // RFC 8414's document lists the same endpoints.
    let m: Value = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    for field in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "end_session_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
    ] {
        assert_eq!(m[field], d[field], "{field}");
    }
}

#[tokio::test]
async fn discovery_and_jwks_answer_any_origin_without_credentials() {
    // Even with a credentialed origin configured, the public documents
    // answer `*` and never allow credentials.
    let app = TestApp::spawn_with(&[("WARDEN_CORS_ORIGINS", "https://admin.example.com")]).await;
    for path in ["/.well-known/openid-configuration", "/.well-known/jwks.json"] {
        for origin in ["https://rp.example.org", "https://admin.example.com"] {
            let r = app
                .client
                .get(app.at(path))
                .header("origin", origin)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path} {origin}");
            assert!(r.headers().get("access-control-allow-credentials").is_none());
            let pre = app
                .client
                .request(reqwest::Method::OPTIONS, app.at(path))
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .send()
                .await
                .unwrap();
            assert!(pre.status().is_success(), "{path}: {}", pre.status());
            assert_eq!(pre.headers()["access-control-allow-origin"], "*");
            assert!(pre.headers().get("access-control-allow-credentials").is_none());
        }
    }
}

#[tokio::test]
async fn id_tokens_of_each_algorithm_verify_against_jwks_with_every_claim() {
    let app = TestApp::spawn().await;
    let alice = app.register_ok("alice").await;
    let mut browser = Browser::new(&app);
    for (name, alg) in [
        ("RS256", Algorithm::RS256),
        ("ES256", Algorithm::ES256),
        ("EdDSA", Algorithm::EdDSA),
    ] {
        let (client, secret) = web_app(&app, Some(name)).await;
        let nonce = format!("n-{name}");
        let body = code_tokens(
            &app,
            &mut browser,
            &client,
            &secret,
            &[("scope", "openid profile email me"), ("nonce", &nonce)],
        )
        .await;
        let access = body["access_token"].as_str().unwrap();
        let id_token = body["id_token"].as_str().expect("an id_token");
        assert_eq!(jwt_header(id_token)["alg"], name);
        let c = verify_id_token(&app, id_token, alg, &client).await;
        assert_eq!(c["sub"], user_id(&alice), "{name}");
        assert_eq!(c["aud"], client.id.to_string());
        assert_eq!(c["nonce"], nonce.as_str());
        assert_eq!(c["at_hash"], expected_at_hash(alg, access), "{name}");
        assert_eq!(c["sid"], session_id(&browser), "the browser session's id");
        assert_eq!(c["amr"], json!(["pwd"]));
        assert_eq!(c["preferred_username"], "alice");
        assert_eq!(c["name"], "alice", "the username when no full name");
        assert_eq!(c["email"], alice["email"]);
        assert_eq!(c["email_verified"], false);
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
        let auth_time = c["auth_time"].as_i64().unwrap();
        assert!(auth_time <= c["iat"].as_i64().unwrap());
        // The access token keeps naming its own session.
        assert_ne!(claims(access)["sid"], c["sid"]);
        // Whatever its key (the EdDSA one is the access tokens' own here),
        // an id token is refused as an access token.
        crate::helpers::assert_unauthorized(app.me(id_token).await, "Invalid token").await;
    }
}

#[tokio::test]
async fn the_id_tokens_sid_is_the_browser_session_listed_for_the_user() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (client, secret) = web_app(&app, None).await;
    let mut browser = Browser::new(&app);
    let body = code_tokens(&app, &mut browser, &client, &secret, &[("scope", "openid me")]).await;
    let c = verify_id_token(&app, body["id_token"].as_str().unwrap(), Algorithm::RS256, &client).await;
    let sessions: Value = app
        .client
        .get(app.at("/users/me/sessions"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&c["sid"].as_str().unwrap()), "{ids:?}");
    // No profile or email scope: no such claims.
    for absent in ["preferred_username", "name", "email", "email_verified", "nonce"] {
        assert!(c.get(absent).is_none(), "{absent} in {c}");
    }
}

#[tokio::test]
async fn a_refresh_brings_a_new_id_token_for_the_same_authentication_without_nonce() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (client, secret) = web_app(&app, Some("ES256")).await;
    let mut browser = Browser::new(&app);
    let first = code_tokens(
        &app,
        &mut browser,
        &client,
        &secret,
        &[("scope", "openid profile"), ("nonce", "abc")],
    )
    .await;
    let c1 = verify_id_token(&app, first["id_token"].as_str().unwrap(), Algorithm::ES256, &client).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = refresh(&app, &client, &secret, first["refresh_token"].as_str().unwrap()).await;
    let id_token = second["id_token"].as_str().expect("a refreshed id_token");
    let c2 = verify_id_token(&app, id_token, Algorithm::ES256, &client).await;
    assert!(c2["iat"].as_i64() > c1["iat"].as_i64(), "a new iat");
    assert_eq!(c2["auth_time"], c1["auth_time"]);
    assert_eq!(c2["sid"], c1["sid"]);
    assert_eq!(c2["sub"], c1["sub"]);
    assert_eq!(c2["preferred_username"], "alice");
    assert!(c2.get("nonce").is_none(), "OIDC Core 12.2: no nonce on refresh");
    assert_eq!(
        c2["at_hash"],
        expected_at_hash(Algorithm::ES256, second["access_token"].as_str().unwrap())
    );
}

#[tokio::test]
async fn no_id_token_without_openid() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (client, secret) = web_app(&app, None).await;
    let mut browser = Browser::new(&app);
    let body = code_tokens(&app, &mut browser, &client, &secret, &[("scope", "me")]).await;
    assert_eq!(body["scope"], "me");
    assert!(body.get("id_token").is_none(), "{body}");
    let refreshed = refresh(&app, &client, &secret, body["refresh_token"].as_str().unwrap()).await;
    assert!(refreshed.get("id_token").is_none());
}

#[tokio::test]
async fn re_authentication_gives_a_new_auth_time() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (client, secret) = web_app(&app, None).await;
    let mut browser = Browser::new(&app);
    let scope = ("scope", "openid");
    let first = code_tokens(&app, &mut browser, &client, &secret, &[scope]).await;
    let t1 = verify_id_token(&app, first["id_token"].as_str().unwrap(), Algorithm::RS256, &client)
        .await["auth_time"]
        .as_i64()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Single sign-on: the same authentication.
    let sso = code_tokens(&app, &mut browser, &client, &secret, &[scope]).await;
    let t2 = verify_id_token(&app, sso["id_token"].as_str().unwrap(), Algorithm::RS256, &client)
        .await["auth_time"]
        .as_i64()
        .unwrap();
    assert_eq!(t2, t1, "no new sign-in, same auth_time");
    // prompt=login: a new sign-in, a new auth_time.
    let again = code_tokens(&app, &mut browser, &client, &secret, &[scope, ("prompt", "login")]).await;
    let t3 = verify_id_token(&app, again["id_token"].as_str().unwrap(), Algorithm::RS256, &client)
        .await["auth_time"]
        .as_i64()
        .unwrap();
    assert!(t3 > t1, "prompt=login: {t3} > {t1}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // max_age passed: a new sign-in too.
    let aged = code_tokens(&app, &mut browser, &client, &secret, &[scope, ("max_age", "0")]).await;
    let t4 = verify_id_token(&app, aged["id_token"].as_str().unwrap(), Algorithm::RS256, &client)
        .await["auth_time"]
        .as_i64()
        .unwrap();
    assert!(t4 > t3, "max_age=0: {t4} > {t3}");
}

async fn userinfo_get(app: &TestApp, token: Option<&str>) -> Response {
    let mut req = app.client.get(app.at("/userinfo"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

fn challenge(r: &Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn userinfo_answers_the_claims_of_the_tokens_scopes_by_get_and_post() {
    let app = TestApp::spawn().await;
    let alice = app.register_ok("alice").await;
    let (client, secret) = web_app(&app, None).await;
    let mut browser = Browser::new(&app);
    let full = code_tokens(&app, &mut browser, &client, &secret, &[("scope", "openid profile email")]).await;
    let access = full["access_token"].as_str().unwrap();
    let r = userinfo_get(&app, Some(access)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"sub": user_id(&alice), "preferred_username": "alice", "name": "alice",
               "email": alice["email"], "email_verified": false})
    );
    // The same claims as the id token.
    let c = verify_id_token(&app, full["id_token"].as_str().unwrap(), Algorithm::RS256, &client).await;
    for k in ["sub", "preferred_username", "name", "email", "email_verified"] {
        assert_eq!(body[k], c[k], "{k}");
    }
    // POST, with the header or with the form field (RFC 6750 §2.2).
    let r = app
        .client
        .post(app.at("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), body);
    let r = app
        .client
        .post(app.at("/userinfo"))
        .form(&[("access_token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), body);
    // Both ways at once: 400.
    let r = app
        .client
        .post(app.at("/userinfo"))
        .bearer_auth(access)
        .form(&[("access_token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");

    // openid alone: `sub` only.
    let narrow = code_tokens(&app, &mut browser, &client, &secret, &[("scope", "openid")]).await;
    let body: Value = userinfo_get(&app, narrow["access_token"].as_str())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body, json!({"sub": user_id(&alice)}));
}

#[tokio::test]
async fn userinfo_errors_are_rfc_6750s() {
    let app = TestApp::spawn().await;
    let alice = app.register_ok("alice").await;
    let (client, secret) = web_app(&app, None).await;
    let mut browser = Browser::new(&app);

    // No token: 401 `Bearer`, without an error.
    let r = userinfo_get(&app, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&r), "Bearer");
    let r = app.client.post(app.at("/userinfo")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&r), "Bearer");
    // A bad token: invalid_token.
    let r = userinfo_get(&app, Some("not.a.token")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains(r#"error="invalid_token""#));
    // A token without openid: 403 insufficient_scope.
    let me_only = code_tokens(&app, &mut browser, &client, &secret, &[("scope", "me")]).await;
    let r = userinfo_get(&app, me_only["access_token"].as_str()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let c = challenge(&r);
    assert!(c.contains(r#"error="insufficient_scope""#) && c.contains(r#"scope="openid""#), "{c}");
    let password_token = app.token("alice").await;
    assert_eq!(userinfo_get(&app, Some(&password_token)).await.status(), StatusCode::FORBIDDEN);

    // An id token is no access token: not here, not on /users/me.
    let tokens = code_tokens(&app, &mut browser, &client, &secret, &[("scope", "openid me")]).await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let r = userinfo_get(&app, Some(id_token)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains(r#"error="invalid_token""#));
    crate::helpers::assert_unauthorized(app.me(id_token).await, "Invalid token").await;

    // A session that ended: the token fails at once.
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(userinfo_get(&app, Some(access)).await.status(), StatusCode::OK);
    let r = app
        .client
        .post(app.at("/logout"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = userinfo_get(&app, Some(access)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains(r#"error="invalid_token""#));

    // A disabled user: likewise.
    let fresh = code_tokens(&app, &mut browser, &client, &secret, &[("scope", "openid")]).await;
    let access = fresh["access_token"].as_str().unwrap();
    assert_eq!(userinfo_get(&app, Some(access)).await.status(), StatusCode::OK);
    let (_, admin) = app.admin_token("root").await;
    let r = app
        .client
        .patch(app.at(&format!("/users/{}", user_id(&alice))))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(userinfo_get(&app, Some(access)).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn userinfo_answers_public_clients_origins_without_credentials() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let spa = NewClient {
        name: "SPA".into(),
        public: true,
        redirect_uris: vec!["https://spa.example.com/cb".into()],
        ..Default::default()
    };
    warden::auth::clients::create(&app.state, spa, None, None, warden::auth::tokens::now())
        .await
        .unwrap();
    let (client, secret) = web_app(&app, None).await;
    let mut browser = Browser::new(&app);
    let tokens = code_tokens(&app, &mut browser, &client, &secret, &[("scope", "openid")]).await;
    let pre = app
        .client
        .request(reqwest::Method::OPTIONS, app.at("/userinfo"))
        .header("origin", "https://spa.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), StatusCode::OK);
    assert_eq!(pre.headers()["access-control-allow-origin"], "https://spa.example.com");
    assert!(pre.headers()["access-control-allow-methods"].to_str().unwrap().contains("GET"));
    assert!(pre.headers().get("access-control-allow-credentials").is_none());
    let r = app
        .client
        .get(app.at("/userinfo"))
        .header("origin", "https://spa.example.com")
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://spa.example.com");
    assert!(r.headers().get("access-control-allow-credentials").is_none());
    // An origin no public client registered gets no CORS answer.
    let r = app
        .client
        .get(app.at("/userinfo"))
        .header("origin", "https://evil.example.net")
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

fn kids_of(set: &JwkSet, alg: &str) -> Vec<String> {
    set.keys
        .iter()
        .filter(|k| {
            serde_json::to_value(&k.common).unwrap()["alg"] == alg
        })
        .map(|k| k.common.key_id.clone().unwrap())
        .collect()
}

#[tokio::test]
async fn a_clients_algorithm_gets_its_key_at_registration_and_at_start_up() {
    let app = TestApp::spawn().await;
    let before = jwks(&app).await;
    assert_eq!(kids_of(&before, "RS256").len(), 1, "the default id-token key");
    assert!(kids_of(&before, "ES256").is_empty());
    // Registering an ES256 client publishes an ES256 key at once.
    web_app(&app, Some("ES256")).await;
    assert_eq!(kids_of(&jwks(&app).await, "ES256").len(), 1);
    // HS256 (warden's secret) and `none` are refused.
    let (_, admin) = app.admin_token("root").await;
    for alg in ["HS256", "none", "PS256"] {
        let r = app
            .client
            .post(app.at("/clients"))
            .bearer_auth(&admin)
            .json(&json!({"name": "X", "redirect_uris": [APP_CB], "id_token_signed_response_alg": alg}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{alg}");
        assert_eq!(
            crate::helpers::error_locs(r).await,
            vec![vec!["body".to_owned(), "id_token_signed_response_alg".to_owned()]]
        );
    }
    // So does changing a client to an algorithm without a key.
    let fresh = TestApp::spawn().await;
    let (c, _) = web_app(&fresh, None).await;
    let (_, root) = fresh.admin_token("root").await;
    assert!(kids_of(&jwks(&fresh).await, "ES256").is_empty());
    let r = fresh
        .client
        .patch(fresh.at(&format!("/clients/{}", c.id)))
        .bearer_auth(&root)
        .json(&json!({"id_token_signed_response_alg": "ES256"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(kids_of(&jwks(&fresh).await, "ES256").len(), 1);
    // The default follows WARDEN_ID_TOKEN_ALGORITHM.
    let env = app.stop().await;
    let app = TestApp::spawn_in(env, &[("WARDEN_ID_TOKEN_ALGORITHM", "ES256")]).await;
    let (c, _) = web_app(&app, None).await;
    assert_eq!(c.id_token_signed_response_alg, "ES256");

    // A client whose algorithm has no key (written by another instance):
    // a restart makes one.
    app.sql("delete from signing_keys where algorithm = 'ES256'").await;
    let env = app.stop().await;
    let app = TestApp::spawn_in(env, &[]).await;
    assert_eq!(kids_of(&jwks(&app).await, "ES256").len(), 1, "made at start-up");
}

#[tokio::test]
async fn a_missing_id_token_key_is_made_when_the_first_id_token_needs_it() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (client, secret) = web_app(&app, None).await;
    // As if another instance had switched the client to ES256 after this
    // one loaded its keys: no ES256 key in this process.
    app.sql(&format!(
        "update clients set id_token_signed_response_alg = 'ES256' where id = '{}'",
        client.id
    ))
    .await;
    let client = app.state.store.client(client.id).await.unwrap().unwrap();
    assert!(kids_of(&jwks(&app).await, "ES256").is_empty());
    let mut browser = Browser::new(&app);
    let body = code_tokens(&app, &mut browser, &client, &secret, &[("scope", "openid")]).await;
    let id_token = body["id_token"].as_str().unwrap();
    assert_eq!(jwt_header(id_token)["alg"], "ES256");
    verify_id_token(&app, id_token, Algorithm::ES256, &client).await;
    // The access tokens' keys are untouched: the access token still works.
    assert_eq!(
        userinfo_get(&app, body["access_token"].as_str()).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn key_rotation_gives_id_tokens_a_new_key_and_keeps_the_old_one_published() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (client, secret) = web_app(&app, None).await;
    let mut browser = Browser::new(&app);
    let before = code_tokens(&app, &mut browser, &client, &secret, &[("scope", "openid")]).await;
    let old_kid = jwt_header(before["id_token"].as_str().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["keys", "rotate"])
        .env("WARDEN_DATABASE_URL", app.database_url())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The running server picks it up (its periodic sync).
    let mut new_kid = old_kid.clone();
    for _ in 0..100 {
        let after = code_tokens(&app, &mut browser, &client, &secret, &[("scope", "openid")]).await;
        let id_token = after["id_token"].as_str().unwrap();
        new_kid = jwt_header(id_token)["kid"].as_str().unwrap().to_owned();
        if new_kid != old_kid {
            verify_id_token(&app, id_token, Algorithm::RS256, &client).await;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_ne!(new_kid, old_kid, "the new RS256 key signs id tokens");
    let published = kids_of(&jwks(&app).await, "RS256");
    assert!(published.contains(&old_kid) && published.contains(&new_kid), "{published:?}");
    // The old id token still verifies.
    verify_id_token(&app, before["id_token"].as_str().unwrap(), Algorithm::RS256, &client).await;
}
