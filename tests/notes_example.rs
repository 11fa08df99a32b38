//! Black-box tests of `examples/notes.rs`: a real warden server and the
//! notes service, each on its own port-0 listener, talked to over HTTP.

#[allow(dead_code)] // `main` is for `cargo run --example notes` only
#[path = "../examples/notes.rs"]
mod notes;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Client, RequestBuilder, Response, StatusCode, header};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use uuid::Uuid;
use warden::app::Server;
use warden::config::Config;

const PASSWORD: &str = "correct horse battery";

/// A warden server on a free port, with its own SQLite database and so its
/// own signing key.
struct Warden {
    url: String,
    /// Holds the database; removed when the test ends.
    _dir: TempDir,
}

impl Warden {
    async fn spawn() -> Self {
        Self::spawn_with_issuer(None).await
    }

    /// `issuer` overrides the `iss` of its tokens (default: its own URL).
    async fn spawn_with_issuer(issuer: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind warden");
        let url = format!("http://{}", listener.local_addr().expect("warden address"));
        let issuer = issuer.unwrap_or(&url).to_owned();
        let database_url = format!("sqlite://{}", dir.path().join("w.db").display());
        let env = [
            ("WARDEN_DATABASE_URL", database_url),
            ("WARDEN_ISSUER", issuer),
            // Cheap hashing: these tests are about tokens, not passwords.
            ("WARDEN_ARGON2_MEMORY_KIB", "1024".to_owned()),
            ("WARDEN_ARGON2_ITERATIONS", "1".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        let config = Config::load_from(None, env).expect("warden config");
        let server = Server::build(config).await.expect("warden server");
        tokio::spawn(server.run(listener, std::future::pending()));
        Self { url, _dir: dir }
    }

    /// Registers `username` and logs in: their id and an access token.
    async fn sign_up(&self, http: &Client, username: &str) -> User {
        let res = http
            .post(format!("{}/users", self.url))
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
        let id = user["id"].as_str().expect("user id").to_owned();

        let res = http
            .post(format!("{}/token", self.url))
            .form(&[("username", username), ("password", PASSWORD)])
            .send()
            .await
            .expect("POST /token");
        assert_eq!(res.status(), StatusCode::OK, "logging in {username}");
        let body: Value = res.json().await.expect("token JSON");
        let token = body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned();
        User { id, token }
    }

    /// The `kid` of its (only) signing key, from its JWKS.
    async fn kid(&self, http: &Client) -> String {
        let jwks: Value = http
            .get(format!("{}/.well-known/jwks.json", self.url))
            .send()
            .await
            .expect("GET jwks")
            .json()
            .await
            .expect("JWKS JSON");
        jwks["keys"][0]["kid"].as_str().expect("kid").to_owned()
    }
}

struct User {
    /// warden's user id: the `sub` of their tokens.
    id: String,
    token: String,
}

/// warden, and the notes example trusting it.
struct TestApp {
    warden: Warden,
    notes_url: String,
    http: Client,
}

impl TestApp {
    async fn spawn() -> Self {
        let warden = Warden::spawn().await;
        let verifier = notes::verifier_from_warden(&warden.url)
            .await
            .expect("verifier from warden's JWKS");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind notes");
        let notes_url = format!("http://{}", listener.local_addr().expect("notes address"));
        tokio::spawn(async move { axum::serve(listener, notes::app(verifier)).await });
        Self {
            warden,
            notes_url,
            http: Client::new(),
        }
    }

    async fn sign_up(&self, username: &str) -> User {
        self.warden.sign_up(&self.http, username).await
    }

    /// A request to the notes service, with `token` as bearer if given.
    fn request(&self, method: reqwest::Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{path}", self.notes_url));
        match token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    async fn create_note(&self, user: &User, title: &str, body: &str) -> Value {
        let res = self
            .request(reqwest::Method::POST, "/notes", Some(&user.token))
            .json(&json!({ "title": title, "body": body }))
            .send()
            .await
            .expect("POST /notes");
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.expect("note JSON")
    }

    async fn list_notes(&self, user: &User) -> Vec<Value> {
        let res = self
            .request(reqwest::Method::GET, "/notes", Some(&user.token))
            .send()
            .await
            .expect("GET /notes");
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("notes JSON")
    }

    async fn get_note(&self, user: &User, id: &str) -> Response {
        self.request(
            reqwest::Method::GET,
            &format!("/notes/{id}"),
            Some(&user.token),
        )
        .send()
        .await
        .expect("GET /notes/{id}")
    }

    async fn patch_note(&self, user: &User, id: &str, changes: Value) -> Response {
        self.request(
            reqwest::Method::PATCH,
            &format!("/notes/{id}"),
            Some(&user.token),
        )
        .json(&changes)
        .send()
        .await
        .expect("PATCH /notes/{id}")
    }

    async fn delete_note(&self, user: &User, id: &str) -> Response {
        self.request(
            reqwest::Method::DELETE,
            &format!("/notes/{id}"),
            Some(&user.token),
        )
        .send()
        .await
        .expect("DELETE /notes/{id}")
    }
}

/// Status, `WWW-Authenticate` and JSON body of a response.
async fn parts(res: Response) -> (StatusCode, Option<String>, Value) {
    let status = res.status();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ASCII challenge").to_owned());
    let body = res.json().await.expect("JSON error body");
    (status, challenge, body)
}

fn assert_invalid_token(status: StatusCode, challenge: Option<String>, body: Value) {
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert_eq!(body, json!({ "detail": "Invalid token" }));
}

/// The JSON of one base64url segment of a JWT.
fn decode_segment(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("JSON")
}

#[tokio::test]
async fn a_user_creates_and_lists_their_own_notes() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("alice").await;

    assert!(app.list_notes(&alice).await.is_empty());
    let first = app.create_note(&alice, "groceries", "milk, eggs").await;
    let second = app.create_note(&alice, "ideas", "a notes app").await;

    let id = Uuid::parse_str(first["id"].as_str().expect("id")).expect("UUID id");
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(first["owner"], alice.id.as_str());
    assert_eq!(first["title"], "groceries");
    assert_eq!(first["body"], "milk, eggs");
    assert_ne!(first["id"], second["id"]);
    // Oldest first.
    assert_eq!(app.list_notes(&alice).await, vec![first, second]);
}

#[tokio::test]
async fn a_user_reads_edits_and_deletes_their_own_note() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("alice").await;
    let note = app.create_note(&alice, "groceries", "milk").await;
    let id = note["id"].as_str().expect("id");

    let res = app.get_note(&alice, id).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.expect("note"), note);

    let res = app
        .patch_note(&alice, id, json!({ "body": "milk, eggs" }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let changed: Value = res.json().await.expect("note");
    assert_eq!(
        changed["title"], "groceries",
        "a field left out stays as it was"
    );
    assert_eq!(changed["body"], "milk, eggs");
    assert_eq!(changed["id"], note["id"]);

    assert_eq!(
        app.delete_note(&alice, id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get_note(&alice, id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(app.list_notes(&alice).await.is_empty());
}

#[tokio::test]
async fn another_users_note_answers_404_to_read_edit_and_delete() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("alice").await;
    let bob = app.sign_up("bob").await;
    let note = app.create_note(&alice, "diary", "secret").await;
    let id = note["id"].as_str().expect("id");
    let not_found = (
        StatusCode::NOT_FOUND,
        None,
        json!({ "detail": "Note not found" }),
    );

    // Exactly what a note that does not exist answers: nothing tells bob
    // that this id is taken.
    let missing = Uuid::now_v7().to_string();
    assert_eq!(parts(app.get_note(&bob, &missing).await).await, not_found);

    assert_eq!(parts(app.get_note(&bob, id).await).await, not_found);
    let hijack = json!({ "title": "pwned", "body": "pwned" });
    assert_eq!(
        parts(app.patch_note(&bob, id, hijack).await).await,
        not_found
    );
    assert_eq!(parts(app.delete_note(&bob, id).await).await, not_found);

    // And alice's note is untouched.
    let res = app.get_note(&alice, id).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.expect("note"), note);
}

#[tokio::test]
async fn a_user_does_not_see_another_users_notes_in_the_list() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("alice").await;
    let bob = app.sign_up("bob").await;
    let alices = app.create_note(&alice, "diary", "secret").await;
    let bobs = app.create_note(&bob, "todo", "call alice").await;

    assert_eq!(app.list_notes(&alice).await, vec![alices]);
    assert_eq!(app.list_notes(&bob).await, vec![bobs]);
}

#[tokio::test]
async fn every_route_without_a_token_answers_401_not_authenticated() {
    let app = TestApp::spawn().await;
    let note = format!("/notes/{}", Uuid::now_v7());
    let requests = [
        (
            "GET /notes",
            app.request(reqwest::Method::GET, "/notes", None),
        ),
        (
            "POST /notes",
            app.request(reqwest::Method::POST, "/notes", None)
                .json(&json!({ "title": "t", "body": "b" })),
        ),
        (
            "GET /notes/{id}",
            app.request(reqwest::Method::GET, &note, None),
        ),
        (
            "PATCH /notes/{id}",
            app.request(reqwest::Method::PATCH, &note, None)
                .json(&json!({ "title": "t" })),
        ),
        (
            "DELETE /notes/{id}",
            app.request(reqwest::Method::DELETE, &note, None),
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
async fn a_tampered_token_answers_401_invalid_token() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("alice").await;
    let list = |token: &str| {
        app.request(reqwest::Method::GET, "/notes", Some(token))
            .send()
    };
    assert_eq!(
        list(&alice.token).await.expect("GET /notes").status(),
        StatusCode::OK
    );

    // Flip the first character of the signature (the last character may
    // carry only padding bits, so changing it could leave the bytes as
    // they were).
    let (signed, signature) = alice.token.rsplit_once('.').expect("a JWT");
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signed}.{flipped}{}", &signature[1..]);

    let (status, challenge, body) = parts(list(&tampered).await.expect("GET /notes")).await;
    assert_invalid_token(status, challenge, body);
}

#[tokio::test]
async fn a_token_from_a_different_warden_answers_401_invalid_token() {
    let app = TestApp::spawn().await;
    // Same issuer URL, so the only difference is the signing key: the token
    // is refused because of whose key signed it, not because of its `iss`.
    let other = Warden::spawn_with_issuer(Some(&app.warden.url)).await;
    let mallory = other.sign_up(&app.http, "mallory").await;
    let (header, payload, _) = {
        let mut it = mallory.token.split('.');
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };
    assert_eq!(decode_segment(payload)["iss"], app.warden.url.as_str());
    assert_ne!(
        decode_segment(header)["kid"],
        app.warden.kid(&app.http).await.as_str()
    );

    let res = app
        .request(reqwest::Method::GET, "/notes", Some(&mallory.token))
        .send()
        .await
        .expect("GET /notes");
    let (status, challenge, body) = parts(res).await;
    assert_invalid_token(status, challenge, body);
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_the_trusted_kid_answers_401_invalid_token() {
    let app = TestApp::spawn().await;
    let other = Warden::spawn_with_issuer(Some(&app.warden.url)).await;
    let mallory = other.sign_up(&app.http, "mallory").await;

    // Relabel the foreign token with the trusted key's id, so that it gets
    // past key selection and only the signature check can refuse it.
    let (header, rest) = mallory.token.split_once('.').expect("a JWT");
    let mut header = decode_segment(header);
    header["kid"] = app.warden.kid(&app.http).await.into();
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header JSON"));
    let forged = format!("{header}.{rest}");

    let res = app
        .request(reqwest::Method::GET, "/notes", Some(&forged))
        .send()
        .await
        .expect("GET /notes");
    let (status, challenge, body) = parts(res).await;
    assert_invalid_token(status, challenge, body);
}
