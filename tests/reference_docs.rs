//! The reference in `docs/reference/` against the real thing.
//!
//! - Every route the server answers is described in `http-api.md` (as a
//!   heading like "### `GET /users/me`"), every heading there is a route,
//!   and every API route is in the server's own `/openapi.json`. The routes
//!   come from the running binary's `/openapi.json` (utoipa-axum registers
//!   a route and its OpenAPI entry together) plus the few pages outside it
//!   ([`PAGES_OUTSIDE_OPENAPI`]); a scan of `src/` for plain `.route("...")`
//!   calls makes sure no route bypasses both lists. Each one is requested
//!   on the server and must not be 404 or 405.
//! - Every claim of a real access token, every field of a real token
//!   response and user, and every metric `/metrics` exports, is named in
//!   the reference.
//! - Every setting the configuration file accepts is in `configuration.md`
//!   with its file key and its `WARDEN_*` name, and every `WARDEN_*` named
//!   there is one.
//! - Every command and flag of `warden --help` (walked recursively) is in
//!   `cli.md`, and every command heading there exists.
//! - `README.md` and `docs/**/*.md` link nothing outside the repository:
//!   relative links resolve to files inside it (and `#anchors` to headings);
//!   links to the web are allowed only to the standards bodies of
//!   [`STANDARDS_HOSTS`], and bare URLs in the text only to those or to
//!   the reserved example and loopback names.
//!
//! Everything is observed through the binary and the files, not through
//! the crate's internal types, so the test survives a reorganisation of
//! `src/`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_warden");

/// Routes the server answers that are deliberately not in `/openapi.json`,
/// because they are pages and files rather than API operations. Each must
/// still be answered and documented in `http-api.md`.
const PAGES_OUTSIDE_OPENAPI: &[(&str, &str)] = &[
    // Swagger UI itself (its asset files live under `/docs/`, served by
    // utoipa-swagger-ui's catch-all, and are mentioned in the `/docs`
    // section rather than listed one by one).
    ("GET", "/docs"),
    // The OpenAPI document does not describe itself.
    ("GET", "/openapi.json"),
    // The account page and its two files (`routes/account.rs`).
    ("GET", "/account"),
    ("GET", "/account/app.js"),
    ("GET", "/account/style.css"),
    // The account page's own exchange of the browser session for an
    // access token (`routes/account.rs`): for that page only.
    ("POST", "/account/session"),
    // The landing page and the icons (`routes/pages.rs`).
    ("GET", "/"),
    ("GET", "/favicon.ico"),
    ("GET", "/favicon.svg"),
    // The authorization endpoint and the hosted pages: HTML forms and
    // redirects (`routes/authorize.rs`).
    ("GET", "/authorize"),
    ("POST", "/authorize"),
    ("POST", "/authorize/consent"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/signout"),
];

/// Hosts a document may link to: standards, which a reader needs and which
/// do not move. Anything else on the web (a project page, a blog) rots and
/// is not part of warden; say it in words instead.
const STANDARDS_HOSTS: &[&str] = &[
    "www.rfc-editor.org",
    "datatracker.ietf.org",
    "www.w3.org",
    "openid.net",
    "spec.openapis.org",
    "pages.nist.gov",
    "cheatsheetseries.owasp.org",
];

/// Host names that may appear in example URLs in the text (RFC 2606 and
/// RFC 6761 reserve them; they point nowhere).
fn is_example_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host == "::1"
        || host.starts_with("127.")
        || host == "0.0.0.0"
        || ["example.com", "example.org", "example.net", "example"]
            .iter()
            .any(|d| host == *d || host.ends_with(&format!(".{d}")))
        || host.ends_with(".internal")
        || host.ends_with(".test")
        || host.starts_with('<')
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------- markdown

/// The lines of `text` outside fenced code blocks, with their numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = if trimmed.starts_with("```") {
            Some("```")
        } else if trimmed.starts_with("~~~") {
            Some("~~~")
        } else {
            None
        };
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// `line` with its inline code spans removed (links inside code are not
/// links).
fn without_code(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|c| *c == '`').count();
        let after = &rest[start + ticks..];
        match after.find(&"`".repeat(ticks)) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The ATX headings of `text` (outside code), as written.
fn headings(text: &str) -> Vec<(usize, String)> {
    prose_lines(text)
        .into_iter()
        .filter_map(|(n, line)| {
            let hashes = line.chars().take_while(|c| *c == '#').count();
            if !(1..=6).contains(&hashes) {
                return None;
            }
            let rest = line[hashes..].strip_prefix(' ')?;
            Some((n, rest.trim().trim_end_matches('#').trim().to_owned()))
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, link targets dropped,
/// everything but letters, digits, spaces, `-` and `_` removed, spaces to
/// hyphens.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](target)` counts as `text`.
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find("](").and_then(|close| {
            after[close + 2..]
                .find(')')
                .map(|end| (close, close + 2 + end + 1))
        }) {
            Some((close, end)) => {
                text.push_str(&after[..close]);
                rest = &after[end..];
            }
            None => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor `text` defines, duplicates numbered as GitHub does.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, h) in headings(text) {
        let base = slug(&h);
        let n = seen.entry(base.clone()).or_default();
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The link targets of one line (inline code removed): `[x](target)`,
/// `![x](target)`, `<scheme://...>`, and a reference definition
/// `[x]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code(line);
    let mut out = Vec::new();
    let mut rest = line.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        // A target ends at the matching `)`; an optional title follows a
        // space.
        let mut depth = 0usize;
        let mut end = after.len();
        for (j, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = j;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let target = after[..end].split_whitespace().next().unwrap_or("");
        out.push(target.trim_matches(['<', '>']).to_owned());
        rest = &after[end.min(after.len())..];
    }
    let mut rest = line.as_str();
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        let Some(end) = after.find('>') else { break };
        let inner = &after[..end];
        if inner.contains("://") || inner.starts_with("mailto:") {
            out.push(inner.to_owned());
        }
        rest = &after[end + 1..];
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[')
        && let Some(i) = trimmed.find("]:")
        && !trimmed[..i].contains("](")
        && let Some(target) = trimmed[i + 2..].split_whitespace().next()
    {
        out.push(target.to_owned());
    }
    out
}

/// Bare `http(s)://host` URLs in the text of one line (inline code
/// removed), which GitHub turns into links too.
fn bare_url_hosts(line: &str) -> Vec<String> {
    let line = without_code(line);
    let mut out = Vec::new();
    for scheme in ["http://", "https://"] {
        let mut rest = line.as_str();
        while let Some(i) = rest.find(scheme) {
            let after = &rest[i + scheme.len()..];
            let host: String = after
                .chars()
                .take_while(|c| !matches!(c, '/' | ')' | ' ' | '>' | '"' | '\'' | ',' | '`'))
                .collect();
            // Strip a port, but keep `[::1]` whole.
            let host = match host.rfind(':') {
                Some(p) if !host.ends_with(']') && !host[..p].contains('[') => host[..p].to_owned(),
                Some(p) if host.starts_with('[') && host[..p].ends_with(']') => {
                    host[..p].to_owned()
                }
                _ => host,
            };
            out.push(host);
            rest = after;
        }
    }
    out
}

fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut files = vec![repo().join("README.md")];
    walk(&repo().join("docs"), &mut files);
    files
}

fn host_of(url: &str) -> &str {
    let after = url.split_once("://").map_or("", |(_, a)| a);
    let host = after.split(['/', '?', '#']).next().unwrap_or("");
    host.rsplit('@').next().unwrap_or(host)
}

#[test]
fn readme_and_docs_link_only_inside_the_repository() {
    let root = repo().canonicalize().unwrap();
    let mut problems = Vec::new();
    let files = markdown_files();
    assert!(files.len() > 5, "found only {files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(repo()).unwrap().display().to_string();
        let own_anchors = anchors(&text);
        for (n, line) in prose_lines(&text) {
            for target in link_targets(line) {
                let at = format!("{shown}:{n}: {target}");
                if target.is_empty() {
                    problems.push(format!("{at}: empty link"));
                } else if let Some(anchor) = target.strip_prefix('#') {
                    if !own_anchors.contains(anchor) {
                        problems.push(format!("{at}: no heading with this anchor here"));
                    }
                } else if target.contains("://") || target.starts_with("mailto:") {
                    let host = host_of(&target);
                    if !(target.starts_with("https://") && STANDARDS_HOSTS.contains(&host)) {
                        problems.push(format!(
                            "{at}: links outside the repository (only https links to the standards hosts {STANDARDS_HOSTS:?} are allowed)"
                        ));
                    }
                } else {
                    let (path, anchor) = match target.split_once('#') {
                        Some((p, a)) => (p, Some(a)),
                        None => (target.as_str(), None),
                    };
                    if path.starts_with('/') {
                        problems.push(format!("{at}: absolute path; link relative to the file"));
                        continue;
                    }
                    let resolved = file.parent().unwrap().join(path);
                    match resolved.canonicalize() {
                        Err(_) => problems.push(format!("{at}: no such file")),
                        Ok(real) if !real.starts_with(&root) => {
                            problems.push(format!("{at}: points outside the repository"))
                        }
                        Ok(real) => {
                            if let Some(anchor) = anchor
                                && real.extension().is_some_and(|x| x == "md")
                            {
                                let there = std::fs::read_to_string(&real).unwrap();
                                if !anchors(&there).contains(anchor) {
                                    problems
                                        .push(format!("{at}: no heading with this anchor there"));
                                }
                            }
                        }
                    }
                }
            }
            for host in bare_url_hosts(line) {
                if !STANDARDS_HOSTS.contains(&host.as_str()) && !is_example_host(&host) {
                    problems.push(format!(
                        "{shown}:{n}: a URL to {host:?} outside the repository"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_link_checker_sees_what_it_must() {
    // The checks above are only as good as the parsing; pin it down.
    assert_eq!(
        link_targets("see [a](docs/a.md#x \"t\") and ![i](p.png), <https://x.test/y>"),
        ["docs/a.md#x", "p.png", "https://x.test/y"]
    );
    assert!(link_targets("`[not](a link)` here").is_empty());
    assert_eq!(
        link_targets("[ref]: ../shared/API.md"),
        ["../shared/API.md"]
    );
    assert_eq!(
        bare_url_hosts("at https://github.com/x and http://127.0.0.1:8000/docs"),
        ["127.0.0.1", "github.com"]
    );
    assert_eq!(
        slug("`GET /.well-known/jwks.json`"),
        "get-well-knownjwksjson"
    );
    assert_eq!(
        slug("The browser cookie mode and its Origin rule"),
        "the-browser-cookie-mode-and-its-origin-rule"
    );
    assert_eq!(slug("`/docs` (Swagger UI)"), "docs-swagger-ui");
    let text = "# A\n```\n# not a heading\n```\n## A\n";
    assert_eq!(
        anchors(text),
        BTreeSet::from(["a".to_owned(), "a-1".to_owned()])
    );
}

// ------------------------------------------------------------- the server

/// A `warden serve` child on a free port with a fresh SQLite database,
/// killed (by its id) when dropped.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    c
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = command(dir.path())
            .arg("serve")
            .env("WARDEN_BIND", "127.0.0.1:0")
            .env("WARDEN_ARGON2_MEMORY_KIB", "256")
            .env("WARDEN_ARGON2_ITERATIONS", "1")
            .env("WARDEN_LOG", "warden=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The server logs the address it actually bound. Its log is read
        // to the end on a thread, so a full pipe never blocks the server.
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut log = Vec::new();
            let mut tx = Some(tx);
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on http://")
                    && let Some(tx) = tx.take()
                {
                    let addr = line[i + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    let _ = tx.send(Ok(addr));
                }
                log.push(line);
            }
            if let Some(tx) = tx {
                let _ = tx.send(Err(log.join("\n")));
            }
        });
        let base = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(Ok(base)) => base,
            other => {
                let _ = child.kill();
                panic!("warden serve did not start: {other:?}");
            }
        };
        Self {
            child,
            base,
            _dir: dir,
        }
    }
}

/// `/users/{id}` → `/users/<a uuid>`.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "0193a0c4-5b8e-7c3a-9f1e-2d4b6a8c0e12"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every "### `METHOD /path`" heading of `http-api.md`.
fn documented_routes(text: &str) -> BTreeSet<(String, String)> {
    headings(text)
        .into_iter()
        .filter_map(|(_, h)| {
            let inner = h.strip_prefix('`')?.strip_suffix('`')?;
            let (method, path) = inner.split_once(' ')?;
            (method.chars().all(|c| c.is_ascii_uppercase()) && path.starts_with('/'))
                .then(|| (method.to_owned(), path.to_owned()))
        })
        .collect()
}

/// Every route the sources register with a plain `.route("PATH",
/// METHOD(...))` (not through utoipa's `routes!`), and Swagger UI's paths.
/// A registration this cannot read is reported as a problem.
fn routes_in_sources(problems: &mut Vec<String>) -> BTreeSet<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("src"), &mut files);
    let mut found = BTreeSet::new();
    for file in files {
        let shown = file.strip_prefix(repo()).unwrap().display().to_string();
        let code: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for call in [
            ".nest(",
            ".nest_service(",
            ".route_service(",
            ".fallback_service(",
        ] {
            if code.contains(call) {
                problems.push(format!(
                    "{shown}: `{call}` registers routes this test cannot list; teach tests/reference_docs.rs about it"
                ));
            }
        }
        let mut rest = code.as_str();
        while let Some(i) = rest.find(".route(") {
            let args = &rest[i + ".route(".len()..];
            let mut depth = 1usize;
            let mut end = args.len();
            for (j, c) in args.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let call = &args[..end];
            rest = &args[end..];
            let Some(path) = call
                .trim_start()
                .strip_prefix('"')
                .and_then(|p| p.split('"').next())
            else {
                problems.push(format!(
                    "{shown}: `.route({call})`: write the path as a string literal so the reference test can see it"
                ));
                continue;
            };
            let methods: Vec<&str> = ["get", "post", "put", "patch", "delete", "head", "options"]
                .into_iter()
                .filter(|m| {
                    call.match_indices(&format!("{m}(")).any(|(k, _)| {
                        k == 0 || !call[..k].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                    })
                })
                .collect();
            if methods.is_empty() {
                problems.push(format!(
                    "{shown}: `.route({call})`: write it as `.route(\"/path\", get(handler))` so the reference test can see its methods"
                ));
            }
            for m in methods {
                found.insert((m.to_uppercase(), path.to_owned()));
            }
        }
        for marker in ["SwaggerUi::new(\"", ".url(\"/"] {
            let mut rest = code.as_str();
            while let Some(i) = rest.find(marker) {
                let after = &rest[i + marker.len()..];
                let path = after.split('"').next().unwrap_or("");
                let path = if marker.ends_with('/') {
                    format!("/{path}")
                } else {
                    path.to_owned()
                };
                found.insert(("GET".to_owned(), path));
                rest = after;
            }
        }
    }
    found
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn every_route_is_in_the_reference_and_every_api_route_in_openapi() {
    let server = Server::start();
    let http = client();
    let doc: Value = http
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut in_openapi = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if [
                "get", "post", "put", "patch", "delete", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                in_openapi.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(in_openapi.len() >= 20, "{in_openapi:?}");
    let pages: BTreeSet<(String, String)> = PAGES_OUTSIDE_OPENAPI
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let mut problems = Vec::new();
    for page in pages.intersection(&in_openapi) {
        problems.push(format!(
            "{page:?} is in /openapi.json: remove it from PAGES_OUTSIDE_OPENAPI"
        ));
    }
    for route in routes_in_sources(&mut problems) {
        if !pages.contains(&route) && !in_openapi.contains(&route) {
            problems.push(format!(
                "{route:?} is registered in src/ but is neither in /openapi.json nor in PAGES_OUTSIDE_OPENAPI: register it with utoipa's routes! (API routes), or list it there with a reason (pages)"
            ));
        }
    }
    let served: BTreeSet<_> = in_openapi.union(&pages).cloned().collect();
    let documented = documented_routes(&read("docs/reference/http-api.md"));
    for (method, path) in served.difference(&documented) {
        problems.push(format!(
            "`{method} {path}` is served but not described in docs/reference/http-api.md (add a heading \"### `{method} {path}`\")"
        ));
    }
    for (method, path) in documented.difference(&served) {
        problems.push(format!(
            "docs/reference/http-api.md describes `{method} {path}`, which the server does not have"
        ));
    }
    for (method, path) in &served {
        let url = format!("{}{}", server.base, concrete(path));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let status = http
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 404 || status == 405 {
            problems.push(format!("{method} {url} answered {status}"));
        }
    }
    // And the router's fallbacks really are what a missing route gets, so
    // the check above means something.
    let status = http
        .get(format!("{}/no-such-route", server.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    let status = http
        .delete(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 405);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Whether `text` names `name` in backticks (alone, or as the start of a
/// code span such as "`--role R`" or "`key` = ...").
fn names(text: &str, name: &str) -> bool {
    text.contains(&format!("`{name}`")) || text.contains(&format!("`{name} "))
}

#[tokio::test]
async fn claims_fields_and_metrics_are_in_the_reference() {
    let server = Server::start();
    let http = client();
    let user: Value = http
        .post(format!("{}/users", server.base))
        .json(&serde_json::json!({
            "username": "docs-reader",
            "email": "reader@example.com",
            "password": "a documented passphrase 42",
            "full_name": "Doc Reader",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token: Value = http
        .post(format!("{}/token", server.base))
        .form(&[
            ("username", "docs-reader"),
            ("password", "a documented passphrase 42"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = token["access_token"].as_str().expect("a token");
    let part = |i: usize| -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(i).unwrap())
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let api = read("docs/reference/http-api.md");
    let mut problems = Vec::new();
    // Each claim has its row in the claims table.
    for claim in part(1).as_object().unwrap().keys() {
        if !api
            .lines()
            .any(|l| l.starts_with(&format!("| `{claim}` |")))
        {
            problems.push(format!(
                "claim {claim:?} has no row \"| `{claim}` |\" in docs/reference/http-api.md"
            ));
        }
    }
    for (what, object) in [
        ("JWT header field", part(0)),
        ("token response field", token.clone()),
        ("user field", user.clone()),
    ] {
        for key in object.as_object().unwrap().keys() {
            if !names(&api, key) && !api.contains(&format!("\"{key}\"")) {
                problems.push(format!(
                    "{what} {key:?} is not in docs/reference/http-api.md"
                ));
            }
        }
    }
    let metrics = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let operations = read("docs/reference/operations.md");
    let families: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name)
        })
        .collect();
    assert!(
        families.contains("warden_logins_total"),
        "a login was counted: {metrics}"
    );
    for family in families {
        if !names(&operations, family) {
            problems.push(format!(
                "metric {family} is not in docs/reference/operations.md"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------- configuration

/// What the binary says about a configuration file holding `key = {}`: a
/// table is no scalar setting's value, so a known key is refused for its
/// value and an unknown one for its name.
fn complaint_about(dir: &Path, key: &str) -> String {
    let file = dir.join("probe.toml");
    std::fs::write(&file, format!("{key} = {{}}\n")).unwrap();
    let out = command(dir)
        .args(["--config", file.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{key}: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let marker = format!("{key} in {}: ", file.display());
    match stderr.find(&marker) {
        Some(i) => stderr[i + marker.len()..].trim().to_owned(),
        None => panic!("{key}: the error does not name the key: {stderr}"),
    }
}

/// The contents of the `"..."` string literals of Rust `source` (escapes
/// skipped, `'"'` is not a quote; good enough to find setting names).
fn string_literals(source: &str) -> Vec<String> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let is_char_literal = i > 0 && chars[i - 1] == '\'' && chars.get(i + 1) == Some(&'\'');
        if chars[i] == '"' && !is_char_literal {
            let mut literal = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                } else {
                    literal.push(chars[i]);
                }
                i += 1;
            }
            out.push(literal);
        }
        i += 1;
    }
    out
}

/// Every scalar setting of the configuration file, as the binary sees it:
/// of the snake_case string literals in the configuration's sources, the
/// ones the file accepts as keys.
fn settings() -> BTreeSet<String> {
    let mut sources = Vec::new();
    let single = repo().join("src/config.rs");
    if single.exists() {
        sources.push(std::fs::read_to_string(single).unwrap());
    }
    let folder = repo().join("src/config");
    if folder.is_dir() {
        for e in std::fs::read_dir(folder).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "rs") {
                sources.push(std::fs::read_to_string(e.path()).unwrap());
            }
        }
    }
    let mut candidates = BTreeSet::new();
    for source in &sources {
        for literal in string_literals(source) {
            if literal.len() > 1
                && literal.starts_with(|c: char| c.is_ascii_lowercase())
                && literal
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                candidates.insert(literal);
            }
        }
    }
    // Roles are a table of tables, documented as `[roles.NAME]`.
    candidates.remove("roles");
    let dir = tempfile::tempdir().unwrap();
    let unknown = complaint_about(dir.path(), "zz_certainly_not_a_setting");
    // The stable start of the complaint ("unknown setting"), before any
    // suggestion that names another key.
    let unknown_start = unknown
        .split([';', ',', '(', ':', '.'])
        .next()
        .unwrap()
        .trim()
        .to_owned();
    assert!(!unknown_start.is_empty(), "{unknown}");
    candidates
        .into_iter()
        .filter(|key| !complaint_about(dir.path(), key).starts_with(&unknown_start))
        .collect()
}

#[test]
fn every_setting_is_in_the_configuration_reference() {
    let settings = settings();
    for known in ["bind", "database_url", "jwt_algorithm", "throttle_window"] {
        assert!(
            settings.contains(known),
            "{known} not found in {settings:?}"
        );
    }
    let reference = read("docs/reference/configuration.md");
    let mut problems = Vec::new();
    for key in &settings {
        let env = format!("WARDEN_{}", key.to_uppercase());
        let row = reference.lines().any(|l| {
            l.starts_with('|') && l.contains(&format!("`{key}`")) && l.contains(&format!("`{env}`"))
        });
        if !row {
            problems.push(format!(
                "setting {key} ({env}) has no table row in docs/reference/configuration.md naming both"
            ));
        }
    }
    // The other way: no variable the reference names is made up.
    let mut rest = reference.as_str();
    while let Some(i) = rest.find("`WARDEN_") {
        let name: String = rest[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[i + 1..];
        let key = name["WARDEN_".len()..].to_lowercase();
        if key.is_empty() {
            // `WARDEN_*`, the family.
            continue;
        }
        // WARDEN_CONFIG names the file; the others are Kubernetes' examples.
        if !settings.contains(&key)
            && ![
                "WARDEN_CONFIG",
                "WARDEN_PORT",
                "WARDEN_PORT_8000_TCP",
                "WARDEN_SERVICE_HOST",
                "WARDEN_SERVICE_PORT",
            ]
            .contains(&name.as_str())
        {
            problems.push(format!(
                "docs/reference/configuration.md names {name}, which is no setting"
            ));
        }
    }
    if !reference.contains("[roles.") {
        problems.push("docs/reference/configuration.md does not describe [roles.NAME]".to_owned());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ------------------------------------------------------------ the CLI

/// `warden <path> --help`: its subcommands and its long flags.
fn help(path: &[String]) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{path:?}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (mut commands, mut flags) = (Vec::new(), Vec::new());
    let mut section = "";
    for line in text.lines() {
        if !line.starts_with(' ') {
            section = line.trim_end_matches(':');
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let first = line.split_whitespace().next().unwrap_or("");
        match section {
            "Commands" if indent == 2 && first != "help" => commands.push(first.to_owned()),
            "Options" if indent <= 6 && first.starts_with('-') => {
                for token in line.split_whitespace() {
                    let token = token.trim_end_matches(',');
                    if let Some(flag) = token.strip_prefix("--") {
                        flags.push(format!("--{flag}"));
                    } else if !token.starts_with('-') {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    (commands, flags)
}

#[test]
fn every_command_and_flag_is_in_the_cli_reference() {
    let reference = read("docs/reference/cli.md");
    let documented: BTreeSet<String> = headings(&reference)
        .into_iter()
        .filter_map(|(_, h)| {
            h.strip_prefix("`warden ")
                .and_then(|c| c.strip_suffix('`'))
                .map(str::to_owned)
        })
        .collect();
    let mut problems = Vec::new();
    let mut leaves = BTreeSet::new();
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let (commands, flags) = help(&path);
        for flag in flags {
            if !names(&reference, &flag) {
                problems.push(format!(
                    "`warden {} {flag}` is not in docs/reference/cli.md",
                    path.join(" ")
                ));
            }
        }
        if commands.is_empty() {
            leaves.insert(path.join(" "));
        }
        for c in commands {
            let mut sub = path.clone();
            sub.push(c);
            todo.push(sub);
        }
    }
    assert!(leaves.len() >= 7, "{leaves:?}");
    for leaf in leaves.difference(&documented) {
        problems.push(format!(
            "`warden {leaf}` has no heading \"## `warden {leaf}`\" in docs/reference/cli.md"
        ));
    }
    for heading in documented.difference(&leaves) {
        problems.push(format!(
            "docs/reference/cli.md describes `warden {heading}`, which the binary does not have"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
