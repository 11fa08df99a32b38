//! Request decoding: the OAuth parameter extractor (form or JSON) of the
//! token endpoints, the JSON-object extractor of every JSON route, and the
//! registration validator behind `POST /users`.
//!
//! The first byte picks the `Content-Type`; the rest is the body.
//! Invariants: no panic, and every rejection maps to a 4xx response — a
//! client can never cause a 500 here.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;
use warden::http::body::{JsonObject, OAuthParams};
use warden::http::routes::users::parse_registration;

const CONTENT_TYPES: &[&str] = &[
    "application/x-www-form-urlencoded",
    "application/json",
    "application/json; charset=utf-8",
    "application/merge-patch+json",
    "text/plain",
    "",
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fn request(content_type: &str, body: &[u8]) -> axum::extract::Request {
    let mut builder = http::Request::builder().method("POST").uri("/token");
    if !content_type.is_empty() {
        builder = builder.header(http::header::CONTENT_TYPE, content_type);
    }
    builder.body(Body::from(body.to_vec())).expect("request")
}

fn assert_client_error(e: warden::http::error::Error) {
    let status = e.into_response().status();
    assert!(status.is_client_error(), "decoding answered {status}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[pick as usize % CONTENT_TYPES.len()];
    let rt = runtime();

    match rt.block_on(OAuthParams::from_request(request(content_type, body), &())) {
        Ok(OAuthParams(params)) => assert!(params.len() <= 32),
        Err(e) => assert_client_error(e),
    }
    match rt.block_on(JsonObject::from_request(request(content_type, body), &())) {
        Ok(JsonObject(object)) => {
            if let Err(e) = parse_registration(&object) {
                assert_client_error(e);
            }
        }
        Err(e) => assert_client_error(e),
    }
});
