//! Connection limits: what a client may hold open, and for how long.
//!
//! Every accepted connection takes a slot from a fixed pool
//! ([`Limits::max_connections`]). Without one, silent connections use up
//! the process's file descriptors until `accept` fails with `EMFILE` and
//! nobody — `/healthz` included — gets in. Over the cap a connection is
//! still accepted, answered a fixed `503` and closed at once, so a client
//! learns to retry instead of waiting in the listen backlog.
//!
//! Then three deadlines keep a slot from being held by a client that does
//! nothing:
//!
//! - **First bytes**: a connection that sends nothing within
//!   [`Limits::header_read_timeout`] is closed, whatever protocol it would have
//!   spoken (hyper's HTTP/1 header timeout only starts at the first byte,
//!   and HTTP/2 has none).
//! - **Idle**: a connection with no request in flight and none started or
//!   finished for [`Limits::idle`] is shut down gracefully (HTTP/1: closed;
//!   HTTP/2: `GOAWAY`); one that never made a request is dropped a moment
//!   later (a silent HTTP/2 peer never acknowledges the `GOAWAY`).
//! - **HTTP/2 keep-alive**: pings every [`H2_KEEP_ALIVE_INTERVAL`]; a peer
//!   that does not answer within [`H2_KEEP_ALIVE_TIMEOUT`] is dropped.
//!
//! Bytes alone do not count as activity: the answers to warden's own
//! keep-alive pings would keep an idle HTTP/2 connection open for ever.
//! Requests do, from their headers to the end of their response body.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, sleep};

use crate::config::connections::{FD_RESERVE, open_files_limit};

/// How often an HTTP/2 connection is pinged when the peer has sent
/// nothing, and how long the answer may take before the connection is
/// dropped: a peer that vanished without a FIN is found out.
pub const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
pub const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests one HTTP/2 connection may have open at once.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// Largest header block an HTTP/2 request may send (HTTP/1 is bounded by
/// hyper's read buffer).
pub const H2_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// The idle rule is checked this many times per idle timeout: a quiet
/// connection is closed between one and 1¼ idle timeouts after its last
/// request.
const IDLE_CHECKS: u32 = 4;

/// How long a connection that never made a request is given, once asked
/// to shut down, to send its `GOAWAY` before it is dropped (a silent
/// HTTP/2 peer never acknowledges one).
const CLOSING_CHECK: Duration = Duration::from_secs(1);

/// Body of the answer to a connection over the cap, in the contract's
/// error shape.
const REFUSED_BODY: &str = r#"{"detail":"Too many open connections; retry shortly"}"#;

/// The whole answer to a connection over the cap: written without parsing
/// anything the client sent, then the connection is closed.
fn refused_response() -> Vec<u8> {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         content-type: application/json\r\n\
         content-length: {}\r\n\
         retry-after: 1\r\n\
         cache-control: no-store\r\n\
         connection: close\r\n\
         \r\n\
         {REFUSED_BODY}",
        REFUSED_BODY.len()
    )
    .into_bytes()
}

/// What a client may hold, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time a new connection has to send its first byte; then (HTTP/1)
    /// the time each request has for its headers.
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request.
    pub idle: Duration,
    /// Time shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes;
/// then stops accepting, asks every connection to finish, and waits for
/// them at most [`Limits::shutdown_grace`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST_SIZE);
    let builder = Arc::new(builder);

    // Past the open-files limit, accept itself fails: the cap would no
    // longer answer anyone.
    if let Some(files) = open_files_limit()
        && limits.max_connections as u64 + FD_RESERVE > files
    {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_files_limit = files,
            "WARDEN_MAX_CONNECTIONS leaves fewer than {FD_RESERVE} file descriptors for the rest; \
             accept may fail with too many open files"
        );
    }

    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refused = metrics::counter!("warden_connections_refused_total");
    // Registered now so the series shows 0 before the first refusal.
    refused.increment(0);
    let open = metrics::gauge!("warden_connections_open");
    let refusal = refused_response();
    let (stop, stopping) = watch::channel(false);

    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused.increment(1);
            refuse(stream, &refusal);
            continue;
        };
        open.increment(1);
        let slot = Slot {
            _permit: permit,
            open: open.clone(),
        };
        tokio::spawn(connection(
            stream,
            peer,
            app.clone(),
            builder.clone(),
            limits,
            stopping.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it is gone: all slots back means
    // every request has been answered.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown: requests still in flight after the grace period were dropped");
    }
    Ok(())
}

/// Answers a connection over the cap and closes it, without waiting: the
/// socket's send buffer is empty, so the few bytes go out in one write or
/// not at all.
fn refuse(stream: TcpStream, response: &[u8]) {
    let _ = stream.try_write(response);
    // Read what the request already sent, so closing sends FIN rather
    // than RST (an RST can destroy the answer before the client reads it).
    let mut sink = [0u8; 4096];
    while let Ok(n) = stream.try_read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

/// A connection's place under the cap, given back when it is dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: metrics::Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.decrement(1);
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
    _slot: Slot,
) {
    let mut first = [0u8; 1];
    let sent = tokio::select! {
        sent = tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)) => sent,
        _ = stopping.wait_for(|stop| *stop) => return,
    };
    if !matches!(sent, Ok(Ok(n)) if n > 0) {
        // Silent past the deadline, closed, or broken.
        return;
    }

    let activity = Arc::new(Activity::default());
    let service = Tracked {
        // Outside the router, so every request is logged: 404s and
        // redirects too.
        inner: crate::http::request_log::RequestLog::new(app),
        peer,
        activity: activity.clone(),
    };
    let conn = builder.serve_connection_with_upgrades(
        TokioIo::new(stream),
        hyper_util::service::TowerToHyperService::new(service),
    );
    tokio::pin!(conn);

    let every = limits.idle / IDLE_CHECKS;
    let check = sleep(every);
    tokio::pin!(check);
    let mut seen = activity.load();
    let mut quiet = 0;
    let mut closing = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stopping.wait_for(|stop| *stop), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
                check.as_mut().reset(Instant::now() + CLOSING_CHECK);
            }
            () = &mut check, if !closing || activity.load() == 0 => {
                let now = activity.load();
                if closing {
                    // Never asked for anything: nothing to finish. (One
                    // that has made requests is left to hyper: HTTP/1
                    // closes once its answer is sent, HTTP/2 when the peer
                    // acknowledges the GOAWAY or misses a keep-alive ping.)
                    break;
                }
                if in_flight(now) == 0 && now == seen {
                    quiet += 1;
                } else {
                    quiet = 0;
                    seen = now;
                }
                if quiet >= IDLE_CHECKS {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    check.as_mut().reset(Instant::now() + CLOSING_CHECK);
                } else {
                    check.as_mut().reset(Instant::now() + every);
                }
            }
        }
    }
    // Here the connection (and its socket) is dropped, before `_slot`,
    // which as a parameter outlives every local: a slot is given back only
    // once its descriptor is closed.
}

/// Requests of one connection: the low 32 bits count those in flight, the
/// high 32 bits change whenever one starts or ends. One atomic add at each
/// end of a request, and no clock read: the idle check compares snapshots.
#[derive(Default)]
struct Activity(AtomicU64);

const STARTED: u64 = (1 << 32) | 1;
/// Adds one to the high half and takes one from the low half (which is at
/// least one, so nothing borrows).
const ENDED: u64 = (1 << 32) - 1;

impl Activity {
    fn load(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.0.fetch_add(STARTED, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

fn in_flight(snapshot: u64) -> u32 {
    snapshot as u32
}

/// One request in flight, from its headers until its response body is
/// dropped (sent, or abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.0.fetch_add(ENDED, Ordering::Relaxed);
    }
}

/// The per-connection service: gives each request its peer address (for
/// `ConnectInfo`) and counts it in flight until its response is sent.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl<S, B> tower::Service<Request<Incoming>> for Tracked<S>
where
    S: tower::Service<Request<Incoming>, Response = http::Response<B>, Error = Infallible>,
{
    type Response = http::Response<TrackedBody<B>>;
    type Error = Infallible;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.start();
        req.extensions_mut().insert(ConnectInfo(self.peer));
        TrackedFuture {
            inner: self.inner.call(req),
            in_flight: Some(in_flight),
        }
    }
}

pin_project_lite::pin_project! {
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F, B> Future for TrackedFuture<F>
where
    F: Future<Output = Result<http::Response<B>, Infallible>>,
{
    type Output = Result<http::Response<TrackedBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            _in_flight: in_flight,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until hyper drops
    /// it.
    struct TrackedBody<B> {
        #[pin]
        inner: B,
        _in_flight: Option<InFlight>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    // Both forwarded: hyper sets `content-length` from the size hint.
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_503_in_the_error_shape() {
        let text = String::from_utf8(refused_response()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("retry-after: 1"));
        assert!(head.contains("connection: close"));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(json["detail"].is_string());
    }

    #[test]
    fn activity_counts_requests_in_flight_and_changes_on_each_end() {
        let activity = Arc::new(Activity::default());
        let before = activity.load();
        let a = activity.start();
        let b = activity.start();
        assert_eq!(in_flight(activity.load()), 2);
        drop(a);
        let one = activity.load();
        assert_eq!(in_flight(one), 1);
        drop(b);
        let none = activity.load();
        assert_eq!(in_flight(none), 0);
        assert_ne!(none, before);
        assert_ne!(none, one);
    }
}
