//! The request log of `warden serve`: one line per request at `info`, in
//! the configured format, with method, path, status, duration and request
//! id, and never a query string, a token or a cookie. Observed on the real
//! binary's standard error, since the log is the process's own.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_warden");

/// `warden serve` on a free port with `log` as `WARDEN_LOG`, its standard
/// error collected line by line.
struct Served {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start(log: &str, format: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .arg("serve")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WARDEN_BIND", "127.0.0.1:0")
            .env("WARDEN_ARGON2_MEMORY_KIB", "256")
            .env("WARDEN_ARGON2_ITERATIONS", "1")
            .env("WARDEN_LOG", log)
            .env("WARDEN_LOG_FORMAT", format)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on http://")
                    && let Some(tx) = tx.take()
                {
                    let rest = &line[i + "listening on ".len()..];
                    let addr: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("warden serve did not start: {:?}", lines.lock()));
        Self {
            child,
            base,
            lines,
            _dir: dir,
        }
    }

    /// The request lines logged so far (target `warden::http::request`).
    fn request_lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("warden::http::request"))
            .cloned()
            .collect()
    }

    /// Waits until `n` request lines are there (the log is written by
    /// another thread of another process).
    fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.request_lines();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn each_request_is_one_json_line_without_query_token_or_cookie() {
    let served = Served::start("info", "json");
    let http = reqwest::Client::new();
    let r = http
        .get(format!(
            "{}/users/me?access_token=SECRET-IN-QUERY",
            served.base
        ))
        .bearer_auth("SECRET-BEARER")
        .header("cookie", "warden_refresh=SECRET-COOKIE")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let r = http
        .post(format!("{}/token", served.base))
        .form(&[("username", "nobody"), ("password", "SECRET-PASSWORD")])
        .header("x-request-id", "proxy-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["x-request-id"], "proxy-id-42", "a proxy's id is kept");
    // An id that could forge a field is replaced.
    let r = http
        .get(format!("{}/nope", served.base))
        .header("x-request-id", "a\" status=200")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let replaced = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(replaced, "a\" status=200");

    let lines = served.wait_for(3);
    assert_eq!(lines.len(), 3, "one line per request: {lines:#?}");
    for line in &lines {
        for secret in ["SECRET", "access_token", "warden_refresh"] {
            assert!(!line.contains(secret), "{secret} in the log: {line}");
        }
    }
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fields = |i: usize| &parsed[i]["fields"];
    assert_eq!(parsed[0]["level"], "INFO");
    assert_eq!(parsed[0]["target"], "warden::http::request");
    assert_eq!(fields(0)["method"], "GET");
    assert_eq!(fields(0)["path"], "/users/me");
    assert_eq!(fields(0)["status"], 401);
    assert_eq!(fields(0)["request_id"], id.as_str());
    let ms = fields(0)["duration_ms"].as_f64().unwrap();
    assert!((0.0..10_000.0).contains(&ms), "{ms}");
    assert_eq!(fields(1)["method"], "POST");
    assert_eq!(fields(1)["path"], "/token");
    assert_eq!(fields(1)["status"], 400);
    assert_eq!(fields(1)["request_id"], "proxy-id-42");
    assert_eq!(fields(2)["path"], "/nope");
    assert_eq!(fields(2)["status"], 404);
    assert_eq!(fields(2)["request_id"], replaced.as_str());
}

#[tokio::test]
async fn the_text_format_has_the_same_fields_and_the_target_can_be_silenced() {
    let served = Served::start("info", "text");
    let r = reqwest::get(format!("{}/healthz?x=1", served.base))
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let lines = served.wait_for(1);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert!(line.contains(" INFO warden::http::request: request "), "{line}");
    for field in [
        "method=GET".to_owned(),
        "path=\"/healthz\"".to_owned(),
        "status=200".to_owned(),
        "duration_ms=".to_owned(),
        format!("request_id={id}"),
    ] {
        assert!(line.contains(&field), "{field} missing: {line}");
    }
    assert!(!line.contains("x=1"));
    drop(served);

    // Filtered out by target: no line, everything else as before (the
    // start-up lines are still there).
    let quiet = Served::start("info,warden::http::request=warn", "text");
    let r = reqwest::get(format!("{}/healthz", quiet.base)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-request-id"), "the id is still sent");
    let r = reqwest::get(format!("{}/readyz", quiet.base)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    std::thread::sleep(Duration::from_millis(200));
    assert!(quiet.request_lines().is_empty(), "{:#?}", quiet.request_lines());
    assert!(
        quiet
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("listening on"))
    );
}
