//! One log line per request, as uvicorn prints: method, path, status,
//! duration and a request id — at `info`, target `warden::http::request`
//! ([`TARGET`]), in the configured format (text or JSON).
//!
//! What it never holds: the query string (a `?token=` of a mailed link, a
//! `code=`), headers (`Authorization`, cookies) and bodies. The path is
//! kept (capped at [`MAX_PATH`] bytes); warden's paths carry ids, never
//! secrets.
//!
//! The request id is the request's `x-request-id` when it has a sane one
//! (a proxy's), else one made here: a random prefix per process and a
//! counter, so ids are unique without a random draw per request. It goes
//! back in the response's `x-request-id`, so a client's report can be
//! found in the log.
//!
//! Cost: one `tracing` event per request, and nothing at all beyond the id
//! when the target is filtered out (`WARDEN_LOG=info,warden::http::request=warn`,
//! as the benchmarks run with `WARDEN_LOG=warn`). A tower service with its own
//! future, like [`crate::http::metrics`], so it boxes nothing. It wraps the
//! whole router in [`crate::http::connections`], so 404s and redirects are
//! logged too.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::http::{self, HeaderName, HeaderValue, Method, Request, Uri};

/// The target of the request lines, for `WARDEN_LOG` filters.
pub const TARGET: &str = "warden::http::request";

/// The header carrying the request id, both ways.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Paths longer than this are cut in the log (a client may send a
/// kilobyte of path to fill it).
pub const MAX_PATH: usize = 256;

/// The longest `x-request-id` taken from a request.
const MAX_ID: usize = 64;

/// A request id from a proxy is kept when it is short and made of the
/// characters ids are made of, so it cannot forge a log line or a field.
fn acceptable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_ID
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
}

/// A new id: 8 hex digits fixed for the process, `-`, 12 of a counter.
fn next_id() -> HeaderValue {
    static PREFIX: LazyLock<u32> = LazyLock::new(|| {
        let mut bytes = [0u8; 4];
        // Uniqueness across restarts only; a clock fallback is enough.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            bytes = nanos.to_le_bytes();
        }
        u32::from_le_bytes(bytes)
    });
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_add(1) & 0xffff_ffff_ffff;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 21];
    let prefix = *PREFIX;
    for (i, slot) in buf[..8].iter_mut().enumerate() {
        *slot = HEX[((prefix >> (28 - 4 * i)) & 0xf) as usize];
    }
    buf[8] = b'-';
    for (i, slot) in buf[9..].iter_mut().enumerate() {
        *slot = HEX[((n >> (44 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&buf).expect("hex digits and a dash")
}

/// Wraps a service (the router) with the request log.
#[derive(Clone, Copy, Default)]
pub struct RequestLogLayer;

impl<S> tower::Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> RequestLog<S> {
        RequestLog { inner }
    }
}

#[derive(Clone)]
pub struct RequestLog<S> {
    inner: S,
}

impl<S> RequestLog<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

/// What the line needs once the response is there; `None` when the target
/// is filtered out.
struct Line {
    method: Method,
    /// A clone shares the request's bytes (no copy).
    uri: Uri,
    start: Instant,
}

impl<S, B, ResBody> tower::Service<Request<B>> for RequestLog<S>
where
    S: tower::Service<Request<B>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Logged<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(id) if acceptable(id) => id.clone(),
            _ => next_id(),
        };
        let line = tracing::enabled!(target: TARGET, tracing::Level::INFO).then(|| Line {
            method: req.method().clone(),
            uri: req.uri().clone(),
            start: Instant::now(),
        });
        Logged {
            inner: self.inner.call(req),
            id: Some(id),
            line,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct Logged<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
        line: Option<Line>,
    }
}

impl<F, ResBody, E> Future for Logged<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        let id = this.id.take();
        if let Ok(response) = &mut result {
            if let Some(line) = this.line.take() {
                let micros = line.start.elapsed().as_micros();
                let id = id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or("");
                tracing::info!(
                    target: TARGET,
                    method = %line.method,
                    // Quoted and escaped in text: nothing in a path can
                    // end the line or fake a field.
                    path = cut(line.uri.path()),
                    status = response.status().as_u16(),
                    // Whole microseconds, in milliseconds: `0.412`.
                    duration_ms = micros as f64 / 1000.0,
                    // Checked or made here: plain characters only.
                    request_id = %id,
                    "request"
                );
            }
            if let Some(id) = id {
                response.headers_mut().insert(X_REQUEST_ID.clone(), id);
            }
        }
        Poll::Ready(result)
    }
}

/// `path`, cut at [`MAX_PATH`] bytes.
fn cut(path: &str) -> &str {
    if path.len() <= MAX_PATH {
        return path;
    }
    // Paths are ASCII (hyper refuses anything else); the boundary check
    // keeps a cut safe all the same.
    let mut end = MAX_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_distinct_hex_with_a_process_prefix() {
        let a = next_id();
        let b = next_id();
        assert_ne!(a, b);
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
        assert_eq!(a.len(), 21);
        assert_eq!(a[..9], b[..9], "same prefix");
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'));
        assert!(acceptable(&HeaderValue::from_str(a).unwrap()));
    }

    #[test]
    fn long_paths_are_cut() {
        assert_eq!(cut("/users/me"), "/users/me");
        let long = format!("/{}", "a".repeat(400));
        assert_eq!(cut(&long).len(), MAX_PATH);
        let wide = "é".repeat(200);
        assert!(cut(&wide).len() <= MAX_PATH);
    }

    #[test]
    fn only_short_plain_ids_are_taken_from_requests() {
        for ok in [
            "abc",
            "0193a0c4-1234-7abc-8def-0123456789ab",
            "req:42/a.b_c",
        ] {
            assert!(acceptable(&HeaderValue::from_static(ok)), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "a b", "a\"b", "x=1", "a,b", long.as_str()] {
            assert!(!acceptable(&HeaderValue::from_str(bad).unwrap()), "{bad:?}");
        }
    }
}
