use reqwest::StatusCode;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn a_full_hashing_queue_answers_503_with_retry_after_and_token_checks_keep_working() {
    // One worker, one queue slot, costly hashes: a burst of logins must
    // overflow the queue.
    let app = TestApp::spawn_with(&[
        ("WARDEN_HASH_WORKERS", "1"),
        ("WARDEN_HASH_QUEUE", "1"),
        ("WARDEN_ARGON2_MEMORY_KIB", "19456"),
        ("WARDEN_ARGON2_ITERATIONS", "3"),
        // Sixteen logins at once from one address would otherwise meet
        // the throttle, which counts attempts in flight.
        ("WARDEN_THROTTLE_PER_ADDRESS", "1000"),
    ])
    .await;
    let (_, token) = app.user_with_token("alice").await;
    // Sixteen accounts: one account may have only two checks in flight.
    for i in 0..16 {
        app.register_ok(&format!("user{i}")).await;
    }

    let logins: Vec<_> = (0..16)
        .map(|i| {
            let client = app.client.clone();
            let url = app.at("/token");
            tokio::spawn(async move {
                client
                    .post(url)
                    .form(&[
                        ("username", format!("user{i}")),
                        ("password", PASSWORD.to_owned()),
                    ])
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    // While the pool is saturated, protected routes still answer.
    for _ in 0..5 {
        assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    }
    let mut busy = 0;
    let mut ok = 0;
    for l in logins {
        let r = l.await.unwrap();
        match r.status() {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    r.headers()["retry-after"]
                        .to_str()
                        .unwrap()
                        .parse::<u32>()
                        .unwrap()
                        >= 1
                );
                let body: serde_json::Value = r.json().await.unwrap();
                assert!(body["detail"].is_string());
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(busy > 0, "no login was refused ({ok} ok)");
    assert!(ok > 0, "every login was refused");
}

#[tokio::test]
async fn registration_also_answers_503_when_the_queue_is_full() {
    let app = TestApp::spawn_with(&[
        ("WARDEN_HASH_WORKERS", "1"),
        ("WARDEN_HASH_QUEUE", "1"),
        ("WARDEN_ARGON2_MEMORY_KIB", "19456"),
        ("WARDEN_ARGON2_ITERATIONS", "3"),
    ])
    .await;
    let regs: Vec<_> = (0..16)
        .map(|i| {
            let client = app.client.clone();
            let url = app.at("/users");
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&serde_json::json!({"username": format!("user{i}"), "email": format!("u{i}@example.com"), "password": PASSWORD}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in regs {
        statuses.push(r.await.unwrap());
    }
    assert!(
        statuses.contains(&StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::SERVICE_UNAVAILABLE)
    );
}

/// Hashing threads run under `SCHED_IDLE`, so on a shared core token checks
/// are served ahead of a burst of logins; the rescue thread, which keeps
/// logins moving on a saturated core, runs at nice 19.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn hashing_threads_run_at_a_lower_priority_than_the_executor() {
    const SCHED_OTHER: i32 = 0;
    const SCHED_IDLE: i32 = 5;
    // Fields 19 (nice) and 41 (policy) of /proc/.../stat; count after
    // "(comm) ", where field 3 starts.
    fn field(stat: &str, n: usize) -> i32 {
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        after_comm.split(' ').nth(n - 3).unwrap().parse().unwrap()
    }
    let _app = TestApp::spawn().await;
    let (mut hash_threads, mut rescue_threads) = (0, 0);
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        let comm = comm.trim();
        // comm is cut at 15 bytes: "warden-hash-res".
        if comm.starts_with("warden-hash-res") {
            rescue_threads += 1;
            assert_eq!(field(&stat, 41), SCHED_OTHER, "{comm}'s policy");
            assert_eq!(field(&stat, 19), 19, "{comm}'s nice value");
        } else if comm.starts_with("warden-hash") {
            hash_threads += 1;
            assert_eq!(field(&stat, 41), SCHED_IDLE, "{comm}'s policy");
        }
    }
    assert!(rescue_threads > 0, "no rescue thread found");
    assert!(hash_threads > 0, "no hashing threads found");
    // This test's thread runs the server's executor (a current-thread runtime).
    let executor = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    assert_eq!(field(&executor, 19), 0);
    assert_eq!(field(&executor, 41), SCHED_OTHER);
}
