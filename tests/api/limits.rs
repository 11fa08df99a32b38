//! Limits on what a client controls: body size, parameter counts, nesting,
//! slow clients, and shutdown with requests in flight.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn a_form_with_too_many_fields_is_400_not_parsed_forever() {
    let app = TestApp::spawn().await;
    let form: String = (0..1000).map(|i| format!("f{i}=x&")).collect();
    let r = app
        .client
        .post(app.at("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn the_json_form_of_the_token_endpoints_has_the_same_parameter_limit() {
    let app = TestApp::spawn().await;
    let object: serde_json::Map<String, Value> = (0..33)
        .map(|i| (format!("f{i}"), Value::String("x".into())))
        .collect();
    // (`/token/introspect` asks for its bearer token before reading the body.)
    for path in ["/token", "/token/revoke"] {
        let r = app
            .client
            .post(app.at(path))
            .json(&object)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{path}");
        assert_eq!(body["detail"], "Too many parameters (at most 32)", "{path}");
    }
    // 32 are fine: the grant itself is what fails then.
    let mut object: serde_json::Map<String, Value> = (0..29)
        .map(|i| (format!("f{i}"), Value::String("x".into())))
        .collect();
    object.insert("grant_type".into(), "password".into());
    object.insert("username".into(), "nobody".into());
    object.insert("password".into(), PASSWORD.into());
    let r = app
        .client
        .post(app.at("/token"))
        .json(&object)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn deeply_nested_json_is_422_not_a_crash() {
    let app = TestApp::spawn().await;
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    for path in ["/users", "/token"] {
        let r = app
            .client
            .post(app.at(path))
            .header("content-type", "application/json")
            .body(nested.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_413_on_the_token_endpoint_too() {
    let app = TestApp::spawn().await;
    let big = format!("username=a&password={}", "x".repeat(70 * 1024));
    let r = app
        .client
        .post(app.at("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let app = TestApp::spawn_with(&[("WARDEN_HEADER_READ_TIMEOUT", "1")]).await;
    let addr = app.url.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Half a request, then silence (slowloris).
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        let mut buf = [0u8; 512];
        // The server either closes (0 bytes) or answers 408 and closes.
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await
    .unwrap();
    assert!(closed);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the slow client held its connection for {took:?}"
    );
    // Everyone else is served meanwhile and after.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    // One hashing worker and costly hashes: two logins are in flight (one
    // hashing, one queued) when shutdown begins; both must complete.
    let app = TestApp::spawn_with(&[
        ("WARDEN_HASH_WORKERS", "1"),
        ("WARDEN_ARGON2_MEMORY_KIB", "19456"),
        ("WARDEN_ARGON2_ITERATIONS", "4"),
    ])
    .await;
    app.register_ok("alice").await;
    let logins: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.at("/token"));
            tokio::spawn(async move {
                client
                    .post(url)
                    .form(&[("username", "alice"), ("password", PASSWORD)])
                    .send()
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    // Wait (bounded) until one login is queued behind the other.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.hasher.queue_depth() == 0 {
        assert!(Instant::now() < deadline, "the logins never queued");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let url = app.url.clone();
    app.stop().await;
    for l in logins {
        assert_eq!(l.await.unwrap().unwrap(), StatusCode::OK);
    }
    // And the server no longer accepts connections.
    assert!(reqwest::get(format!("{url}/healthz")).await.is_err());
}
