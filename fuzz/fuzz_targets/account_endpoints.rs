//! The account endpoints on the real router, in process: the password
//! change, account deletion, the session list, ending one session, logout
//! and the refresh grant (body and cookie forms).
//!
//! One warden (SQLite in a scratch directory, argon2 at its smallest cost,
//! HS256) is built once; a user `fuzzer` with a known password, two of its
//! sessions and a `bystander` user with one session are made once. Every
//! input is one request through `tower::ServiceExt::oneshot`, with the
//! `ConnectInfo` that `warden::app::Server::serve` adds. After each input the
//! target puts the state back (password restored, user re-registered,
//! sessions reopened) so the next input starts from the same place.
//!
//! Input: byte 0 picks the endpoint, byte 1 is flags (what the target adds:
//! query, `Origin`, content type, which known token or session id), the
//! rest is the fuzzer's part (a body, a query, a path segment or a refresh
//! token). The real password reaches a request only where the input spells
//! it (the seeds do); tokens and session ids are the target's to splice in.
//!
//! Invariants: no panic; never a 5xx except 503 (busy); a password change
//! or account deletion succeeds only when the body carried the real
//! password, and a refused one leaves the stored password and the user as
//! they were; a refresh succeeds only for the session's current token (or a
//! retry of the one just rotated, answered with the same successor); a
//! cookie refresh only from warden's own origin; ending a session never
//! reaches another user's; logout kills the access token at once; the
//! session list is a JSON array of at most `limit` of the user's own
//! sessions, and its `Link`, if any, is the next page of the same route;
//! the bystander's session survives every input.
#![no_main]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;
use warden::http::state::AppState;

/// Also warden's own origin, the one a cookie refresh is accepted from.
const ISSUER: &str = "http://warden.fuzz";
const FOREIGN_ORIGIN: &str = "https://evil.example";
const USERNAME: &str = "fuzzer";
/// In the seeds, so the fuzzer can reach the success paths; the target
/// sets it back whenever an input changed it.
const PASSWORD: &str = "Fuzz-Target-Password-1";
const BYSTANDER: &str = "bystander";
const BYSTANDER_PASSWORD: &str = "Bystander-Password-2";
const PEER: ([u8; 4], u16) = ([203, 0, 113, 7], 41000);
/// `Origin` choices for flags that pick one: none, own, foreign, `null`.
const ORIGINS: [Option<&str>; 4] = [None, Some(ISSUER), Some(FOREIGN_ORIGIN), Some("null")];
const JSON_TYPES: [Option<&str>; 4] = [
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    None,
];

/// One signed-in session, as a client holds it.
#[derive(Clone)]
struct Login {
    access: String,
    refresh: String,
    sid: String,
}

/// The fuzzed user as the target knows it between inputs.
struct Account {
    user_id: Uuid,
    password_hash: String,
    main: Login,
    /// The refresh token `main.refresh` was rotated from, if any: a retry
    /// of it within the grace period gets `main.refresh` again.
    previous_refresh: Option<String>,
    /// A second live session, so a small `limit` pages and a session other
    /// than the caller's can be ended.
    extra_sid: String,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: Router,
    state: AppState,
    /// Owns the background tasks (the sync, the purge) for the process.
    _server: warden::app::Server,
    bystander: Login,
    account: Mutex<Account>,
}

/// A directory for the database. libFuzzer ends with `exit()`, which runs
/// no destructors, so directories of earlier runs whose process is gone are
/// removed here instead; in memory (`/dev/shm`) when there is one, since
/// every write of SQLite's WAL is an fsync.
fn scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    if Path::new("/proc/self").exists()
        && let Ok(entries) = std::fs::read_dir(&base)
    {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(pid) = name.to_string_lossy().strip_prefix("warden-fuzz-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!("warden-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn config(dir: &Path) -> warden::config::Config {
    let env = [
        (
            "WARDEN_DATABASE_URL",
            format!("sqlite://{}", dir.join("warden.db").display()),
        ),
        ("WARDEN_ISSUER", ISSUER.to_owned()),
        // HMAC signing: the debug build signs an Ed25519 token in
        // milliseconds, too slow for every input.
        ("WARDEN_JWT_ALGORITHM", "HS256".to_owned()),
        (
            "WARDEN_JWT_SECRET",
            "fuzz-target-hs256-secret-of-32-bytes!".to_owned(),
        ),
        // The smallest cost the configuration allows: a hash in microseconds.
        ("WARDEN_ARGON2_MEMORY_KIB", "8".to_owned()),
        ("WARDEN_ARGON2_ITERATIONS", "1".to_owned()),
        ("WARDEN_ARGON2_PARALLELISM", "1".to_owned()),
        // The bystander's one token must outlive any run.
        ("WARDEN_ACCESS_TOKEN_TTL", "86400".to_owned()),
        // Millions of wrong passwords from one address: a throttle answer
        // is allowed, but it must not hide every other path.
        ("WARDEN_THROTTLE_PER_PAIR", "1000000000".to_owned()),
        ("WARDEN_THROTTLE_PER_ADDRESS", "1000000000".to_owned()),
        ("WARDEN_THROTTLE_PER_ACCOUNT", "1000000000".to_owned()),
        // Small, so the cap's "the oldest ends" path runs too and the list
        // stays a few rows.
        ("WARDEN_MAX_SESSIONS_PER_USER", "8".to_owned()),
    ];
    warden::config::Config::load_from(None, env.into_iter().map(|(k, v)| (k.to_owned(), v)))
        .expect("fuzz configuration")
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = scratch_dir();
        let server = runtime
            .block_on(warden::app::Server::build(config(&dir)))
            .expect("warden server");
        let app = server.router();
        let mut f = Fixture {
            runtime,
            app,
            state: server.state().clone(),
            _server: server,
            bystander: Login {
                access: String::new(),
                refresh: String::new(),
                sid: String::new(),
            },
            account: Mutex::new(Account {
                user_id: Uuid::nil(),
                password_hash: String::new(),
                main: Login {
                    access: String::new(),
                    refresh: String::new(),
                    sid: String::new(),
                },
                previous_refresh: None,
                extra_sid: String::new(),
            }),
        };
        f.register(BYSTANDER, BYSTANDER_PASSWORD);
        f.bystander = f.login(BYSTANDER, BYSTANDER_PASSWORD);
        let account = f.reset(None);
        *f.account.get_mut().expect("account lock") = account;
        f
    })
}

/// `WARDEN_FUZZ_TRACE=1` prints every request the target sends and its
/// status: what an input did, when replaying a crash.
fn tracing() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("WARDEN_FUZZ_TRACE").is_some())
}

/// Percent-encodes what a URI may not carry, keeping everything else as
/// the fuzzer wrote it (including its own `%` escapes).
fn uri_part(bytes: &[u8], keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~%".contains(&b) || keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query_part(bytes: &[u8]) -> String {
    uri_part(bytes, |b| b"!$&'()*+,;=:@/?".contains(&b))
}

fn path_segment(bytes: &[u8]) -> String {
    uri_part(bytes, |b| b"!$&'()*+,;=:@".contains(&b))
}

fn form_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The `sid` claim of an access token the target was given.
fn sid_of(access: &str) -> String {
    let payload = access.split('.').nth(1).expect("a JWT has a payload");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload"))
            .expect("JSON claims");
    claims["sid"].as_str().expect("sid claim").to_owned()
}

/// The refresh token a `Set-Cookie` stores, if one does.
fn refresh_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("warden_refresh="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
        .find(|v| !v.is_empty())
}

/// A string field of a JSON body as warden reads it (serde_json: the last
/// of duplicate keys wins).
fn body_field(body: &[u8], name: &str) -> Option<String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map.get(name).and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn assert_no_store(reply: &Reply, what: &str) {
    assert_eq!(
        reply
            .headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "{what} without Cache-Control: no-store"
    );
}

/// What one input sends, before it is a `Request`.
struct Call<'a> {
    method: Method,
    uri: String,
    bearer: Option<&'a str>,
    content_type: Option<&'a str>,
    origin: Option<&'a str>,
    cookie: Option<Vec<u8>>,
    body: Vec<u8>,
}

impl<'a> Call<'a> {
    fn new(method: Method, uri: impl Into<String>) -> Self {
        Self {
            method,
            uri: uri.into(),
            bearer: None,
            content_type: None,
            origin: None,
            cookie: None,
            body: Vec::new(),
        }
    }

    fn bearer(mut self, token: &'a str) -> Self {
        self.bearer = Some(token);
        self
    }

    fn json(mut self, body: Value) -> Self {
        self.content_type = Some("application/json");
        self.body = body.to_string().into_bytes();
        self
    }

    fn form(mut self, body: String) -> Self {
        self.content_type = Some("application/x-www-form-urlencoded");
        self.body = body.into_bytes();
        self
    }
}

impl Fixture {
    /// Sends `call`; `None` when it is no valid HTTP request (hyper would
    /// refuse it before warden saw it). Asserts the status is never a 5xx
    /// other than 503.
    fn send(&self, call: Call<'_>) -> Option<Reply> {
        let mut builder = http::Request::builder()
            .method(call.method.clone())
            .uri(call.uri.as_str());
        if let Some(token) = call.bearer {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(ct) = call.content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        if let Some(origin) = call.origin {
            builder = builder.header(header::ORIGIN, origin);
        }
        if let Some(cookie) = &call.cookie {
            builder = builder.header(header::COOKIE, http::HeaderValue::from_bytes(cookie).ok()?);
        }
        let mut request = builder.body(Body::from(call.body)).ok()?;
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(PEER)));
        let started = std::time::Instant::now();
        let reply = self.runtime.block_on(async {
            let response = self
                .app
                .clone()
                .oneshot(request)
                .await
                .expect("the router is infallible");
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .expect("response body");
            Reply {
                status: parts.status,
                headers: parts.headers,
                body: body.to_vec(),
            }
        });
        if tracing() {
            eprintln!(
                "{} {} -> {} ({:.1} ms)",
                call.method,
                call.uri,
                reply.status,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        assert!(
            !reply.status.is_server_error() || reply.status == StatusCode::SERVICE_UNAVAILABLE,
            "{} {} answered {}: {}",
            call.method,
            call.uri,
            reply.status,
            reply.text()
        );
        Some(reply)
    }

    fn user(&self, id: Uuid) -> Option<warden::domain::UserRecord> {
        self.runtime
            .block_on(self.state.store.user_by_id(id))
            .expect("store read")
    }

    fn session(&self, id: &str) -> Option<warden::domain::SessionRecord> {
        let id = Uuid::parse_str(id).ok()?;
        self.runtime
            .block_on(self.state.store.session(id))
            .expect("store read")
    }

    fn register(&self, username: &str, password: &str) -> Uuid {
        let reply = self
            .send(Call::new(Method::POST, "/users").json(json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "password": password,
            })))
            .expect("request");
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "register: {}",
            reply.text()
        );
        Uuid::parse_str(reply.json()["id"].as_str().expect("user id")).expect("uuid")
    }

    fn login(&self, username: &str, password: &str) -> Login {
        let reply = self
            .send(Call::new(Method::POST, "/token").form(format!(
                "grant_type=password&username={}&password={}",
                form_value(username),
                form_value(password)
            )))
            .expect("request");
        assert_eq!(reply.status, StatusCode::OK, "login: {}", reply.text());
        let body = reply.json();
        let access = body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned();
        Login {
            sid: sid_of(&access),
            refresh: body["refresh_token"]
                .as_str()
                .expect("refresh token")
                .to_owned(),
            access,
        }
    }

    /// Whether `access` still reaches `GET /users/me`.
    fn alive(&self, access: &str) -> bool {
        self.send(Call::new(Method::GET, "/users/me").bearer(access))
            .is_some_and(|r| r.status == StatusCode::OK)
    }

    /// The account as every input expects it: the user (registered again if
    /// an input deleted it) with [`PASSWORD`], a fresh session and a second
    /// live one (`old`'s, if it survived: a login is most of a reset's cost).
    fn reset(&self, old: Option<&Account>) -> Account {
        let existing = self
            .runtime
            .block_on(self.state.store.user_by_login(USERNAME))
            .expect("store read");
        let user_id = match existing {
            Some(user) => user.id,
            None => self.register(USERNAME, PASSWORD),
        };
        let main = self.login(USERNAME, PASSWORD);
        let now = warden::auth::tokens::now();
        let extra_sid = match old.and_then(|a| Some((a, self.session(&a.extra_sid)?))) {
            Some((a, s)) if s.user_id == user_id && s.is_live(now) => a.extra_sid.clone(),
            _ => self.login(USERNAME, PASSWORD).sid,
        };
        assert!(self.alive(&main.access), "a fresh login's token is refused");
        Account {
            user_id,
            password_hash: self.user(user_id).expect("the user exists").password_hash,
            main,
            previous_refresh: None,
            extra_sid,
        }
    }

    /// After an input that may have ended the session, deleted the user or
    /// changed the password: start the next input from a valid state.
    fn settle(&self, account: &mut Account) {
        if !self.alive(&account.main.access) {
            *account = self.reset(Some(&*account));
        }
        assert!(
            self.alive(&self.bystander.access),
            "an input of one user ended another user's session"
        );
    }
}

/// `PUT /users/me/password[?cookie=true]` with the fuzzer's body.
fn change_password(f: &Fixture, account: &mut Account, flags: u8, body: &[u8]) {
    let cookie_mode = flags & 1 != 0;
    let origin = ORIGINS[usize::from(flags >> 1) & 3];
    let uri = if cookie_mode {
        "/users/me/password?cookie=true"
    } else {
        "/users/me/password"
    };
    let mut call = Call::new(Method::PUT, uri);
    call.content_type = JSON_TYPES[usize::from(flags >> 3) & 3];
    call.origin = origin;
    call.body = body.to_vec();
    let access = account.main.access.clone();
    if flags & 0x80 == 0 {
        call = call.bearer(&access);
    }
    let Some(reply) = f.send(call) else { return };
    if reply.status.is_success() {
        assert_eq!(
            body_field(body, "current_password").as_deref(),
            Some(PASSWORD),
            "password changed without the current password: {}",
            reply.status
        );
        assert!(
            origin.is_none() || origin == Some(ISSUER) || !cookie_mode,
            "cookie mode answered for a foreign Origin"
        );
        assert_no_store(&reply, "a token response");
        let tokens = reply.json();
        let fresh = tokens["access_token"]
            .as_str()
            .expect("a password change answers with a fresh token")
            .to_owned();
        if cookie_mode {
            assert!(
                tokens.get("refresh_token").is_none(),
                "cookie mode put the refresh token in the body"
            );
            assert!(
                refresh_cookie(&reply.headers).is_some(),
                "cookie mode set no cookie"
            );
        } else {
            assert!(
                tokens["refresh_token"].is_string(),
                "no refresh token in the body"
            );
        }
        assert!(
            !f.alive(&access),
            "the token of before the password change still works"
        );
        // Back to the known password, through the API.
        let new = body_field(body, "new_password").expect("the new password was a string");
        let restore = f
            .send(
                Call::new(Method::PUT, "/users/me/password")
                    .bearer(&fresh)
                    .json(json!({"current_password": new, "new_password": PASSWORD})),
            )
            .expect("request");
        assert_eq!(
            restore.status,
            StatusCode::OK,
            "restoring the password: {}",
            restore.text()
        );
        *account = f.reset(Some(&*account));
    } else {
        let user = f
            .user(account.user_id)
            .expect("a refused password change deleted the user");
        assert_eq!(
            user.password_hash, account.password_hash,
            "a refused password change ({}) changed the password",
            reply.status
        );
    }
}

/// `DELETE /users/me` with the fuzzer's confirmation body.
fn delete_account(f: &Fixture, account: &mut Account, flags: u8, body: &[u8]) {
    let mut call = Call::new(Method::DELETE, "/users/me");
    call.content_type = JSON_TYPES[usize::from(flags) & 3];
    call.body = body.to_vec();
    let access = account.main.access.clone();
    if flags & 0x80 == 0 {
        call = call.bearer(&access);
    }
    let Some(reply) = f.send(call) else { return };
    if reply.status.is_success() {
        assert_eq!(
            body_field(body, "password").as_deref(),
            Some(PASSWORD),
            "account deleted without its password"
        );
        assert!(
            f.user(account.user_id).is_none(),
            "the deleted user is still stored"
        );
        assert!(!f.alive(&access), "a deleted user's token still works");
    } else {
        assert!(
            f.user(account.user_id).is_some(),
            "a refused deletion ({}) deleted the user",
            reply.status
        );
    }
}

/// The `limit` warden pages by for `query`: the last one given (a bad one
/// is a 422), else 50.
fn page_limit(query: &str) -> usize {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "limit")
        .filter_map(|(_, v)| v.parse::<usize>().ok())
        .last()
        .unwrap_or(50)
}

/// `GET /users/me/sessions?...` with the fuzzer's query.
fn list_sessions(f: &Fixture, account: &Account, flags: u8, query: &[u8]) {
    let mut q = String::new();
    if flags & 1 != 0 {
        let id = Uuid::parse_str(&account.main.sid).expect("session id");
        q.push_str(&format!(
            "cursor={}&",
            URL_SAFE_NO_PAD.encode(id.as_bytes())
        ));
    }
    if flags & 2 != 0 {
        q.push_str("limit=1&");
    }
    q.push_str(&query_part(query));
    let mut uri = format!("/users/me/sessions?{q}");
    let mut seen = Vec::new();
    // A page, then the pages its `Link` leads to (at most a few).
    for _ in 0..4 {
        let call = Call::new(Method::GET, uri.clone()).bearer(&account.main.access);
        let Some(reply) = f.send(call) else { return };
        if !reply.status.is_success() {
            return;
        }
        assert_no_store(&reply, "the session list");
        let Value::Array(items) = reply.json() else {
            panic!("the session list is not a JSON array: {}", reply.text());
        };
        let query = uri.split_once('?').map_or("", |(_, q)| q);
        assert!(items.len() <= page_limit(query), "more sessions than limit");
        for item in &items {
            let id = item["id"].as_str().expect("a session has an id").to_owned();
            assert_ne!(id, f.bystander.sid, "another user's session is listed");
            assert!(!seen.contains(&id), "a session on two pages");
            seen.push(id);
        }
        let Some(link) = reply.headers.get(header::LINK) else {
            return;
        };
        let link = link.to_str().expect("Link is ASCII");
        let next = link
            .strip_prefix('<')
            .and_then(|l| l.strip_suffix(">; rel=\"next\""))
            .unwrap_or_else(|| panic!("malformed Link: {link}"));
        let path = next
            .strip_prefix(ISSUER)
            .unwrap_or_else(|| panic!("Link to another origin: {link}"));
        assert!(
            path.starts_with("/users/me/sessions?"),
            "Link to another route: {link}"
        );
        assert!(!items.is_empty(), "a Link after an empty page");
        uri = path.to_owned();
    }
}

/// `DELETE /users/me/sessions/{id}`: a fuzzed id, or one the target knows.
fn end_session(f: &Fixture, account: &Account, flags: u8, segment: &[u8]) {
    let id = match flags & 3 {
        0 => path_segment(segment),
        1 => account.main.sid.clone(),
        2 => account.extra_sid.clone(),
        _ => f.bystander.sid.clone(),
    };
    let Some(reply) = f.send(
        Call::new(Method::DELETE, format!("/users/me/sessions/{id}")).bearer(&account.main.access),
    ) else {
        return;
    };
    if flags & 3 == 3 {
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "ended another user's session"
        );
    }
    if reply.status.is_success() {
        let decoded = percent_encoding::percent_decode_str(&id).decode_utf8_lossy();
        let session = f.session(&decoded).expect("the ended session is stored");
        assert_eq!(
            session.user_id, account.user_id,
            "ended another user's session"
        );
        assert!(
            session.revoked_at.is_some(),
            "204 but the session is not ended"
        );
    }
}

/// `POST /logout` with the fuzzer's query (or `?all=true`).
fn logout(f: &Fixture, account: &Account, flags: u8, query: &[u8]) {
    let uri = if flags & 1 != 0 {
        "/logout?all=true".to_owned()
    } else {
        format!("/logout?{}", query_part(query))
    };
    let access = account.main.access.clone();
    let mut call = Call::new(Method::POST, uri);
    if flags & 0x80 == 0 {
        call = call.bearer(&access);
    }
    let Some(reply) = f.send(call) else { return };
    if reply.status.is_success() {
        assert!(!f.alive(&access), "the access token works after its logout");
        if flags & 1 != 0 {
            let extra = f.session(&account.extra_sid).expect("stored");
            assert!(
                extra.revoked_at.is_some(),
                "logout?all=true left a session live"
            );
        }
    }
}

/// `POST /token` with `grant_type=refresh_token`: the current, the
/// previous or a fuzzed (or mutated) refresh token, in a form, JSON or the
/// cookie.
fn refresh(f: &Fixture, account: &mut Account, flags: u8, rest: &[u8]) {
    let current = account.main.refresh.clone();
    let previous = account
        .previous_refresh
        .clone()
        .unwrap_or_else(|| current.clone());
    // Choices 1 and 2 leave `rest` to extra form fields (`&scope=...`).
    let (token, extra): (Vec<u8>, &[u8]) = match flags & 3 {
        0 => (rest.to_vec(), &[]),
        1 => (current.clone().into_bytes(), rest),
        2 => (previous.into_bytes(), rest),
        _ => {
            let (&cut, tail) = rest.split_first().unwrap_or((&0, &[]));
            let mut t = current.clone().into_bytes();
            t.truncate(usize::from(cut) % (t.len() + 1));
            t.extend_from_slice(tail);
            (t, &[])
        }
    };
    let transport = (flags >> 2) & 3;
    let origin = ORIGINS[usize::from(flags >> 4) & 3];
    let mut form = b"grant_type=refresh_token".to_vec();
    let mut call = match transport {
        // The form, the token as given.
        0 | 3 => {
            form.extend_from_slice(b"&refresh_token=");
            form.extend_from_slice(&token);
            Call::new(
                Method::POST,
                if transport == 3 {
                    "/token?cookie=true"
                } else {
                    "/token"
                },
            )
        }
        1 => Call::new(Method::POST, "/token").json(json!({
            "grant_type": "refresh_token",
            "refresh_token": String::from_utf8_lossy(&token),
        })),
        // The cookie: no `refresh_token` field.
        _ => {
            let mut cookie = b"warden_refresh=".to_vec();
            cookie.extend_from_slice(&token);
            let mut call = Call::new(Method::POST, "/token?cookie=true");
            call.cookie = Some(cookie);
            call
        }
    };
    if transport != 1 {
        if !extra.is_empty() {
            form.push(b'&');
            form.extend_from_slice(extra);
        }
        call.content_type = Some("application/x-www-form-urlencoded");
        call.body = form;
    }
    call.origin = origin;
    let cookie_mode = transport >= 2;
    let Some(reply) = f.send(call) else { return };
    if !reply.status.is_success() {
        return;
    }
    assert_no_store(&reply, "a token response");
    if transport == 2 {
        assert_eq!(
            origin,
            Some(ISSUER),
            "a cookie refresh answered for Origin {origin:?}"
        );
    } else if cookie_mode {
        assert!(
            origin.is_none() || origin == Some(ISSUER),
            "cookie mode answered for Origin {origin:?}"
        );
    }
    let body = reply.json();
    let access = body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();
    let successor = if cookie_mode {
        assert!(
            body.get("refresh_token").is_none(),
            "cookie mode put the refresh token in the body"
        );
        refresh_cookie(&reply.headers).expect("cookie mode set no cookie")
    } else {
        body["refresh_token"]
            .as_str()
            .expect("a refresh token")
            .to_owned()
    };
    // The server answers with the successor of the presented token, an
    // HMAC of it: which token was accepted shows in the answer, however the
    // request spelled it.
    let mut parts = current.splitn(3, '.');
    let (Some(sid), Some(generation)) = (parts.next(), parts.next()) else {
        panic!("the target's refresh token has no session and generation");
    };
    let sid = Uuid::parse_str(sid).expect("session id");
    let generation: i64 = generation.parse().expect("generation");
    let rotated = f.state.refresh.successor(&current, sid, generation + 1);
    if successor == rotated {
        account.previous_refresh = Some(current);
        account.main.refresh = successor;
    } else {
        assert_eq!(
            successor, current,
            "a refresh granted for a token that is neither the current one nor a retry of the one just rotated"
        );
    }
    account.main.access = access;
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let [endpoint, flags, rest @ ..] = data else {
        return;
    };
    let mut account = f.account.lock().expect("account lock");
    match endpoint % 6 {
        0 => change_password(f, &mut account, *flags, rest),
        1 => delete_account(f, &mut account, *flags, rest),
        2 => {
            // Read-only: nothing to settle.
            list_sessions(f, &account, *flags, rest);
            return;
        }
        3 => end_session(f, &account, *flags, rest),
        4 => logout(f, &account, *flags, rest),
        _ => refresh(f, &mut account, *flags, rest),
    }
    f.settle(&mut account);
});
