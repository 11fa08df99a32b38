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
