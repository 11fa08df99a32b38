//! The bearer-token path of a protected route: the `Authorization` header
//! through warden-guard's `Claims` extractor, the verifier and warden's
//! revocation gate.
//!
//! A random string almost never gets past the signature, so the first byte
//! picks what the fuzzer controls:
//! - 0: the whole `Authorization` header value;
//! - 1: the payload of a correctly signed token (claims parsing and checks);
//! - 2: the JOSE header of a correctly signed token (header parsing);
//! - 3: the signature part of a token with valid header and payload.
//!
//! Invariants: no panic; a rejection is a 401; an accepted token has the
//! configured issuer, is not expired, is not before its `nbf`, and belongs to
//! the gate's one live user — or, by the gate's rule for users registered by
//! another instance since its snapshot, was issued after that snapshot.
#![no_main]

use std::sync::OnceLock;

use axum::extract::FromRequestParts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;
use warden::domain::UserSecurity;
use warden::auth::tokens::UserGate;
use warden_guard::{Claims, KeySet, Verifier};

const ISSUER: &str = "http://fuzz.test";
const SECRET: &[u8] = b"fuzzing-secret-fuzzing-secret-32b";
const KID: &str = "k1";
const NOW: i64 = 1_800_000_000;
const USER: Uuid = Uuid::from_u128(0x0193_a0c4_0000_7000_8000_0000_0000_0001);
/// A user deleted a minute ago: no token of theirs may pass.
const DELETED: Uuid = Uuid::from_u128(0x0193_a0c4_0000_7000_8000_0000_0000_0002);
/// `USER` changed their password then: older tokens of theirs fail.
const VALID_AFTER: i64 = NOW - 3600;
const HEADER: &str = r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#;

struct Fixture {
    verifier: Verifier,
    signing: EncodingKey,
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut keys = KeySet::new();
        keys.insert(KID, DecodingKey::from_secret(SECRET).expect("HMAC key"));
        let gate = std::sync::Arc::new(UserGate::default());
        let watched = [UserSecurity {
            id: USER,
            tokens_valid_after: VALID_AFTER,
            disabled: false,
            security_version: 1,
            revision: 1,
        }];
        gate.reload(&watched, gate.reload_started());
        gate.remove(DELETED, NOW - 60);
        let verifier = Verifier::builder(Algorithm::HS256, keys, ISSUER.to_owned())
            .check(gate)
            .clock(std::sync::Arc::new(|| NOW))
            .build();
        Fixture {
            verifier,
            signing: EncodingKey::from_secret(SECRET).expect("HMAC key"),
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
        }
    })
}

fn valid_payload() -> String {
    format!(
        r#"{{"iss":"{ISSUER}","sub":"{USER}","exp":{},"iat":{},"nbf":{},"jti":"j","sid":"{}","scope":"me","roles":["user"],"username":"alice"}}"#,
        NOW + 600,
        NOW - 10,
        NOW - 10,
        Uuid::from_u128(7),
    )
}

fn signed(header: &[u8], payload: &[u8], f: &Fixture) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &f.signing, Algorithm::HS256)
        .expect("HMAC signing cannot fail");
    format!("{message}.{signature}")
}

fn check(f: &Fixture, authorization: &[u8]) {
    let Ok(value) = http::HeaderValue::from_bytes(authorization) else {
        return; // hyper would refuse such a header before any handler runs
    };
    let (mut parts, ()) = http::Request::builder()
        .header(http::header::AUTHORIZATION, value)
        .body(())
        .expect("request")
        .into_parts();
    let result = f
        .runtime
        .block_on(Claims::from_request_parts(&mut parts, &f.verifier));
    match result {
        Ok(claims) => {
            assert_eq!(claims.iss, ISSUER);
            assert!(claims.exp > NOW, "accepted an expired token");
            assert!(claims.nbf <= NOW, "accepted a token before its nbf");
            assert_ne!(claims.sub, DELETED.to_string(), "accepted a deleted user's token");
            assert!(
                claims.sub != USER.to_string() || claims.iat >= VALID_AFTER,
                "accepted a token issued before the user's password change"
            );
        }
        Err(e) => assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED),
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => check(f, rest),
        1 => {
            let token = signed(HEADER.as_bytes(), rest, f);
            check(f, format!("Bearer {token}").as_bytes());
        }
        2 => {
            let token = signed(rest, valid_payload().as_bytes(), f);
            check(f, format!("Bearer {token}").as_bytes());
        }
        _ => {
            let message = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(HEADER),
                URL_SAFE_NO_PAD.encode(valid_payload())
            );
            let mut token = message.into_bytes();
            token.push(b'.');
            token.extend_from_slice(rest);
            let mut header = b"Bearer ".to_vec();
            header.extend_from_slice(&token);
            check(f, &header);
        }
    }
});
