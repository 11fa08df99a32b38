//! Several warden processes on one PostgreSQL database, and a database
//! outage. Real processes (the `warden` binary), a real PostgreSQL server,
//! HTTP on loopback ports.
//!
//! Needs PostgreSQL at `WARDEN_TEST_POSTGRES_URL` (default
//! `postgres://root@127.0.0.1:5432/postgres`); skipped with a printed reason
//! where it is unreachable, unless `WARDEN_TEST_REQUIRE_POSTGRES` is set.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const ISSUER: &str = "http://auth.cluster.test";

fn admin_url() -> String {
    std::env::var("WARDEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_owned())
}

/// `Some(admin pool)`, or `None` after printing why the test is skipped.
async fn postgres() -> Option<sqlx::PgPool> {
    match sqlx::PgPool::connect(&admin_url()).await {
        Ok(p) => Some(p),
        Err(e) if std::env::var_os("WARDEN_TEST_REQUIRE_POSTGRES").is_some() => {
            panic!("PostgreSQL is required (WARDEN_TEST_REQUIRE_POSTGRES) but unreachable: {e}")
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "skipping: PostgreSQL unreachable: {e}");
            None
        }
    }
}

/// A fresh database, dropped at the end of the test.
struct Database {
    admin: sqlx::PgPool,
    name: String,
    url: String,
}

impl Database {
    async fn create(admin: sqlx::PgPool) -> Self {
        let name = format!("warden_cluster_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&admin)
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url()).unwrap();
        url.set_path(&name);
        Self {
            admin,
            name,
            url: url.to_string(),
        }
    }

    async fn exec(&self, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.admin)
            .await
            .unwrap();
    }

    /// Refuses new connections and ends the existing ones: for warden, the
    /// database is down (other databases on the server are untouched).
    async fn go_down(&self) {
        self.exec(&format!(
            "alter database {} allow_connections false",
            self.name
        ))
        .await;
        self.exec(&format!(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = '{}' and pid <> pg_backend_pid()",
            self.name
        ))
        .await;
    }

    async fn come_back(&self) {
        self.exec(&format!(
            "alter database {} allow_connections true",
            self.name
        ))
        .await;
    }

    async fn drop(self) {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop database if exists {} with (force)",
            self.name
        )))
        .execute(&self.admin)
        .await;
    }
}

/// One `warden serve` process.
struct Instance {
    url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Instance {
    async fn start(db: &Database, extra: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("warden.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .arg("serve")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WARDEN_BIND", format!("127.0.0.1:{port}"))
            .env("WARDEN_DATABASE_URL", &db.url)
            .env("WARDEN_ISSUER", ISSUER)
            .env("WARDEN_ARGON2_MEMORY_KIB", "256")
            .env("WARDEN_ARGON2_ITERATIONS", "1")
            .env("WARDEN_LOG", "warn")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let instance = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        let client = Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", instance.url)).send().await
                && r.status() == StatusCode::OK
            {
                return instance;
            }
            assert!(
                Instant::now() < deadline,
                "instance did not start: {}",
                instance.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("warden.log")).unwrap_or_default()
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn register(client: &Client, i: &Instance, username: &str) -> reqwest::Response {
    client
        .post(i.at("/users"))
        .json(&json!({"username": username, "email": format!("{username}@example.com"), "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

async fn login(client: &Client, i: &Instance, username: &str, password: &str) -> Value {
    let r = client
        .post(i.at("/token"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "login through {}", i.url);
    r.json().await.unwrap()
}

async fn me(client: &Client, i: &Instance, token: &str) -> StatusCode {
    client
        .get(i.at("/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// Waits (at most `within`) until `/users/me` with `token` answers `want`
/// on `i`; returns how long it took.
async fn until_me(
    client: &Client,
    i: &Instance,
    token: &str,
    want: StatusCode,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let got = me(client, i, token).await;
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{} still answers {got} after {within:?} (wanted {want})",
            i.url
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kid(token: &str) -> String {
    use base64::Engine;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_users_sessions_and_keys() {
    let Some(admin) = postgres().await else {
        return;
    };
    let db = Database::create(admin).await;
    // Started together on an empty database: migrations must not race.
    let (a, b, c) = tokio::join!(
        Instance::start(&db, &[]),
        Instance::start(&db, &[]),
        Instance::start(&db, &[])
    );
    let client = Client::new();
    let second = Duration::from_secs(1);

    // Log in through A, use the token through B and C.
    assert_eq!(
        register(&client, &a, "alice").await.status(),
        StatusCode::CREATED
    );
    let first = login(&client, &a, "alice", PASSWORD).await;
    let token = first["access_token"].as_str().unwrap();
    for i in [&a, &b, &c] {
        assert_eq!(me(&client, i, token).await, StatusCode::OK, "{}", i.url);
    }

    // Log out through C: the token fails on A and B within a second.
    let r = client
        .post(c.at("/logout"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for i in [&a, &b] {
        let took = until_me(&client, i, token, StatusCode::UNAUTHORIZED, second).await;
        println!("logout through C reached {} in {took:?}", i.url);
    }

    // Change the password through B: older tokens fail on A and C.
    let before = login(&client, &a, "alice", PASSWORD).await;
    let old = before["access_token"].as_str().unwrap();
    assert_eq!(me(&client, &c, old).await, StatusCode::OK);
    let r = client
        .put(b.at("/users/me/password"))
        .bearer_auth(old)
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for i in [&a, &c] {
        let took = until_me(&client, i, old, StatusCode::UNAUTHORIZED, second).await;
        println!("password change through B reached {} in {took:?}", i.url);
    }

    // Rotate keys (on A's database): a token signed by the new key verifies
    // on B and C, and a token of the old key keeps verifying.
    let pre = login(&client, &a, "alice", "a brand new secret").await;
    let pre_token = pre["access_token"].as_str().unwrap().to_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["keys", "rotate"])
        .env("WARDEN_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    let new_token = loop {
        let t = login(&client, &a, "alice", "a brand new secret").await;
        let t = t["access_token"].as_str().unwrap().to_owned();
        if kid(&t) != kid(&pre_token) {
            break t;
        }
        assert!(
            start.elapsed() < second,
            "A did not pick up the rotation within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for i in [&b, &c] {
        until_me(&client, i, &new_token, StatusCode::OK, second).await;
        assert_eq!(
            me(&client, i, &pre_token).await,
            StatusCode::OK,
            "old-key token on {}",
            i.url
        );
    }
    // Two keys of the access tokens' algorithm (the old and the new), and
    // two of the id-token algorithm (RS256), rotated alike — stored by a
    // second write of the rotation, which C may load on a later pass.
    let start = Instant::now();
    loop {
        let jwks: Value = client
            .get(c.at("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let of_alg = |alg: &str| {
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|k| k["alg"] == alg)
                .count()
        };
        assert_eq!(of_alg("EdDSA"), 2);
        if of_alg("RS256") == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "C did not publish the new RS256 key: {jwks}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A profile edit through B shows on A, whose user cache holds alice,
    // within a second.
    assert_eq!(me(&client, &a, &new_token).await, StatusCode::OK);
    let r = client
        .patch(b.at("/users/me"))
        .bearer_auth(&new_token)
        .json(&json!({"full_name": "Alice Liddell"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let start = Instant::now();
    loop {
        let profile: Value = client
            .get(a.at("/users/me"))
            .bearer_auth(&new_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if profile["full_name"] == "Alice Liddell" {
            println!("profile edit through B reached A in {:?}", start.elapsed());
            break;
        }
        assert!(start.elapsed() < second, "A still serves {profile}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Delete alice through C: her token fails on A and B, also on a route
    // that reads no user record (only the token gate can refuse it there).
    let r = client
        .delete(c.at("/users/me"))
        .bearer_auth(&new_token)
        .json(&json!({"password": "a brand new secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for i in [&a, &b] {
        let took = until_me(&client, i, &new_token, StatusCode::UNAUTHORIZED, second).await;
        println!("deletion through C reached {} in {took:?}", i.url);
        let r = client
            .get(i.at("/users/me/sessions"))
            .bearer_auth(&new_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{}", i.url);
    }

    // The same username through all three at once: exactly one 201.
    let (ra, rb, rc) = tokio::join!(
        register(&client, &a, "bob"),
        register(&client, &b, "bob"),
        register(&client, &c, "bob")
    );
    let mut statuses = vec![ra.status(), rb.status(), rc.status()];
    statuses.sort();
    assert_eq!(
        statuses,
        [
            StatusCode::CREATED,
            StatusCode::CONFLICT,
            StatusCode::CONFLICT
        ]
    );

    drop((a, b, c));
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_degrades_to_503_and_recovers_by_itself() {
    let Some(admin) = postgres().await else {
        return;
    };
    let db = Database::create(admin).await;
    let w = Instance::start(&db, &[("WARDEN_DATABASE_ACQUIRE_TIMEOUT", "1")]).await;
    let client = Client::new();
    assert_eq!(
        register(&client, &w, "alice").await.status(),
        StatusCode::CREATED
    );
    let pair = login(&client, &w, "alice", PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap();
    assert_eq!(me(&client, &w, token).await, StatusCode::OK);

    db.go_down().await;

    // Not ready, and says so quickly.
    let start = Instant::now();
    let r = client.get(w.at("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "readyz hung for {:?}",
        start.elapsed()
    );
    // Valid tokens keep working from memory.
    assert_eq!(me(&client, &w, token).await, StatusCode::OK);
    // Logins and registrations answer 503 with a clear detail, never 500,
    // never past the acquire timeout.
    let start = Instant::now();
    let r = client
        .post(w.at("/token"))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("unavailable"),
        "{body}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "login hung for {:?}",
        start.elapsed()
    );
    let r = register(&client, &w, "bob").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    db.come_back().await;

    // Recovers by itself, without a restart.
    let start = Instant::now();
    loop {
        let r = client.get(w.at("/readyz")).send().await.unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "not ready 15 s after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing acknowledged before the outage is lost; writes work again.
    login(&client, &w, "alice", PASSWORD).await;
    assert_eq!(
        register(&client, &w, "bob").await.status(),
        StatusCode::CREATED
    );
    // And the change listener is back: a logout elsewhere (here: the same
    // instance's database write) still ends the token.
    let r = client
        .post(w.at("/logout"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&client, &w, token).await, StatusCode::UNAUTHORIZED);

    drop(w);
    db.drop().await;
}
