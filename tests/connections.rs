//! Connection limits against the real `warden` binary on a real socket:
//! silent and idle connections are closed, HTTP/2 ones too, and a cap on
//! open connections answers new ones with a quick 503 instead of letting
//! them starve `/healthz` (issue 14, finding 6).
//!
//! Timings are generous upper bounds (the CI machine has two busy cores);
//! lower bounds only where a rule promises one.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_warden");

/// Slack over a deadline before a test calls it missed.
const SLACK: Duration = Duration::from_secs(4);

/// A `warden serve` process on a free port, with its own SQLite file;
/// killed when dropped.
struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with(env, None)
    }

    /// `open_files`: run under `ulimit -n` with that limit.
    fn start_with(env: &[(&str, &str)], open_files: Option<u32>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut command = match open_files {
            None => {
                let mut c = Command::new(BIN);
                c.arg("serve");
                c
            }
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" serve"), BIN]);
                c
            }
        };
        let database = format!("sqlite://{}", dir.path().join("warden.db").display());
        command
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WARDEN_BIND", &addr)
            .env("WARDEN_DATABASE_URL", &database)
            .env("WARDEN_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = command.spawn().unwrap();
        let server = Self {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if server
                .get("/healthz")
                .is_ok_and(|a| a.starts_with("HTTP/1.1 200"))
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("warden did not start on {}", server.addr);
    }

    fn connect(&self) -> TcpStream {
        TcpStream::connect(&self.addr).unwrap()
    }

    /// One HTTP/1.1 request on a new connection (`connection: close`);
    /// the whole answer, or an error if none came within 5 s.
    fn get(&self, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until the server closes the connection (EOF or reset); the bytes
/// read and how long it took. Panics if it is still open after `limit`.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero(),
            "the server kept the connection open for more than {limit:?}"
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (bytes, start.elapsed()),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (bytes, start.elapsed()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server kept the connection open for more than {limit:?}")
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

#[test]
fn a_silent_connection_is_closed_after_the_header_read_timeout() {
    let server = Server::start(&[("WARDEN_HEADER_READ_TIMEOUT", "1")]);
    let mut silent = server.connect();
    let (bytes, took) = read_until_closed(&mut silent, Duration::from_secs(1) + SLACK);
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
}

/// HTTP/2 with prior knowledge: the connection preface and an empty
/// SETTINGS frame, then nothing. hyper's HTTP/1 header timeout never
/// applies, and before this fix the connection stayed open for good.
#[test]
fn an_http2_connection_that_never_makes_a_request_is_closed_when_idle() {
    let server = Server::start(&[
        ("WARDEN_HEADER_READ_TIMEOUT", "1"),
        ("WARDEN_IDLE_TIMEOUT", "2"),
    ]);
    let mut h2 = server.connect();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    // SETTINGS: length 0, type 4, no flags, stream 0.
    h2.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    let (bytes, took) = read_until_closed(&mut h2, Duration::from_secs(2) + SLACK);
    // The server spoke HTTP/2 (its own SETTINGS first), then said GOAWAY.
    let types = frame_types(&bytes);
    assert_eq!(types.first(), Some(&4), "{types:?}");
    assert!(types.contains(&7), "no GOAWAY in {types:?}");
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
}

/// The frame types in an HTTP/2 byte stream (9-byte headers: 24-bit
/// length, 8-bit type).
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

/// hyper's HTTP/1 header timeout also runs while a keep-alive connection
/// waits for its next request, so it is set far above the idle timeout
/// here: the close must come from the idle rule.
#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = Server::start(&[
        ("WARDEN_HEADER_READ_TIMEOUT", "30"),
        ("WARDEN_IDLE_TIMEOUT", "2"),
    ]);
    let mut conn = server.connect();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !content_complete(&answer) {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // Kept alive after the answer...
    let (rest, took) = read_until_closed(&mut conn, Duration::from_secs(2) + SLACK);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    // ...and closed by the idle rule, not earlier.
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
}

/// Whether an HTTP/1.1 answer with a `content-length` has all its body.
fn content_complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .is_some_and(|len| body.len() >= len)
}

/// The reproduction: 300 silent connections to a warden allowed
/// 256 file descriptors. Before the fix, `accept` failed with "Too many
/// open files" every 50 ms and `/healthz` never answered. Now every new
/// connection gets an answer at once (a 503 while the derived cap, 192, is
/// full) and `/healthz` answers 200 as soon as the silent ones time out.
#[test]
fn healthz_answers_under_300_silent_connections_with_256_file_descriptors() {
    let server = Server::start_with(&[("WARDEN_HEADER_READ_TIMEOUT", "2")], Some(256));
    let silent: Vec<TcpStream> = (0..300).map(|_| server.connect()).collect();
    let start = Instant::now();
    let mut statuses = Vec::new();
    loop {
        let asked = Instant::now();
        let answer = server
            .get("/healthz")
            .unwrap_or_else(|e| panic!("no answer within 5 s ({e}) after {statuses:?}"));
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "answered after {:?}",
            asked.elapsed()
        );
        let status = answer.get(..12).unwrap_or(&answer).to_owned();
        statuses.push(status.clone());
        if status == "HTTP/1.1 200" {
            break;
        }
        assert_eq!(status, "HTTP/1.1 503", "{answer}");
        assert!(
            start.elapsed() < Duration::from_secs(2) + SLACK + SLACK,
            "still refused after {:?}: {statuses:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(silent);
}

#[test]
fn over_the_cap_a_connection_gets_a_quick_503_and_a_slot_frees_when_one_closes() {
    let server = Server::start(&[
        ("WARDEN_MAX_CONNECTIONS", "4"),
        ("WARDEN_HEADER_READ_TIMEOUT", "30"),
    ]);
    // Let the start-up probe's connection give its slot back.
    std::thread::sleep(Duration::from_millis(300));
    let held: Vec<TcpStream> = (0..4).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(300));

    let asked = Instant::now();
    let answer = server.get("/healthz").expect("an answer, not a hang");
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(1), "503 after {took:?}");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{answer}"
    );
    let head = head.to_ascii_lowercase();
    assert!(head.contains("retry-after: 1"), "{answer}");
    assert!(head.contains("connection: close"), "{answer}");
    assert!(head.contains("content-type: application/json"), "{answer}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(
        json["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );

    drop(held);
    // The server sees the four close and gives their slots back.
    let deadline = Instant::now() + SLACK;
    let metrics = loop {
        let answer = server.get("/metrics").unwrap();
        if answer.starts_with("HTTP/1.1 200") {
            break answer;
        }
        assert!(Instant::now() < deadline, "still refused: {answer}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("warden_connections_refused_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(refused.is_some_and(|n| n >= 1.0), "{metrics}");
}
