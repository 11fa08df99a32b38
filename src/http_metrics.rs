//! Per-request HTTP metrics without per-request registration: the counter
//! and histogram handles of each (route, status) pair are looked up once and
//! kept. `metrics::counter!` with labels would build and hash a key (six
//! allocations) on every request — the largest cost of a cached-token
//! request after HTTP itself, in callgrind's count.

use std::hash::BuildHasher;
use std::sync::RwLock;

use hashbrown::HashTable;
use metrics::{Counter, Histogram};

struct Handles {
    route: Box<str>,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

#[derive(Default)]
pub struct HttpMetrics {
    handles: RwLock<HashTable<Handles>>,
    hasher: foldhash::fast::FixedState,
}

impl HttpMetrics {
    /// Counts one request to `route` answered with `status` in `seconds`.
    pub fn record(&self, route: &str, status: u16, seconds: f64) {
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
                "warden_http_request_duration_seconds",
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
