//! # courses: role-based permissions with warden's tokens
//!
//! A small courses API where students read courses and only teachers post
//! grades. The roles are not this service's business: they are defined in
//! warden's configuration (`examples/courses/warden.toml`), which turns each
//! role into scopes:
//!
//! ```toml
//! [roles.student]
//! scopes = ["me", "courses:read"]
//! [roles.teacher]
//! scopes = ["me", "courses:read", "grades:write"]
//! ```
//!
//! warden puts the granted scopes in every access token, and this service
//! checks them with [`warden_guard`] and nothing else: each route names the
//! scope it needs in its handler's signature with [`RequireScope`], using
//! types declared by [`warden_guard::scope!`]. A request without a valid
//! token answers 401; a valid token without the scope answers 403
//! `insufficient_scope`, naming the missing scope. Checking scopes rather
//! than role names means a new role (`[roles.assistant]` with
//! `grades:write`, say) needs no change here.
//!
//! Courses and grades live in memory, seeded with two courses, and are gone
//! when the process stops.
//!
//! ## Run with
//!
//! ```sh
//! cargo run -- --config examples/courses/warden.toml serve   # warden, on 127.0.0.1:8000
//! cargo run --example courses                                 # this service, on 127.0.0.1:8002
//! ```
//!
//! Environment: `WARDEN_URL` (default `http://127.0.0.1:8000`) is where the
//! keys are fetched from and also the issuer tokens must name, so it must be
//! warden's `WARDEN_ISSUER`; `COURSES_BIND` (default `127.0.0.1:8002`) is the
//! address to listen on.
//!
//! ## Try it
//!
//! ```sh
//! # Create a student and a teacher. `--config` is needed here too: without
//! # it warden knows only the built-in roles `user` and `admin`.
//! echo 'correct horse battery' | cargo run -- users create \
//!   --config examples/courses/warden.toml --role student \
//!   --username sam --email sam@example.com --password-stdin
//! echo 'correct horse battery' | cargo run -- users create \
//!   --config examples/courses/warden.toml --role teacher \
//!   --username tess --email tess@example.com --password-stdin
//!
//! # Log both in (needs `jq`). The token response's `scope` shows what each
//! # role was granted: "courses:read me" and "courses:read grades:write me".
//! STUDENT=$(curl -s localhost:8000/token \
//!   --data-urlencode username=sam --data-urlencode 'password=correct horse battery' \
//!   | jq -r .access_token)
//! TEACHER=$(curl -s localhost:8000/token \
//!   --data-urlencode username=tess --data-urlencode 'password=correct horse battery' \
//!   | jq -r .access_token)
//!
//! # A student lists the courses.
//! curl -s localhost:8002/courses -H "authorization: Bearer $STUDENT"
//!
//! # A student posting a grade gets 403:
//! # WWW-Authenticate: Bearer error="insufficient_scope", scope="grades:write"
//! curl -si localhost:8002/courses/rust-101/grades -H "authorization: Bearer $STUDENT" \
//!   -H 'content-type: application/json' -d '{"student": "sam", "grade": "A"}'
//!
//! # A teacher gets 201, and the grade is in the course's list.
//! curl -si localhost:8002/courses/rust-101/grades -H "authorization: Bearer $TEACHER" \
//!   -H 'content-type: application/json' -d '{"student": "sam", "grade": "A"}'
//! curl -s localhost:8002/courses/rust-101/grades -H "authorization: Bearer $STUDENT"
//! ```
//!
//! ## What this example leaves out
//!
//! - **Who sees which grades.** Anyone with `courses:read` lists every grade
//!   of a course. A real gradebook would show a student only their own
//!   (compare `student` with the token's `username`, unless the token also
//!   has `grades:write`).
//! - **Who the students are.** `student` is a username taken on trust: this
//!   service never asks warden whether that user exists or is a student.
//! - **Key rotation.** The keys are fetched once. After `warden keys rotate`,
//!   tokens signed with the new key are refused until this service restarts;
//!   a real service refetches the JWKS and installs it with
//!   [`Verifier::replace_keys`].
//! - **Revocation.** Verification here is offline. `warden users set-roles`
//!   makes warden refuse a demoted teacher's earlier tokens at once, but this
//!   service keeps accepting them until they expire (15 minutes by default).
//!   Keep access tokens short-lived, or ask warden (`POST /token/introspect`)
//!   when that is not enough.
//! - **Audience.** If warden is configured with `WARDEN_AUDIENCE`, build the
//!   verifier with [`Verifier::builder`] and `.audience(...)` so that tokens
//!   meant for other services are refused.

use std::collections::BTreeMap;
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
use warden_guard::{Algorithm, RequireScope, Verifier};

// The scopes this service checks. warden grants them through the roles of
// `examples/courses/warden.toml`; the names must match that file exactly.
warden_guard::scope!(CoursesRead = "courses:read");
warden_guard::scope!(GradesWrite = "grades:write");

/// The grades a teacher may give.
const GRADES: &[&str] = &["A", "B", "C", "D", "E", "F"];

/// Longest student username accepted, in characters (warden's limit).
const MAX_STUDENT: usize = 32;

/// A course, as answered.
#[derive(Debug, Clone, Serialize)]
pub struct Course {
    /// A readable slug, e.g. `rust-101`.
    pub id: String,
    pub title: String,
}

/// A grade, as stored and as answered.
#[derive(Debug, Clone, Serialize)]
pub struct Grade {
    /// The course's id.
    pub course: String,
    /// The graded student's warden username.
    pub student: String,
    pub grade: String,
    /// The warden username of the teacher who posted it (the `username`
    /// claim of their token).
    pub graded_by: String,
}

/// A course and its grades, oldest first.
#[derive(Debug)]
struct Entry {
    course: Course,
    grades: Vec<Grade>,
}

/// Courses by id.
type Catalog = BTreeMap<String, Entry>;

/// The router's state. `FromRef` lets the `RequireScope` extractor pull the
/// `Verifier` out of it (it needs `Verifier: FromRef<S>`).
#[derive(Clone, FromRef)]
struct AppState {
    verifier: Verifier,
    catalog: Arc<Mutex<Catalog>>,
}

impl AppState {
    /// The store. The lock is never held across an `.await`, and a panic
    /// while it was held cannot leave a grade half-written, so a poisoned
    /// lock is still safe to use.
    fn catalog(&self) -> MutexGuard<'_, Catalog> {
        self.catalog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The courses every fresh instance starts with.
fn seed() -> Catalog {
    [
        ("rust-101", "Introduction to Rust"),
        ("http-201", "Building HTTP APIs"),
    ]
    .into_iter()
    .map(|(id, title)| {
        let course = Course {
            id: id.to_owned(),
            title: title.to_owned(),
        };
        let entry = Entry {
            course,
            grades: Vec::new(),
        };
        (id.to_owned(), entry)
    })
    .collect()
}

/// Every error a handler answers, as `{"detail": ...}`. The 401s and 403s
/// are not here: `RequireScope` answers them itself, in warden's shape and
/// with its `WWW-Authenticate` challenge, before a handler runs.
#[derive(Debug)]
enum ApiError {
    /// 404: no such course.
    NotFound,
    /// The JSON body could not be read (400, 415, 422 as axum decides).
    Body(JsonRejection),
    /// 422: the body was read but a value is not acceptable.
    Invalid(String),
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::Body(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, detail) = match self {
            Self::NotFound => (StatusCode::NOT_FOUND, "Course not found".to_owned()),
            Self::Body(e) => (e.status(), e.body_text()),
            Self::Invalid(msg) => (StatusCode::UNPROCESSABLE_ENTITY, msg),
        };
        (status, Json(json!({ "detail": detail }))).into_response()
    }
}

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The body of `POST /courses/{id}/grades`.
#[derive(Debug, Deserialize)]
struct NewGrade {
    student: String,
    grade: String,
}

fn check_student(student: &str) -> Result<()> {
    if student.trim().is_empty() {
        return Err(ApiError::Invalid("student must not be empty".to_owned()));
    }
    if student.chars().count() > MAX_STUDENT {
        return Err(ApiError::Invalid(format!(
            "student must be at most {MAX_STUDENT} characters"
        )));
    }
    Ok(())
}

fn check_grade(grade: &str) -> Result<()> {
    if GRADES.contains(&grade) {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "grade must be one of {}",
            GRADES.join(", ")
        )))
    }
}

// In every handler `RequireScope` comes before `Path` and `Json`: extractors
// run in order, so a request without a valid token gets 401, and one without
// the scope 403, before anything about its path or body is looked at.

/// `GET /courses`: every course, by id.
async fn list_courses(
    State(state): State<AppState>,
    _: RequireScope<CoursesRead>,
) -> Json<Vec<Course>> {
    let courses = state
        .catalog()
        .values()
        .map(|entry| entry.course.clone())
        .collect();
    Json(courses)
}

/// `GET /courses/{id}/grades`: the course's grades, oldest first.
async fn list_grades(
    State(state): State<AppState>,
    _: RequireScope<CoursesRead>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Grade>>> {
    let catalog = state.catalog();
    let entry = catalog.get(&id).ok_or(ApiError::NotFound)?;
    Ok(Json(entry.grades.clone()))
}

/// `POST /courses/{id}/grades`: 201 and the new grade. Grades are only ever
/// added: a second grade for the same student is kept next to the first.
async fn post_grade(
    State(state): State<AppState>,
    teacher: RequireScope<GradesWrite>,
    Path(id): Path<String>,
    body: Result<Json<NewGrade>, JsonRejection>,
) -> Result<(StatusCode, Json<Grade>)> {
    // An unknown course answers 404 whatever the body.
    if !state.catalog().contains_key(&id) {
        return Err(ApiError::NotFound);
    }
    let Json(new) = body?;
    check_student(&new.student)?;
    check_grade(&new.grade)?;
    let grade = Grade {
        course: id,
        student: new.student,
        grade: new.grade,
        graded_by: teacher.into_claims().username,
    };
    state
        .catalog()
        .get_mut(&grade.course)
        .ok_or(ApiError::NotFound)?
        .grades
        .push(grade.clone());
    Ok((StatusCode::CREATED, Json(grade)))
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

/// The courses API, trusting the tokens `verifier` accepts, with the seeded
/// courses and no grades.
pub fn app(verifier: Verifier) -> Router {
    let state = AppState {
        verifier,
        catalog: Arc::new(Mutex::new(seed())),
    };
    Router::new()
        .route("/courses", get(list_courses))
        .route("/courses/{id}/grades", get(list_grades).post(post_grade))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// A verifier for the tokens of the warden server at `warden_url`: its
/// current public keys, EdDSA (warden's default algorithm) pinned, and its
/// base URL as the required issuer.
pub async fn verifier_from_warden(
    warden_url: &str,
) -> Result<Verifier, Box<dyn Error + Send + Sync>> {
    // warden's issuer is its base URL without a trailing slash.
    let issuer = warden_url.trim_end_matches('/');
    let jwks = reqwest::get(format!("{issuer}/.well-known/jwks.json"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(Verifier::from_jwks_json(&jwks, Algorithm::EdDSA, issuer)?)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("courses: {}", chain(&*e));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error + Send + Sync>> {
    let warden_url =
        std::env::var("WARDEN_URL").unwrap_or_else(|_| "http://127.0.0.1:8000".to_owned());
    let bind = std::env::var("COURSES_BIND").unwrap_or_else(|_| "127.0.0.1:8002".to_owned());

    let verifier = verifier_from_warden(&warden_url)
        .await
        .map_err(|e| format!("cannot get warden's keys from {warden_url}: {}", chain(&*e)))?;
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    println!(
        "courses listening on http://{}, trusting tokens of {warden_url}",
        listener.local_addr()?
    );
    axum::serve(listener, app(verifier)).await?;
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
