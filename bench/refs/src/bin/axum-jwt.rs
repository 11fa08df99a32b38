//! What a Rust developer would hand-roll: axum + jsonwebtoken (HS256) +
//! argon2, users in a `HashMap`. Every user shares one argon2id hash
//! (m=19456 KiB, t=2, p=1) of `--password`, computed once at start-up.
//!
//!     axum-jwt --bind 127.0.0.1:8082 --users 10000 --password PASSWORD
//!
//! `POST /token` (form `username`, `password`) verifies the password in
//! `spawn_blocking` and returns an HS256 access token; `GET /users/me`
//! verifies the bearer token and returns the user as JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_bench_refs::{Args, UserView};

const TOKEN_TTL: u64 = 30 * 60;

struct User {
    view: UserView,
    password_hash: Arc<str>,
}

struct AppState {
    users: HashMap<String, User>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

fn argon2() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19_456, 2, 1, None).expect("argon2 params"),
    )
}

fn unauthorized(detail: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({ "detail": detail })),
    )
        .into_response()
}

async fn token(State(state): State<Arc<AppState>>, Form(login): Form<Login>) -> Response {
    let Some(user) = state.users.get(&login.username) else {
        return unauthorized("Incorrect username or password");
    };
    let hash = user.password_hash.clone();
    let ok = tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).expect("stored hash");
        argon2()
            .verify_password(login.password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .expect("verify task");
    if !ok {
        return unauthorized("Incorrect username or password");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = Claims {
        sub: user.view.username.clone(),
        exp: now + TOKEN_TTL,
    };
    let token = encode(&Header::default(), &claims, &state.encoding).expect("sign");
    Json(json!({ "access_token": token, "token_type": "bearer" })).into_response()
}

async fn me(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return unauthorized("Not authenticated");
    };
    let Ok(data) = decode::<Claims>(token, &state.decoding, &state.validation) else {
        return unauthorized("Could not validate credentials");
    };
    match state.users.get(&data.claims.sub) {
        Some(user) if !user.view.disabled => Json(user.view.clone()).into_response(),
        Some(_) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "detail": "Inactive user" })),
        )
            .into_response(),
        None => unauthorized("Could not validate credentials"),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse(&["bind", "users", "password", "secret"]);
    let bind = args.get("bind", "127.0.0.1:8082");
    let n: usize = args.num("users", 10_000);
    let password = args.get("password", "correct horse battery staple");
    let secret = args.get("secret", "a-benchmark-secret-of-at-least-32-bytes!");

    let hash: Arc<str> = argon2()
        .hash_password(password.as_bytes())
        .expect("hash")
        .to_string()
        .into();
    let users = (0..n)
        .map(|i| {
            let view = UserView::seeded(i);
            let user = User {
                view,
                password_hash: hash.clone(),
            };
            (user.view.username.clone(), user)
        })
        .collect();
    let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.leeway = 0;
    let state = Arc::new(AppState {
        users,
        encoding: EncodingKey::from_secret(secret.as_bytes()).expect("HS256 key"),
        decoding: DecodingKey::from_secret(secret.as_bytes()).expect("HS256 key"),
        validation,
    });
    let app = Router::new()
        .route("/token", post(token))
        .route("/users/me", get(me))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&bind).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
