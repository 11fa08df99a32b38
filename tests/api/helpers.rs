//! A real warden on a loopback port with its own database, and typed
//! helpers to talk to it over HTTP.
//!
//! The same tests run twice: `tests/api/main.rs` on SQLite (a file in a
//! temporary directory), `tests/api_postgres.rs` on PostgreSQL (a fresh
//! database per test, dropped afterwards). `crate::BACKEND` says which.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::{Client, Response, StatusCode, header};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use warden::auth::sessions::{ClientMeta, SessionVia, open_session_with};
use warden::auth::tokens::now;
use warden::domain::UserRecord;

/// A password that passes every rule.
pub const PASSWORD: &str = "correct horse battery";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server the PostgreSQL half uses (trust auth).
pub fn postgres_admin_url() -> String {
    std::env::var("WARDEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_owned())
}

/// Why PostgreSQL cannot be used, or `None` when it answers. Checked once.
fn postgres_unreachable() -> Option<String> {
    static REASON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    REASON
        .get_or_init(|| {
            let url = postgres_admin_url();
            let u = match url::Url::parse(&url) {
                Ok(u) => u,
                Err(e) => return Some(format!("WARDEN_TEST_POSTGRES_URL is not a URL: {e}")),
            };
            let host = u.host_str().unwrap_or("127.0.0.1").to_owned();
            let port = u.port().unwrap_or(5432);
            let addr = match std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                .ok()
                .and_then(|mut a| a.next())
            {
                Some(a) => a,
                None => return Some(format!("cannot resolve {host}")),
            };
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
                .err()
                .map(|e| format!("cannot connect to {addr}: {e}"))
        })
        .clone()
}

/// The PostgreSQL half cannot run: fail when it is required (CI sets
/// `WARDEN_TEST_REQUIRE_POSTGRES`), else skip the whole binary, saying why.
fn skip_or_fail_without_postgres() {
    let Some(reason) = postgres_unreachable() else {
        return;
    };
    if std::env::var_os("WARDEN_TEST_REQUIRE_POSTGRES").is_some() {
        panic!("PostgreSQL is required (WARDEN_TEST_REQUIRE_POSTGRES) but {reason}");
    }
    // Written to the real stderr: the test harness would swallow eprintln!.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\nskipping the PostgreSQL half of the API tests: {reason}"
    );
    std::process::exit(0);
}

/// Where one test server keeps its data. With PostgreSQL, a database of its
/// own, dropped when the last server using it is gone.
pub struct TestEnv {
    pub dir: TempDir,
    pub database_url: String,
    postgres_db: Option<String>,
}

impl TestEnv {
    pub async fn new() -> Arc<Self> {
        let dir = tempfile::tempdir().unwrap();
        match crate::BACKEND {
            Backend::Sqlite => {
                let database_url = format!("sqlite://{}/warden.db", dir.path().display());
                Arc::new(Self {
                    dir,
                    database_url,
                    postgres_db: None,
                })
            }
            Backend::Postgres => {
                skip_or_fail_without_postgres();
                let name = format!("warden_test_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&postgres_admin_url())
                    .await
                    .expect("PostgreSQL is reachable");
                sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
                let mut url = url::Url::parse(&postgres_admin_url()).unwrap();
                url.set_path(&name);
                Arc::new(Self {
                    dir,
                    database_url: url.to_string(),
                    postgres_db: Some(name),
                })
            }
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let Some(name) = self.postgres_db.take() else {
            return;
        };
        // Drop may run inside the test's runtime: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(admin) = sqlx::PgPool::connect(&postgres_admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "drop database if exists {name} with (force)"
                    )))
                    .execute(&admin)
                    .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub client: Client,
    pub env: Arc<TestEnv>,
    /// The server's own state, for what HTTP cannot observe (counters).
    pub state: warden::http::state::AppState,
    /// Owns the background tasks; dropping a `TestApp` aborts them.
    server: Option<warden::app::Server>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

/// Settings every test server gets: a private database, and cheap argon2
/// so the suite runs in seconds (one test checks the OWASP defaults).
fn base_env(env: &TestEnv, url: &str) -> Vec<(String, String)> {
    vec![
        ("WARDEN_DATABASE_URL".into(), env.database_url.clone()),
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
        Self::spawn_in(TestEnv::new().await, env).await
    }

    /// Starts a server with the TOML configuration `toml`.
    pub async fn spawn_with_file(toml: &str, env: &[(&str, &str)]) -> Self {
        let test_env = TestEnv::new().await;
        let path = test_env.dir.path().join("warden.toml");
        std::fs::write(&path, toml).unwrap();
        Self::start(test_env, Some(&path), env).await
    }

    /// Starts a server on the database of `test_env` (so a test can
    /// restart one).
    pub async fn spawn_in(test_env: Arc<TestEnv>, env: &[(&str, &str)]) -> Self {
        Self::start(test_env, None, env).await
    }

    async fn start(
        test_env: Arc<TestEnv>,
        file: Option<&std::path::Path>,
        env: &[(&str, &str)],
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut vars = base_env(&test_env, &url);
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = warden::config::Config::load_from(file, vars).expect("test config is valid");
        let server = warden::app::Server::build(config)
            .await
            .expect("server state");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.serve(listener, async {
            let _ = rx.await;
        }));
        Self {
            url,
            client: Client::new(),
            env: test_env,
            state: server.state().clone(),
            server: Some(server),
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops the server and waits for it to finish: serving, then its
    /// background tasks and its database connections (`Server::stop`).
    pub async fn stop(self) -> Arc<TestEnv> {
        self.stop_server().await.1
    }

    /// [`TestApp::stop`], also returning what `Server::stop` reported.
    pub async fn stop_server(mut self) -> (warden::app::Stopped, Arc<TestEnv>) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        let server = self.server.take().expect("stopped once");
        let stopped = server.stop().await;
        assert_eq!(
            stopped.aborted, 0,
            "every background task ended on the signal"
        );
        assert!(stopped.store_closed, "every database connection closed");
        (stopped, self.env.clone())
    }

    /// Background tasks of the server still running.
    pub fn running_tasks(&self) -> usize {
        self.server.as_ref().map_or(0, |s| s.running_tasks())
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
        self.env.database_url.clone()
    }

    /// Runs one SQL statement against the server's database, as an operator
    /// (or an attacker with database access) would.
    pub async fn sql(&self, statement: &str) {
        let statement = sqlx::AssertSqlSafe(statement.to_owned());
        match crate::BACKEND {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.database_url())
                    .await
                    .unwrap();
                sqlx::query(statement).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.database_url()).await.unwrap();
                sqlx::query(statement).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// The single integer a query returns.
    pub async fn sql_i64(&self, query: &str) -> i64 {
        let query = sqlx::AssertSqlSafe(query.to_owned());
        match crate::BACKEND {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.database_url())
                    .await
                    .unwrap();
                let v = sqlx::query_scalar(query).fetch_one(&pool).await.unwrap();
                pool.close().await;
                v
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.database_url()).await.unwrap();
                let v = sqlx::query_scalar(query).fetch_one(&pool).await.unwrap();
                pool.close().await;
                v
            }
        }
    }

    /// The single byte column a query returns, for every row.
    pub async fn sql_bytes(&self, query: &str) -> Vec<Vec<u8>> {
        let query = sqlx::AssertSqlSafe(query.to_owned());
        match crate::BACKEND {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.database_url())
                    .await
                    .unwrap();
                let v = sqlx::query_scalar(query).fetch_all(&pool).await.unwrap();
                pool.close().await;
                v
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.database_url()).await.unwrap();
                let v = sqlx::query_scalar(query).fetch_all(&pool).await.unwrap();
                pool.close().await;
                v
            }
        }
    }

    /// Gives `username` exactly `roles`, as an operator would.
    pub async fn set_roles(&self, username: &str, roles: &[&str]) {
        let store = self.store().await;
        let user = store.user_by_login(username).await.unwrap().unwrap();
        let changes = warden::domain::UserChanges {
            roles: Some(roles.iter().map(|r| r.to_string()).collect()),
            ..Default::default()
        };
        let now = warden::auth::tokens::now();
        store
            .update_user(
                user.id,
                &changes,
                warden::auth::tokens::next_valid_after(now),
                now,
                None,
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

// ---------------------------------------------------------------- a browser on the hosted pages

/// The RFC 7636 appendix B verifier of [`CHALLENGE`].
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// The RFC 7636 appendix B PKCE challenge of [`VERIFIER`].
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub const APP_CB: &str = "https://app.example.com/cb";

/// A browser: its cookies, and no automatic redirects.
pub struct Browser {
    pub base: String,
    pub http: Client,
    pub jar: BTreeMap<String, String>,
}

/// One step of the browser: status, `Location`, `Set-Cookie` lines, body.
pub struct Seen {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub headers: header::HeaderMap,
    pub body: String,
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        Self {
            base: app.url.clone(),
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: BTreeMap::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn absorb(&mut self, r: Response) -> Seen {
        let status = r.status();
        let headers = r.headers().clone();
        let location = headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let set_cookies: Vec<String> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for line in &set_cookies {
            let pair = line.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || line.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = r.text().await.unwrap();
        Seen {
            status,
            location,
            set_cookies,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Seen {
        let r = self
            .http
            .get(self.url(path))
            .header(header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.absorb(r).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Seen {
        let r = self
            .http
            .post(self.url(path))
            .header(header::COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.absorb(r).await
    }
}

/// The value of the hidden field `name` in a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    let raw = &html[start..start + html[start..].find('"').unwrap()];
    raw.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The query parameters of a URL.
pub fn query(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// `/authorize?…` for `client_id` with PKCE, `state=xyz`, and `extra`.
pub fn authorize_path(
    client_id: &str,
    redirect_uri: Option<&str>,
    extra: &[(&str, &str)],
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code");
    q.append_pair("client_id", client_id);
    if let Some(r) = redirect_uri {
        q.append_pair("redirect_uri", r);
    }
    q.append_pair("code_challenge", CHALLENGE);
    q.append_pair("code_challenge_method", "S256");
    q.append_pair("state", "xyz");
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    format!("/authorize?{}", q.finish())
}

/// Signs in on the login page the request led to; returns the page or
/// redirect `/authorize` answers after the sign-in.
pub async fn sign_in_from(browser: &mut Browser, login: &Seen, username: &str) -> Seen {
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    let to_login = login.location.clone().unwrap();
    assert!(to_login.starts_with("/login?"), "{to_login}");
    let page = browser.get(&to_login).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = hidden(&page.body, "csrf_token");
    let return_to = hidden(&page.body, "return_to");
    let done = browser
        .post(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("return_to", &return_to),
                ("username", username),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let back = done.location.clone().unwrap();
    assert!(back.starts_with("/authorize?"), "{back}");
    browser.get(&back).await
}

/// Answers a consent page.
pub async fn decide(browser: &mut Browser, consent: &Seen, decision: &str) -> Seen {
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    let csrf = hidden(&consent.body, "csrf_token");
    let request = hidden(&consent.body, "request");
    browser
        .post(
            "/authorize/consent",
            &[
                ("csrf_token", &csrf),
                ("request", &request),
                ("decision", decision),
            ],
        )
        .await
}

/// The id of the browser's session (the `warden_session` cookie's first
/// part).
pub fn session_id(browser: &Browser) -> String {
    browser.jar["warden_session"]
        .split('.')
        .next()
        .unwrap()
        .to_owned()
}

/// A redirect to the client: its parameters.
pub fn at_client(seen: &Seen, redirect_uri: &str) -> BTreeMap<String, String> {
    assert_eq!(seen.status, StatusCode::SEE_OTHER, "{}", seen.body);
    let to = seen.location.clone().unwrap();
    assert!(
        to.starts_with(redirect_uri),
        "{to} is not at {redirect_uri}"
    );
    query(&to)
}

// ---------------------------------------------------------------- OAuth clients and JWTs

/// `Authorization: Basic` for a client (RFC 6749 §2.3.1).
pub fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// The payload of a JWT, unverified (the server verified it).
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The JOSE header of a JWT.
pub fn jwt_header(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// The PKCE S256 challenge of `verifier`.
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A fresh PKCE verifier.
pub fn new_verifier() -> String {
    format!("v-{}.{}~", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// A registered user signed in on the hosted pages: the user and their
/// browser session.
pub async fn signed_in(app: &TestApp, username: &str) -> (UserRecord, Uuid) {
    let (user, sid, _) = signed_in_with_cookie(app, username).await;
    (user, sid)
}

/// [`signed_in`], with the browser session's `warden_session` cookie value.
pub async fn signed_in_with_cookie(app: &TestApp, username: &str) -> (UserRecord, Uuid, String) {
    app.register_ok(username).await;
    let user = app
        .state
        .store
        .user_by_login(username)
        .await
        .unwrap()
        .unwrap();
    let (tokens, sid) = open_session_with(
        &app.state,
        &user,
        "me".into(),
        &ClientMeta::default(),
        Uuid::now_v7(),
        SessionVia::Browser,
        now(),
    )
    .await
    .unwrap()
    .unwrap();
    (user, sid, tokens.refresh_token.unwrap())
}
