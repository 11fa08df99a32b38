//! The security event log: every event is one structured log line (JSON
//! with `WARDEN_LOG_FORMAT=json`) and one row of `audit_events`, read back
//! through `GET /audit`. Never tokens, passwords or hashes.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::storage::{AuditRecord, Store};

/// One security event, built up and then [`record`]ed.
#[derive(Debug, Clone)]
pub struct Event {
    kind: &'static str,
    user: Option<Uuid>,
    session: Option<Uuid>,
    ip: Option<String>,
    detail: Map<String, Value>,
}

impl Event {
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            user: None,
            session: None,
            ip: None,
            detail: Map::new(),
        }
    }

    pub fn user(mut self, id: impl Into<Option<Uuid>>) -> Self {
        self.user = id.into();
        self
    }

    /// The user named by a token's `sub`.
    pub fn user_str(self, sub: &str) -> Self {
        let id = Uuid::parse_str(sub).ok();
        self.user(id)
    }

    pub fn session(mut self, id: impl Into<Option<Uuid>>) -> Self {
        self.session = id.into();
        self
    }

    pub fn session_str(self, sid: &str) -> Self {
        let id = Uuid::parse_str(sid).ok();
        self.session(id)
    }

    pub fn ip(mut self, ip: Option<&str>) -> Self {
        self.ip = ip.map(str::to_owned);
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(key.to_owned(), value.into());
        self
    }
}

/// Logs `event` and stores it. A failure to store is logged, never turned
/// into an error for the request that caused the event.
pub async fn record(store: &dyn Store, event: Event) {
    let detail =
        (!event.detail.is_empty()).then(|| Value::Object(event.detail.clone()).to_string());
    tracing::info!(
        target: "warden::audit",
        event = event.kind,
        // Absent fields are left out rather than logged as `None`.
        user_id = event.user.map(tracing::field::display),
        session_id = event.session.map(tracing::field::display),
        ip = event.ip.as_deref(),
        detail = detail.as_deref().unwrap_or("{}"),
        "security event"
    );
    let row = AuditRecord {
        id: Uuid::now_v7(),
        kind: event.kind.to_owned(),
        user_id: event.user,
        session_id: event.session,
        ip: event.ip,
        detail,
        created_at: crate::tokens::now(),
    };
    if let Err(e) = store.insert_audit(&row).await {
        tracing::warn!(error = %e, event = row.kind, "could not store a security event");
    }
}
