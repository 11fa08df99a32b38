//! The security event log: every event is one structured log line (JSON
//! with `WARDEN_LOG_FORMAT=json`) and one row of `audit_events`, read back
//! through `GET /audit`. Never tokens, passwords or hashes.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::AuditRecord;
use crate::storage::Store;

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

impl Event {
    /// The row for this event, to be stored in the same transaction as
    /// the change it records; [`log`] it once that has committed.
    pub fn into_record(self) -> AuditRecord {
        AuditRecord {
            id: Uuid::now_v7(),
            kind: self.kind.to_owned(),
            user_id: self.user,
            session_id: self.session,
            ip: self.ip,
            detail: (!self.detail.is_empty()).then(|| Value::Object(self.detail).to_string()),
            created_at: crate::auth::tokens::now(),
        }
    }
}

/// Writes the log line of a stored event.
pub fn log(row: &AuditRecord) {
    tracing::info!(
        target: "warden::auth::audit",
        event = row.kind,
        // Absent fields are left out rather than logged as `None`.
        user_id = row.user_id.map(tracing::field::display),
        session_id = row.session_id.map(tracing::field::display),
        ip = row.ip.as_deref(),
        detail = row.detail.as_deref().unwrap_or("{}"),
        "security event"
    );
}

/// Logs `event` and stores it. A failure to store is logged, never turned
/// into an error for the request that caused the event.
pub async fn record(store: &dyn Store, event: Event) {
    let row = event.into_record();
    log(&row);
    if let Err(e) = store.insert_audit(&row).await {
        tracing::warn!(error = %e, event = row.kind, "could not store a security event");
    }
}
