//! Attacks on the bearer token: every one must end in 401 `"Invalid token"`
//! (or `"Token has expired"` where that is the truth), never a 200 or a 500.
//!
//! Forged tokens that need a valid signature are signed with the HS256
//! secret a test server is configured with, or with a key the attacker
//! generated (`warden::auth::keys`), so the only thing wrong with each is the
//! attack under test.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_unauthorized};

const SECRET: &str = "a jwt-attack test secret of 32+ bytes";

fn part(v: &Value) -> String {
    B64.encode(v.to_string())
}

fn decode_part(p: &str) -> Value {
    serde_json::from_slice(&B64.decode(p).unwrap()).unwrap()
}

/// A server, a user, and one of their real tokens split into parts.
async fn victim(env: &[(&str, &str)]) -> (TestApp, String, Value, Value) {
    let app = TestApp::spawn_with(env).await;
    let (_, token) = app.user_with_token("alice").await;
    let mut it = token.split('.');
    let (h, c) = (
        decode_part(it.next().unwrap()),
        decode_part(it.next().unwrap()),
    );
    (app, token, h, c)
}

async fn hs256_victim() -> (TestApp, String, Value, Value) {
    victim(&[
        ("WARDEN_JWT_ALGORITHM", "HS256"),
        ("WARDEN_JWT_SECRET", SECRET),
    ])
    .await
}

/// Appends an HMAC-SHA256 signature under `key` to `signing_input`.
fn hmac_sign_raw(signing_input: String, key: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        B64.encode(mac.finalize().into_bytes())
    )
}

/// Signs `header.claims` with HMAC-SHA256 under `key`, header as given.
fn hmac_sign(header: &Value, claims: &Value, key: &[u8]) -> String {
    hmac_sign_raw(format!("{}.{}", part(header), part(claims)), key)
}

async fn assert_invalid(app: &TestApp, token: &str, case: &str) {
    let r = app.me(token).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{case}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"detail": "Invalid token"}), "{case}");
}

#[tokio::test]
async fn the_untampered_token_works_so_each_attack_below_is_what_fails() {
    let (app, token, h, c) = hs256_victim().await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    // And the same header and claims, signed by hand, work too: the forging
    // helper is sound, so what fails below fails for the attack alone.
    let resigned = hmac_sign(&h, &c, SECRET.as_bytes());
    assert_eq!(app.me(&resigned).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn alg_none_in_any_case_with_or_without_a_signature() {
    let (app, token, mut h, c) = victim(&[]).await;
    let sig = token.rsplit('.').next().unwrap();
    for alg in ["none", "None", "NONE", "nOnE"] {
        h["alg"] = json!(alg);
        assert_invalid(&app, &format!("{}.{}.", part(&h), part(&c)), alg).await;
        assert_invalid(&app, &format!("{}.{}.{sig}", part(&h), part(&c)), alg).await;
    }
}

#[tokio::test]
async fn hs256_signed_with_the_servers_public_key_under_every_asymmetric_algorithm() {
    for alg in ["EdDSA", "ES256", "RS256"] {
        let (app, _, h, c) = victim(&[("WARDEN_JWT_ALGORITHM", alg)]).await;
        let jwks: Value = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        let jwk = &jwks["keys"][0];
        let mut keys: Vec<Vec<u8>> = vec![jwk.to_string().into_bytes()];
        for field in ["x", "y", "n"] {
            if let Some(v) = jwk[field].as_str() {
                keys.push(v.as_bytes().to_vec());
                keys.push(B64.decode(v).unwrap());
            }
        }
        let mut header = h.clone();
        header["alg"] = json!("HS256");
        for key in keys {
            assert_invalid(&app, &hmac_sign(&header, &c, &key), alg).await;
        }
    }
}

#[tokio::test]
async fn a_tampered_header_or_payload_with_the_original_signature() {
    let (app, token, h, c) = victim(&[]).await;
    let sig = token.rsplit('.').next().unwrap();
    let mut h2 = h.clone();
    h2["typ"] = json!("AT+JWT");
    assert_invalid(&app, &format!("{}.{}.{sig}", part(&h2), part(&c)), "header").await;
    let mut c2 = c.clone();
    c2["scope"] = json!("me users:read users:write tokens:introspect");
    assert_invalid(
        &app,
        &format!("{}.{}.{sig}", part(&h), part(&c2)),
        "payload",
    )
    .await;
    let mut c3 = c.clone();
    c3["exp"] = json!(c["exp"].as_i64().unwrap() + 3600);
    assert_invalid(&app, &format!("{}.{}.{sig}", part(&h), part(&c3)), "exp").await;
}

#[tokio::test]
async fn a_stripped_signature() {
    let (app, token, _, _) = victim(&[]).await;
    let (unsigned, _) = token.rsplit_once('.').unwrap();
    assert_invalid(&app, &format!("{unsigned}."), "empty signature").await;
    assert_invalid(&app, unsigned, "no signature part").await;
}

#[tokio::test]
async fn kid_unknown_with_path_traversal_or_sql() {
    let (app, _, mut h, c) = hs256_victim().await;
    for kid in [
        "unknown",
        "../../../../etc/passwd",
        "/dev/null",
        "' OR '1'='1",
        "x'; drop table users; --",
        "",
    ] {
        h["kid"] = json!(kid);
        assert_invalid(&app, &hmac_sign(&h, &c, SECRET.as_bytes()), kid).await;
    }
    h.as_object_mut().unwrap().remove("kid");
    assert_invalid(&app, &hmac_sign(&h, &c, SECRET.as_bytes()), "no kid").await;
}

#[tokio::test]
async fn jku_x5u_and_embedded_jwk_headers_cannot_bring_a_key() {
    let (app, _, h, c) = victim(&[]).await;
    // The attacker's own Ed25519 key, offered in every way a header can.
    let material = warden::auth::keys::generate(Algorithm::EdDSA).unwrap();
    let attacker = warden::auth::keys::load(Algorithm::EdDSA, &material, 0).unwrap();
    let attacker_jwk = serde_json::to_value(attacker.public_jwk.as_ref().unwrap()).unwrap();
    for (name, value) in [
        ("jwk", attacker_jwk.clone()),
        ("jku", json!("http://127.0.0.1:1/jwks.json")),
        ("x5u", json!("http://127.0.0.1:1/cert.pem")),
    ] {
        for kid in [h["kid"].clone(), attacker_jwk["kid"].clone()] {
            let mut header: Header = serde_json::from_value(h.clone()).unwrap();
            header.kid = kid.as_str().map(str::to_owned);
            let mut hv = serde_json::to_value(&header).unwrap();
            hv[name] = value.clone();
            let header: Header = serde_json::from_value(hv).unwrap();
            let forged = jsonwebtoken::encode(&header, &c, &attacker.encoding).unwrap();
            assert_invalid(&app, &forged, name).await;
        }
    }
}

#[tokio::test]
async fn an_unknown_crit_header() {
    let (app, _, mut h, c) = hs256_victim().await;
    h["crit"] = json!(["exp"]);
    assert_invalid(&app, &hmac_sign(&h, &c, SECRET.as_bytes()), "crit").await;
    h["crit"] = json!([]);
    assert_invalid(&app, &hmac_sign(&h, &c, SECRET.as_bytes()), "empty crit").await;
}

#[tokio::test]
async fn typ_other_than_at_jwt() {
    let (app, _, mut h, c) = hs256_victim().await;
    for typ in [
        json!("JWT"),
        json!("jwt"),
        json!(null),
        json!("at+jwt+evil"),
    ] {
        h["typ"] = typ.clone();
        assert_invalid(
            &app,
            &hmac_sign(&h, &c, SECRET.as_bytes()),
            &typ.to_string(),
        )
        .await;
    }
}

#[tokio::test]
async fn wrong_issuer_or_audience() {
    let (app, _, h, mut c) = victim(&[
        ("WARDEN_JWT_ALGORITHM", "HS256"),
        ("WARDEN_JWT_SECRET", SECRET),
        ("WARDEN_AUDIENCE", "https://api.example.com"),
    ])
    .await;
    let good = c.clone();
    c["iss"] = json!("https://evil.example.com");
    assert_invalid(&app, &hmac_sign(&h, &c, SECRET.as_bytes()), "iss").await;
    let mut c = good.clone();
    c["aud"] = json!("https://other.example.com");
    assert_invalid(&app, &hmac_sign(&h, &c, SECRET.as_bytes()), "aud").await;
    c["aud"] = json!(["https://other.example.com"]);
    assert_invalid(&app, &hmac_sign(&h, &c, SECRET.as_bytes()), "aud list").await;
}

#[tokio::test]
async fn nbf_in_the_future_and_expired_by_one_second() {
    let (app, _, h, c) = hs256_victim().await;
    let now = warden::auth::tokens::now();
    let mut future = c.clone();
    future["nbf"] = json!(now + 30);
    assert_invalid(&app, &hmac_sign(&h, &future, SECRET.as_bytes()), "nbf").await;
    let mut expired = c.clone();
    expired["exp"] = json!(now - 1);
    assert_unauthorized(
        app.me(&hmac_sign(&h, &expired, SECRET.as_bytes())).await,
        "Token has expired",
    )
    .await;
}

#[tokio::test]
async fn oversized_and_malformed_tokens() {
    let (app, token, _, _) = victim(&[]).await;
    let huge = format!("{token}{}", "A".repeat(100 * 1024));
    for (case, t) in [
        ("100 KB", huge.as_str()),
        ("garbage", "garbage"),
        ("two dots", "a.b"),
        ("four dots", "a.b.c.d.e"),
        ("dots only", ".."),
        ("not base64", "!!!.@@@.###"),
        ("json header only", &format!("{}..", B64.encode("{}"))),
    ] {
        assert_invalid(&app, t, case).await;
    }
}

#[tokio::test]
async fn an_es256_signature_with_r_and_s_zero() {
    let (app, token, _, _) = victim(&[("WARDEN_JWT_ALGORITHM", "ES256")]).await;
    let (signing_input, _) = token.rsplit_once('.').unwrap();
    let zero = B64.encode([0u8; 64]);
    assert_invalid(&app, &format!("{signing_input}.{zero}"), "r = s = 0").await;
}

#[tokio::test]
async fn duplicate_claim_keys_in_the_payload() {
    let (app, _, h, c) = hs256_victim().await;
    // Written by hand: a JSON object with `sub` twice, the second another user.
    let body = c.to_string();
    let dup = format!(
        "{{\"sub\":\"00000000-0000-7000-8000-000000000000\",{}",
        &body[1..]
    );
    let token = hmac_sign_raw(
        format!("{}.{}", part(&h), B64.encode(dup)),
        SECRET.as_bytes(),
    );
    assert_invalid(&app, &token, "duplicate sub").await;
}
