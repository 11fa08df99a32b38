//! Per-request HTTP metrics without per-request registration: the counter
//! and histogram handles of each (route, status) pair are looked up once and
//! kept. `metrics::counter!` with labels would build and hash a key (six
//! allocations) on every request — the largest cost of a cached-token
//! request after HTTP itself, in callgrind's count.
//!
//! Recorded by a tower layer ([`HttpMetricsLayer`]) rather than
//! `axum::middleware::from_fn`, which boxes and clones the inner service on
//! every request (about 1,500 instructions of a 26,000-instruction request).

use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::{LazyLock, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use hashbrown::HashTable;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// The request-duration histogram (by route).
pub const REQUEST_DURATION: &str = "warden_http_request_duration_seconds";

/// Upper bounds (seconds) of the request-duration buckets: from 50 µs (a
/// request with a cached token answers in tens of microseconds) to 10 s
/// (a login waiting in the hashing queue), about three per decade.
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// The Prometheus recorder's configuration. Request durations are a real
/// histogram, as the contract says: bucket counts add up across
/// instances, where a summary's quantiles (the exporter's default for a
/// histogram without buckets) cannot be aggregated.
pub fn prometheus_builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(REQUEST_DURATION.to_owned()),
            REQUEST_DURATION_BUCKETS,
        )
        .expect("the bucket list is not empty")
}

/// Counts requests and their duration by matched route (never by raw path:
/// ids would explode the label set). A route layer, so it sees the
/// [`MatchedPath`].
#[derive(Clone, Copy, Default)]
pub struct HttpMetricsLayer;

impl<S> tower::Layer<S> for HttpMetricsLayer {
    type Service = RecordMetrics<S>;

    fn layer(&self, inner: S) -> RecordMetrics<S> {
        RecordMetrics { inner }
    }
}

#[derive(Clone)]
pub struct RecordMetrics<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for RecordMetrics<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Recorded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        Recorded {
            inner: self.inner.call(req),
            route,
            start: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct Recorded<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
        start: Instant,
    }
}

impl<F, E> Future for Recorded<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        static HTTP: LazyLock<HttpMetrics> = LazyLock::new(Default::default);
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            HTTP.record(
                this.route.as_ref().map_or("unmatched", |p| p.as_str()),
                response.status().as_u16(),
                this.start.elapsed().as_secs_f64(),
            );
        }
        Poll::Ready(result)
    }
}

struct Handles {
    route: Box<str>,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

#[derive(Default)]
struct HttpMetrics {
    handles: RwLock<HashTable<Handles>>,
    hasher: foldhash::fast::FixedState,
}

impl HttpMetrics {
    /// Counts one request to `route` answered with `status` in `seconds`.
    fn record(&self, route: &str, status: u16, seconds: f64) {
        let hash = self.hasher.hash_one((route, status));
        let eq = |h: &Handles| h.status == status && &*h.route == route;
        {
            let table = self.handles.read().unwrap_or_else(|e| e.into_inner());
            if let Some(h) = table.find(hash, eq) {
                h.requests.increment(1);
                h.duration.record(seconds);
                return;
            }
        }
        // First request of this pair: register (routes and statuses are a
        // small, fixed set, so the table stays small).
        let h = Handles {
            route: route.into(),
            status,
            requests: metrics::counter!(
                "warden_http_requests_total",
                "route" => route.to_owned(),
                "status" => status.to_string()
            ),
            duration: metrics::histogram!(
                REQUEST_DURATION,
                "route" => route.to_owned()
            ),
        };
        h.requests.increment(1);
        h.duration.record(seconds);
        let mut table = self.handles.write().unwrap_or_else(|e| e.into_inner());
        if table.find(hash, eq).is_none() {
            table.insert_unique(hash, h, |h| self.hasher.hash_one((&*h.route, h.status)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_duration_buckets_ascend_from_microseconds_to_seconds() {
        assert!(REQUEST_DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(REQUEST_DURATION_BUCKETS.first(), Some(&0.000_05));
        assert_eq!(REQUEST_DURATION_BUCKETS.last(), Some(&10.0));
    }
}
