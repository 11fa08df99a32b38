//! Crash safety on SQLite: `kill -9` the server in the middle of writes,
//! restart it on the same file, and check that nothing it acknowledged was
//! lost and the database is intact.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const PASSWORD: &str = "correct horse battery";

struct Server {
    child: Child,
    url: String,
}

fn start(dir: &std::path::Path, port: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WARDEN_BIND", format!("127.0.0.1:{port}"))
        .env("WARDEN_ISSUER", "http://crash.test")
        .env("WARDEN_ARGON2_MEMORY_KIB", "256")
        .env("WARDEN_ARGON2_ITERATIONS", "1")
        .env("WARDEN_THROTTLE_PER_ADDRESS", "100000")
        .env("WARDEN_THROTTLE_PER_PAIR", "100000")
        .env("WARDEN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_ready(client: &Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kill9(server: &mut Server) {
    let _ = Command::new("kill")
        .args(["-9", &server.child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let _ = server.child.wait();
}

async fn integrity_check(dir: &std::path::Path) {
    let url = format!("sqlite://{}/warden.db?mode=rw", dir.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let result: String = sqlx::query_scalar("pragma integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(result, "ok");
    pool.close().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_acknowledged_before_a_kill_9_survive_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start(dir.path(), port);
    let client = Client::new();
    wait_ready(&client, &server.url).await;

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for c in 0..20 {
        let (client, url, acknowledged) =
            (client.clone(), server.url.clone(), acknowledged.clone());
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("c{c}u{i}");
                let r = client
                    .post(format!("{url}/users"))
                    .json(&json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::CREATED => acknowledged.lock().await.push(name),
                    Ok(_) => {}
                    Err(_) => break, // the server is gone
                }
            }
        }));
    }
    // Let the writes run, then pull the plug mid-run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill9(&mut server);
    for c in clients {
        c.await.unwrap();
    }
    let acknowledged = acknowledged.lock().await.clone();
    assert!(
        acknowledged.len() >= 20,
        "too few writes before the kill: {}",
        acknowledged.len()
    );

    integrity_check(dir.path()).await;
    let mut server = start(dir.path(), port);
    wait_ready(&client, &server.url).await;
    for name in &acknowledged {
        let r = client
            .post(format!("{}/token", server.url))
            .form(&[("username", name.as_str()), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{name} was acknowledged but cannot log in"
        );
    }
    println!(
        "{} acknowledged registrations all survived kill -9",
        acknowledged.len()
    );
    kill9(&mut server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotations_acknowledged_before_a_kill_9_survive_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start(dir.path(), port);
    let client = Client::new();
    wait_ready(&client, &server.url).await;

    // 20 sessions, each refreshed in a loop by its own client; the newest
    // acknowledged refresh token of each is what must work afterwards.
    let mut clients = Vec::new();
    for c in 0..20 {
        let name = format!("rot{c}");
        let r = client
            .post(format!("{}/users", server.url))
            .json(&json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let login: Value = client
            .post(format!("{}/token", server.url))
            .form(&[("username", name.as_str()), ("password", PASSWORD)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (client, url) = (client.clone(), server.url.clone());
        let first = login["refresh_token"].as_str().unwrap().to_owned();
        clients.push(tokio::spawn(async move {
            let mut newest = first;
            let mut rotations = 0;
            loop {
                let r = client
                    .post(format!("{url}/token"))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", newest.as_str()),
                    ])
                    .send()
                    .await;
                let Ok(r) = r else { break };
                let Ok(body) = r.json::<Value>().await else {
                    break;
                };
                match body["refresh_token"].as_str() {
                    Some(next) => {
                        newest = next.to_owned();
                        rotations += 1;
                    }
                    None => panic!("a rotation failed before the kill: {body}"),
                }
            }
            (newest, rotations)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill9(&mut server);
    let mut newest = Vec::new();
    let mut total = 0;
    for c in clients {
        let (token, rotations) = c.await.unwrap();
        total += rotations;
        newest.push(token);
    }
    assert!(total >= 20, "too few rotations before the kill: {total}");

    integrity_check(dir.path()).await;
    let mut server = start(dir.path(), port);
    wait_ready(&client, &server.url).await;
    // Every session's newest acknowledged token still rotates: no
    // acknowledged rotation was lost, and no session was left half-rotated.
    for token in &newest {
        let r = client
            .post(format!("{}/token", server.url))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ])
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["refresh_token"].is_string());
    }
    println!(
        "{total} acknowledged rotations in 20 sessions; every newest token works after kill -9"
    );
    kill9(&mut server);
}

/// Whether strace (for killing the server at a chosen fsync) can run here.
/// CI installs it and sets `WARDEN_TEST_REQUIRE_STRACE`, so there a missing
/// strace fails instead of skipping.
fn strace_available() -> bool {
    let ok = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("WARDEN_TEST_REQUIRE_STRACE").is_none(),
            "strace is required (WARDEN_TEST_REQUIRE_STRACE) but not installed"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipping the fsync fault-injection test: strace is not installed (apt-get install strace)"
        );
    }
    ok
}

/// Attaches strace to every thread of the running server so that the
/// `nth` fsync/fdatasync of a thread kills the whole process with SIGKILL,
/// as a crash at that point of a commit would. Returns the strace process.
fn kill_at_fsync(server: &Server, nth: u32) -> Child {
    let pid = server.child.id().to_string();
    let mut strace = Command::new("strace")
        .args(["-f", "-e", "trace=fsync,fdatasync", "-e"])
        .arg(format!("inject=fsync,fdatasync:signal=KILL:when={nth}"))
        .args(["-o", "/dev/null", "-p", &pid])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // strace says "Process N attached with M threads" once it holds them
    // all; go on then.
    let mut stderr = std::io::BufReader::new(strace.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let read = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(read > 0, "strace could not attach to the server");
        if line.contains("attached") {
            break;
        }
    }
    // Keep draining, so strace never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    strace
}

fn sqlite_count(dir: &std::path::Path, query: &'static str) -> i64 {
    let url = format!("sqlite://{}/warden.db?mode=ro", dir.display());
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let n: i64 = sqlx::query_scalar(query).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        })
    })
}

async fn login(client: &Client, url: &str, username: &str, password: &str) -> Option<Value> {
    let r = client
        .post(format!("{url}/token"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::OK {
        return None;
    }
    r.json().await.ok()
}

async fn refreshes(client: &Client, url: &str, refresh_token: &str) -> bool {
    client
        .post(format!("{url}/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap()
        .status()
        == StatusCode::OK
}

fn cli(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WARDEN_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "warden {args:?}");
}

/// One security change, crashed at the `nth` fsync after it was sent.
/// Returns whether the crash happened (else the change completed).
async fn crash_during(
    dir: &std::path::Path,
    port: u16,
    nth: u32,
    change: impl AsyncFnOnce(&Client, &str) -> StatusCode,
) -> bool {
    let client = Client::new();
    let mut server = start(dir, port);
    wait_ready(&client, &server.url).await;
    let mut strace = kill_at_fsync(&server, nth);
    let status = change(&client, &server.url).await;
    // The request either came back, or its server died under it.
    let crashed = match server.child.try_wait().unwrap() {
        Some(_) => true,
        None => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.child.try_wait().unwrap().is_some()
        }
    };
    if !crashed {
        assert_eq!(status, StatusCode::OK, "the change failed without a crash");
    }
    let _ = strace.kill();
    let _ = strace.wait();
    kill9(&mut server);
    crashed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_killed_at_an_fsync_is_all_or_nothing() {
    if !strace_available() {
        return;
    }
    const NEW: &str = "an entirely new battery";
    let mut crashes = 0;
    for nth in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let client = Client::new();
        let mut server = start(dir.path(), port);
        wait_ready(&client, &server.url).await;
        let r = client
            .post(format!("{}/users", server.url))
            .json(
                &json!({"username": "victim", "email": "victim@example.com", "password": PASSWORD}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let stolen = login(&client, &server.url, "victim", PASSWORD)
            .await
            .unwrap();
        let owner = login(&client, &server.url, "victim", PASSWORD)
            .await
            .unwrap();
        kill9(&mut server);

        let access = owner["access_token"].as_str().unwrap().to_owned();
        crashes += u32::from(
            crash_during(dir.path(), port, nth, async |client, url| {
                client
                    .put(format!("{url}/users/me/password"))
                    .bearer_auth(&access)
                    .json(&json!({"current_password": PASSWORD, "new_password": NEW}))
                    .send()
                    .await
                    .map(|r| r.status())
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            })
            .await,
        );

        integrity_check(dir.path()).await;
        let mut server = start(dir.path(), port);
        wait_ready(&client, &server.url).await;
        let new_works = login(&client, &server.url, "victim", NEW).await.is_some();
        let old_works = login(&client, &server.url, "victim", PASSWORD)
            .await
            .is_some();
        let stolen_refreshes = refreshes(
            &client,
            &server.url,
            stolen["refresh_token"].as_str().unwrap(),
        )
        .await;
        let events = sqlite_count(
            dir.path(),
            "select count(*) from audit_events where type = 'password_changed'",
        );
        println!(
            "fsync {nth}: new password {new_works}, old {old_works}, old session alive {stolen_refreshes}, events {events}"
        );
        assert_ne!(
            new_works, old_works,
            "fsync {nth}: exactly one password works"
        );
        if new_works {
            assert!(
                !stolen_refreshes,
                "fsync {nth}: the old session survived the change"
            );
            assert_eq!(events, 1, "fsync {nth}: the change has no audit event");
        } else {
            assert!(
                stolen_refreshes,
                "fsync {nth}: half a change: the session ended"
            );
            assert_eq!(events, 0, "fsync {nth}");
        }
        kill9(&mut server);
    }
    assert!(crashes > 0, "no trial crashed: the injection never fired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demotion_killed_at_an_fsync_is_all_or_nothing() {
    if !strace_available() {
        return;
    }
    let mut crashes = 0;
    for nth in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let client = Client::new();
        let mut server = start(dir.path(), port);
        wait_ready(&client, &server.url).await;
        let mut target_id = String::new();
        for name in ["boss", "target"] {
            let r = client
                .post(format!("{}/users", server.url))
                .json(&json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            let user: Value = r.json().await.unwrap();
            target_id = user["id"].as_str().unwrap().to_owned();
        }
        kill9(&mut server);
        cli(dir.path(), &["users", "set-roles", "boss", "admin"]);
        cli(dir.path(), &["users", "set-roles", "target", "admin"]);
        let mut server = start(dir.path(), port);
        wait_ready(&client, &server.url).await;
        let boss = login(&client, &server.url, "boss", PASSWORD).await.unwrap();
        let target = login(&client, &server.url, "target", PASSWORD)
            .await
            .unwrap();
        kill9(&mut server);

        let boss = boss["access_token"].as_str().unwrap().to_owned();
        let path = format!("/users/{target_id}");
        crashes += u32::from(
            crash_during(dir.path(), port, nth, async |client, url| {
                client
                    .patch(format!("{url}{path}"))
                    .bearer_auth(&boss)
                    .json(&json!({"roles": ["user"]}))
                    .send()
                    .await
                    .map(|r| r.status())
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            })
            .await,
        );

        integrity_check(dir.path()).await;
        let mut server = start(dir.path(), port);
        wait_ready(&client, &server.url).await;
        let scope = login(&client, &server.url, "target", PASSWORD)
            .await
            .unwrap()["scope"]
            .as_str()
            .unwrap()
            .to_owned();
        let demoted = !scope.contains("users:write");
        let old_refreshes = refreshes(
            &client,
            &server.url,
            target["refresh_token"].as_str().unwrap(),
        )
        .await;
        let events = sqlite_count(
            dir.path(),
            "select count(*) from audit_events where type = 'user_security_changed' \
             and detail not like '%cli%'",
        );
        println!(
            "fsync {nth}: demoted {demoted}, old admin session alive {old_refreshes}, events {events}"
        );
        if demoted {
            assert!(
                !old_refreshes,
                "fsync {nth}: the admin session survived the demotion"
            );
            assert_eq!(events, 1, "fsync {nth}: the demotion has no audit event");
        } else {
            assert!(
                old_refreshes,
                "fsync {nth}: half a demotion: the session ended"
            );
            assert_eq!(events, 0, "fsync {nth}");
        }
        kill9(&mut server);
    }
    assert!(crashes > 0, "no trial crashed: the injection never fired");
}
