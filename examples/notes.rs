//! # notes: another service, protected by warden's tokens
//!
//! A small notes API that never sees a password and never talks to warden's
//! database. It checks every request's bearer token itself with
//! [`warden_guard`]: the [`Claims`] extractor answers 401 for a missing,
//! tampered, expired, foreign or revoked token, and
//! [`Claims::require_scope`] answers 403 for a token without scope `me`.
//!
//! The keys come from warden through [`Remote`]: its metadata and JWKS are
//! fetched at start-up, again every 5 minutes, and at once when a token
//! names a key this service has not seen (right after `warden keys
//! rotate`), so a rotation needs no restart. With a feed account configured
//! (below) it also follows warden's revocation feed: a logout, password
//! change, disable or deletion at warden is refused here within about a
//! second. Without one, a token stays good here until it expires (15
//! minutes by default).
//!
//! Each user reads and edits only their own notes. A note of someone else
//! answers 404, exactly like a note that does not exist, so ids cannot be
//! probed for. Notes live in memory and are gone when the process stops.
//!
//! ## Run with
//!
//! ```sh
//! cargo run -- serve               # warden, on 127.0.0.1:8000
//! cargo run --example notes        # this service, on 127.0.0.1:8001
//! ```
//!
//! Environment:
//!
//! - `WARDEN_URL` (default `http://127.0.0.1:8000`): warden's issuer
//!   (`WARDEN_ISSUER`); the metadata and keys are fetched from there, and
//!   tokens must name it as `iss`.
//! - `NOTES_BIND` (default `127.0.0.1:8001`): the address to listen on.
//! - `NOTES_FEED_USERNAME` and `NOTES_FEED_PASSWORD`: an account with scope
//!   `tokens:introspect` (the `admin` role, or better a role of its own
//!   with only that scope) whose login follows the revocation feed. Unset:
//!   revocations are not followed.
//! - `WARDEN_AUDIENCE`: when warden sets an audience, the same value, so
//!   tokens meant for other services are refused.
//!
//! ## Try it
//!
//! ```sh
//! # Register with warden and get an access token (needs `jq`).
//! curl -s localhost:8000/users -H 'content-type: application/json' \
//!   -d '{"username": "alice", "email": "alice@example.com", "password": "correct horse battery"}'
//! TOKEN=$(curl -s localhost:8000/token \
//!   --data-urlencode username=alice --data-urlencode 'password=correct horse battery' \
//!   | jq -r .access_token)
//!
//! # Create a note, then list your notes.
//! curl -s localhost:8001/notes -H "authorization: Bearer $TOKEN" \
//!   -H 'content-type: application/json' -d '{"title": "groceries", "body": "milk, eggs"}'
//! curl -s localhost:8001/notes -H "authorization: Bearer $TOKEN"
//!
//! # Read, change and delete one note by its id.
//! curl -s localhost:8001/notes/$ID -H "authorization: Bearer $TOKEN"
//! curl -s -X PATCH localhost:8001/notes/$ID -H "authorization: Bearer $TOKEN" \
//!   -H 'content-type: application/json' -d '{"body": "milk, eggs, bread"}'
//! curl -s -X DELETE localhost:8001/notes/$ID -H "authorization: Bearer $TOKEN"
//! ```
//!
//! To follow revocations, give an account the feed's scope and start the
//! service with it:
//!
//! ```sh
//! # warden.toml: [roles.resource_server]  scopes = ["tokens:introspect"]
//! # (warden itself started with --config warden.toml, so it knows the role)
//! warden --config warden.toml users create --username notes-feed --email notes-feed@example.com --role resource_server
//! NOTES_FEED_USERNAME=notes-feed NOTES_FEED_PASSWORD='...' cargo run --example notes
//! # Log out at warden; the same token is refused here within a second.
//! curl -s -X POST localhost:8000/logout -H "authorization: Bearer $TOKEN"
//! curl -s localhost:8001/notes -H "authorization: Bearer $TOKEN"   # 401
//! ```

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use warden_guard::{Algorithm, AuthError, Claims, Credentials, Remote, Verifier};

/// The scope every route of this service requires: warden grants `me` to
/// every ordinary user, for acting on their own things.
const SCOPE: &str = "me";

/// Longest title and body accepted, in characters.
const MAX_TITLE: usize = 200;
const MAX_BODY: usize = 10_000;

/// A note, as stored and as answered.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    /// Assigned by the server (UUIDv7, so ids sort by creation time).
    pub id: Uuid,
    /// The `sub` claim of the token that created it: warden's user id.
    pub owner: String,
    pub title: String,
    pub body: String,
}

/// Notes by owner, then by id. Keying by owner first means a handler can
/// only ever look inside the caller's own map: another user's note is not
/// hidden by a check that could be forgotten, it is simply not there.
type Notes = HashMap<String, BTreeMap<Uuid, Note>>;

/// The router's state. `FromRef` lets the `Claims` extractor pull the
/// `Verifier` out of it (the extractor needs `Verifier: FromRef<S>`).
#[derive(Clone, FromRef)]
struct AppState {
    verifier: Verifier,
    notes: Arc<Mutex<Notes>>,
}

impl AppState {
    /// The store. The lock is never held across an `.await`, and a panic
    /// while it was held cannot leave a note half-written, so a poisoned lock
    /// is still safe to use.
    fn notes(&self) -> MutexGuard<'_, Notes> {
        self.notes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Every error this service answers, as `{"detail": ...}`.
#[derive(Debug)]
enum ApiError {
    /// 401 or 403, with warden's `WWW-Authenticate` challenge.
    Auth(AuthError),
    /// 404: no such note *of yours*.
    NotFound,
    /// The JSON body could not be read (400, 415, 422 as axum decides).
    Body(JsonRejection),
    /// 422: the body was read but a value is not acceptable.
    Invalid(String),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::Body(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, detail) = match self {
            // Already in the contract's shape, challenge header included.
            Self::Auth(e) => return e.into_response(),
            Self::NotFound => (StatusCode::NOT_FOUND, "Note not found".to_owned()),
            Self::Body(e) => (e.status(), e.body_text()),
            Self::Invalid(msg) => (StatusCode::UNPROCESSABLE_ENTITY, msg),
        };
        (status, Json(json!({ "detail": detail }))).into_response()
    }
}

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The body of `POST /notes`.
#[derive(Debug, Deserialize)]
struct NewNote {
    title: String,
    #[serde(default)]
    body: String,
}

/// The body of `PATCH /notes/{id}`: only the fields present change.
#[derive(Debug, Deserialize)]
struct NoteChanges {
    title: Option<String>,
    body: Option<String>,
}

fn check_title(title: &str) -> Result<()> {
    if title.trim().is_empty() {
        return Err(ApiError::Invalid("title must not be empty".to_owned()));
    }
    if title.chars().count() > MAX_TITLE {
        return Err(ApiError::Invalid(format!(
            "title must be at most {MAX_TITLE} characters"
        )));
    }
    Ok(())
}

fn check_body(body: &str) -> Result<()> {
    if body.chars().count() > MAX_BODY {
        return Err(ApiError::Invalid(format!(
            "body must be at most {MAX_BODY} characters"
        )));
    }
    Ok(())
}

/// A path id that is not a UUID names no note: 404, like any other unknown
/// id, rather than a 400 in a different shape.
fn parse_id(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound)
}

// In every handler `Claims` comes before `Path` and `Json`: extractors run
// in order, so a request without a valid token gets 401 before anything
// about its path or body is looked at.

/// `GET /notes`: the caller's notes, oldest first.
async fn list_notes(State(state): State<AppState>, claims: Claims) -> Result<Json<Vec<Note>>> {
    claims.require_scope(SCOPE)?;
    let notes = state
        .notes()
        .get(&claims.sub)
        .map(|mine| mine.values().cloned().collect())
        .unwrap_or_default();
    Ok(Json(notes))
}

/// `POST /notes`: 201 and the new note.
async fn create_note(
    State(state): State<AppState>,
    claims: Claims,
    body: Result<Json<NewNote>, JsonRejection>,
) -> Result<(StatusCode, Json<Note>)> {
    claims.require_scope(SCOPE)?;
    let Json(new) = body?;
    check_title(&new.title)?;
    check_body(&new.body)?;
    let note = Note {
        id: Uuid::now_v7(),
        owner: claims.sub.clone(),
        title: new.title,
        body: new.body,
    };
    state
        .notes()
        .entry(claims.sub)
        .or_default()
        .insert(note.id, note.clone());
    Ok((StatusCode::CREATED, Json(note)))
}

/// `GET /notes/{id}`.
async fn get_note(
    State(state): State<AppState>,
    claims: Claims,
    Path(id): Path<String>,
) -> Result<Json<Note>> {
    claims.require_scope(SCOPE)?;
    let id = parse_id(&id)?;
    let notes = state.notes();
    let note = notes
        .get(&claims.sub)
        .and_then(|mine| mine.get(&id))
        .ok_or(ApiError::NotFound)?;
    Ok(Json(note.clone()))
}

/// `PATCH /notes/{id}`: changes `title` and/or `body`.
async fn update_note(
    State(state): State<AppState>,
    claims: Claims,
    Path(id): Path<String>,
    body: Result<Json<NoteChanges>, JsonRejection>,
) -> Result<Json<Note>> {
    claims.require_scope(SCOPE)?;
    let id = parse_id(&id)?;
    // Look the note up before reading the body, so that for someone else's
    // note every request answers 404 alike, whatever its body.
    let exists = state
        .notes()
        .get(&claims.sub)
        .is_some_and(|mine| mine.contains_key(&id));
    if !exists {
        return Err(ApiError::NotFound);
    }
    let Json(changes) = body?;
    if let Some(title) = &changes.title {
        check_title(title)?;
    }
    if let Some(body) = &changes.body {
        check_body(body)?;
    }
    let mut notes = state.notes();
    // Looked up again: the note may have been deleted in the meantime.
    let note = notes
        .get_mut(&claims.sub)
        .and_then(|mine| mine.get_mut(&id))
        .ok_or(ApiError::NotFound)?;
    if let Some(title) = changes.title {
        note.title = title;
    }
    if let Some(body) = changes.body {
        note.body = body;
    }
    Ok(Json(note.clone()))
}

/// `DELETE /notes/{id}`: 204.
async fn delete_note(
    State(state): State<AppState>,
    claims: Claims,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    claims.require_scope(SCOPE)?;
    let id = parse_id(&id)?;
    state
        .notes()
        .get_mut(&claims.sub)
        .and_then(|mine| mine.remove(&id))
        .ok_or(ApiError::NotFound)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unknown paths and methods answer in the same `{"detail": ...}` shape.
async fn no_route() -> Response {
    let body = Json(json!({ "detail": "Not Found" }));
    (StatusCode::NOT_FOUND, body).into_response()
}

async fn method_not_allowed() -> Response {
    let body = Json(json!({ "detail": "Method Not Allowed" }));
    (StatusCode::METHOD_NOT_ALLOWED, body).into_response()
}

/// The notes API, trusting the tokens `verifier` accepts, with an empty
/// in-memory store.
pub fn app(verifier: Verifier) -> Router {
    let state = AppState {
        verifier,
        notes: Arc::default(),
    };
    Router::new()
        .route("/notes", get(list_notes).post(create_note))
        .route(
            "/notes/{id}",
            get(get_note).patch(update_note).delete(delete_note),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The guard for the tokens of the warden server at `warden_url` (its
/// issuer): its keys, kept current, EdDSA (warden's default algorithm)
/// pinned, and with `feed` its revocations followed. `audience`: warden's
/// `WARDEN_AUDIENCE`, if it sets one.
pub async fn guard(
    warden_url: &str,
    feed: Option<Credentials>,
    audience: Option<String>,
) -> Result<Remote, warden_guard::RemoteError> {
    let mut builder = Remote::builder(warden_url, Algorithm::EdDSA);
    if let Some(credentials) = feed {
        builder = builder.revocations(credentials);
    }
    if let Some(audience) = audience {
        builder = builder.audience(audience);
    }
    builder.start().await
}

#[tokio::main]
async fn main() -> ExitCode {
    // warden-guard logs (with `tracing`) when it cannot reach warden.
    tracing_subscriber::fmt().init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notes: {}", chain(&*e));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error + Send + Sync>> {
    let warden_url =
        std::env::var("WARDEN_URL").unwrap_or_else(|_| "http://127.0.0.1:8000".to_owned());
    let bind = std::env::var("NOTES_BIND").unwrap_or_else(|_| "127.0.0.1:8001".to_owned());
    let feed = match (
        std::env::var("NOTES_FEED_USERNAME"),
        std::env::var("NOTES_FEED_PASSWORD"),
    ) {
        (Ok(username), Ok(password)) => Some(Credentials::password(username, password)),
        (Err(_), Err(_)) => None,
        _ => return Err("set both NOTES_FEED_USERNAME and NOTES_FEED_PASSWORD, or neither".into()),
    };
    let following = feed.is_some();
    let audience = std::env::var("WARDEN_AUDIENCE").ok();

    // The error names the URL that failed, on one line.
    let guard = guard(&warden_url, feed, audience).await?;
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    println!(
        "notes listening on http://{}, trusting tokens of {warden_url}{}",
        listener.local_addr()?,
        if following {
            ", following its revocations"
        } else {
            " (revocations not followed: set NOTES_FEED_USERNAME and NOTES_FEED_PASSWORD)"
        }
    );
    axum::serve(listener, app(guard.verifier())).await?;
    Ok(())
}

/// An error with its causes: reqwest's "error sending request" alone does
/// not say that the connection was refused.
fn chain(e: &(dyn Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
