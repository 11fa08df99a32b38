//! Black-box tests of `examples/notes.rs`: a real warden server and the
//! notes service, each on its own port-0 listener, talked to over HTTP.

#[allow(dead_code)] // `main` is for `cargo run --example notes` only
#[path = "../examples/notes.rs"]
mod notes;
#[path = "support/warden.rs"]
mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Client, RequestBuilder, Response, StatusCode, header};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use support::{FEED_ROLE_TOML, PASSWORD, User, Warden};
use tokio::net::TcpListener;
use uuid::Uuid;
use warden_guard::Credentials;

/// warden, and the notes example trusting it.
struct TestApp {
    warden: Warden,
    notes_url: String,
    http: Client,
}

impl TestApp {
    async fn spawn() -> Self {
        Self::spawn_following(false).await
    }

    /// With `feed`, warden has an account `notes-feed` with the feed's
    /// scope, and the notes service follows revocations with it, as
    /// `NOTES_FEED_USERNAME`/`NOTES_FEED_PASSWORD` make it.
    async fn spawn_following(feed: bool) -> Self {
        let warden = Warden::start(None, Some(FEED_ROLE_TOML)).await;
        let http = Client::new();
        let credentials = if feed {
            warden.register(&http, "notes-feed").await;
            warden.set_roles("notes-feed", &["resource_server"]).await;
            Some(Credentials::password("notes-feed", PASSWORD))
        } else {
            None
        };
        let guard = notes::guard(&warden.url, credentials, None)
            .await
            .expect("guard for warden");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind notes");
        let notes_url = format!("http://{}", listener.local_addr().expect("notes address"));
        let app = notes::app(guard.verifier());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            warden,
            notes_url,
            http,
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
    let other = Warden::start(Some(&app.warden.url), None).await;
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
    let other = Warden::start(Some(&app.warden.url), None).await;
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

/// Polls `GET /notes` with `token` until it answers 401; how long after
/// `since` that was. Panics after `within`.
async fn until_refused(app: &TestApp, token: &str, since: Instant, within: Duration) -> Duration {
    loop {
        let res = app
            .request(reqwest::Method::GET, "/notes", Some(token))
            .send()
            .await
            .expect("GET /notes");
        if res.status() == StatusCode::UNAUTHORIZED {
            let (status, challenge, body) = parts(res).await;
            assert_invalid_token(status, challenge, body);
            return since.elapsed();
        }
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            since.elapsed() < within,
            "still accepted after {:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// The issue asks for revocation to reach the notes service "within about a
// second"; the bound asserted is a generous 3 s (a loaded CI machine), the
// delay measured is printed.

#[tokio::test]
async fn a_logout_at_warden_is_refused_by_notes_within_a_second() {
    let app = TestApp::spawn_following(true).await;
    let alice = app.sign_up("alice").await;
    app.create_note(&alice, "groceries", "milk").await;

    let logged_out = Instant::now();
    app.warden.logout(&app.http, &alice.token).await;
    let delay = until_refused(&app, &alice.token, logged_out, Duration::from_secs(3)).await;
    println!("logout at warden -> 401 at notes after {delay:?}");
    assert!(delay < Duration::from_secs(3), "{delay:?}");

    // A new login is a new session: welcome back.
    let again = User {
        id: alice.id.clone(),
        token: app.warden.login(&app.http, "alice").await,
    };
    assert_eq!(app.list_notes(&again).await.len(), 1);
}

#[tokio::test]
async fn a_user_disabled_at_warden_is_refused_by_notes_within_a_second() {
    let app = TestApp::spawn_following(true).await;
    app.warden.register(&app.http, "root").await;
    app.warden.set_roles("root", &["admin"]).await;
    let admin = app.warden.login(&app.http, "root").await;
    let bob = app.sign_up("bob").await;
    assert!(app.list_notes(&bob).await.is_empty());

    let disabled = Instant::now();
    let res = app
        .http
        .patch(format!("{}/users/{}", app.warden.url, bob.id))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .expect("PATCH /users/{id}");
    assert_eq!(res.status(), StatusCode::OK);
    let delay = until_refused(&app, &bob.token, disabled, Duration::from_secs(3)).await;
    println!("disable at warden -> 401 at notes after {delay:?}");
    assert!(delay < Duration::from_secs(3), "{delay:?}");
}

#[tokio::test]
async fn a_user_disabled_from_the_command_line_is_refused_by_notes_within_a_second() {
    let app = TestApp::spawn_following(true).await;
    let bob = app.sign_up("bob").await;
    assert!(app.list_notes(&bob).await.is_empty());
    // Another process on warden's database, as `warden users disable`:
    // the server learns of it from the database (its sync, every 100 ms).
    let cli = app.warden.cli().await;

    let disabled = Instant::now();
    let changes = warden::domain::UserChanges {
        disabled: Some(true),
        ..Default::default()
    };
    warden::auth::accounts::update(
        &cli,
        bob.id.parse().unwrap(),
        changes,
        warden::auth::accounts::Actor::Cli,
    )
    .await
    .expect("disable bob");
    let delay = until_refused(&app, &bob.token, disabled, Duration::from_secs(3)).await;
    println!("disable by another process -> 401 at notes after {delay:?}");
    assert!(delay < Duration::from_secs(3), "{delay:?}");
}

#[tokio::test]
async fn without_a_feed_account_a_logged_out_token_works_until_it_expires() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("alice").await;
    app.warden.logout(&app.http, &alice.token).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app.list_notes(&alice).await.is_empty(), "still 200");
}

#[tokio::test]
async fn a_token_signed_with_a_rotated_key_works_at_notes_without_a_restart() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("alice").await;
    app.create_note(&alice, "groceries", "milk").await;
    let kid = app.warden.rotate_keys().await;
    let fresh = User {
        id: alice.id.clone(),
        token: app.warden.login(&app.http, "alice").await,
    };
    let header = decode_segment(fresh.token.split('.').next().unwrap());
    assert_eq!(header["kid"], kid.as_str());
    assert_eq!(app.list_notes(&fresh).await.len(), 1, "200 at once");
    assert_eq!(
        app.list_notes(&alice).await.len(),
        1,
        "the old key still works"
    );
}
