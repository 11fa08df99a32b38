//! A real warden for the tests of `warden-guard`'s `Remote` and of the
//! notes example: the library's `Server` on a port-0 listener with its own
//! SQLite database, which a test can stop (warden down) and whose keys it
//! can rotate the way `warden keys rotate` does.

#![allow(dead_code)] // each test binary uses part of it

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warden::app::Server;
use warden::config::Config;
use warden::http::state::AppState;

pub const PASSWORD: &str = "correct horse battery";

/// A role with only the scope the revocation feed needs, as a resource
/// server's account should have.
pub const FEED_ROLE_TOML: &str = "[roles.resource_server]\nscopes = [\"tokens:introspect\"]\n";

pub struct User {
    /// warden's user id: the `sub` of their tokens.
    pub id: String,
    pub token: String,
}

pub struct Warden {
    /// Where it listens.
    pub url: String,
    /// The `iss` of its tokens (its URL unless told otherwise).
    pub issuer: String,
    state: AppState,
    server: Option<Server>,
    shutdown: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<std::io::Result<()>>>,
    /// Its settings, for a second process on its database.
    env: Vec<(String, String)>,
    file: Option<std::path::PathBuf>,
    /// Holds the database; removed when the test ends.
    pub dir: Arc<TempDir>,
}

impl Warden {
    pub async fn spawn() -> Self {
        Self::start(None, None).await
    }

    /// `issuer` overrides the `iss` of its tokens and the metadata's
    /// `issuer`; `toml` is its configuration file.
    pub async fn start(issuer: Option<&str>, toml: Option<&str>) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::start_in(dir, issuer, toml).await
    }

    /// A warden on the database of an earlier one (whose directory `dir`
    /// is), as after a restart.
    pub async fn start_in(dir: Arc<TempDir>, issuer: Option<&str>, toml: Option<&str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind warden");
        let url = format!("http://{}", listener.local_addr().expect("warden address"));
        let issuer = issuer.unwrap_or(&url).to_owned();
        let database_url = format!("sqlite://{}", dir.path().join("w.db").display());
        let env = [
            ("WARDEN_DATABASE_URL", database_url),
            ("WARDEN_ISSUER", issuer.clone()),
            // Cheap hashing: these tests are about tokens, not passwords.
            ("WARDEN_ARGON2_MEMORY_KIB", "1024".to_owned()),
            ("WARDEN_ARGON2_ITERATIONS", "1".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        let file = toml.map(|text| {
            let path = dir.path().join("warden.toml");
            std::fs::write(&path, text).expect("write warden.toml");
            path
        });
        let config = Config::load_from(file.as_deref(), env.clone()).expect("warden config");
        let server = Server::build(config).await.expect("warden server");
        let (tx, rx) = oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(listener, async {
            let _ = rx.await;
        }));
        Self {
            url,
            issuer,
            state: server.state().clone(),
            server: Some(server),
            shutdown: Some(tx),
            serving: Some(serving),
            env: env.to_vec(),
            file,
            dir,
        }
    }

    /// Stops serving and closes the database: warden is down, and its port
    /// refuses connections.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await.expect("serve task").expect("served");
        }
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The services of another process on the same database, as the
    /// command line opens them (`warden users ...`): its writes reach the
    /// server only through the database, as the CLI's do.
    pub async fn cli(&self) -> warden::auth::Services {
        let config =
            Config::load_from(self.file.as_deref(), self.env.clone()).expect("warden config");
        warden::auth::Services::open(config, 1, 1)
            .await
            .expect("services")
    }

    /// Registers `username`.
    pub async fn register(&self, http: &Client, username: &str) -> String {
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
        user["id"].as_str().expect("user id").to_owned()
    }

    /// An access token of `username`.
    pub async fn login(&self, http: &Client, username: &str) -> String {
        let res = http
            .post(format!("{}/token", self.url))
            .form(&[("username", username), ("password", PASSWORD)])
            .send()
            .await
            .expect("POST /token");
        assert_eq!(res.status(), StatusCode::OK, "logging in {username}");
        let body: Value = res.json().await.expect("token JSON");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Registers `username` and logs in: their id and an access token.
    pub async fn sign_up(&self, http: &Client, username: &str) -> User {
        let id = self.register(http, username).await;
        let token = self.login(http, username).await;
        User { id, token }
    }

    /// Gives `username` exactly `roles`, as `warden users set-roles` does.
    pub async fn set_roles(&self, username: &str, roles: &[&str]) {
        warden::auth::accounts::set_roles(
            &self.state.services,
            username,
            roles.iter().map(|r| r.to_string()).collect(),
            warden::auth::accounts::Actor::Cli,
        )
        .await
        .expect("set roles");
    }

    /// Ends the session of `token` (`POST /logout`).
    pub async fn logout(&self, http: &Client, token: &str) {
        let res = http
            .post(format!("{}/logout", self.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("POST /logout");
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }

    /// The `kid` of its current signing key, from its JWKS.
    pub async fn kid(&self, http: &Client) -> String {
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

    /// Rotates the signing key the way `warden keys rotate` does (a new
    /// key in the database, picked up by the server's sync), and waits
    /// until the server signs with it. The new key's `kid`.
    pub async fn rotate_keys(&self) -> String {
        let state = &self.state;
        let mut rotation = warden::auth::keys::rotate(
            &state.config,
            state.store.as_ref(),
            warden::auth::tokens::now(),
        )
        .await
        .expect("rotate");
        // The access-token key comes first.
        let key = rotation.keys.swap_remove(0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while state.tokens.keys().current.kid != key.kid {
            assert!(Instant::now() < deadline, "warden picked up the new key");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        key.kid
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The JSON of one base64url segment of a JWT.
pub fn decode_segment(segment: &str) -> Value {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("JSON")
}

/// `token` with its header's `kid` replaced (the signature then no longer
/// matches, but a verifier refuses it before checking: no key by that id).
pub fn with_kid(token: &str, kid: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (header, rest) = token.split_once('.').expect("a JWT");
    let mut header = decode_segment(header);
    header["kid"] = kid.into();
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header JSON"));
    format!("{header}.{rest}")
}
