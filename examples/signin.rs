//! # signin: a web app that signs its users in through warden
//!
//! The way the web does sign-in: this app never sees a password. "Sign in"
//! sends the browser to warden's `/authorize`; the user signs in on
//! warden's own page (once: a second app gets in without a second password
//! prompt) and agrees to what the app asks for; warden sends the browser
//! back to `/callback` with a one-time code, which the app exchanges —
//! server to server, with its client secret and the PKCE verifier — for
//! the user's tokens. Then it shows who signed in (`GET /users/me` at
//! warden with the access token).
//!
//! The OAuth side is the [`oauth2`] crate (PKCE S256, the code exchange,
//! client authentication with HTTP Basic); warden's endpoints come from its
//! RFC 8414 metadata. The app checks what RFC 9700 asks of a client: the
//! `state` of the callback is the one it sent from this browser (CSRF), and
//! the `iss` parameter is warden's issuer (RFC 9207, mix-up attacks).
//! Sessions live in memory and end when the process stops.
//!
//! ## Run with
//!
//! ```sh
//! cargo run -- serve                              # warden, on 127.0.0.1:8000
//! cargo run -- clients create --name "Sign-in example" \
//!     --redirect-uri http://127.0.0.1:8002/callback > signin-client.json
//! cargo run --example signin                      # this app, on 127.0.0.1:8002
//! ```
//!
//! then open <http://127.0.0.1:8002> and sign in with a warden account.
//!
//! Environment:
//!
//! - `WARDEN_URL` (default `http://127.0.0.1:8000`): warden's issuer.
//! - `SIGNIN_CLIENT` (default `signin-client.json`): the JSON that
//!   `warden clients create` printed (its `client_id` and `client_secret`);
//!   or `SIGNIN_CLIENT_ID` and `SIGNIN_CLIENT_SECRET` instead.
//! - `SIGNIN_BIND` (default `127.0.0.1:8002`): the address to listen on.
//!   The client's redirect URI must be `http://<this address>/callback`.

use std::collections::HashMap;
use std::error::Error;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;

/// How long a started sign-in (its `state` and PKCE verifier) waits for the
/// callback.
const FLOW_TTL: Duration = Duration::from_secs(600);

/// The cookie naming a started sign-in, and the one naming a session.
const FLOW_COOKIE: &str = "signin_flow";
const SESSION_COOKIE: &str = "signin_session";

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// What the app knows about warden, from its metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub revocation_endpoint: Option<String>,
}

/// The registered client: what `warden clients create` printed.
#[derive(Debug, Clone, Deserialize)]
pub struct Registration {
    pub client_id: String,
    pub client_secret: String,
}

/// A sign-in under way: the browser went to warden with `state` and the
/// challenge of `verifier`.
struct Flow {
    state: String,
    verifier: String,
    started: Instant,
}

/// A signed-in user, as warden's `/users/me` described them.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
}

struct Session {
    user: User,
    scope: String,
    refresh_token: Option<String>,
}

#[derive(Default)]
struct Memory {
    flows: HashMap<String, Flow>,
    sessions: HashMap<String, Session>,
}

#[derive(Clone)]
struct AppState {
    metadata: Arc<Metadata>,
    client: Arc<Client>,
    registration: Arc<Registration>,
    http: reqwest::Client,
    memory: Arc<Mutex<Memory>>,
}

impl AppState {
    /// The lock is never held across an `.await`.
    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads warden's RFC 8414 metadata from its issuer URL, checking that
/// the issuer it names is the one asked (RFC 8414 §3.3).
pub async fn discover(
    http: &reqwest::Client,
    warden_url: &str,
) -> Result<Metadata, Box<dyn Error>> {
    let issuer = warden_url.trim_end_matches('/');
    let url = format!("{issuer}/.well-known/oauth-authorization-server");
    let response = http.get(&url).send().await?.error_for_status()?;
    let metadata: Metadata = response.json().await?;
    if metadata.issuer != issuer {
        return Err(format!(
            "{url} names the issuer {:?}, not {issuer:?}: set WARDEN_URL to warden's WARDEN_ISSUER",
            metadata.issuer
        )
        .into());
    }
    Ok(metadata)
}

/// The app's router, for `metadata`'s warden and the client `registration`
/// whose redirect URI is `redirect_uri`.
pub fn app(
    metadata: Metadata,
    registration: Registration,
    redirect_uri: &str,
) -> Result<Router, Box<dyn Error>> {
    let client = BasicClient::new(ClientId::new(registration.client_id.clone()))
        .set_client_secret(ClientSecret::new(registration.client_secret.clone()))
        .set_auth_uri(AuthUrl::new(metadata.authorization_endpoint.clone())?)
        .set_token_uri(TokenUrl::new(metadata.token_endpoint.clone())?)
        .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned())?);
    let state = AppState {
        metadata: Arc::new(metadata),
        client: Arc::new(client),
        registration: Arc::new(registration),
        http: reqwest::Client::builder()
            // The code exchange must not follow redirects (RFC 9700 §4.11).
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        memory: Arc::default(),
    };
    Ok(Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/callback", get(callback))
        .route("/logout", post(logout))
        .with_state(state))
}

/// A random, URL-safe value of 256 bits (session ids).
fn random_id() -> String {
    CsrfToken::new_random_len(32).secret().clone()
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `SameSite=Lax`: the callback is a top-level navigation from warden's
/// origin, which Lax cookies accompany (Strict ones would not).
fn set_cookie(name: &str, value: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}"
    ))
    .expect("cookie values are URL-safe")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sign-in example</title></head><body>{body}</body></html>"
    ))
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Sign-in failed</h1><p>{}</p><form method=\"post\" action=\"/login\">\
         <button>Try again</button></form>",
        escape(message)
    );
    (status, page(&body)).into_response()
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let memory = state.memory();
    let session = cookie(&headers, SESSION_COOKIE).and_then(|id| memory.sessions.get(id));
    let body = match session {
        Some(s) => format!(
            "<h1>Signed in</h1><p>You are <strong>{}</strong> ({}), user id <code>{}</code>.</p>\
             <p>Granted scopes: <code>{}</code></p>\
             <form method=\"post\" action=\"/logout\"><button>Sign out</button></form>",
            escape(s.user.full_name.as_deref().unwrap_or(&s.user.username)),
            escape(&s.user.email),
            escape(&s.user.id),
            escape(&s.scope),
        ),
        None => "<h1>Sign-in example</h1><p>Not signed in.</p>\
                 <form method=\"post\" action=\"/login\"><button>Sign in with warden</button></form>"
            .to_owned(),
    };
    page(&body).into_response()
}

/// Starts a sign-in: a fresh `state` and PKCE pair, remembered for this
/// browser, and a redirect to warden's `/authorize`.
async fn login(State(state): State<AppState>) -> Response {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = state
        .client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("me".to_owned()))
        .set_pkce_challenge(challenge)
        .url();
    let flow_id = random_id();
    {
        let mut memory = state.memory();
        memory.flows.retain(|_, f| f.started.elapsed() < FLOW_TTL);
        memory.flows.insert(
            flow_id.clone(),
            Flow {
                state: csrf.secret().clone(),
                verifier: verifier.secret().clone(),
                started: Instant::now(),
            },
        );
    }
    let mut response = Redirect::to(url.as_str()).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(FLOW_COOKIE, &flow_id, FLOW_TTL.as_secs()),
    );
    response
}

#[derive(Debug, Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The browser back from warden: check `state` and `iss`, exchange the
/// code, read the user.
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    // The flow is taken out whatever happens next: a state is good once.
    let flow = cookie(&headers, FLOW_COOKIE).and_then(|id| state.memory().flows.remove(id));
    let Some(flow) = flow.filter(|f| f.started.elapsed() < FLOW_TTL) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in was not started from this browser, or it took too long.",
        );
    };
    if callback.state.as_deref() != Some(flow.state.as_str()) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The sign-in's state does not match.",
        );
    }
    // RFC 9207: the response must come from the server the request went to.
    if callback.iss.as_deref() != Some(state.metadata.issuer.as_str()) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The answer did not come from the expected warden (iss).",
        );
    }
    if let Some(error) = callback.error {
        let message = match error.as_str() {
            "access_denied" => "You did not allow the sign-in.".to_owned(),
            _ => format!(
                "warden answered {error}: {}",
                callback.error_description.unwrap_or_default()
            ),
        };
        return error_page(StatusCode::BAD_REQUEST, &message);
    }
    let Some(code) = callback.code else {
        return error_page(StatusCode::BAD_REQUEST, "warden sent no code.");
    };
    let http = state.http.clone();
    let send = move |request: oauth2::HttpRequest| {
        let http = http.clone();
        async move { exchange(&http, request).await }
    };
    let token = match state
        .client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier))
        .request_async(&send)
        .await
    {
        Ok(token) => token,
        Err(e) => {
            return error_page(
                StatusCode::BAD_GATEWAY,
                &format!("The code exchange failed: {e}"),
            );
        }
    };
    let me = state
        .http
        .get(format!("{}/users/me", state.metadata.issuer))
        .bearer_auth(token.access_token().secret())
        .send()
        .await;
    let user: User = match me {
        Ok(r) if r.status().is_success() => match r.json().await {
            Ok(user) => user,
            Err(e) => return error_page(StatusCode::BAD_GATEWAY, &e.to_string()),
        },
        Ok(r) => {
            return error_page(
                StatusCode::BAD_GATEWAY,
                &format!("warden answered {} to /users/me", r.status()),
            );
        }
        Err(e) => return error_page(StatusCode::BAD_GATEWAY, &e.to_string()),
    };
    let scope = token
        .scopes()
        .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let session_id = random_id();
    state.memory().sessions.insert(
        session_id.clone(),
        Session {
            user,
            scope,
            refresh_token: token.refresh_token().map(|t| t.secret().clone()),
        },
    );
    let mut response = Redirect::to("/").into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &session_id, 3600),
    );
    headers.append(header::SET_COOKIE, set_cookie(FLOW_COOKIE, "", 0));
    response
}

/// Signs out here, and revokes the refresh token at warden (RFC 7009),
/// which ends the session warden opened for this app.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session =
        cookie(&headers, SESSION_COOKIE).and_then(|id| state.memory().sessions.remove(id));
    if let (Some(token), Some(endpoint)) = (
        session.and_then(|s| s.refresh_token),
        state.metadata.revocation_endpoint.as_deref(),
    ) {
        let revoked = state
            .http
            .post(endpoint)
            .basic_auth(
                &state.registration.client_id,
                Some(&state.registration.client_secret),
            )
            .form(&[
                ("token", token.as_str()),
                ("token_type_hint", "refresh_token"),
            ])
            .send()
            .await;
        if let Err(e) = revoked {
            eprintln!("signin: revoking the refresh token failed: {e}");
        }
    }
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0));
    response
}

/// `oauth2`'s requests, sent with this app's reqwest client (the crate's
/// own reqwest integration is for another reqwest version).
async fn exchange(
    http: &reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut answer = oauth2::HttpResponse::new(response.bytes().await?.to_vec());
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    Ok(answer)
}

fn registration_from_env() -> Result<Registration, Box<dyn Error>> {
    if let (Ok(client_id), Ok(client_secret)) = (
        std::env::var("SIGNIN_CLIENT_ID"),
        std::env::var("SIGNIN_CLIENT_SECRET"),
    ) {
        return Ok(Registration {
            client_id,
            client_secret,
        });
    }
    let path = std::env::var("SIGNIN_CLIENT").unwrap_or_else(|_| "signin-client.json".to_owned());
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{path}: {e}; create the client with `warden clients create --name \"Sign-in example\" \
             --redirect-uri http://127.0.0.1:8002/callback > {path}`, or set SIGNIN_CLIENT_ID and \
             SIGNIN_CLIENT_SECRET"
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{path}: not the JSON of warden clients create: {e}").into())
}

async fn run() -> Result<(), Box<dyn Error>> {
    let warden_url =
        std::env::var("WARDEN_URL").unwrap_or_else(|_| "http://127.0.0.1:8000".to_owned());
    let bind = std::env::var("SIGNIN_BIND").unwrap_or_else(|_| "127.0.0.1:8002".to_owned());
    let registration = registration_from_env()?;
    let http = reqwest::Client::new();
    let metadata = discover(&http, &warden_url)
        .await
        .map_err(|e| format!("reading warden's metadata at {warden_url}: {e}"))?;
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|e| format!("{bind}: {e}; set SIGNIN_BIND to a free address"))?;
    let redirect_uri = format!("http://{bind}/callback");
    let router = app(metadata, registration, &redirect_uri)?;
    println!("signin: http://{bind} (signs in through {warden_url})");
    axum::serve(listener, router).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
