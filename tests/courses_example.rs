//! Black-box tests of `examples/courses.rs`: a real warden server configured
//! with `examples/courses/warden.toml` (roles `student` and `teacher`), its
//! accounts created with the real `warden users create`, and the courses
//! service, each on its own port-0 listener, talked to over HTTP.

#[allow(dead_code)] // `main` is for `cargo run --example courses` only
#[path = "../examples/courses.rs"]
mod courses;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode, header};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use warden::app::Server;
use warden::config::Config;

const PASSWORD: &str = "correct horse battery";

/// The roles file the example documents, used as it is.
const ROLES_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/courses/warden.toml");

/// The student and the teacher every test starts with.
const STUDENT: &str = "sam";
const TEACHER: &str = "tess";

/// Creates `username` with `role` in the database at `database_url`, the way
/// the example's instructions do: `warden --config warden.toml users create
/// --role ... --password-stdin`.
fn create_user(database_url: &str, username: &str, role: &str) {
    let email = format!("{username}@example.com");
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "--config",
            ROLES_FILE,
            "users",
            "create",
            "--username",
            username,
            "--email",
            &email,
            "--role",
            role,
            "--password-stdin",
        ])
        // Nothing from the developer's environment (a WARDEN_CONFIG, say).
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WARDEN_DATABASE_URL", database_url)
        // Cheap hashing: these tests are about scopes, not passwords.
        .env("WARDEN_ARGON2_MEMORY_KIB", "256")
        .env("WARDEN_ARGON2_ITERATIONS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run warden users create");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("wait for warden");
    assert!(
        out.status.success(),
        "warden users create {username} --role {role}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("created user {username}")) && stdout.contains(role),
        "{stdout}"
    );
}

/// warden with the courses roles, and the courses example trusting it.
struct TestApp {
    warden_url: String,
    courses_url: String,
    http: Client,
    /// Holds warden's database; removed when the test ends.
    _dir: TempDir,
}

impl TestApp {
    async fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = format!("sqlite://{}", dir.path().join("w.db").display());
        // `users create` needs an existing database, as a person's would
        // (made by `warden migrate` or a first `warden serve`).
        let migrated = Command::new(env!("CARGO_BIN_EXE_warden"))
            .arg("migrate")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WARDEN_DATABASE_URL", &database_url)
            .output()
            .expect("run warden migrate");
        assert!(
            migrated.status.success(),
            "warden migrate: {}",
            String::from_utf8_lossy(&migrated.stderr)
        );
        create_user(&database_url, STUDENT, "student");
        create_user(&database_url, TEACHER, "teacher");

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind warden");
        let warden_url = format!("http://{}", listener.local_addr().expect("warden address"));
        let env = [
            ("WARDEN_DATABASE_URL", database_url),
            ("WARDEN_ISSUER", warden_url.clone()),
            ("WARDEN_ARGON2_MEMORY_KIB", "256".to_owned()),
            ("WARDEN_ARGON2_ITERATIONS", "1".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        let config = Config::load_from(Some(Path::new(ROLES_FILE)), env).expect("warden config");
        let server = Server::build(config).await.expect("warden server");
        tokio::spawn(server.run(listener, std::future::pending()));

        let verifier = courses::verifier_from_warden(&warden_url)
            .await
            .expect("verifier from warden's JWKS");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind courses");
        let courses_url = format!("http://{}", listener.local_addr().expect("courses address"));
        tokio::spawn(async move { axum::serve(listener, courses::app(verifier)).await });
        Self {
            warden_url,
            courses_url,
            http: Client::new(),
            _dir: dir,
        }
    }

    /// Logs `username` in, asking for `scope` if given: warden's token
    /// response.
    async fn login(&self, username: &str, scope: Option<&str>) -> Value {
        let mut form = vec![("username", username), ("password", PASSWORD)];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let res = self
            .http
            .post(format!("{}/token", self.warden_url))
            .form(&form)
            .send()
            .await
            .expect("POST /token");
        assert_eq!(res.status(), StatusCode::OK, "logging in {username}");
        res.json().await.expect("token JSON")
    }

    /// An access token of `username`, after checking that warden granted
    /// exactly `scope` (space-separated, in sorted order).
    async fn token(&self, username: &str, scope: &str) -> String {
        let body = self.login(username, None).await;
        assert_eq!(body["scope"], scope, "scopes granted to {username}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// The student's token: the `student` role grants `courses:read`.
    async fn student(&self) -> String {
        self.token(STUDENT, "courses:read me").await
    }

    /// The teacher's token: the `teacher` role adds `grades:write`.
    async fn teacher(&self) -> String {
        self.token(TEACHER, "courses:read grades:write me").await
    }

    /// Registers `username` through warden's API, which gives the built-in
    /// role `user` (scope `me` only), and returns their token.
    async fn plain_user(&self, username: &str) -> String {
        let res = self
            .http
            .post(format!("{}/users", self.warden_url))
            .json(&json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "password": PASSWORD,
            }))
            .send()
            .await
            .expect("POST /users");
        assert_eq!(res.status(), StatusCode::CREATED, "registering {username}");
        let user: Value = res.json().await.expect("user JSON");
        assert_eq!(user["roles"], json!(["user"]));
        self.token(username, "me").await
    }

    /// A request to the courses service, with `token` as bearer if given.
    fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{path}", self.courses_url));
        match token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    async fn list_courses(&self, token: &str) -> Response {
        self.request(Method::GET, "/courses", Some(token))
            .send()
            .await
            .expect("GET /courses")
    }

    async fn list_grades(&self, token: &str, course: &str) -> Response {
        self.request(
            Method::GET,
            &format!("/courses/{course}/grades"),
            Some(token),
        )
        .send()
        .await
        .expect("GET /courses/{id}/grades")
    }

    async fn post_grade(&self, token: &str, course: &str, student: &str, grade: &str) -> Response {
        self.request(
            Method::POST,
            &format!("/courses/{course}/grades"),
            Some(token),
        )
        .json(&json!({ "student": student, "grade": grade }))
        .send()
        .await
        .expect("POST /courses/{id}/grades")
    }
}

/// Status, `WWW-Authenticate` and JSON body of a response.
async fn parts(res: Response) -> (StatusCode, Option<String>, Value) {
    let status = res.status();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ASCII challenge").to_owned());
    let body = res.json().await.expect("JSON body");
    (status, challenge, body)
}

/// Status, `WWW-Authenticate` and the exact body text of a response.
async fn raw_parts(res: Response) -> (StatusCode, Option<String>, String) {
    let status = res.status();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ASCII challenge").to_owned());
    let body = res.text().await.expect("body text");
    (status, challenge, body)
}

/// The contract's 403 for a valid token without `scope`, to the byte.
fn assert_insufficient_scope(
    (status, challenge, body): (StatusCode, Option<String>, String),
    scope: &str,
) {
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        challenge,
        Some(format!(
            r#"Bearer error="insufficient_scope", scope="{scope}""#
        ))
    );
    assert_eq!(body, r#"{"detail":"Not enough permissions"}"#);
}

#[tokio::test]
async fn a_student_lists_courses() {
    let app = TestApp::spawn().await;
    let student = app.student().await;

    let (status, _, body) = parts(app.list_courses(&student).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!([
            { "id": "http-201", "title": "Building HTTP APIs" },
            { "id": "rust-101", "title": "Introduction to Rust" },
        ])
    );
}

#[tokio::test]
async fn a_student_posting_a_grade_gets_403_insufficient_scope() {
    let app = TestApp::spawn().await;
    let student = app.student().await;

    let res = app.post_grade(&student, "rust-101", STUDENT, "A").await;
    assert_insufficient_scope(raw_parts(res).await, "grades:write");

    // And nothing was recorded.
    let res = app.list_grades(&student, "rust-101").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.expect("grades"), json!([]));
}

#[tokio::test]
async fn a_teacher_posts_a_grade_and_it_shows_up_in_the_grades_list() {
    let app = TestApp::spawn().await;
    let teacher = app.teacher().await;
    let student = app.student().await;

    let res = app.post_grade(&teacher, "rust-101", STUDENT, "A").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let grade: Value = res.json().await.expect("grade JSON");
    assert_eq!(
        grade,
        json!({
            "course": "rust-101",
            "student": STUDENT,
            "grade": "A",
            "graded_by": TEACHER,
        })
    );

    for token in [&teacher, &student] {
        let res = app.list_grades(token, "rust-101").await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.json::<Value>().await.expect("grades"),
            json!([grade.clone()])
        );
    }
    // Only the graded course has it.
    let res = app.list_grades(&student, "http-201").await;
    assert_eq!(res.json::<Value>().await.expect("grades"), json!([]));
}

#[tokio::test]
async fn a_plain_warden_user_gets_403_on_listing_courses() {
    let app = TestApp::spawn().await;
    let uma = app.plain_user("uma").await;

    assert_insufficient_scope(
        raw_parts(app.list_courses(&uma).await).await,
        "courses:read",
    );
}

#[tokio::test]
async fn every_route_without_a_token_answers_401_not_authenticated() {
    let app = TestApp::spawn().await;
    let requests = [
        ("GET /courses", app.request(Method::GET, "/courses", None)),
        (
            "GET /courses/{id}/grades",
            app.request(Method::GET, "/courses/rust-101/grades", None),
        ),
        (
            "POST /courses/{id}/grades",
            app.request(Method::POST, "/courses/rust-101/grades", None)
                .json(&json!({ "student": STUDENT, "grade": "A" })),
        ),
    ];

    for (route, req) in requests {
        let (status, challenge, body) = parts(req.send().await.expect(route)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{route}");
        assert_eq!(challenge.as_deref(), Some("Bearer"), "{route}");
        assert_eq!(body, json!({ "detail": "Not authenticated" }), "{route}");
    }
}

#[tokio::test]
async fn a_teacher_token_narrowed_to_courses_read_gets_403_on_posting_grades() {
    let app = TestApp::spawn().await;
    let body = app.login(TEACHER, Some("courses:read")).await;
    assert_eq!(body["scope"], "courses:read");
    let narrowed = body["access_token"].as_str().expect("access_token");

    // The token is good for what it kept...
    assert_eq!(app.list_courses(narrowed).await.status(), StatusCode::OK);
    // ...but the teacher's role no longer matters: the scope is gone.
    let res = app.post_grade(narrowed, "rust-101", STUDENT, "A").await;
    assert_insufficient_scope(raw_parts(res).await, "grades:write");
}

#[tokio::test]
async fn an_unknown_course_answers_404() {
    let app = TestApp::spawn().await;
    let student = app.student().await;
    let teacher = app.teacher().await;
    let not_found = (
        StatusCode::NOT_FOUND,
        None,
        json!({ "detail": "Course not found" }),
    );

    assert_eq!(
        parts(app.list_grades(&student, "cobol-999").await).await,
        not_found
    );
    assert_eq!(
        parts(app.post_grade(&teacher, "cobol-999", STUDENT, "A").await).await,
        not_found
    );
}
