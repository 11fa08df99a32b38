//! The pages around the API, for a person with a browser: the landing page
//! at `GET /`, the icons, the redirects of trailing-slash variants to their
//! route, and the redirect of a loopback alias to the issuer's address.
//!
//! Like the account page these are not in the OpenAPI document: they are
//! pages and files, not API operations.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::error::Error;
use crate::http::routes::account;
use crate::http::state::AppState;

const INDEX_HTML: &str = include_str!("pages/index.html");
const ICON_SVG: &str = include_str!("pages/icon.svg");
/// The same shield as `icon.svg`, rendered at 16, 32 and 48 pixels (PNG
/// images in an ICO container): what a browser asks for on its own, and
/// what bookmarks and tabs of browsers without SVG icons show.
const FAVICON_ICO: &[u8] = include_bytes!("pages/favicon.ico");

/// Pages and files outside the OpenAPI document that a trailing-slash
/// variant is redirected to (`/account/` → `/account`). The API routes come
/// from the OpenAPI document (see [`KnownPaths`]).
pub const PAGES: &[&str] = &[
    "/",
    "/account",
    "/account/app.js",
    "/account/style.css",
    "/authorize",
    "/login",
    "/favicon.ico",
    "/favicon.svg",
    "/openapi.json",
    "/docs",
];

/// Icons change only with the binary, rarely: a day in any cache, and
/// revalidated by `ETag` after that.
const ICON_CACHE_CONTROL: &str = "public, max-age=86400";

/// A stored SVG opened on its own is a document: it may run nothing and
/// load nothing (its styles are attributes).
const ICON_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(landing))
        .route("/favicon.ico", get(favicon_ico))
        .route("/favicon.svg", get(favicon_svg))
}

/// `GET /`: what warden is and where to go, with no script and no cookie.
async fn landing(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(to) = issuer_redirect(state.tokens.issuer(), &uri, &headers) {
        return to;
    }
    account::page("text/html; charset=utf-8", INDEX_HTML)
}

async fn favicon_ico(headers: HeaderMap) -> Response {
    icon(&headers, "image/x-icon", FAVICON_ICO)
}

async fn favicon_svg(headers: HeaderMap) -> Response {
    icon(&headers, "image/svg+xml", ICON_SVG.as_bytes())
}

/// An icon with its caching headers, or 304 when the browser's copy (its
/// `If-None-Match`) is this one.
fn icon(request: &HeaderMap, content_type: &'static str, body: &'static [u8]) -> Response {
    let etag = etag(body);
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(ICON_CACHE_CONTROL),
        ),
        (header::ETAG, etag.clone()),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(ICON_CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag.to_str().unwrap_or_default()
        });
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, body).into_response()
}

/// A strong `ETag` of a file of the binary: the first 64 bits of its
/// SHA-256, in quotes.
fn etag(body: &[u8]) -> HeaderValue {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex in quotes is a valid header")
}

// ------------------------------------------------------------- loopback

/// A loopback host name, as a request or the issuer names it: `localhost`
/// (with or without the final dot), `127.0.0.0/8` or `::1`.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Where a page request should go instead: the same path and query at the
/// issuer's own origin, when the request reached warden through another
/// loopback name of the issuer's host on the same port — `localhost:8000`
/// for an issuer of `http://127.0.0.1:8000`, or the other way round.
///
/// Why: the browser keeps cookies per host, and warden spends the refresh
/// cookie only for a request whose `Origin` is the issuer's (cookie mode's
/// defence against login CSRF and cross-site refreshes; see
/// [`crate::http::cookies`]). A page opened at `localhost` is another
/// origin to both, so its sign-in was refused, and a page signed in at
/// `127.0.0.1` was signed out at `localhost`. Accepting both origins would
/// widen that check to whatever answers on the other name (on a machine
/// where `localhost` is `::1` that can be another program); sending the
/// browser to the one address warden knows is its own keeps the check as
/// it is and makes both addresses work.
///
/// Only loopback names are redirected, and only to the issuer's host with
/// the same port: a proxy's `Host` (`auth.internal`) or another machine's
/// name is left alone, so the redirect cannot loop or point anywhere but
/// warden's configured address. `307` (temporary, not cached): the issuer
/// may change with the next start.
pub fn issuer_redirect(issuer: &str, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    let issuer = url::Url::parse(issuer).ok()?;
    let issuer_host = match issuer.host()? {
        url::Host::Domain(d) => d.to_ascii_lowercase(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => format!("[{ip}]"),
    };
    if !is_loopback_host(&issuer_host) {
        return None;
    }
    let issuer_port = issuer.port_or_known_default()?;
    // HTTP/2 names the host in `:authority` (the URI), HTTP/1.1 in `Host`.
    let authority = match uri.authority() {
        Some(a) => a.clone(),
        None => headers
            .get(header::HOST)?
            .to_str()
            .ok()?
            .parse::<axum::http::uri::Authority>()
            .ok()?,
    };
    let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
    let port = authority.port_u16().or(issuer.port_or_known_default())?;
    if host == issuer_host
        || !is_loopback_host(&host)
        || port != issuer_port
        // The same address written another way (`[0:0::1]`): not an alias.
        || same_ip(&host, &issuer_host)
    {
        return None;
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("{}{path}", issuer.origin().ascii_serialization());
    let location = HeaderValue::from_str(&location).ok()?;
    Some(
        (
            StatusCode::TEMPORARY_REDIRECT,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
    )
}

fn same_ip(a: &str, b: &str) -> bool {
    let ip = |h: &str| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok()
    };
    matches!((ip(a), ip(b)), (Some(x), Some(y)) if x == y)
}

// --------------------------------------------------------- trailing slash

/// One segment of a route's path: a literal, or a `{parameter}`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Parameter,
}

/// The paths warden serves (the OpenAPI document's templates and
/// [`PAGES`]), to tell a trailing-slash variant of a route from a path
/// that does not exist.
#[derive(Debug, Clone, Default)]
pub struct KnownPaths(Arc<[Box<[Segment]>]>);

impl KnownPaths {
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let parsed: Vec<Box<[Segment]>> = paths
            .into_iter()
            .chain(PAGES.iter().copied())
            .map(|path| {
                path.split('/')
                    .map(|s| {
                        if s.starts_with('{') && s.ends_with('}') {
                            Segment::Parameter
                        } else {
                            Segment::Literal(s.into())
                        }
                    })
                    .collect()
            })
            .collect();
        Self(parsed.into())
    }

    /// Whether `path` is one of them (a parameter matches any non-empty
    /// segment).
    pub fn contains(&self, path: &str) -> bool {
        self.0.iter().any(|known| {
            let mut given = path.split('/');
            known.iter().all(|k| match (k, given.next()) {
                (Segment::Literal(l), Some(g)) => **l == *g,
                (Segment::Parameter, Some(g)) => !g.is_empty(),
                (_, None) => false,
            }) && given.next().is_none()
        })
    }
}

/// The router's fallback: `GET`/`HEAD` of a known path with trailing
/// slashes is redirected (308) to the path without them, query kept;
/// everything else is the JSON 404. The target never ends with a slash
/// and is a route, so a redirect cannot lead to another.
pub fn fallback(
    known: KnownPaths,
) -> impl Fn(Method, Uri) -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    move |method: Method, uri: Uri| {
        std::future::ready(
            slash_redirect(&known, &method, &uri)
                .unwrap_or_else(|| Error::NotFound.into_response()),
        )
    }
}

fn slash_redirect(known: &KnownPaths, method: &Method, uri: &Uri) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let path = uri.path();
    let canonical = path.trim_end_matches('/');
    // `/` itself is served; `//x` would be a network-path reference (another
    // host) in `Location`.
    if canonical.len() == path.len() || canonical.is_empty() || canonical.starts_with("//") {
        return None;
    }
    if !known.contains(canonical) {
        return None;
    }
    let location = match uri.query() {
        Some(q) => format!("{canonical}?{q}"),
        None => canonical.to_owned(),
    };
    let location = HeaderValue::from_str(&location).ok()?;
    Some(
        (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        h
    }

    fn redirect(issuer: &str, host: &str, path: &str) -> Option<String> {
        let uri: Uri = path.parse().unwrap();
        issuer_redirect(issuer, &uri, &headers(host)).map(|r| {
            assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
            r.headers()[header::LOCATION].to_str().unwrap().to_owned()
        })
    }

    #[test]
    fn a_loopback_alias_goes_to_the_issuer_with_path_and_query() {
        let issuer = "http://127.0.0.1:8000";
        assert_eq!(
            redirect(issuer, "localhost:8000", "/account?x=1").as_deref(),
            Some("http://127.0.0.1:8000/account?x=1")
        );
        assert_eq!(
            redirect(issuer, "LOCALHOST.:8000", "/").as_deref(),
            Some("http://127.0.0.1:8000/")
        );
        assert_eq!(
            redirect(issuer, "[::1]:8000", "/account").as_deref(),
            Some("http://127.0.0.1:8000/account")
        );
        assert_eq!(
            redirect("http://localhost:8000", "127.0.0.1:8000", "/account").as_deref(),
            Some("http://localhost:8000/account")
        );
    }

    #[test]
    fn the_issuer_itself_other_hosts_and_other_ports_are_left_alone() {
        let issuer = "http://127.0.0.1:8000";
        assert_eq!(redirect(issuer, "127.0.0.1:8000", "/account"), None);
        assert_eq!(redirect(issuer, "localhost:9000", "/account"), None);
        assert_eq!(redirect(issuer, "auth.internal:8000", "/account"), None);
        assert_eq!(redirect(issuer, "192.168.1.5:8000", "/account"), None);
        assert_eq!(
            redirect("https://auth.example.com", "localhost:443", "/account"),
            None,
            "a public issuer behind a proxy"
        );
        assert_eq!(redirect("http://[::1]:8000", "[0:0::1]:8000", "/"), None);
        let uri: Uri = "/account".parse().unwrap();
        assert!(issuer_redirect(issuer, &uri, &HeaderMap::new()).is_none());
    }

    #[test]
    fn known_paths_match_literals_and_parameters() {
        let known = KnownPaths::new(["/users/{id}", "/users/me", "/token"]);
        assert!(known.contains("/users/0193"));
        assert!(known.contains("/users/me"));
        assert!(known.contains("/account"));
        assert!(known.contains("/"));
        assert!(!known.contains("/users/"));
        assert!(!known.contains("/users/a/b"));
        assert!(!known.contains("/nope"));
        assert!(!known.contains("//users/x"));
    }

    fn slash(path: &str) -> Option<String> {
        let known = KnownPaths::new(["/users/{id}", "/token"]);
        slash_redirect(&known, &Method::GET, &path.parse().unwrap()).map(|r| {
            assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
            r.headers()[header::LOCATION].to_str().unwrap().to_owned()
        })
    }

    #[test]
    fn trailing_slashes_of_known_paths_redirect_and_nothing_else_does() {
        assert_eq!(slash("/account/").as_deref(), Some("/account"));
        assert_eq!(slash("/account//?a=b").as_deref(), Some("/account?a=b"));
        assert_eq!(slash("/users/42/").as_deref(), Some("/users/42"));
        assert_eq!(slash("/nope/"), None);
        assert_eq!(slash("/account"), None, "no slash: a real 404, no loop");
        assert_eq!(slash("//"), None);
        assert_eq!(slash("//token/"), None);
        let known = KnownPaths::new([]);
        assert!(slash_redirect(&known, &Method::POST, &"/account/".parse().unwrap()).is_none());
    }
}
