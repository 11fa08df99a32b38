//! A real warden on a loopback port with its own SQLite file, and typed
//! helpers to talk to it over HTTP.

use std::sync::Arc;

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A password that passes every rule.
pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub client: Client,
    pub dir: Arc<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

/// Settings every test server gets: a private database, and cheap argon2
/// so the suite runs in seconds (one test checks the OWASP defaults).
fn base_env(dir: &TempDir, url: &str) -> Vec<(String, String)> {
    vec![
        (
            "WARDEN_DATABASE_URL".into(),
            format!("sqlite://{}/warden.db", dir.path().display()),
        ),
        ("WARDEN_ISSUER".into(), url.to_owned()),
        ("WARDEN_ARGON2_MEMORY_KIB".into(), "256".into()),
        ("WARDEN_ARGON2_ITERATIONS".into(), "1".into()),
    ]
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(env: &[(&str, &str)]) -> Self {
        Self::spawn_in(Arc::new(tempfile::tempdir().unwrap()), env).await
    }

    /// Starts a server with the TOML configuration `toml`.
    pub async fn spawn_with_file(toml: &str, env: &[(&str, &str)]) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let path = dir.path().join("warden.toml");
        std::fs::write(&path, toml).unwrap();
        Self::start(dir, Some(&path), env).await
    }

    /// Starts a server on the database in `dir` (so a test can restart one).
    pub async fn spawn_in(dir: Arc<TempDir>, env: &[(&str, &str)]) -> Self {
        Self::start(dir, None, env).await
    }

    async fn start(
        dir: Arc<TempDir>,
        file: Option<&std::path::Path>,
        env: &[(&str, &str)],
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut vars = base_env(&dir, &url);
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = warden::config::Config::load_from(file, vars).expect("test config is valid");
        let state = warden::app::build_state(config)
            .await
            .expect("server state");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(warden::app::serve(listener, state, async {
            let _ = rx.await;
        }));
        Self {
            url,
            client: Client::new(),
            dir,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) -> Arc<TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        self.dir.clone()
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.at(path)).send().await.unwrap()
    }

    pub async fn register(&self, body: Value) -> Response {
        self.client
            .post(self.at("/users"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Registers `username` with `username@example.com` and [`PASSWORD`].
    pub async fn register_ok(&self, username: &str) -> Value {
        let r = self
            .register(json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "password": PASSWORD,
            }))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "registering {username}");
        r.json().await.unwrap()
    }

    /// `POST /token` with a form.
    pub async fn login_form(&self, form: &[(&str, &str)]) -> Response {
        self.client
            .post(self.at("/token"))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.login_form(&[("username", username), ("password", password)])
            .await
    }

    /// A valid access token for `username` (with [`PASSWORD`]).
    pub async fn token(&self, username: &str) -> String {
        let r = self.login(username, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK, "login of {username}");
        let body: Value = r.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Registers `username` and logs in.
    pub async fn user_with_token(&self, username: &str) -> (Value, String) {
        let user = self.register_ok(username).await;
        let token = self.token(username).await;
        (user, token)
    }

    /// The server's database, opened beside it (a second connection pool
    /// on the same SQLite file), for setting up state the API cannot.
    pub async fn store(&self) -> Arc<dyn warden::storage::Store> {
        warden::storage::connect(&self.database_url())
            .await
            .unwrap()
    }

    pub fn database_url(&self) -> String {
        format!("sqlite://{}/warden.db", self.dir.path().display())
    }

    /// Gives `username` exactly `roles`, as an operator would.
    pub async fn set_roles(&self, username: &str, roles: &[&str]) {
        let store = self.store().await;
        let user = store.user_by_login(username).await.unwrap().unwrap();
        let changes = warden::storage::UserChanges {
            roles: Some(roles.iter().map(|r| r.to_string()).collect()),
            ..Default::default()
        };
        let now = warden::tokens::now();
        store
            .update_user(
                user.id,
                &changes,
                warden::tokens::next_valid_after(now),
                now,
            )
            .await
            .unwrap();
    }

    /// Registers `username` with the `admin` role and returns a token.
    pub async fn admin_token(&self, username: &str) -> (Value, String) {
        let user = self.register_ok(username).await;
        self.set_roles(username, &["admin"]).await;
        let token = self.token(username).await;
        (user, token)
    }

    pub async fn me(&self, token: &str) -> Response {
        self.client
            .get(self.at("/users/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Asserts the contract's 401: status, exact detail, and challenge.
pub async fn assert_unauthorized(r: Response, detail: &str) {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    if detail == "Not authenticated" {
        assert!(!challenge.contains("error="), "{challenge}");
    } else {
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
    }
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({ "detail": detail }));
}

/// The `loc`s of a 422 body.
pub async fn error_locs(r: Response) -> Vec<Vec<String>> {
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    body["detail"]
        .as_array()
        .expect("422 detail is a list")
        .iter()
        .map(|e| {
            assert!(e["msg"].is_string() && e["type"].is_string(), "{e}");
            e["loc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}
