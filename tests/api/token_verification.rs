//! Every way a bearer token can be wrong gets exactly the contract's 401.
//!
//! Tokens with chosen claims (expired, wrong issuer, ...) are signed here
//! with the HS256 secret the test server is configured with, so the only
//! thing wrong with them is the claim under test — and no test sleeps.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_unauthorized};

const SECRET: &str = "a test-only HS256 secret of 32+ bytes!";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&B64.decode(part).unwrap()).unwrap()
}

/// The header and claims of a token the server issued.
fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    (
        decode_part(it.next().unwrap()),
        decode_part(it.next().unwrap()),
    )
}

/// Re-signs `claims` with the server's HS256 secret and `kid`.
fn forge(kid: &str, claims: &Value, typ: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(typ.to_owned());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// An HS256 server, a user, a real token, and its header and claims.
async fn hs256_setup() -> (TestApp, String, String, Value) {
    let app = TestApp::spawn_with(&[
        ("WARDEN_JWT_ALGORITHM", "HS256"),
        ("WARDEN_JWT_SECRET", SECRET),
    ])
    .await;
    let (_, token) = app.user_with_token("alice").await;
    let (header, claims) = parts(&token);
    let kid = header["kid"].as_str().unwrap().to_owned();
    (app, token, kid, claims)
}

#[tokio::test]
async fn access_tokens_follow_rfc_9068() {
    let app = TestApp::spawn_with(&[("WARDEN_AUDIENCE", "https://api.example.com")]).await;
    let (user, token) = app.user_with_token("alice").await;
    let (header, claims) = parts(&token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
    assert_eq!(claims["iss"], app.url.as_str());
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["aud"], "https://api.example.com");
    assert_eq!(claims["scope"], "me");
    assert_eq!(claims["roles"], json!(["user"]));
    assert_eq!(claims["username"], "alice");
    for c in ["jti", "sid"] {
        assert!(claims[c].is_string(), "{c}");
    }
    let (iat, nbf, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["nbf"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(nbf <= iat && exp - nbf == 900);
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn no_authorization_header_returns_not_authenticated() {
    let app = TestApp::spawn().await;
    assert_unauthorized(app.get("/users/me").await, "Not authenticated").await;
}

#[tokio::test]
async fn a_basic_authorization_header_returns_not_authenticated_without_a_basic_challenge() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(app.at("/users/me"))
        .header("authorization", "Basic Og==")
        .send()
        .await
        .unwrap();
    assert!(
        !r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("Basic")
    );
    assert_unauthorized(r, "Not authenticated").await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("alice").await;
    let r = app
        .client
        .get(app.at("/users/me"))
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn tampered_signature_is_invalid() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("alice").await;
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let mut sig = B64.decode(sig).unwrap();
    sig[0] ^= 1;
    let tampered = format!("{rest}.{}", B64.encode(sig));
    assert_unauthorized(app.me(&tampered).await, "Invalid token").await;
}

#[tokio::test]
async fn tampered_payload_with_the_original_signature_is_invalid() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("alice").await;
    let (_, mut claims) = parts(&token);
    claims["scope"] = json!("me users:read users:write");
    let segs: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}.{}", segs[0], B64.encode(claims.to_string()), segs[2]);
    assert_unauthorized(app.me(&tampered).await, "Invalid token").await;
}

#[tokio::test]
async fn alg_none_is_invalid() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("alice").await;
    let (mut header, claims) = parts(&token);
    for alg in ["none", "None", "NONE"] {
        header["alg"] = json!(alg);
        let h = B64.encode(header.to_string());
        let c = B64.encode(claims.to_string());
        assert_unauthorized(app.me(&format!("{h}.{c}.")).await, "Invalid token").await;
        let sig = token.rsplit('.').next().unwrap();
        assert_unauthorized(app.me(&format!("{h}.{c}.{sig}")).await, "Invalid token").await;
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_invalid_under_eddsa() {
    // Key confusion: an attacker signs with HMAC, using the published key.
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("alice").await;
    let (header, claims) = parts(&token);
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let x = jwks["keys"][0]["x"].as_str().unwrap();
    for key in [
        x.as_bytes().to_vec(),
        B64.decode(x).unwrap(),
        jwks["keys"][0].to_string().into_bytes(),
    ] {
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(header["kid"].as_str().unwrap().into());
        let forged =
            jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&key).unwrap()).unwrap();
        assert_unauthorized(app.me(&forged).await, "Invalid token").await;
    }
}

#[tokio::test]
async fn expired_token_says_token_has_expired() {
    let (app, _, kid, mut claims) = hs256_setup().await;
    claims["exp"] = json!(now() - 1);
    claims["iat"] = json!(now() - 901);
    claims["nbf"] = json!(now() - 901);
    let r = app.me(&forge(&kid, &claims, "at+jwt")).await;
    assert_unauthorized(r, "Token has expired").await;
}

#[tokio::test]
async fn a_forged_token_with_correct_claims_verifies_so_the_forgery_helper_is_sound() {
    let (app, _, kid, claims) = hs256_setup().await;
    assert_eq!(
        app.me(&forge(&kid, &claims, "at+jwt")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn not_yet_valid_token_is_invalid() {
    let (app, _, kid, mut claims) = hs256_setup().await;
    claims["nbf"] = json!(now() + 60);
    assert_unauthorized(
        app.me(&forge(&kid, &claims, "at+jwt")).await,
        "Invalid token",
    )
    .await;
}

#[tokio::test]
async fn wrong_issuer_is_invalid() {
    let (app, _, kid, mut claims) = hs256_setup().await;
    claims["iss"] = json!("http://evil.example.com");
    assert_unauthorized(
        app.me(&forge(&kid, &claims, "at+jwt")).await,
        "Invalid token",
    )
    .await;
}

#[tokio::test]
async fn unknown_kid_is_invalid() {
    let (app, _, _, claims) = hs256_setup().await;
    for kid in ["no-such-key", "../../etc/passwd", "' OR 1=1 --"] {
        assert_unauthorized(
            app.me(&forge(kid, &claims, "at+jwt")).await,
            "Invalid token",
        )
        .await;
    }
}

#[tokio::test]
async fn typ_other_than_at_jwt_is_invalid() {
    let (app, _, kid, claims) = hs256_setup().await;
    assert_unauthorized(app.me(&forge(&kid, &claims, "JWT")).await, "Invalid token").await;
}

#[tokio::test]
async fn missing_claim_is_invalid() {
    let (app, _, kid, mut claims) = hs256_setup().await;
    claims.as_object_mut().unwrap().remove("sid");
    assert_unauthorized(
        app.me(&forge(&kid, &claims, "at+jwt")).await,
        "Invalid token",
    )
    .await;
}

#[tokio::test]
async fn token_issued_before_a_password_change_is_invalid() {
    let (app, token, kid, mut claims) = hs256_setup().await;
    let r = app
        .client
        .put(app.at("/users/me/password"))
        .bearer_auth(&token)
        .json(&json!({"current_password": crate::helpers::PASSWORD, "new_password": "another good secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A correctly signed token whose `iat` is before the change.
    claims["iat"] = json!(now() - 5);
    claims["jti"] = json!("forged-after-change");
    assert_unauthorized(
        app.me(&forge(&kid, &claims, "at+jwt")).await,
        "Invalid token",
    )
    .await;
    assert_unauthorized(app.me(&token).await, "Invalid token").await;
}

#[tokio::test]
async fn wrong_audience_is_invalid_when_one_is_configured() {
    let app = TestApp::spawn_with(&[
        ("WARDEN_JWT_ALGORITHM", "HS256"),
        ("WARDEN_JWT_SECRET", SECRET),
        ("WARDEN_AUDIENCE", "https://api.example.com"),
    ])
    .await;
    let (_, token) = app.user_with_token("alice").await;
    let (header, mut claims) = parts(&token);
    let kid = header["kid"].as_str().unwrap();
    claims["aud"] = json!("https://other.example.com");
    assert_unauthorized(
        app.me(&forge(kid, &claims, "at+jwt")).await,
        "Invalid token",
    )
    .await;
    claims.as_object_mut().unwrap().remove("aud");
    assert_unauthorized(
        app.me(&forge(kid, &claims, "at+jwt")).await,
        "Invalid token",
    )
    .await;
}

#[tokio::test]
async fn token_of_another_warden_is_invalid() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_with(&[("WARDEN_ISSUER", a.url.as_str())]).await;
    let (_, token) = b.user_with_token("alice").await;
    a.register_ok("alice").await;
    assert_unauthorized(a.me(&token).await, "Invalid token").await;
}

#[tokio::test]
async fn garbage_tokens_are_invalid() {
    let app = TestApp::spawn().await;
    for t in [
        "garbage",
        "a.b",
        "a.b.c.d",
        "..",
        "....",
        &"x".repeat(100 * 1024),
    ] {
        let r = app.me(t).await;
        assert_unauthorized(r, "Invalid token").await;
    }
}

#[tokio::test]
async fn every_configurable_algorithm_issues_tokens_that_verify() {
    for alg in ["EdDSA", "ES256", "RS256", "HS256"] {
        let app = TestApp::spawn_with(&[("WARDEN_JWT_ALGORITHM", alg)]).await;
        let (_, token) = app.user_with_token("alice").await;
        let (header, _) = parts(&token);
        assert_eq!(header["alg"], alg);
        assert_eq!(app.me(&token).await.status(), StatusCode::OK, "{alg}");
        let jwks: Value = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        let published = keys.iter().filter(|k| k["alg"] == alg).count();
        assert_eq!(published, usize::from(alg != "HS256"), "{alg}: {jwks}");
        // And the id tokens' RS256 key, whatever signs access tokens.
        assert!(keys.iter().any(|k| k["alg"] == "RS256"), "{alg}: {jwks}");
    }
}

#[tokio::test]
async fn access_token_ttl_is_configurable() {
    let app = TestApp::spawn_with(&[("WARDEN_ACCESS_TOKEN_TTL", "60")]).await;
    app.register_ok("alice").await;
    let body: Value = app
        .login("alice", crate::helpers::PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["expires_in"], 60);
    let (_, claims) = parts(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(),
        60
    );
}
